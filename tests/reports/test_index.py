"""index.html and the store scan: newest first, broken folders, reviews, trends, escaping."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from reports_factory import HOSTILE, make_result

from imaudit.errors import BadInputError
from imaudit.reports.accounts import Identity
from imaudit.reports.db import open_review_db
from imaudit.reports.decisions import DecisionLog, Seen
from imaudit.reports.index import build_index, faithfulness, key_metrics, model_identity
from imaudit.reports.store import list_audits, read_audit, resolve_audit


def _store(root: Path) -> Path:
    store = root / "reports"
    for i, (acc, ece) in enumerate([(0.7, 0.1), (0.8, 0.06), (0.85, 0.04)]):
        make_result(store / f"net-1.{i}", created=f"2024-05-0{i + 1}T10:00:00+00:00",
                    model_ref=f"release:net@1.{i}", accuracy=acc, ece=ece, seed=i)
    make_result(store / "adhoc", created="2024-06-01T10:00:00+00:00", model_ref=f"timm:{HOSTILE}", rich=False)
    (store / "corrupt").mkdir()
    (store / "corrupt" / "audit.json").write_text("{not json")
    (store / "empty").mkdir()
    (store / ".tmp-inflight-1234").mkdir()  # an audit being written: not listed
    return store


def _row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-model="[^"]*" data-verdict="[^"]*" data-id="([^"]+)"', html)


def test_list_audits_newest_first_with_broken_entries(tmp_path):
    store = _store(tmp_path)
    entries = list_audits(store)
    ids = [e.id for e in entries]
    assert set(ids) == {"net-1.0", "net-1.1", "net-1.2", "adhoc", "corrupt", "empty"}
    good = [e.id for e in entries if not e.broken]
    assert good == ["adhoc", "net-1.2", "net-1.1", "net-1.0"]
    errors = {e.id: e.error for e in entries if e.broken}
    assert "missing" in errors["empty"] and "audit.json" in errors["empty"]
    assert "corrupt/audit.json" in errors["corrupt"] and "\n" not in errors["corrupt"]


def test_index_lists_every_audit_with_trends_pending_reviews_and_escaping(tmp_path):
    store = _store(tmp_path)
    html = build_index(store).read_text()
    ids = _row_ids(html)
    # broken folders sort by their mtime (now), so they come first
    assert sorted(ids[:2]) == ["corrupt", "empty"]
    assert ids[2:] == ["adhoc", "net-1.2", "net-1.1", "net-1.0"]
    assert html.count('data-verdict="broken"') == 2
    assert html.count("pending review</span>") == 3  # the three release audits, not the ad hoc one
    # one trend (net has three releases; the ad hoc model has one audit)
    assert html.count("<svg") == 1 and "Trends across releases" in html
    # hostile model name is text, and the only script is the filter
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1
    assert not (store / "reviews.db").exists()  # reading the index never creates a database


def test_index_is_rebuilt_from_scratch_and_shows_db_decisions(tmp_path):
    store = _store(tmp_path)
    first = build_index(store).read_text()
    _decide(store, "net-1.2", "approve", "Ann.Reviewer", "looks fine")
    _decide(store, "net-1.1", "reject", "Bob")
    shutil.rmtree(store / "net-1.0")
    second = build_index(store).read_text()
    assert "net-1.0" in first and "net-1.0" not in second
    assert second.count("pending review</span>") == 0
    row = second[second.index('data-id="net-1.2"'):]
    row = row[: row.index("</tr>")]
    assert "approve" in row and "Ann.Reviewer" in row
    assert len(_row_ids(second)) == len(_row_ids(first)) - 1


def _decide(store: Path, audit_id: str, decision: str, who: str, comment: str = "") -> None:
    """Append a decision to the store's log as ``who`` (a signed-in reviewer), acknowledging every finding."""
    db = open_review_db(store)
    try:
        result, digest = read_audit(store / audit_id)
        seen = Seen.of(audit_id, result, digest)
        DecisionLog(db).append(seen, Identity(who, "reviewer", "password"), decision, comment, seen.required)
    finally:
        db.dispose()


def test_newer_audit_of_an_approved_release_is_pending_and_says_the_approval_was_for_an_older_audit(tmp_path):
    store = _store(tmp_path)
    make_result(store / "net-1.2-rerun", created="2024-05-09T10:00:00+00:00", model_ref="release:net@1.2", rich=False)
    _decide(store, "net-1.2", "approve", "Ann")
    html = build_index(store).read_text()
    row = html[html.index('data-id="net-1.2-rerun"'):]
    row = row[: row.index("</tr>")]
    assert "pending review" in row and "approve on an older audit" in row
    old = html[html.index('data-id="net-1.2"'):]
    assert "on an older audit" not in old[: old.index("</tr>")]  # the approved audit itself shows its decision


def test_corrupt_review_database_is_noted_and_the_index_still_written(tmp_path):
    store = _store(tmp_path)
    (store / "reviews.db").write_bytes(b"this is not sqlite" * 100)
    html = build_index(store).read_text()
    assert 'id="db-problem"' in html and "unreadable" in html and "reviews.db" in html
    assert _row_ids(html)[2:] == ["adhoc", "net-1.2", "net-1.1", "net-1.0"]


def test_key_metrics_known_answers(tmp_path):
    r = make_result(tmp_path / "x", accuracy=0.8, ece=0.05)
    km = key_metrics(r)
    assert km["split"] == "val" and km["accuracy"] == 0.8 and km["ece"] == 0.05 and km["gap"] == 0.15
    # saliency 0.7 - 0.2, gradcam 0.6 - 0.3 (see reports_factory)
    assert faithfulness(r) == pytest.approx(0.4)
    assert model_identity(r) == ("shapes-net", "1.0")
    bare = make_result(tmp_path / "y", model_ref="timm:test_vit", rich=False)
    assert model_identity(bare) == ("timm:test_vit", None) and faithfulness(bare) is None


def test_resolve_audit_by_folder_or_id(tmp_path):
    store = _store(tmp_path)
    assert resolve_audit("net-1.1", store) == (store / "net-1.1").resolve()
    assert resolve_audit(str(store / "adhoc"), tmp_path / "elsewhere") == (store / "adhoc").resolve()
    for bad in ("nope", "net-1.1/../adhoc", ".tmp-inflight-1234", ""):
        with pytest.raises(BadInputError, match="unknown audit"):
            resolve_audit(bad, store)
