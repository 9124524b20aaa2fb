"""The insights stage: read the explained sample and every method's maps, run the explanation checks.

The checks themselves (global importance, strategies, shortcuts with their
confirmation, faithfulness, sanity, localisation, agreement, findings and
coverage) live in explain_checks; this module only turns the audit's files
into their inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from imaudit.audits.device import resolve_device
from imaudit.audits.explain.run import load_maps
from imaudit.audits.explain_checks import ExplainedSample, MethodMaps, run_checks
from imaudit.audits.spec import AuditSpec

log = logging.getLogger(__name__)


def load_method_maps(work: Path, records: dict[str, dict]) -> dict[str, MethodMaps]:
    """Each method's maps file (explanations/<method>.npz) with its settings record."""
    out = {}
    for method, rec in records.items():
        if not rec.get("maps_path"):
            continue
        data = load_maps(work / rec["maps_path"])
        ch = data.get("channel_importance")
        out[method] = MethodMaps(
            maps=np.asarray(data["maps"], np.float32),
            ids=[str(i) for i in data["ids"]],
            targets=np.asarray(data["targets"], np.int64),
            labels=np.asarray(data["labels"], np.int64),
            settings=dict(rec.get("settings") or {}),
            channels=None if ch is None else np.asarray(ch, np.float64),
        )
    return out


def run_insights(spec: AuditSpec, work: Path, records: dict[str, dict], model: Any, ds: Any) -> dict[str, Any]:
    """Aggregate, cluster, test and check every method's maps; return the audit.json sections + findings."""
    from imaudit.audits.pipeline import sample_tensors

    x, rows, masks = sample_tensors(spec, work)
    sample = ExplainedSample(images=x, rows=rows, masks=masks, target_column="pred" if spec.target == "pred" else "y")
    return run_checks(
        spec, model.module, ds.classes, sample, load_method_maps(work, records),
        mean=model.data_config.get("mean"), std=model.data_config.get("std"), device=resolve_device(spec.device),
    )
