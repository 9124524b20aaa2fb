"""Stage counterfactuals: GAN counterfactuals for val images (audits/generative/stage.py).

Runs when ``spec.counterfactuals`` > 0. Needs a generator for the dataset in
the model's input space (``imaudit generative train --model ...``,
``spec.generator`` or ``spec.generative.train``); without one the section says
why and how to make it. The section's shape is audits/generative's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imaudit.audits.device import resolve_device
from imaudit.audits.generative.stage import counterfactual_stage
from imaudit.audits.predict import Predictions
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs


def run(spec: AuditSpec, work: Path) -> dict[str, Any] | None:
    """The generative section of audit.json (None when not asked for)."""
    if spec.counterfactuals <= 0:
        return None
    ds, model = inputs.dataset(spec), inputs.model(spec)
    # inputs.model is already seen through the dataset's classes (a RestrictedHead when they differ).
    return counterfactual_stage(spec, model, ds, Predictions.load(work), work, device=resolve_device(spec.device))
