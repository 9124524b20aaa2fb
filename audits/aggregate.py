"""Global feature importance: per-image attribution maps -> where the model looks overall.

Works like Captum's Summarizer: ``update`` with each batch of maps, ``compute``
at the end; memory stays constant whatever the number of images.

Normalisation: each map's absolute values are scaled to sum 1, so every image
weighs the same whatever its attribution scale, then the maps are averaged.
All-zero or non-finite maps cannot be normalised; they are skipped and listed.

Regions are fixed fractions of the image side (a pixel belongs to a region when
its centre lies inside it), so they mean the same on any grid or map size:

- corners ("top-left", "top-right", "bottom-left", "bottom-right"): the square
  one quarter of the side wide in that corner, 1/16 of the area (on an 8x8
  grid, the 2x2 cells in that corner);
- edges ("top", "bottom", "left", "right"): the band one eighth of the side
  wide along that side (on an 8x8 grid, one row or column of cells);
- border: the union of the four edges, the outer ring (7/16 of the area);
- centre: the inner half of each side, 1/4 of the area (8x8 grid: cells 2..5).

With object masks (``mask_aware``) each region's mass is also measured off the
object, so attribution on an object that happens to sit in a corner is not
mistaken for attention to the corner itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from imaudit.errors import BadInputError

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
EDGES = ("top", "bottom", "left", "right")
REGIONS = (*CORNERS, *EDGES, "border", "centre")


@lru_cache(maxsize=64)
def _pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """P[o, i] = share of input cell i that falls in output cell o (columns sum to 1).

    Written by hand rather than cv2.resize(INTER_AREA): that averages (not
    sums) and is approximate for non-integer ratios, while this exact overlap
    matrix preserves mass for any sizes and pools a whole batch in one einsum.
    """
    e_in = np.arange(n_in + 1) / n_in
    e_out = np.arange(n_out + 1) / n_out
    lo = np.maximum(e_out[:-1, None], e_in[None, :-1])
    hi = np.minimum(e_out[1:, None], e_in[None, 1:])
    return (np.clip(hi - lo, 0.0, None) * n_in).astype(np.float64)


def area_pool(maps: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Sum-pool maps (N,H,W) or (H,W) to ``size`` cells, preserving each map's total mass."""
    oh, ow = (size, size) if isinstance(size, int) else size
    single = maps.ndim == 2
    m = maps[None] if single else maps
    out = np.einsum("oh,nhw,pw->nop", _pool_matrix(m.shape[1], oh), m, _pool_matrix(m.shape[2], ow))
    return out[0] if single else out


def normalise_maps(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|maps| scaled to sum 1 per map, and a bool vector of the maps that could be normalised."""
    a = np.abs(np.asarray(maps, dtype=np.float64))
    s = a.sum(axis=(1, 2))
    ok = np.isfinite(s) & (s > 0)
    a[~ok] = 0.0
    a[ok] /= s[ok][:, None, None]
    return a, ok


@lru_cache(maxsize=64)
def region_masks(h: int, w: int) -> dict[str, np.ndarray]:
    """Boolean (h, w) masks of every named region (see the module docstring)."""
    y = ((np.arange(h) + 0.5) / h)[:, None]
    x = ((np.arange(w) + 0.5) / w)[None, :]
    full = np.ones((h, w), dtype=bool)
    top, bottom, left, right = y < 0.25, y > 0.75, x < 0.25, x > 0.75
    m = {
        "top-left": top & left,
        "top-right": top & right,
        "bottom-left": bottom & left,
        "bottom-right": bottom & right,
        "top": (y < 0.125) & full,
        "bottom": (y > 0.875) & full,
        "left": (x < 0.125) & full,
        "right": (x > 0.875) & full,
    }
    m["border"] = m["top"] | m["bottom"] | m["left"] | m["right"]
    m["centre"] = (y > 0.25) & (y < 0.75) & (x > 0.25) & (x < 0.75)
    return m


def region_area(h: int, w: int) -> np.ndarray:
    """Area share of each region in REGIONS order on an (h, w) map."""
    masks = region_masks(h, w)
    return np.array([masks[r].mean() for r in REGIONS])


def region_mass(norm_maps: np.ndarray, off_object: np.ndarray | None = None) -> np.ndarray:
    """(N, len(REGIONS)) mass of normalised maps in each region (only off the object when given)."""
    masks = region_masks(norm_maps.shape[1], norm_maps.shape[2])
    m = norm_maps if off_object is None else norm_maps * off_object
    return np.stack([m[:, masks[r]].sum(axis=1) for r in REGIONS], axis=1)


def nest_regions(values: np.ndarray) -> dict[str, Any]:
    """REGIONS-ordered values -> {"centre", "border", "corners": {...}, "edges": {...}}."""
    v = dict(zip(REGIONS, (float(x) for x in values)))
    return {
        "centre": v["centre"],
        "border": v["border"],
        "corners": {c: v[c] for c in CORNERS},
        "edges": {e: v[e] for e in EDGES},
    }


def resize_masks(masks: np.ndarray, h: int, w: int) -> np.ndarray:
    """Object masks (N,h',w'), bool or float in [0, 1] (object > 0.5), resized to (N,h,w) by nearest neighbour."""
    masks = np.asarray(masks)
    masks = masks if masks.dtype == bool else masks > 0.5
    if masks.shape[1:] == (h, w):
        return masks
    small = [cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) for m in masks]
    return np.stack(small).astype(bool) if small else np.zeros((0, h, w), dtype=bool)


def _lists(a: np.ndarray, digits: int = 9) -> list:
    return np.round(a.astype(np.float64), digits).tolist()


class _Stats:
    """Running sums for one group of maps (all images, or one class)."""

    def __init__(self, grid: int, n_regions: int) -> None:
        self.count = 0
        self.grid = np.zeros((grid, grid))
        self.regions = np.zeros(n_regions)
        self.hot = np.zeros(n_regions)
        self.masked = 0
        self.off_object = 0.0
        self.object_area = 0.0
        self.regions_off = np.zeros(n_regions)
        self.area = np.zeros(n_regions)
        self.channels: np.ndarray | None = None
        self.channel_count = 0

    def merge(self, o: "_Stats") -> None:
        for k in ("count", "grid", "regions", "hot", "area", "masked", "off_object", "object_area", "regions_off", "channel_count"):
            setattr(self, k, getattr(self, k) + getattr(o, k))
        if o.channels is not None:
            self.channels = o.channels.copy() if self.channels is None else self.channels + o.channels

    def summary(self) -> dict[str, Any]:
        n = max(self.count, 1)
        out: dict[str, Any] = {
            "count": self.count,
            "grid": _lists(self.grid / n),
            "regions": nest_regions(self.regions / n),
            "region_area": nest_regions(self.area / n),
            "consistency": nest_regions(self.hot / n),
        }
        if self.masked:
            out["off_object"] = self.off_object / self.masked
            out["object_area"] = self.object_area / self.masked
            out["regions_off_object"] = nest_regions(self.regions_off / self.masked)
            out["masked_count"] = self.masked
        if self.channels is not None and self.channel_count:
            out["channels"] = _lists(self.channels / self.channel_count)
        return out


class ImportanceAggregator:
    """Streaming global importance for one explanation method, overall and per class.

    ``hot_lift``: a region is "hot" in an image when it holds at least this many
    times its area share of that image's mass (off the object when masks are
    given); ``compute`` reports, per region, the share of images where it is
    hot ("consistency") - a shortcut is consistent, a chance hot spot is not.
    """

    def __init__(
        self,
        classes: list[str],
        grid: int = 8,
        mask_aware: bool = True,
        *,
        mean_size: int = 32,
        hot_lift: float = 2.5,
    ) -> None:
        if grid < 1 or mean_size < 1:
            raise BadInputError(f"grid={grid}, mean_size={mean_size}: sizes must be at least 1")
        self.classes = list(classes)
        self.grid = grid
        self.mask_aware = mask_aware
        self.mean_size = mean_size
        self.hot_lift = hot_lift
        self._all = _Stats(grid, len(REGIONS))
        self._per_class = [_Stats(grid, len(REGIONS)) for _ in self.classes]
        self._mean_map = np.zeros((mean_size, mean_size))
        self.skipped: list[dict[str, Any]] = []

    def update(
        self,
        maps: np.ndarray,
        labels: Sequence[int],
        masks: np.ndarray | None = None,
        channel_maps: np.ndarray | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        """Add a batch: maps (N,H,W), class index per map, optional object masks (N,h,w) and (N,C,H,W) maps."""
        maps = np.asarray(maps)
        if maps.ndim != 3:
            raise BadInputError(f"maps: expected (N,H,W) attribution maps, got shape {maps.shape}")
        labels = np.asarray(labels, dtype=np.int64)
        n, h, w = maps.shape
        if len(labels) != n or (ids is not None and len(ids) != n):
            raise BadInputError(f"labels/ids: {len(labels)} labels for {n} maps")
        if n and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise BadInputError(f"labels: class index out of range 0..{len(self.classes) - 1}")
        norm, ok = normalise_maps(maps)
        for i in np.flatnonzero(~ok):
            self.skipped.append({"id": ids[i] if ids is not None else None, "reason": "map is all zero or not finite"})
        norm, labels = norm[ok], labels[ok]
        if not len(norm):
            return
        grids = area_pool(norm, self.grid)
        self._mean_map += area_pool(norm, self.mean_size).sum(axis=0)
        reg = region_mass(norm)
        off = None
        if masks is not None and self.mask_aware:
            obj = resize_masks(np.asarray(masks)[ok], h, w)
            has = obj.reshape(len(obj), -1).any(axis=1)
            off = ~obj
            reg_off = region_mass(norm, off)
        area = region_area(h, w)
        hot_basis = reg if off is None else np.where(has[:, None], reg_off, reg)
        hot = hot_basis >= self.hot_lift * area[None, :]
        chan = None
        if channel_maps is not None:
            cm = np.abs(np.asarray(channel_maps, dtype=np.float64)[ok]).sum(axis=(2, 3))
            s = cm.sum(axis=1, keepdims=True)
            chan = np.divide(cm, s, out=np.zeros_like(cm), where=s > 0)
            chan_ok = (s[:, 0] > 0) & np.isfinite(s[:, 0])
        for c in np.unique(labels):
            sel = labels == c
            for st in (self._all, self._per_class[c]):
                st.count += int(sel.sum())
                st.grid += grids[sel].sum(axis=0)
                st.regions += reg[sel].sum(axis=0)
                st.hot += hot[sel].sum(axis=0)
                st.area += area * sel.sum()
                if off is not None:
                    msel = sel & has
                    st.masked += int(msel.sum())
                    st.off_object += float((norm[msel] * off[msel]).sum())
                    st.object_area += float((~off[msel]).mean(axis=(1, 2)).sum()) if msel.any() else 0.0
                    st.regions_off += reg_off[msel].sum(axis=0)
                if chan is not None:
                    csel = sel & chan_ok
                    add = chan[csel].sum(axis=0)
                    st.channels = add if st.channels is None else st.channels + add
                    st.channel_count += int(csel.sum())

    def merge(self, other: "ImportanceAggregator") -> None:
        """Fold another aggregator over the same classes and grid into this one (e.g. per-chunk results)."""
        if other.classes != self.classes or other.grid != self.grid or other.mean_size != self.mean_size:
            raise BadInputError("merge: aggregators differ in classes, grid or mean_size")
        self._all.merge(other._all)
        for a, b in zip(self._per_class, other._per_class):
            a.merge(b)
        self._mean_map += other._mean_map
        self.skipped.extend(other.skipped)

    def compute(self) -> dict[str, Any]:
        """Global importance as a JSON-ready dict (grid is None when nothing was aggregated).

        Keys: grid (grid x grid, non-negative, sums to 1), per_class {class: grid},
        per_class_stats {class: regions, consistency, off_object, ...}, mean_map
        (mean_size^2), regions and region_area {centre, border, corners, edges},
        consistency (share of images where each region is hot), off_object /
        object_area (with masks), channels (with channel maps), count,
        per_class_count, skipped.
        """
        allst = self._all.summary()
        grid = allst.pop("grid")
        n = self._all.count
        out: dict[str, Any] = {
            "normalisation": "abs, each map scaled to sum 1, then averaged",
            "grid_size": self.grid,
            "grid": grid if n else None,
            "mean_map": _lists(self._mean_map / n) if n else None,
            "hot_lift": self.hot_lift,
            **allst,
            "per_class": {},
            "per_class_stats": {},
            "per_class_count": {},
            "skipped": list(self.skipped),
        }
        for name, st in zip(self.classes, self._per_class):
            out["per_class_count"][name] = st.count
            if st.count:
                s = st.summary()
                out["per_class"][name] = s.pop("grid")
                out["per_class_stats"][name] = s
        return out
