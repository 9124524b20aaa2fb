"""Shortcuts: candidate places from the explanations, confirmed or rejected by intervention on the model.

``search`` finds, per explained class, places that are hot in most of its
maps (rank evidence, any location, the background with masks); ``confirm``
covers and pastes each candidate on the model. ``check_shortcuts`` runs both
for an audit's methods and says what it saw, for audit.json's coverage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from imaudit.audits.shortcuts.confirm import ConfirmSettings, confirm_candidates, mirror_box, wilson
from imaudit.audits.shortcuts.search import (
    CandidateSearch,
    SearchSettings,
    background_probes,
    box_iou,
    find_candidates,
    grow_box,
    merge_candidates,
    overlap,
)

__all__ = [
    "CandidateSearch",
    "ConfirmSettings",
    "background_probes",
    "SearchSettings",
    "box_iou",
    "check_shortcuts",
    "confirm_candidates",
    "find_candidates",
    "grow_box",
    "merge_candidates",
    "mirror_box",
    "overlap",
    "spray_subsets",
    "wilson",
]


def spray_subsets(strategies: Mapping[str, Any], ids: Sequence[str], classes: Sequence[str], min_size: int) -> list[dict]:
    """SpRAy clusters of one method as search subsets: clusters smaller than their class, of at least ``min_size``."""
    pos = {str(i): k for k, i in enumerate(ids)}
    out = []
    for cls, info in (strategies or {}).get("classes", {}).items():
        if cls not in classes:
            continue
        for k, cl in enumerate(info.get("clusters", [])):
            if cl["size"] < min_size or cl["fraction"] >= 0.9:
                continue
            out.append({"class": list(classes).index(cls), "members": [pos[i] for i in cl["ids"] if i in pos],
                        "cluster": k, "fraction": round(float(cl["fraction"]), 3)})
    return out


def check_shortcuts(
    maps_by_method: Mapping[str, np.ndarray],
    targets_by_method: Mapping[str, Sequence[int]],
    classes: Sequence[str],
    *,
    model: nn.Module,
    images: Tensor,
    labels: Sequence[int],
    masks_by_method: Mapping[str, np.ndarray | None] | None = None,
    masks: np.ndarray | None = None,
    subsets_by_method: Mapping[str, Sequence[dict]] | None = None,
    native_by_method: Mapping[str, Sequence[int] | None] | None = None,
    search: SearchSettings | None = None,
    confirm: ConfirmSettings | None = None,
    max_candidates: int = 12,
    min_contrast: float = 0.1,
    fill: str = "blur",
    device: torch.device | None = None,
    batch_size: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Search every method's maps, merge candidates over methods, confirm the strongest on the model.

    A candidate box is tested grown by one search cell on every side (``search_box`` keeps the hot
    cells' box).

    ``images``/``labels``/``masks`` are the images the interventions use (the
    audit's sample). Returns {"candidates": confirmed-or-not candidates,
    "search": {method: {images, classes}}, "dropped": candidates beyond
    ``max_candidates``, "confirmation": {images, classes, fill}}.
    """
    search = search or SearchSettings()
    found: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}
    for method, maps in maps_by_method.items():
        targets = np.asarray(targets_by_method[method], dtype=np.int64)
        counts = np.bincount(targets, minlength=len(classes))
        searched = [classes[c] for c in range(len(classes)) if counts[c] >= search.min_images]
        seen[method] = {"images": int(len(maps)), "classes": searched,
                        "too_few": [classes[c] for c in range(len(classes)) if 0 < counts[c] < search.min_images]}
        found += find_candidates(
            maps, targets, classes, method=method, settings=search,
            masks=(masks_by_method or {}).get(method),
            subsets=(subsets_by_method or {}).get(method, ()),
            native=(native_by_method or {}).get(method),
        )
    merged = merge_candidates(found)
    merged.sort(key=lambda c: (-len(c["methods"]), -c["hot_frequency"]))
    # A place whose pixels are nearly the same in every image (a blank border) cannot tell classes
    # apart: the maps' heat there is the explainer's (e.g. IG's baseline difference), not a cue.
    flat = [c for c in merged if c["kind"] == "box" and box_contrast(images, c["box"]) < min_contrast]
    merged = [c for c in merged if c not in flat]
    # What the model is tested on: the box grown by one search cell (see search.grow_box); the hot
    # cells' own box stays in the evidence as ``search_box``.
    size = (int(images.shape[-2]), int(images.shape[-1]))
    for c in merged:
        if c["kind"] == "box":
            c["search_box"], c["box"] = list(c["box"]), grow_box(c["box"], search.grid, size)
    kept, dropped = merged[:max_candidates], merged[max_candidates:]
    run = dict(masks=masks, fill=fill, device=device, batch_size=batch_size, seed=seed, settings=confirm)
    tested = confirm_candidates(model, images, labels, kept, **run)
    probes: list[dict[str, Any]] = []
    if masks is not None:
        # With masks every explained class's background is tested on the model (see search.background_probes),
        # unless a place of the class is confirmed already: its background holds that place too.
        have = {c["class_index"] for c in tested if c["kind"] == "off-object" or c["confirmed"]}
        present = sorted({int(t) for tg in targets_by_method.values() for t in np.asarray(tg).tolist()} - have)
        probes = background_probes(classes, present, (int(images.shape[-2]), int(images.shape[-1])))
        tested += confirm_candidates(model, images, labels, probes, **run)
    y = np.asarray(labels, dtype=np.int64)
    # An unconfirmed background probe is no finding (nothing pointed at it); it is recorded all the same.
    return {
        "candidates": [c for c in tested if c.get("source") != "masks" or c["confirmed"]],
        "background_tests": [_probe_summary(c) for c in tested if c.get("source") == "masks"],
        "search": seen,
        "dropped": [{k: c[k] for k in ("class", "box", "kind", "methods", "hot_frequency")} for c in dropped],
        "not_tested": [{**{k: c[k] for k in ("class", "box", "methods", "hot_frequency")},
                        "contrast": round(box_contrast(images, c["box"]), 4),
                        "reason": f"the box is nearly the same in every image (contrast below {min_contrast})"}
                       for c in flat],
        "confirmation": {"images": int(len(y)), "classes": sorted({classes[int(c)] for c in np.unique(y)}),
                         "fill": fill, "tested": len(tested), "background_tests": len(probes)},
    }


def box_contrast(images: Tensor, box: Sequence[int]) -> float:
    """How much a box's pixels vary over the images, as a share of how much the images' pixels vary."""
    x0, y0, x1, y1 = box
    inside = images[:, :, y0:y1, x0:x1].float()
    total = float(images.float().std())
    return float(inside.std()) / total if total > 0 and inside.numel() > 1 else 0.0


def _probe_summary(c: dict[str, Any]) -> dict[str, Any]:
    iv = c.get("intervention") or {}
    return {"class": c["class"], "confirmed": c["confirmed"], "area": c.get("area"),
            "cover": {k: iv.get("cover", {}).get(k) for k in ("n", "accuracy_before", "accuracy_after")},
            "paste": {k: iv.get("paste", {}).get(k) for k in ("n", "flip_rate", "control_flip_rate")},
            "not_confirmed_because": c.get("not_confirmed_because")}
