"""Stage outputs -> one AuditResult, and the gate that turns findings into pass/fail."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any

from imaudit.audits.result import SEVERITY_RANK, AuditResult, Finding, GateResult
from imaudit.audits.spec import AuditSpec
from imaudit.io import text_safe_tree


def audit_id(spec: AuditSpec, now: datetime | None = None) -> str:
    """Folder name of an audit: model slug, UTC time and a short random suffix.

    The suffix keeps two audits started in the same second (same model or not)
    from ever sharing a folder.
    """
    now = now or datetime.now(timezone.utc)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.model.split(":", 1)[-1]).strip("-.")[:48] or "model"
    return f"{slug}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


# Without these an audit says nothing about the model: their failure makes the audit "failed".
REQUIRED_STAGES = ("identify", "predict", "diagnose")


def audit_status(errors: list[dict[str, Any]]) -> str:
    """complete (no stage failed), partial (an optional stage failed) or failed (a required one did)."""
    if any(str(e.get("stage")) in REQUIRED_STAGES for e in errors):
        return "failed"
    return "partial" if errors else "complete"


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


def assemble(spec: AuditSpec, aid: str, pieces: dict[str, Any]) -> AuditResult:
    """Combine what the stages produced; missing pieces (failed stages) stay empty."""
    ident = pieces["identity"]
    findings: list[Finding] = []
    expectations: list[dict[str, Any]] = []
    data_checks: dict[str, Any] = {}
    for key in ("data_gate", "prediction_gate"):
        g = pieces.get(key)
        if g:
            data_checks[g["suite"]] = {"expectations": g["expectations"], "summary": g["summary"]}
            expectations += g["expectations"]
            findings += [Finding.model_validate(f) for f in g["findings"]]
    diag = pieces.get("diagnosis") or {}
    findings += [Finding.model_validate(f) for f in diag.get("findings", [])]
    ins = pieces.get("insights") or {}
    findings += [Finding.model_validate(f) for f in ins.get("findings", [])]
    gen = pieces.get("generative")
    errors = list(pieces.get("errors", []))
    for err in errors:
        findings.append(
            Finding(
                code="stage-failed",
                severity="error",
                message=f"stage {err['stage']} failed: {err['error']}",
                evidence=err,
            )
        )
    explanations = dict(pieces.get("explanations", {}))
    for name, rec in (ins.get("method_quality") or {}).items():
        if name in explanations:
            explanations[name] = {**explanations[name], "quality": rec}
    artifacts = dict(pieces.get("artifacts", {}))
    if pieces.get("gallery"):
        artifacts["gallery"] = pieces["gallery"].get("gallery", [])
        artifacts["views"] = pieces["gallery"].get("views")
    result = AuditResult(
        id=aid,
        created=pieces.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        status=audit_status(errors),
        spec=spec.model_dump(mode="json"),
        model=ident["model"],
        dataset=ident["dataset"],
        metrics=diag.get("metrics", {}),
        per_class=diag.get("per_class", {}),
        confusion=diag.get("confusion", {}),
        calibration=diag.get("calibration", {}),
        fit=diag.get("fit") or {"verdict": "unknown"},
        data_checks=data_checks,
        explanations=explanations,
        global_importance=ins.get("global_importance", {}),
        quality=ins.get("quality", {}),
        strategies=ins.get("strategies", {}),
        generative=gen,
        findings=findings,
        gates=gate(findings, expectations, spec.fail_on, audit_status(errors)),
        artifacts=artifacts,
        timings=pieces.get("timings", {}),
        errors=errors,
    )
    result.findings = result.sorted_findings()
    # Evidence can quote file paths that are not UTF-8; audit.json and the report must still be writable.
    return AuditResult.model_validate(text_safe_tree(result.model_dump(mode="json", by_alias=True)))
