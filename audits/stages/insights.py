"""Stage insights: from per-image maps to what a reviewer needs.

Reads the explained sample and every method's maps and runs the explanation
checks (audits/explain_checks): global importance and strategies per explained
class, the shortcut search and its confirmation by intervention, faithfulness,
sanity, localisation, agreement, the explanation findings and what each check
covered. The result is cached like the chunks: the same maps of the same model
and data, on the same sample, checked with the same settings and code, give the
same insights, so a warm audit reuses them instead of re-running deletion
curves, sanity cascades and interventions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from imaudit.audits import chunks
from imaudit.audits.device import resolve_device
from imaudit.audits.explain import load_maps
from imaudit.audits.explain_checks import ExplainedSample, MethodMaps, run_checks
from imaudit.audits.result import MethodRecord, finite_json, jsonable
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs, sample
from imaudit.audits.stages.records import ChunkStats, Insights
from imaudit.io import read_verified, sha256_file, write_verified

log = logging.getLogger(__name__)

# Code whose change invalidates cached insights: these modules and packages.
_CODE = (
    ("imaudit.audits.stages.insights", "imaudit.audits.stages.sample", "imaudit.audits.aggregate",
     "imaudit.audits.strategies", "imaudit.audits.explain_findings", "imaudit.audits.explain_checks"),
    ("imaudit.audits.quality", "imaudit.audits.explain", "imaudit.audits.shortcuts"),
)


def run(spec: AuditSpec, work: Path, records: dict[str, MethodRecord]) -> Insights:
    """The insights of ``records``' maps, from the cache when the same ones were computed before."""
    model, ds = inputs.model(spec), inputs.dataset(spec)
    maps = {m: sha256_file(work / r.maps_path) for m, r in sorted(records.items()) if r.maps_path}
    key = chunks.digest(
        "insights", model.digest, ds.digest, maps,
        spec.quality.model_dump(mode="json"), spec.thresholds.explanations.model_dump(mode="json"),
        spec.method_settings, spec.seed, spec.target, resolve_device(spec.device).type,
        # The interventions and the faithfulness references run on the whole sample, not only the maps' images.
        sha256_file(work / "sample.csv"),
        chunks.source_digest(*_CODE),
    )
    path = chunks.entry("insights", key, ".json")
    data, rejected = read_verified(path)  # size + sha256 recorded beside the entry
    if data is not None:
        try:
            cached = Insights.model_validate(json.loads(data.decode("utf-8")))
            return cached.model_copy(update={"cache": ChunkStats(total=1, reused=1)})
        except (UnicodeDecodeError, ValueError) as e:  # verified but unparsable: written by other code
            rejected = f"unparsable ({type(e).__name__})"
    if rejected:
        log.warning("cached insights %s did not verify (%s); computing them again", path, rejected)
    out = compute(spec, work, records)
    text = json.dumps(finite_json(jsonable(out.model_dump(exclude={"cache"}))), allow_nan=False)
    write_verified(path, text.encode("utf-8"))
    return out.model_copy(update={"cache": ChunkStats(total=1, computed=1, rejected=int(rejected is not None))})


def load_method_maps(work: Path, records: dict[str, MethodRecord]) -> dict[str, MethodMaps]:
    """Each method's maps file (explanations/<method>.npz) with its settings record."""
    out = {}
    for method, rec in records.items():
        if not rec.maps_path:
            continue
        data = load_maps(work / rec.maps_path)
        ch = data.get("channel_importance")
        out[method] = MethodMaps(
            maps=np.asarray(data["maps"], np.float32),
            ids=[str(i) for i in data["ids"]],
            targets=np.asarray(data["targets"], np.int64),
            labels=np.asarray(data["labels"], np.int64),
            settings=dict(rec.settings or {}),
            channels=None if ch is None else np.asarray(ch, np.float64),
        )
    return out


def compute(spec: AuditSpec, work: Path, records: dict[str, MethodRecord]) -> Insights:
    """Every explanation check over the sample and the maps; the audit.json sections, findings and coverage."""
    model, ds = inputs.model(spec), inputs.dataset(spec)
    x, rows, masks = sample.tensors(spec, work)
    explained = ExplainedSample(images=x, rows=rows, masks=masks, target_column="pred" if spec.target == "pred" else "y")
    out = run_checks(
        spec, model.module, ds.classes, explained, load_method_maps(work, records),
        mean=model.data_config.get("mean"), std=model.data_config.get("std"), device=resolve_device(spec.device),
    )
    return Insights.model_validate(out)
