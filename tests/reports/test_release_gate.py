"""`imaudit gate release:NAME@VERSION`: 0 only for an approved latest complete audit with nothing newer
pending, 1 with one line why, 2 for bad input, 3 when the review database cannot be trusted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from reports_factory import make_result
from signoff_helpers import ACKS, run_cli

from imaudit.reports.accounts import Identity
from imaudit.reports.db import open_review_db
from imaudit.reports.decisions import DecisionLog, Seen
from imaudit.reports.gate import release_gate
from imaudit.reports.store import read_audit

ANN = Identity("ann", "reviewer", "password")


def _audit(store: Path, audit_id: str, day: int, release: str = "net@1", status: str = "complete") -> None:
    result = make_result(store / audit_id, created=f"2024-05-{day:02d}T10:00:00+00:00",
                         model_ref=f"release:{release}", rich=False)
    if status != "complete":
        result.model_copy(update={"status": status}).write(store / audit_id)


def _decide(store: Path, audit_id: str, decision: str, who: Identity = ANN) -> None:
    db = open_review_db(store)
    try:
        result, digest = read_audit(store / audit_id)
        DecisionLog(db).append(Seen.of(audit_id, result, digest), who, decision, "", ACKS)
    finally:
        db.dispose()


def gate(store: Path, ref: str = "release:net@1", *more: str) -> tuple[int, str]:
    code, out = run_cli("gate", ref, "--store", str(store), *more)
    assert len(out.strip().splitlines()) == 1, out  # always one line
    return code, out.strip()


@pytest.fixture
def store(tmp_path):
    store = tmp_path / "reports"
    _audit(store, "net1-a", 1)
    _audit(store, "net2-a", 2, release="net@2")
    return store


def test_gate_opens_only_for_an_approved_latest_complete_audit(store):
    assert gate(store) == (1, "release:net@1: not approved: latest complete audit net1-a is pending review")
    _decide(store, "net1-a", "approve")
    code, out = gate(store)
    assert code == 0 and out.startswith("release:net@1: passed: audit net1-a approved by ann at ")
    assert "acknowledged overfitting, shortcut" in out
    assert gate(store, "release:net@2")[0] == 1  # another version of the model is not approved
    # The same function is what a Prefect flow calls.
    verdict = release_gate("release:net@1", store)
    assert verdict.passed and verdict.audit_id == "net1-a" and verdict.decision.reviewer == "ann"


def test_a_later_decision_or_a_newer_audit_closes_the_gate_again(store):
    _decide(store, "net1-a", "approve")
    _decide(store, "net1-a", "reject")
    code, out = gate(store)
    assert code == 1 and "latest complete audit net1-a: reject by ann" in out
    _decide(store, "net1-a", "approve")
    assert gate(store)[0] == 0
    # A newer audit of the release that could not complete, not reviewed yet: pending.
    _audit(store, "net1-b", 3, status="partial")
    code, out = gate(store)
    assert code == 1 and "approved but newer audit net1-b is pending review" in out
    _decide(store, "net1-b", "needs-work")
    assert gate(store)[0] == 0  # decided; the latest complete audit is still net1-a, approved
    # A newer complete audit replaces it as the one that must be approved.
    _audit(store, "net1-c", 4)
    assert gate(store) == (1, "release:net@1: not approved: latest complete audit net1-c is pending review")


def test_approvals_without_sign_in_or_for_changed_audits_do_not_count(store):
    _decide(store, "net1-a", "approve", who=Identity("anonymous", "reviewer", "none"))
    code, out = gate(store)
    assert code == 1 and "without sign-in" in out
    _decide(store, "net1-a", "approve")
    assert gate(store)[0] == 0
    path = store / "net1-a" / "audit.json"
    path.write_text(path.read_text().replace('"accuracy": 0.8', '"accuracy": 0.99'))
    code, out = gate(store)
    assert code == 1 and "audit.json of net1-a changed after ann" in out


def test_only_partial_or_no_audits(store, tmp_path):
    _audit(store, "net3-a", 5, release="net@3", status="partial")
    code, out = gate(store, "release:net@3")
    assert code == 1 and "no complete audit" in out
    assert gate(store, "release:ghost@1") == (1, "release:ghost@1: not approved: no audit of this release in the store")


@pytest.mark.parametrize("args,needle", [
    (("nonsense",), "expected release:NAME@VERSION"),
    (("release:net",), "expected release:NAME@VERSION"),
    (("release:net@1", "--db", "nonsense"), "cannot parse"),
])
def test_bad_input_exits_2(store, args, needle):
    code, out = gate(store, *args)
    assert code == 2 and needle in out


def test_missing_store_exits_2(tmp_path):
    code, out = gate(tmp_path / "nowhere")
    assert code == 2 and "no such folder" in out


def test_unreadable_or_tampered_database_exits_3(store):
    _decide(store, "net1-a", "approve")
    _decide(store, "net1-a", "approve")
    with sqlite3.connect(store / "reviews.db") as con:
        con.execute("DROP TRIGGER imaudit_decisions_no_delete")
        con.execute("DELETE FROM imaudit_decisions WHERE id = 1")  # history rewritten outside imaudit
    code, out = gate(store)
    assert code == 3 and "does not verify at decision 2" in out
    for suffix in ("", "-wal", "-shm"):
        if (store / f"reviews.db{suffix}").exists():
            (store / f"reviews.db{suffix}").write_bytes(b"garbage" * 1000)
    code, out = gate(store)
    assert code == 3 and "unreadable" in out and "Traceback" not in out
