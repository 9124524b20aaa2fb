"""Stage check-data: the Great Expectations suite over the dataset's manifest (the data gate)."""

from __future__ import annotations

from pathlib import Path

from imaudit.audits.expect import GateReport, check_manifest
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs


def run(spec: AuditSpec, work: Path) -> GateReport:
    """Expectations, summary and findings (leakage, empty classes, corrupt files, imbalance)."""
    return check_manifest(inputs.dataset(spec), spec.thresholds.data)
