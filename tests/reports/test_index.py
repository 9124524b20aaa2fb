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
from page_checks import csp_problems, text_problems, visible_text


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
    return re.findall(r'<tr data-model="[^"]*" data-verdict="[^"]*" data-review="[^"]*" data-id="([^"]+)"', html)


def _row(html: str, audit_id: str) -> str:
    row = html[html.index(f'data-id="{audit_id}"'):]
    return row[: row.index("</tr>")]


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
    assert html.count("Pending review</span>") == 3  # three release versions, not the ad hoc one
    # one trend (net has three releases; the ad hoc model has one audit)
    assert html.count("data:image/png;base64,") == 1 and "Trends across audits" in html
    # hostile model name is text; one inline script and style, nothing a strict CSP would block
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert csp_problems(html) == [] and text_problems(visible_text(html)) == []
    # settings and the audit id are shown; columns sort
    assert "saliency, gradcam" in _row(html, "net-1.2") and "<code>net-1.2</code>" in _row(html, "net-1.2")
    assert 'id="audit-table" class="sortable"' in html
    assert not (store / "reviews.db").exists()  # reading the index never creates a database


def test_index_is_rebuilt_from_scratch_and_shows_db_decisions(tmp_path):
    store = _store(tmp_path)
    first = build_index(store).read_text()
    _decide(store, "net-1.2", "approve", "Ann.Reviewer", "looks fine")
    _decide(store, "net-1.1", "reject", "Bob")
    shutil.rmtree(store / "net-1.0")
    second = build_index(store).read_text()
    assert "net-1.0" in first and "net-1.0" not in second
    assert second.count("Pending review</span>") == 0
    row = _row(second, "net-1.2")
    assert "Approved" in row and "Ann.Reviewer" in row
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
    assert "Pending review" in row and "approve on an older audit" in row
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


def test_a_newer_audit_of_the_same_release_supersedes_the_older_one(tmp_path):
    store = tmp_path / "reports"
    for i in range(3):  # three audits of release net@2, newest last
        make_result(store / f"net2-{i}", created=f"2024-07-0{i + 1}T10:00:00+00:00", model_ref="release:net@2", seed=i)
    make_result(store / "net3", created="2024-07-05T10:00:00+00:00", model_ref="release:net@3")
    _decide(store, "net2-0", "reject", "Ann")
    html = build_index(store).read_text()
    assert "Pending review" in _row(html, "net2-2") and "Pending review" in _row(html, "net3")
    assert "Superseded" in _row(html, "net2-1")  # one pending review per model version
    assert "Rejected" in _row(html, "net2-0")  # a decision stays a decision
    assert html.count("Pending review</span>") == 2


def test_trends_join_only_audits_with_comparable_settings(tmp_path):
    store = tmp_path / "reports"
    for i, samples in enumerate((16, 16, 64)):
        r = make_result(store / f"m-{i}", created=f"2024-08-0{i + 1}T10:00:00+00:00", model_ref=f"release:m@{i}", seed=i)
        r.spec = {"methods": ["saliency", "gradcam"], "samples": samples}
        r.write(store / f"m-{i}")
    from imaudit.reports.index import index_rows, trends

    entries = list_audits(store)
    rows = index_rows(entries, {}, app=False)
    t = trends(rows, {e.id: e.result for e in entries})[0]
    # newest audit explained 64 images: the two earlier faithfulness points are not comparable with it
    faith = [vals[3] for _, _, vals in t["points"]]
    acc = [vals[0] for _, _, vals in t["points"]]
    assert faith[:2] == [None, None] and faith[2] is not None
    assert all(a is not None for a in acc)  # same data: accuracy is comparable across all three
    assert t["left_out"] == {"faithfulness": 2}
    html = build_index(store).read_text()
    assert "Left out for other settings: faithfulness 2 audits" in html
    assert "settings differ from the previous audit" in _row(html, "m-2")


def test_audits_that_did_not_complete_are_listed_with_their_error(tmp_path):
    store = tmp_path / "reports"
    r = make_result(store / "half", model_ref="release:net@4", rich=False)
    r.status = "partial"
    r.errors = [{"stage": "predict", "error": "RuntimeError: CUDA not available"}]
    r.findings = []
    r.write(store / "half")
    html = build_index(store).read_text()
    row = _row(html, "half")
    assert 'data-verdict="incomplete"' in html and "Incomplete" in row
    assert "predict failed: RuntimeError: CUDA not available" in row
    assert "1 did not complete" in html


def test_a_checkpoint_file_is_named_by_its_file_name_with_the_full_ref_beside_it(tmp_path):
    from imaudit.reports.identity import short_name

    assert short_name("file:/srv/models/run-7/model.pt") == "model.pt"
    assert short_name("file:s3://bucket/nets/net.safetensors?version=3") == "net.safetensors"
    assert short_name("release:digits@2") == "release:digits@2" and short_name("timm:resnet18") == "timm:resnet18"
    store = tmp_path / "store"
    make_result(store / "a1", audit_id="a1", model_ref="file:/srv/models/run-7/model.pt", release={})
    html = build_index(store).read_text()
    row = _row(html, "a1")
    assert 'title="file:/srv/models/run-7/model.pt"' in row and ">model.pt<" in row
