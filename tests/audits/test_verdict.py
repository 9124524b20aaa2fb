"""The verdict vocabulary: known answers for each rule, and the Wilson interval against its formula."""

from __future__ import annotations

import math

import pytest

from imaudit.audits.result import AuditResult, Finding
from imaudit.audits.verdict import (LABELS, REVIEW_LABELS, cleared_line, cleared_shortcuts, gate_line, headline, review_state,
                                    verdict, wilson_interval)


def _result(findings=(), *, status="complete", gates=True, fail_on=None, fit="ok", errors=()) -> AuditResult:
    return AuditResult(
        id="x", status=status, model={"ref": "timm:m", "digest": "d", "arch": "m", "num_classes": 2},
        dataset={"ref": "builtin:digits", "digest": "e", "classes": ["a", "b"]},
        metrics={"train": {"n": 100, "accuracy": 1.0, "loss": 0.1, "ece": 0.01},
                 "val": {"n": 50, "accuracy": 0.9, "loss": 0.3, "ece": 0.05}},
        fit={"verdict": fit}, findings=list(findings), gates={"passed": gates, "fail_on": fail_on},
        errors=list(errors))


def F(code: str, severity: str, **evidence) -> Finding:
    return Finding(code=code, severity=severity, message=code, evidence=evidence)


def test_a_clean_audit_passes():
    v = verdict(_result())
    assert (v.state, v.label, v.reasons) == ("pass", "Pass", [])


def test_explainer_caveats_never_raise_the_verdict_by_themselves():
    v = verdict(_result([F("low-method-agreement", "warning"), F("unfaithful-explanation", "warning")]))
    assert v.state == "pass" and v.caveats == 2 and v.counts["warning"] == 0
    # an explainer *error* (a method worse than random) is still a caveat: the headline counts model findings
    v = verdict(_result([F("unfaithful-explanation", "error"), F("failed-sanity-check", "error")]))
    assert v.state == "pass" and v.caveats == 2 and v.counts == {"info": 0, "warning": 0, "error": 0}


def test_but_a_gate_that_fails_on_them_fails_the_audit():
    v = verdict(_result([F("low-method-agreement", "warning")], gates=False, fail_on="warning"))
    assert v.state == "fail" and v.reasons == ["gate fails on warning: Methods disagree (warning)"]


def test_model_and_data_warnings_need_attention_errors_fail():
    assert verdict(_result([F("miscalibration", "warning")])).state == "attention"
    assert verdict(_result([F("class-imbalance", "warning")])).line() == "Needs attention: Class imbalance (warning)"
    assert verdict(_result(fit="overfitting")).reasons == ["fit: overfitting"]
    v = verdict(_result([F("shortcut", "error"), F("miscalibration", "warning"), F("data-leakage", "error")]))
    assert v.state == "fail" and v.reasons == ["Shortcut (error)", "Data leakage (error)"]
    assert verdict(_result([F("shortcut", "info")])).state == "pass"  # an unconfirmed candidate is information


def test_an_audit_that_did_not_finish_is_incomplete_never_pass():
    err = [{"stage": "predict", "error": "RuntimeError: boom"}]
    v = verdict(_result([F("stage-failed", "error")], status="partial", errors=err))
    assert v.state == "incomplete" and v.reasons == ["stage predict failed"]
    # a failed required stage that fails the gate is still called incomplete, not a model failure
    v = verdict(_result([F("stage-failed", "error")], status="partial", errors=err, gates=False, fail_on="error"))
    assert v.state == "incomplete"
    # but a model error found before the failure still fails the audit
    assert verdict(_result([F("shortcut", "error")], status="partial", errors=err)).state == "fail"


def test_vocabularies_cover_every_state():
    assert set(LABELS) == {"pass", "attention", "fail", "incomplete"}
    assert review_state(None, release=True) == "pending" and review_state(None, release=False) == "none"
    assert review_state(None, release=True, superseded=True) == "superseded"
    assert review_state("approve", release=True) == "approve"
    assert all(s in REVIEW_LABELS for s in ("approve", "reject", "needs-work", "pending", "superseded", "none"))


@pytest.mark.parametrize("k,n", [(9, 12), (359, 360), (0, 20), (50, 100)])
def test_wilson_interval_matches_its_formula(k, n):
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(centre - half, abs=1e-9) and hi == pytest.approx(centre + half, abs=1e-9)
    assert 0 <= lo <= p <= hi <= 1


def test_headline_uses_the_validation_split():
    h = headline(_result())
    assert h["split"] == "val" and h["accuracy"] == 0.9 and h["n"] == 50
    assert h["ci"] == pytest.approx(wilson_interval(45, 50))


def test_the_gate_line_says_passed_only_for_a_passing_audit():
    """The CLI summary's and run log's gate line: never 'passed' for a failed stage or a confirmed shortcut."""
    assert gate_line(_result()) == "gate passed"
    assert gate_line(_result(fail_on="error")) == "gate passed (fail on error)"
    stage = [{"stage": "counterfactuals", "error": "boom"}]
    partial = gate_line(_result([F("stage-failed", "error")], status="partial", gates=False, errors=stage))
    assert partial == "gate FAILED (the audit is partial: stage counterfactuals failed)"
    assert gate_line(_result([F("shortcut", "error")], gates=False, fail_on="error")) == \
        "gate FAILED (a finding at or above error)"
    confirmed = gate_line(_result([F("shortcut", "error")]))  # no --fail-on: exit 0, but not "passed"
    assert "passed" not in confirmed and confirmed.endswith("so the exit code is 0; the verdict is Fail")
    below = gate_line(_result([F("miscalibration", "warning")], fail_on="error"))
    assert below == "gate not triggered (it fails on error); the verdict is Needs attention"


def test_cleared_shortcut_candidates_fold_into_one_line_the_rest_stay():
    confirmed = F("shortcut", "error", confirmed=True, **{"class": "3"})
    untested = F("shortcut", "info", confirmed=None, **{"class": "1"})
    cleared = [F("shortcut", "info", confirmed=False, **{"class": c}) for c in ("0", "2", "0")]
    other = F("miscalibration", "warning")
    shown, folded = cleared_shortcuts([confirmed, cleared[0], untested, other, cleared[1], cleared[2]])
    assert shown == [confirmed, untested, other] and folded == cleared
    assert cleared_line(folded).startswith("3 candidates (classes 0, 2) tested on the model and cleared")
