"""Agreement between explanation methods: per-image rank correlation, overall and per class.

Maps are compared as |map| (methods differ in sign conventions: saliency is
|gradient|, integrated gradients is signed), area-pooled to a common size so
a coarse Grad-CAM map and a pixel-level gradient map are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import rankdata

from imaudit.audits.aggregate import area_pool
from imaudit.errors import BadInputError


def rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of a with the same row of b (N,P) -> (N,); NaN for a constant row.

    Pearson correlation of scipy ranks (ties averaged) equals Spearman's rho;
    scipy.stats.spearmanr would compute the full P x P or 2N x 2N matrix instead.
    """
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    num = (ra * rb).sum(axis=1)
    return np.divide(num, den, out=np.full(len(a), np.nan), where=den > 0)


def _common(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    a = np.abs(np.asarray(maps, dtype=np.float64))
    return area_pool(a, size).reshape(len(a), -1) if a.shape[1:] != size else a.reshape(len(a), -1)


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


def agreement(
    maps_by_method: Mapping[str, np.ndarray],
    ids_by_method: Mapping[str, Sequence[str]],
    labels: Mapping[str, int] | Sequence[int],
    classes: Sequence[str],
    *,
    size: int | None = 32,
) -> dict[str, Any]:
    """Mean per-image Spearman correlation for every pair of methods, on the images both explained.

    labels: class per image id, or a sequence aligned with the first method's ids.
    Maps are pooled to ``size`` (at most the smallest map side). Returns
    {"methods", "matrix" {a: {b: mean}}, "pairs": [{a, b, mean, count, per_class}],
    "per_class" {class: {a: {b: mean}}}}; a method agrees with itself with 1.
    """
    methods = list(maps_by_method)
    for m in methods:
        if m not in ids_by_method or len(ids_by_method[m]) != len(maps_by_method[m]):
            raise BadInputError(f"ids_by_method[{m!r}]: needs one id per map of method {m!r}")
    if not isinstance(labels, Mapping):
        first = list(ids_by_method[methods[0]]) if methods else []
        if len(labels) != len(first):
            raise BadInputError(f"labels: a sequence must align with the ids of {methods[0]!r}")
        labels = dict(zip(first, labels))
    sides = [s for m in methods for s in np.asarray(maps_by_method[m]).shape[1:]]
    side = min([*sides, size or 10**9]) if sides else 1
    pooled = {m: _common(maps_by_method[m], (side, side)) for m in methods}
    index = {m: {i: r for r, i in enumerate(ids_by_method[m])} for m in methods}

    matrix: dict[str, dict[str, float | None]] = {a: {a: 1.0} for a in methods}
    per_class: dict[str, dict[str, dict[str, float | None]]] = {}
    pairs = []
    for a, b in combinations(methods, 2):
        common = [i for i in ids_by_method[a] if i in index[b]]
        rho = rowwise_spearman(pooled[a][[index[a][i] for i in common]], pooled[b][[index[b][i] for i in common]])
        mean = _mean(rho)
        matrix[a][b] = matrix[b][a] = mean
        cls = np.array([labels.get(i, -1) for i in common], dtype=np.int64)
        pc = {}
        for c in np.unique(cls[cls >= 0]):
            v = _mean(rho[cls == c])
            pc[classes[c]] = v
            per_class.setdefault(classes[c], {x: {x: 1.0} for x in methods})
            per_class[classes[c]][a][b] = per_class[classes[c]][b][a] = v
        pairs.append({"a": a, "b": b, "mean": mean, "count": len(common),
                      "undefined": int((~np.isfinite(rho)).sum()), "per_class": pc})
    return {"methods": methods, "size": side, "matrix": matrix, "pairs": pairs, "per_class": per_class}
