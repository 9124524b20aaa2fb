"""Shortcut candidates: image locations that are hot in most of a class's maps at the same place.

A shortcut cue (a corner patch, a watermark, a stamp, the background itself)
sits at a fixed place, so a model that uses it puts its attribution there in
image after image of the class it gives away, whatever else is in the image.
The search therefore looks for *consistency of rank*, not for a share of the
mass: a small patch can hold only 15 % of a map's mass and still be among the
map's hottest cells in every image (Lapuschkin et al. 2019 found Clever-Hans
watermarks the same way, by where the relevance is, image after image).

Per explained class (and per SpRAy cluster, for cues in part of a class):

1. Each map's |values| are scaled to sum 1 and area-pooled to ``grid`` x
   ``grid`` cells; the image's *hot* cells are its top ``top_share`` of cells
   (ties broken by position), its *peak* is the hottest cell.
2. ``hot_frequency`` of a cell = share of the class's maps in which it is hot.
   Chance is the share of cells that are hot (about ``top_share``; a quarter
   on a 2 x 2 Grad-CAM map); a cue sits near 1.
3. Cells hot in at least chance + ``min_frequency`` x (1 - chance) of the maps
   form connected components (8-neighbourhood); each component's bounding
   box is a candidate, in model-input pixels.
4. Each candidate carries its evidence: hot and peak frequency in the box,
   the share of the class's hot cells that fall in it, its mass, area and
   lift (mass / area), and the same hot frequency in the maps explained as
   other classes (a cue of one class is cold there; when every class looks
   at the same spot it is hot there too, which is reported as such).

With object masks, a box that lies mostly on the objects is the objects, not
a cue, and is dropped; and the area off the object becomes a candidate of its
own (kind "off-object") when the class's hot cells lie off the object far more
often than the area there would give (odds ratio), on maps fine enough to
tell object from background. Gradient maps of a model that reads the
background spread over all of it, about as much as its area, so attribution
alone rarely shows a background cue; ``background_probes`` therefore makes
the background of every explained class a candidate to test on the model
when masks exist (source "masks").

The search is deliberately generous: candidates are hypotheses, and only an
intervention on the model (confirm.py) turns one into a shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from imaudit.audits.aggregate import area_pool, normalise_maps, resize_masks
from imaudit.errors import BadInputError


@dataclass(frozen=True)
class SearchSettings:
    """What counts as a candidate (AuditSpec.thresholds.explanations fills these in)."""

    grid: int = 16  # cells per side (at most the map side)
    top_share: float = 0.05  # an image's hot cells: this share of its cells, hottest first
    min_frequency: float = 0.5  # candidate cells: hot this share of the way from chance to every map
    min_images: int = 5  # classes (or clusters) with fewer maps are not searched
    max_area: float = 0.25  # boxes larger than this share of the image are not a fixed-location cue
    max_on_object: float = 0.5  # with masks: boxes lying more than this much on the objects are dropped
    off_object_odds_ratio: float = 3.0  # with masks: off-object hot cells' odds over the area's odds
    max_per_class: int = 3  # candidates kept per class and method (the strongest)


def hot_cells(cells: np.ndarray, top_share: float) -> np.ndarray:
    """(N, g, g) pooled maps -> (N, g, g) bool: each map's top ``top_share`` of cells.

    A map whose cells are all equal has no hot cells (it ranks nothing).
    """
    n, gh, gw = cells.shape
    flat = cells.reshape(n, -1)
    k = max(1, int(np.ceil(top_share * gh * gw)))
    # argsort is stable: ties go to the earlier cell, and constant maps are cleared below.
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    hot = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(hot, order, True, axis=1)
    hot[flat.max(axis=1) <= flat.min(axis=1)] = False
    return hot.reshape(n, gh, gw)


def cell_box(rows: slice, cols: slice, grid: tuple[int, int], size: tuple[int, int]) -> list[int]:
    """A cell range -> [x0, y0, x1, y1] in pixels (exclusive ends) of an image of ``size`` (h, w)."""
    (gh, gw), (h, w) = grid, size
    return [
        int(np.floor(cols.start * w / gw)), int(np.floor(rows.start * h / gh)),
        int(np.ceil(cols.stop * w / gw)), int(np.ceil(rows.stop * h / gh)),
    ]


def box_mask(box: Sequence[int], size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool mask of a pixel box [x0, y0, x1, y1]."""
    m = np.zeros(size, dtype=bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


def _odds(p: float) -> float:
    # Clipped at 0.1 % / 99.9 %: a share of 1.0 is "at least 999 to 1", not infinite.
    p = min(max(p, 1e-3), 1 - 1e-3)
    return p / (1 - p)


class CandidateSearch:
    """Candidate boxes from one method's maps; ``find`` runs per class and per subset."""

    def __init__(
        self,
        maps: np.ndarray,
        targets: Sequence[int],
        classes: Sequence[str],
        *,
        masks: np.ndarray | None = None,
        settings: SearchSettings | None = None,
        native: Sequence[int] | None = None,
    ) -> None:
        maps = np.asarray(maps)
        if maps.ndim != 3 or len(maps) != len(targets):
            raise BadInputError(f"maps/targets: expected (N,H,W) maps and N targets, got {maps.shape}, {len(targets)}")
        self.s = settings or SearchSettings()
        self.classes = list(classes)
        self.size = (int(maps.shape[1]), int(maps.shape[2]))
        norm, self.ok = normalise_maps(maps)
        # A coarse method (Grad-CAM on a 2x2 feature map) is searched on its own cells: its upsampled
        # map peaks at the image's corner nearest the hot cell, a place it never resolved.
        nh, nw = (native[0], native[1]) if native else self.size
        g = (min(self.s.grid, self.size[0], int(nh)), min(self.s.grid, self.size[1], int(nw)))
        self.grid = g
        self.cells = area_pool(norm, g)
        self.hot = hot_cells(self.cells, self.s.top_share)
        # Chance: a cell is hot in top_k / cells of random maps. ``min_frequency`` is read as the
        # share of the way from chance to "always", so coarse grids (where chance is high) need more.
        self.chance = int(np.ceil(self.s.top_share * g[0] * g[1])) / (g[0] * g[1])
        self.threshold = self.chance + self.s.min_frequency * (1 - self.chance)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.masks = None
        self.cell_on_object = None
        if masks is not None:
            obj = resize_masks(np.asarray(masks), *self.size)
            self.masks = obj
            has = obj.reshape(len(obj), -1).any(axis=1)
            frac = area_pool(obj.astype(np.float64), g) / (self.size[0] * self.size[1] / (g[0] * g[1]))
            self.cell_on_object = np.where(has[:, None, None], frac > 0.5, False)
            self.has_mask = has

    # -- the search --------------------------------------------------------------------------------

    def find(self, cls: int, members: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Candidates of class index ``cls`` (over ``members``, row indices, when given)."""
        sel = np.flatnonzero((self.targets == cls) & self.ok)
        if members is not None:
            sel = np.intersect1d(sel, np.asarray(members, dtype=np.int64))
        if len(sel) < self.s.min_images:
            return []
        others = np.flatnonzero((self.targets != cls) & self.ok)
        freq = self.hot[sel].mean(axis=0)
        labelled, n = ndimage.label(freq >= self.threshold, structure=np.ones((3, 3)))
        found = []
        for sl in ndimage.find_objects(labelled):
            if sl is None:
                continue
            box = cell_box(sl[0], sl[1], self.grid, self.size)
            cand = self._box_evidence(box, sl, sel, others, freq)
            if cand["area"] > self.s.max_area:
                continue
            if cand.get("on_object") is not None and cand["on_object"] > self.s.max_on_object:
                continue
            found.append(cand)
        found.sort(key=lambda c: -(c["hot_frequency"] * c["lift"]))
        found = found[: self.s.max_per_class]
        # Off the object needs cells fine enough to tell object from background (8 per side at least).
        if not found and self.masks is not None and min(self.grid) >= 8:
            off = self._off_object(sel)
            if off is not None:
                found.append(off)
        return found

    def _box_evidence(
        self, box: list[int], sl: tuple[slice, slice], sel: np.ndarray, others: np.ndarray, freq: np.ndarray
    ) -> dict[str, Any]:
        in_cells = np.zeros(self.grid, dtype=bool)
        in_cells[sl] = True
        hot_in = self.hot[sel][:, in_cells].any(axis=1)
        flat = self.cells[sel].reshape(len(sel), -1)
        peak_in = in_cells.reshape(-1)[flat.argmax(axis=1)]
        k = self.hot[sel].reshape(len(sel), -1).sum(axis=1)
        top_in = self.hot[sel][:, in_cells].sum(axis=1) / np.maximum(k, 1)
        mass = self.cells[sel][:, in_cells].sum(axis=1)
        area = float(in_cells.mean())
        other = float(self.hot[others][:, in_cells].any(axis=1).mean()) if len(others) else None
        out: dict[str, Any] = {
            "kind": "box",
            "box": box,
            "cells": [int(sl[1].stop - sl[1].start), int(sl[0].stop - sl[0].start)],
            "images": int(len(sel)),
            "hot_frequency": round(float(hot_in.mean()), 4),
            "max_cell_frequency": round(float(freq[in_cells].max()), 4),
            "peak_frequency": round(float(peak_in.mean()), 4),
            "top_share": round(float(top_in.mean()), 4),
            "mass": round(float(mass.mean()), 4),
            "area": round(area, 4),
            "lift": round(float(mass.mean()) / max(area, 1e-9), 2),
            "chance_frequency": round(self.chance, 4),
            "frequency_threshold": round(self.threshold, 4),
            "grid": list(self.grid),
            "other_classes_hot_frequency": None if other is None else round(other, 4),
        }
        if self.masks is not None:
            bm = box_mask(box, self.size)
            has = self.has_mask[sel]
            if has.any():
                on = self.masks[sel][has][:, bm].mean(axis=1)
                out["on_object"] = round(float(on.mean()), 4)
        return out

    def _off_object(self, sel: np.ndarray) -> dict[str, Any] | None:
        """The area off the object as one candidate, when the class's hot cells lie there far more than chance."""
        sel = sel[self.has_mask[sel]]
        if len(sel) < self.s.min_images:
            return None
        on = self.cell_on_object[sel]
        hot = self.hot[sel]
        k = hot.reshape(len(sel), -1).sum(axis=1)
        use = k > 0
        if not use.any():
            return None
        hot_off = ((hot & ~on).reshape(len(sel), -1).sum(axis=1)[use] / k[use]).mean()
        area_off = float((~on).reshape(len(sel), -1).mean())
        mass_off = float((self.cells[sel] * ~on).reshape(len(sel), -1).sum(axis=1).mean())
        ratio = _odds(float(hot_off)) / _odds(area_off)
        if ratio < self.s.off_object_odds_ratio:
            return None
        h, w = self.size
        return {
            "kind": "off-object",
            "box": [0, 0, w, h],
            "images": int(len(sel)),
            "hot_off_object": round(float(hot_off), 4),
            "mass": round(mass_off, 4),
            "area": round(area_off, 4),
            "lift": round(mass_off / max(area_off, 1e-9), 2),
            "odds_ratio": round(ratio, 2),
            "hot_frequency": round(float(hot_off), 4),
        }


def find_candidates(
    maps: np.ndarray,
    targets: Sequence[int],
    classes: Sequence[str],
    *,
    method: str,
    masks: np.ndarray | None = None,
    settings: SearchSettings | None = None,
    subsets: Sequence[dict[str, Any]] = (),
    only_classes: Sequence[int] | None = None,
    native: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Candidates of one method over every explained class and every given subset.

    ``targets``: the class each map explains. ``subsets``: SpRAy clusters as
    {"class": index, "members": row indices, "cluster": id, "fraction": share
    of the class}; a cue in part of a class shows in its cluster. Each
    candidate is a dict with class, class_index, method, source ("class" or
    "spray"), box [x0, y0, x1, y1] in map pixels and its evidence.
    ``native``: the method's own resolution (h, w) in cells when coarser than
    the map (Grad-CAM's feature map), so boxes are its cells.
    """
    search = CandidateSearch(maps, targets, classes, masks=masks, settings=settings, native=native)
    present = sorted(set(np.asarray(targets, dtype=np.int64).tolist()))
    if only_classes is not None:
        present = [c for c in present if c in set(only_classes)]
    out: list[dict[str, Any]] = []
    for c in present:
        for cand in search.find(c):
            out.append({"class": search.classes[c], "class_index": int(c), "method": method, "source": "class", **cand})
    for sub in subsets:
        c = int(sub["class"])
        if only_classes is not None and c not in set(only_classes):
            continue
        for cand in search.find(c, np.asarray(sub["members"], dtype=np.int64)):
            if any(o["class_index"] == c and overlap(o["box"], cand["box"]) for o in out):
                continue  # the whole class shows it already
            out.append({"class": search.classes[c], "class_index": c, "method": method, "source": "spray",
                        "cluster": sub.get("cluster"), "cluster_fraction": sub.get("fraction"), **cand})
    return out


def grow_box(box: Sequence[int], grid: int, size: tuple[int, int]) -> list[int]:
    """``box`` grown by one cell of a ``grid`` x ``grid`` search on every side, inside an image of ``size`` (h, w).

    The hot cells mark where a cue is, not all of it: a model reads a patch from its whole area, so
    covering only the patch's hottest cell leaves the rest to give the class away (a 4 px patch was
    found as its 2 px centre). Interventions therefore test the grown box.
    """
    h, w = size
    dy, dx = int(np.ceil(h / grid)), int(np.ceil(w / grid))
    x0, y0, x1, y1 = (int(v) for v in box)
    return [max(0, x0 - dx), max(0, y0 - dy), min(w, x1 + dx), min(h, y1 + dy)]


def overlap(a: Sequence[int], b: Sequence[int]) -> bool:
    """Boxes that share pixels."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def merge_candidates(candidates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One candidate per class and place, over methods.

    Candidates of the same class and kind whose boxes overlap are the same
    place seen by several methods: they merge into one that keeps the
    smallest box (the finest method's), lists every method and keeps each
    method's evidence. Classes whose candidates overlap across classes are
    noted on each (``same_spot_classes``): every class looking at one spot.
    """
    groups: list[dict[str, Any]] = []
    for c in sorted(candidates, key=lambda c: (c["class_index"], c["area"])):
        for g in groups:
            if g["class_index"] == c["class_index"] and g["kind"] == c["kind"] and overlap(g["box"], c["box"]):
                g["methods"].append(c["method"])
                g["by_method"][c["method"]] = _evidence(c)
                break
        else:
            groups.append({**{k: v for k, v in c.items() if k != "method"}, "methods": [c["method"]],
                           "by_method": {c["method"]: _evidence(c)}})
    for g in groups:
        g["methods"] = sorted(set(g["methods"]))
        g["same_spot_classes"] = sorted(
            {h["class"] for h in groups if h["kind"] == g["kind"] and overlap(h["box"], g["box"])},
            key=lambda name: next(h["class_index"] for h in groups if h["class"] == name),
        )
    return groups


def _evidence(c: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in c.items() if k not in ("class", "class_index", "method", "kind")}


def background_probes(classes: Sequence[str], present: Sequence[int], size: tuple[int, int]) -> list[dict[str, Any]]:
    """One off-object candidate per explained class (datasets with object masks): the background, tested
    by intervention whatever the maps say."""
    h, w = size
    return [{"class": classes[c], "class_index": int(c), "kind": "off-object", "source": "masks", "box": [0, 0, w, h],
             "methods": [], "by_method": {}, "hot_frequency": None, "same_spot_classes": []} for c in present]
