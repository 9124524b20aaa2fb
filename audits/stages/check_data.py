"""Stage check-data: the Great Expectations suite over the dataset's manifest (the data gate)."""

from __future__ import annotations

from pathlib import Path

from imaudit.audits import degenerate
from imaudit.audits.expect import GateReport, check_manifest
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs


def run(spec: AuditSpec, work: Path) -> GateReport:
    """Expectations, summary and findings (leakage, empty classes, corrupt files, imbalance), and what
    data too small to say much cannot say (audits/degenerate)."""
    ds = inputs.dataset(spec)
    rep = check_manifest(ds, spec.thresholds.data)
    rep.findings += degenerate.findings(ds, spec)
    return rep
