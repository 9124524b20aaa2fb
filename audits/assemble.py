"""Stage outputs -> one AuditResult, and the gate that turns findings into pass/fail."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from imaudit.audits.coverage import audit_coverage
from imaudit.audits.findings import kind_of
from imaudit.audits.result import SEVERITY_RANK, AuditResult, Finding, GateResult, MethodRecord
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages.records import StageOutputs
from imaudit.io import text_safe_tree


def audit_id(spec: AuditSpec, now: datetime | None = None) -> str:
    """Folder name of an audit: model slug, UTC time and a short random suffix.

    The suffix keeps two audits started in the same second (same model or not)
    from ever sharing a folder.
    """
    now = now or datetime.now(timezone.utc)
    body = spec.model.split(":", 1)[-1].split("?", 1)[0]
    if spec.model.startswith("file:"):
        # A checkpoint path: its folder and file name say which model ("runs-v3-model", not "tmp-work-runs-...").
        path = PurePosixPath(body.rstrip("/"))
        body = f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", body).strip("-.")[:48] or "model"
    return f"{slug}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


# Without these an audit says nothing about the model: their failure makes the audit "failed".
REQUIRED_STAGES = ("identify", "predict", "diagnose")


def audit_status(errors: list[dict[str, Any]]) -> str:
    """complete (no stage failed), partial (an optional stage failed) or failed (a required one did)."""
    if any(str(e.get("stage")) in REQUIRED_STAGES for e in errors):
        return "failed"
    return "partial" if errors else "complete"


def failed_stages(errors: list[dict[str, Any]]) -> str:
    """The failed required stages and their errors, one line (what a failed audit's message names)."""
    return "; ".join(f"{e.get('stage')}: {e.get('error')}" for e in errors
                     if str(e.get("stage")) in REQUIRED_STAGES) or "a required stage failed"


def gate(
    findings: list[Finding], expectations: list[dict[str, Any]], fail_on: str | None, status: str = "complete"
) -> GateResult:
    """Gates pass when the audit is complete and no finding is at or above ``fail_on``.

    A partial or failed audit never passes, whatever ``fail_on`` says: a check
    that did not run cannot vouch for the model.
    """
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITY_RANK}
    passed = status == "complete"
    if fail_on is not None and passed:
        passed = not any(SEVERITY_RANK[f.severity] >= SEVERITY_RANK[fail_on] for f in findings)
    result = GateResult(passed=passed, fail_on=fail_on, counts=counts, expectations=expectations)
    if status != "complete":
        result.incomplete = f"the audit is {status}: a stage failed"  # type: ignore[attr-defined]
    return result


def assemble(spec: AuditSpec, aid: str, out: StageOutputs) -> AuditResult:
    """Combine what the stages produced; missing pieces (failed stages) stay empty."""
    findings: list[Finding] = []
    expectations: list[dict[str, Any]] = []
    data_checks: dict[str, Any] = {}
    for g in (out.data_gate, out.prediction_gate):
        if g is not None:
            data_checks[g.suite] = {"expectations": g.expectations, "summary": g.summary}
            expectations += g.expectations
            findings += g.findings
    diag, ins = out.diagnosis, out.insights
    if diag is not None:
        findings += diag.findings
    if ins is not None:
        findings += ins.findings
    if out.generative:
        # Counterfactual changes become evidence once every other finding is known (audits/generative/evidence.py).
        from imaudit.audits.generative.evidence import link_counterfactuals

        findings = link_counterfactuals(findings, out.generative, spec.thresholds.counterfactuals)
    errors = [e.model_dump() for e in out.errors]
    if out.generative and out.generative.get("could_not_run"):
        # Asked for (--counterfactuals N) and impossible: a stage that did not do its work, like one that raised.
        errors.append({"stage": "counterfactuals", "error": f"not run: {out.generative['skipped']}"})
    for err in errors:
        findings.append(
            Finding(
                code="stage-failed",
                severity="error",
                message=f"stage {err['stage']} failed: {err['error']}",
                evidence=err,
            )
        )
    for f in findings:
        f.group = kind_of(f.code).group
    explanations: dict[str, MethodRecord] = dict(out.explanations)
    for name, rec in (ins.method_quality if ins is not None else {}).items():
        if name in explanations:
            explanations[name] = explanations[name].model_copy(update={"quality": rec})
    artifacts: dict[str, Any] = dict(out.prediction.files) if out.prediction is not None else {}
    if out.gallery is not None:
        artifacts["gallery"] = [item.model_dump() for item in out.gallery.items]
        artifacts["views"] = out.gallery.views
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = AuditResult(
        id=aid,
        created=now,
        finished=now,
        status=audit_status(errors),
        spec=spec.model_dump(mode="json"),
        model=out.identity.model,
        dataset=out.identity.dataset,
        metrics=diag.metrics if diag is not None else {},
        metrics_full=diag.metrics_full if diag is not None else {},
        class_map=out.identity.class_map,
        per_class=diag.per_class if diag is not None else {},
        confusion=diag.confusion if diag is not None else {},
        calibration=diag.calibration if diag is not None else {},
        fit=diag.fit if diag is not None else {"verdict": "unknown"},
        data_checks=data_checks,
        explanations=explanations,
        global_importance=ins.global_importance if ins is not None else {},
        quality=ins.quality if ins is not None else {},
        strategies=ins.strategies if ins is not None else {},
        shortcuts=ins.shortcuts if ins is not None else {},
        coverage=audit_coverage(spec, out),
        settings=ins.settings if ins is not None else {},
        sample=out.sample.model_dump(mode="json") if out.sample is not None else {},
        generative=out.generative,
        findings=findings,
        gates=gate(findings, expectations, spec.fail_on, audit_status(errors)),
        artifacts=artifacts,
        timings=out.timings,
        errors=errors,
        cache={stage: stats.model_dump() for stage, stats in out.cache.items()},
    )
    result.findings = result.sorted_findings()
    # Evidence can quote file paths that are not UTF-8; audit.json and the report must still be writable.
    return AuditResult.model_validate(text_safe_tree(result.model_dump(mode="json", by_alias=True)))
