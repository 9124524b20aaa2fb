"""Localisation against ground-truth object masks.

- pointing game (Zhang et al. 2018): the share of images whose attribution
  maximum falls inside the object; chance level is the object's area share;
- relevance mass accuracy (Arras et al. 2022, CLEVR-XAI): the share of the
  attribution mass inside the object. Mass is |map|, as in global importance,
  so signed and unsigned methods are measured alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from imaudit.audits.aggregate import normalise_maps, resize_masks
from imaudit.errors import BadInputError


def localisation(maps: np.ndarray, masks: np.ndarray, *, ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Pointing-game hit rate, mean relevance mass inside the mask and the mask's mean area share.

    Masks (N,h,w) are resized to the maps by nearest neighbour. Images with an
    empty mask or an all-zero / non-finite map are skipped and listed.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(masks) != len(maps):
        raise BadInputError(f"maps/masks: expected (N,H,W) maps and N masks, got {maps.shape} and {len(masks)}")
    ids = list(ids) if ids is not None else [str(i) for i in range(len(maps))]
    n, h, w = maps.shape
    obj = resize_masks(masks, h, w)
    norm, ok = normalise_maps(maps)
    has = obj.reshape(n, -1).any(axis=1)
    skipped = [{"id": ids[i], "reason": "empty mask" if not has[i] else "map is all zero or not finite"}
               for i in np.flatnonzero(~(ok & has))]
    use = np.flatnonzero(ok & has)
    flat_obj = obj[use].reshape(len(use), -1)
    peak = np.asarray(maps, dtype=np.float64)[use].reshape(len(use), -1).argmax(axis=1)
    hits = flat_obj[np.arange(len(use)), peak]
    inside = (norm[use].reshape(len(use), -1) * flat_obj).sum(axis=1)
    area = flat_obj.mean(axis=1)
    mean = (lambda v: float(v.mean()) if len(v) else None)
    return {
        "count": len(use),
        "pointing_game": mean(hits.astype(float)),
        "mass_inside": mean(inside),
        "mask_area": mean(area),
        "mass_lift": (float(inside.mean() / area.mean()) if len(use) and area.mean() > 0 else None),
        "per_image": [{"id": ids[i], "hit": bool(hits[r]), "mass_inside": float(inside[r]), "mask_area": float(area[r])}
                      for r, i in enumerate(use)],
        "skipped": skipped,
    }
