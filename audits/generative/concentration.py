"""Where counterfactual changes concentrate, per target class: a map and boxes.

For every successful counterfactual the absolute change |counterfactual -
reconstruction|, summed over channels, is normalised to sum to 1 (so each
image counts the same however much it changed). The mean of those maps per
target class is the class's *change map*; its *boxes* are the bounding boxes
of the connected regions above ``threshold`` x the map's maximum (the
thresholded-map box of Zhou et al. 2016, "Learning deep features for
discriminative localization"), each with the share of change it holds
(``mass``), its share of the image (``area``), their ratio (``lift``) and the
share of the class's images that are hot there on their own (``consistency``:
lift >= HOT_LIFT in that image alone). A small box with most of the change,
hot in most images, is a fixed region the model needs changed whatever the
image shows: what a shortcut looks like.

Maps are also kept as a coarse ``grid`` (at most GRID_CELLS per side,
area-pooled, summing to 1) so audit.json carries them and the shortcut
finding can be checked against them without the arrays on disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

GRID_CELLS = 32  # side of the grid kept in audit.json
THRESHOLD = 0.2  # box region: pixels above this share of the map's maximum
HOT_LIFT = 3.0  # an image is "hot" in a box holding this many times the box's area share of its change
MAX_BOXES = 3
MIN_BOX_MASS = 0.05
# An object mask is grown by 1/16 of the image side before change counts as "on the object": turning one shape into
# another also adds pixels just outside the original outline (a circle's square has corners beyond it).
OBJECT_GROW = 1 / 16


def normalised(change: np.ndarray) -> np.ndarray:
    """A non-negative (H, W) map scaled to sum to 1 (all zeros stays zeros)."""
    m = np.clip(np.asarray(change, dtype=np.float64), 0, None)
    total = m.sum()
    return m / total if total > 0 else m


def box_mass(share: np.ndarray, box: Sequence[float], image_size: Sequence[int] | None = None) -> float:
    """Share of a normalised map inside ``box`` = [x0, y0, x1, y1] (pixels of ``image_size`` = [w, h]).

    The map may be coarser than the image (a grid): each cell counts with the
    fraction of its area the box covers, so boxes need not fall on cell edges.
    """
    gh, gw = share.shape
    w, h = (gw, gh) if image_size is None else (float(image_size[0]), float(image_size[1]))
    x0, y0, x1, y1 = (float(v) for v in box)
    cx = _overlap(np.arange(gw) * w / gw, np.arange(1, gw + 1) * w / gw, x0, x1) / (w / gw)
    cy = _overlap(np.arange(gh) * h / gh, np.arange(1, gh + 1) * h / gh, y0, y1) / (h / gh)
    return float((share * cy[:, None] * cx[None, :]).sum())


def _overlap(lo: np.ndarray, hi: np.ndarray, a: float, b: float) -> np.ndarray:
    return np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0, None)


def find_boxes(share: np.ndarray, per_image: Sequence[np.ndarray] = ()) -> list[dict[str, Any]]:
    """Boxes of the regions above THRESHOLD x max of a normalised (H, W) map, most change first."""
    if share.max() <= 0:
        return []
    h, w = share.shape
    labels, _ = ndimage.label(share >= THRESHOLD * share.max(), structure=np.ones((3, 3)))
    boxes = []
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        mass = float(share[y0:y1, x0:x1].sum())
        area = (y1 - y0) * (x1 - x0) / (h * w)
        hot = [float(m[y0:y1, x0:x1].sum()) >= HOT_LIFT * area for m in per_image]
        boxes.append({"box": [int(x0), int(y0), int(x1), int(y1)], "mass": round(mass, 4), "area": round(area, 6),
                      "lift": round(mass / area, 2),
                      "consistency": round(float(np.mean(hot)), 3) if hot else None})
    boxes = [b for b in sorted(boxes, key=lambda b: -b["mass"]) if b["mass"] >= MIN_BOX_MASS]
    return boxes[:MAX_BOXES]


def coarse_grid(share: np.ndarray, cells: int = GRID_CELLS) -> list[list[float]]:
    """Area-pooled copy of a normalised map, at most ``cells`` per side (still sums to 1)."""
    from imaudit.audits.aggregate import area_pool

    h, w = share.shape
    gh, gw = min(cells, h), min(cells, w)
    grid = area_pool(share[None], (gh, gw))[0]
    grid = grid / grid.sum() if grid.sum() > 0 else grid
    return [[round(float(v), 6) for v in row] for row in grid]


def object_grow(shape: Sequence[int]) -> int:
    """Pixels an object mask is grown by at this image size (OBJECT_GROW of the longer side, at least 1)."""
    return max(1, round(max(shape) * OBJECT_GROW))


def _object_share(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean share of change on the grown object, and the grown object's mean area share."""
    shares, areas = [], []
    for m, mask in zip(maps, masks):
        obj = ndimage.binary_dilation(np.asarray(mask) > 0.5, iterations=object_grow(m.shape))
        shares.append(float(m[obj].sum()))
        areas.append(float(obj.mean()))
    return float(np.mean(shares)), float(np.mean(areas))


def summarise_maps(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None = None) -> dict[str, Any]:
    """Change map, grid, boxes and (with object masks) the share on the object, for one group of images."""
    norm = [normalised(m) for m in maps]
    share = np.mean(norm, axis=0)
    h, w = share.shape
    out: dict[str, Any] = {
        "images": len(norm),
        "image_size": [int(w), int(h)],
        "grid": coarse_grid(share),
        "boxes": find_boxes(share, norm),
        "map": share,  # full resolution, for the figure; not JSON (the section drops it)
    }
    given = [(m, k) for m, k in zip(norm, masks or []) if k is not None and np.asarray(k).any()]
    if given:
        on, area = _object_share([m for m, _ in given], [k for _, k in given])
        out.update(object_share=round(on, 4), object_area=round(area, 4), object_images=len(given),
                   object_grow=object_grow(share.shape))
    return out


def concentrate(
    changes: Mapping[str, np.ndarray],
    targets: Mapping[str, str],
    masks: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Per target class (name) and over all: where the change of successful counterfactuals lies.

    ``changes``: id -> (H, W) absolute change; ``targets``: id -> target class
    name; ``masks``: id -> (H, W) object mask at the same size, when the
    dataset has them.
    """
    ids = [i for i in changes if i in targets]
    rule = {"threshold": THRESHOLD, "hot_lift": HOT_LIFT}
    if not ids:
        return {"per_class": {}, "overall": None, "rule": rule}

    def group(members: list[str]) -> dict[str, Any]:
        return summarise_maps([changes[i] for i in members], [(masks or {}).get(i) for i in members])

    per_class = {}
    for cls in sorted({targets[i] for i in ids}):
        per_class[cls] = group([i for i in ids if targets[i] == cls])
    return {"per_class": per_class, "overall": group(ids), "rule": rule}
