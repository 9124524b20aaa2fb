"""Stage diagnose: metrics per split, per-class table, confusion, calibration, fit verdict and their findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imaudit.audits.diagnose import Diagnosis, diagnose
from imaudit.audits.predict import Predictions
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs


def run(spec: AuditSpec, work: Path, history: list[dict[str, Any]] | None) -> Diagnosis:
    """Diagnose predictions.csv + logits.npy of ``work``; ``history`` is the release's training history."""
    return diagnose(Predictions.load(work), inputs.dataset(spec).classes, spec.thresholds, history)
