"""From per-image maps to what a reviewer needs: global importance, strategies,
explanation quality (faithfulness, sanity, localisation, agreement) and findings.

This module only composes the pieces (aggregate, strategies, quality,
explain_findings) for the audit; each piece is tested on its own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaudit.audits.aggregate import ImportanceAggregator
from imaudit.audits.device import resolve_device
from imaudit.audits.explain.run import load_maps
from imaudit.audits.explain_findings import explanation_findings
from imaudit.audits.quality import agreement, deletion_insertion, localisation, randomisation_sanity
from imaudit.audits.quality.sanity import method_explain_fn
from imaudit.audits.spec import AuditSpec
from imaudit.audits.strategies import spray_clusters

log = logging.getLogger(__name__)


def run_insights(spec: AuditSpec, work: Path, records: dict[str, dict], model: Any, ds: Any) -> dict[str, Any]:
    """Aggregate, cluster and check every method's maps; return the audit.json sections + findings."""
    from imaudit.audits.pipeline import sample_tensors

    th = spec.thresholds.explanations
    q = spec.quality
    device = resolve_device(spec.device)
    mean, std = model.data_config.get("mean"), model.data_config.get("std")
    x_all, sample, masks_all = sample_tensors(spec, work)
    pos = {str(i): k for k, i in enumerate(sample["id"].astype(str))}
    gi: dict[str, Any] = {}
    strategies: dict[str, Any] = {}
    quality: dict[str, Any] = {"faithfulness": {}, "sanity": {}, "localisation": {}}
    maps_by: dict[str, np.ndarray] = {}
    ids_by: dict[str, list[str]] = {}
    method_quality: dict[str, dict[str, Any]] = {}
    for method, rec in records.items():
        if not rec.get("maps_path"):
            continue
        data = load_maps(work / rec["maps_path"])
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
        label_of = dict(zip(sample["id"].astype(str), sample["y"].astype(int)))
        quality["agreement"] = agreement(maps_by, ids_by, label_of, ds.classes)
    findings = explanation_findings(gi, quality, strategies, th, ds.classes)
    return {
        "global_importance": gi,
        "strategies": strategies,
        "quality": quality,
        "method_quality": method_quality,
        "findings": [f.model_dump(mode="json") for f in findings],
    }
