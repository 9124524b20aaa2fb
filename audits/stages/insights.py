"""Stage insights: from per-image maps to what a reviewer needs.

Global importance (per method, per class), strategy clusters (SpRAy),
explanation quality (faithfulness, sanity, localisation, agreement) and the
explanation findings. This module only composes the engine's pieces
(audits/aggregate, strategies, quality, explain_findings), each tested on its
own. The result is cached like the chunks: the same maps of the same model and
data, checked with the same settings and code, give the same insights, so a
warm audit reuses them instead of re-running deletion curves and sanity checks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaudit.audits import chunks
from imaudit.audits.aggregate import ImportanceAggregator
from imaudit.audits.device import resolve_device
from imaudit.audits.explain import load_maps
from imaudit.audits.explain_findings import explanation_findings
from imaudit.audits.quality import agreement, deletion_insertion, localisation, randomisation_sanity
from imaudit.audits.quality.sanity import method_explain_fn
from imaudit.audits.result import MethodRecord, finite_json, jsonable
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs, sample
from imaudit.audits.stages.records import ChunkStats, Insights
from imaudit.audits.strategies import spray_clusters
from imaudit.io import read_verified, sha256_file, write_verified

log = logging.getLogger(__name__)

# Code whose change invalidates cached insights: these modules and packages.
_CODE = (
    ("imaudit.audits.stages.insights", "imaudit.audits.stages.sample", "imaudit.audits.aggregate",
     "imaudit.audits.strategies", "imaudit.audits.explain_findings"),
    ("imaudit.audits.quality", "imaudit.audits.explain"),
)


def run(spec: AuditSpec, work: Path, records: dict[str, MethodRecord]) -> Insights:
    """The insights of ``records``' maps, from the cache when the same ones were computed before."""
    model, ds = inputs.model(spec), inputs.dataset(spec)
    maps = {m: sha256_file(work / r.maps_path) for m, r in sorted(records.items()) if r.maps_path}
    key = chunks.digest(
        "insights", model.digest, ds.digest, maps,
        spec.quality.model_dump(mode="json"), spec.thresholds.explanations.model_dump(mode="json"),
        spec.method_settings, spec.seed, resolve_device(spec.device).type,
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


def compute(spec: AuditSpec, work: Path, records: dict[str, MethodRecord]) -> Insights:
    """Aggregate, cluster and check every method's maps; the audit.json sections + findings."""
    model, ds = inputs.model(spec), inputs.dataset(spec)
    th = spec.thresholds.explanations
    q = spec.quality
    device = resolve_device(spec.device)
    mean, std = model.data_config.get("mean"), model.data_config.get("std")
    x_all, rows, masks_all = sample.tensors(spec, work)
    pos = {str(i): k for k, i in enumerate(rows["id"].astype(str))}
    gi: dict[str, Any] = {}
    strategies: dict[str, Any] = {}
    quality: dict[str, Any] = {"faithfulness": {}, "sanity": {}, "localisation": {}}
    maps_by: dict[str, np.ndarray] = {}
    ids_by: dict[str, list[str]] = {}
    method_quality: dict[str, dict[str, Any]] = {}
    for method, rec in records.items():
        if not rec.maps_path:
            continue
        data = load_maps(work / rec.maps_path)
        maps = np.asarray(data["maps"], np.float32)
        ids = [str(i) for i in data["ids"]]
        labels = np.asarray(data["labels"], int)
        targets = torch.as_tensor(np.asarray(data["targets"], int))
        idx = [pos[i] for i in ids]
        x = x_all[idx]
        masks = masks_all[idx] if masks_all is not None else None
        maps_by[method], ids_by[method] = maps, ids
        agg = ImportanceAggregator(ds.classes, grid=th.grid, hot_lift=th.shortcut_lift)
        agg.update(maps, labels, masks=masks, channel_maps=None)
        gi[method] = agg.compute()
        if "channel_importance" in data and data["channel_importance"] is not None:
            ch = np.asarray(data["channel_importance"], np.float64)
            if ch.ndim == 2 and ch.sum() > 0:
                gi[method]["channels"] = (ch.sum(0) / ch.sum()).tolist()
        summary: dict[str, Any] = {}
        if q.strategies:
            strategies[method] = spray_clusters(
                maps, labels, ids, ds.classes, masks=masks, seed=spec.seed, hot_lift=th.shortcut_lift
            )
        if q.faithfulness:
            f = deletion_insertion(
                model.module, x, targets, maps, steps=q.deletion_steps, device=device,
                batch_size=spec.batch_size, seed=spec.seed, ids=ids,
            )
            quality["faithfulness"][method] = f
            summary.update({k: f.get(k) for k in (
                "deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
                "deletion_gain", "insertion_gain",
            ) if k in f})
        if method in q.sanity_methods and q.sanity_images > 0:
            n = min(q.sanity_images, len(ids))
            s = randomisation_sanity(
                model.module, x[:n], targets[:n],
                method_explain_fn(method, device=device, mean=mean, std=std, seed=spec.seed,
                                  **(spec.method_settings.get(method) or {})),
                seed=spec.seed, original_maps=maps[:n], max_rank_corr=th.sanity_max_rank_corr,
                max_ssim=th.sanity_max_ssim, ids=ids[:n],
            )
            quality["sanity"][method] = s
            summary["sanity"] = {k: s.get(k) for k in ("passed", "rank_corr", "ssim", "n_layers")}
        if masks is not None:
            loc = localisation(maps, masks, ids=ids)
            quality["localisation"][method] = loc
            summary["localisation"] = {k: loc.get(k) for k in ("pointing_game", "mass_inside", "mask_area", "mass_lift")}
        method_quality[method] = summary
    if len(maps_by) >= 2:
        label_of = dict(zip(rows["id"].astype(str), rows["y"].astype(int)))
        quality["agreement"] = agreement(maps_by, ids_by, label_of, ds.classes)
    return Insights(
        global_importance=gi,
        strategies=strategies,
        quality=quality,
        method_quality=method_quality,
        findings=explanation_findings(gi, quality, strategies, th, ds.classes),
    )
