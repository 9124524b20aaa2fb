"""The verdict vocabulary: one word for what an audit found, shared by every place that says it.

The report's banner, the index, the CLI summary, the Prefect artifact and the
release gate all call ``verdict(result)`` and print its ``label``, so a reviewer
reads the same word everywhere. Review decisions have their own small
vocabulary (``REVIEW_LABELS``), kept here for the same reason.

Rules, most serious first (explainer caveats such as ``low-method-agreement``
qualify the explanations, not the model, and never raise the verdict by
themselves; they can only fail it through an explicit ``--fail-on`` gate):

- **fail**: an error finding about the model or the data, or the gate failed;
- **incomplete**: the audit did not finish (a stage failed, status partial or failed);
- **attention**: a warning about the model or the data, or a fit problem;
- **pass**: none of the above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from scipy.stats import binomtest

from imaudit.audits.findings import kind_of
from imaudit.audits.result import SEVERITY_RANK, AuditResult, Finding

State = Literal["pass", "attention", "fail", "incomplete"]

LABELS: dict[str, str] = {
    "pass": "Pass",
    "attention": "Needs attention",
    "fail": "Fail",
    "incomplete": "Incomplete",
}
MEANING: dict[str, str] = {
    "pass": "No problem found with the model or the data; the gate passed.",
    "attention": "Warnings about the model or the data: read them before releasing.",
    "fail": "An error about the model or the data, or the gate failed: do not release as is.",
    "incomplete": "The audit did not finish: what a failed stage checks was not checked.",
}
# Review decisions (reports/db.py DECISIONS) and the states an audit without one can be in.
REVIEW_LABELS: dict[str, str] = {
    "approve": "Approved",
    "reject": "Rejected",
    "needs-work": "Needs work",
    "pending": "Pending review",
    "superseded": "Superseded",
    "none": "Not reviewed",
}
PREFERRED_SPLITS = ("val", "valid", "validation", "test")


@dataclass(frozen=True)
class Verdict:
    """An audit's verdict: its state, the word for it and the reasons, most serious first."""

    state: State
    reasons: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # severity -> model/data/run findings
    caveats: int = 0  # explainer findings (shown apart, never raise the verdict alone)

    @property
    def label(self) -> str:
        return LABELS[self.state]

    @property
    def meaning(self) -> str:
        return MEANING[self.state]

    def line(self) -> str:
        """One line for terminals and artifacts: 'Needs attention: Miscalibrated confidence (warning)'."""
        return f"{self.label}: {'; '.join(self.reasons)}" if self.reasons else self.label


def group_of(f: Finding) -> str:
    """A finding's group (model | data | explainer | run): stored on the finding, else from its kind."""
    stored = f.group or (f.model_extra or {}).get("group")
    return str(stored) if stored else kind_of(f.code).group


def cleared_shortcuts(findings: list[Finding]) -> tuple[list[Finding], list[Finding]]:
    """(findings to list one by one, shortcut candidates that intervention on the model cleared).

    A clean model draws many candidates (any spot its maps share); once covering and
    pasting each box changed nothing, they are one line's worth of news, not a dozen.
    """
    cleared = [f for f in findings if f.code == "shortcut" and f.severity == "info"
               and f.evidence.get("confirmed") is False]
    return [f for f in findings if f not in cleared], cleared


def cleared_line(cleared: list[Finding]) -> str:
    """One sentence (after "shortcut: ") for the cleared candidates (see ``cleared_shortcuts``)."""
    classes = _unique([str(f.evidence.get("class")) for f in cleared if f.evidence.get("class") is not None])
    n = len(cleared)
    return (f"{n} candidate{'s' if n != 1 else ''}" + (f" (classes {', '.join(classes)})" if classes else "")
            + " tested on the model and cleared: covering or pasting the boxes barely changed predictions")


def _reason(f: Finding) -> str:
    return f"{kind_of(f.code).title} ({f.severity})"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def verdict(r: AuditResult) -> Verdict:
    """The verdict of one audit (see the module docstring for the rules)."""
    findings = r.sorted_findings()
    problems = [f for f in findings if group_of(f) in ("model", "data")]
    run = [f for f in findings if group_of(f) == "run"]
    caveats = [f for f in findings if group_of(f) == "explainer"]
    counts = {s: sum(f.severity == s for f in problems + run) for s in SEVERITY_RANK}
    status = str(r.status)
    errors = [_reason(f) for f in problems if f.severity == "error"]
    if errors:
        return Verdict("fail", _unique(errors), counts, len(caveats))
    incomplete = status != "complete" or any(f.severity != "info" for f in run) or bool(r.errors)
    if not r.gates.passed:
        gating = [f for f in findings if r.gates.fail_on and SEVERITY_RANK[f.severity] >= SEVERITY_RANK.get(r.gates.fail_on, 3)]
        if incomplete and all(group_of(f) == "run" for f in gating):
            return Verdict("incomplete", _incomplete_reasons(r, run), counts, len(caveats))
        why = _unique([_reason(f) for f in gating]) or ["the gate failed"]
        return Verdict("fail", [f"gate fails on {r.gates.fail_on}: " + ", ".join(why)], counts, len(caveats))
    if incomplete:
        return Verdict("incomplete", _incomplete_reasons(r, run), counts, len(caveats))
    warnings = [_reason(f) for f in problems if f.severity == "warning"]
    if r.fit.verdict in ("overfitting", "underfitting") and not any(f.code == r.fit.verdict for f in problems):
        warnings.append(f"fit: {r.fit.verdict}")
    if warnings:
        return Verdict("attention", _unique(warnings), counts, len(caveats))
    return Verdict("pass", [], counts, len(caveats))


def _incomplete_reasons(r: AuditResult, run: list[Finding]) -> list[str]:
    stages = [str(e.get("stage")) for e in r.errors if isinstance(e, dict) and e.get("stage")]
    reasons = [f"stage {s} failed" for s in _unique(stages)]
    reasons += [_reason(f) for f in run if f.code != "stage-failed" and f.severity != "info"]
    return reasons or [f"audit status {r.status}"]


def gate_line(r: AuditResult) -> str:
    """What the gate did, in words for the CLI summary and the run log.

    Says "passed" only when the gate passed and the verdict is Pass: never for
    an audit a stage of which failed (its gate fails), nor when no gate was set
    (no ``--fail-on``) and the audit found an error such as a confirmed shortcut
    (exit 0 then means only that nothing was asked to fail, which the line says).
    """
    g, v = r.gates, verdict(r)
    if not g.passed:
        if r.status != "complete":
            stages = _unique([str(e.get("stage")) for e in r.errors if isinstance(e, dict) and e.get("stage")])
            why = f"the audit is {r.status}: " + (f"stage {', '.join(stages)} failed" if stages else "a stage failed")
        else:
            why = f"a finding at or above {g.fail_on}"
        return f"gate FAILED ({why})"
    if v.state == "pass":
        return "gate passed" + (f" (fail on {g.fail_on})" if g.fail_on else "")
    if g.fail_on is None:
        return f"no gate set (--fail-on warning|error sets one), so the exit code is 0; the verdict is {v.label}"
    return f"gate not triggered (it fails on {g.fail_on}); the verdict is {v.label}"


def review_state(decision: str | None, *, release: bool, superseded: bool = False) -> str:
    """Key into REVIEW_LABELS: the decision, else pending (release audits), superseded or none."""
    if decision:
        return decision
    if not release:
        return "none"
    return "superseded" if superseded else "pending"


# --- the headline number ----------------------------------------------------------------------

def headline_split(r: AuditResult) -> str | None:
    """The split whose metrics stand for the audit: val (or test), else the first one."""
    for s in PREFERRED_SPLITS:
        if s in r.metrics:
            return s
    return next(iter(r.metrics), None)


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (scipy's binomtest): better than +-1.96 sd near 0 and 1."""
    if n <= 0:
        return None
    ci = binomtest(max(0, min(correct, n)), n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def headline(r: AuditResult) -> dict[str, Any]:
    """Accuracy of the headline split with its 95 % interval and n: {split, accuracy, n, ci}."""
    split = headline_split(r)
    m = r.metrics.get(split) if split else None
    acc = m.accuracy if m is not None else None
    if m is None or acc is None or not math.isfinite(acc) or m.n <= 0:
        return {"split": split, "accuracy": None, "n": m.n if m is not None else 0, "ci": None}
    return {"split": split, "accuracy": acc, "n": m.n, "ci": wilson_interval(round(acc * m.n), m.n)}
