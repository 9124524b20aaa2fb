"""Stage check-outputs: the Great Expectations suite over the predictions (finite logits, valid probabilities)."""

from __future__ import annotations

from pathlib import Path

from imaudit.audits.expect import GateReport, check_predictions
from imaudit.audits.predict import Predictions
from imaudit.audits.spec import AuditSpec


def run(spec: AuditSpec, work: Path) -> GateReport:
    """Expectations, summary and findings (NaN outputs become a nonfinite-outputs finding, not a crash)."""
    p = Predictions.load(work)
    return check_predictions(p.table, p.probs, p.logits)
