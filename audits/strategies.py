"""Prediction strategies per class, SpRAy-style (Lapuschkin et al. 2019, "Unmasking Clever Hans predictors").

For each class the attribution maps are normalised (|map| scaled to sum 1),
downsampled, and clustered by spectral clustering (scikit-learn) on a
self-tuning Gaussian affinity (Zelnik-Manor & Perona 2004: each map's scale is
its distance to its 7th neighbour). The number of clusters is chosen by the
eigengap of the affinity's normalised Laplacian, as in the paper: k is where
the gap between consecutive smallest eigenvalues is largest. (A binary k-NN
graph, tried first, split one jittered family into several components.) Each cluster is one
"strategy": its size, members, mean map, exemplars (the members closest to
the cluster centroid) and its region masses. A small, distinct cluster whose
mass sits in a corner, along the border or off the object is a Clever-Hans
candidate; ``explain_findings`` turns such clusters into ``shortcut`` findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.sparse.csgraph import laplacian
from sklearn.cluster import SpectralClustering
from sklearn.metrics import pairwise_distances

from imaudit.audits.aggregate import area_pool, nest_regions, normalise_maps, region_area, region_mass, resize_masks
from imaudit.errors import BadInputError


def eigengap_k(affinity: np.ndarray, max_clusters: int) -> tuple[int, list[float]]:
    """Number of clusters by the largest gap among the smallest Laplacian eigenvalues, and those eigenvalues."""
    lap = laplacian(affinity, normed=True)
    eig = np.sort(np.linalg.eigvalsh(lap))[: max_clusters + 1]
    if len(eig) < 2:
        return 1, eig.tolist()
    gaps = np.diff(eig)  # gaps[k-1] = lambda_k - lambda_{k-1}: k clusters before the gap
    return int(np.argmax(gaps)) + 1, eig.tolist()


def self_tuning_affinity(x: np.ndarray, scale_neighbor: int = 7) -> np.ndarray:
    """exp(-d_ij^2 / (s_i s_j)), s_i = distance from i to its ``scale_neighbor``-th nearest neighbour."""
    d = pairwise_distances(x)
    s = np.sort(d, axis=1)[:, min(scale_neighbor, len(x) - 1)]
    s = np.maximum(s, 1e-12)
    a = np.exp(-(d**2) / (s[:, None] * s[None, :]))
    np.fill_diagonal(a, 0.0)
    return a


def _cluster(x: np.ndarray, max_clusters: int, seed: int) -> tuple[np.ndarray, int, list[float]]:
    n = len(x)
    aff = self_tuning_affinity(x)
    k, eig = eigengap_k(aff, min(max_clusters, n - 1))
    if k == 1:
        return np.zeros(n, dtype=int), 1, eig
    sc = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed, assign_labels="cluster_qr")
    labels = sc.fit_predict(aff)
    return labels, k, eig


def spray_clusters(
    maps: np.ndarray,
    labels: Sequence[int],
    ids: list[str],
    classes: list[str],
    *,
    size: int = 16,
    max_clusters: int = 4,
    seed: int = 0,
    masks: np.ndarray | None = None,
    exemplars: int = 3,
    min_images: int = 6,
    hot_lift: float = 2.5,
) -> dict[str, Any]:
    """Cluster each class's maps into strategies; returns {"size", "classes": {class: {...}}}.

    Per class: count, k (eigengap-chosen), eigenvalues and clusters sorted by
    size, each with size, fraction, ids, exemplar_ids, mean_map (size x size,
    sums to 1), regions (mass per region), consistency (share of members in
    which each region holds ``hot_lift`` x its area share, off the object with
    masks) and, with masks, regions_off_object and off_object. Classes with
    fewer than ``min_images`` maps get one cluster.
    """
    maps = np.asarray(maps)
    labels = np.asarray(labels, dtype=np.int64)
    if maps.ndim != 3 or len(labels) != len(maps) or len(ids) != len(maps):
        raise BadInputError(f"maps/labels/ids: expected (N,H,W) maps with N labels and ids, got {maps.shape}, "
                            f"{len(labels)}, {len(ids)}")
    norm, ok = normalise_maps(maps)
    small = area_pool(norm, size)
    off = None
    if masks is not None:
        obj = resize_masks(np.asarray(masks), size, size)
        off = ~obj
        off[~obj.reshape(len(obj), -1).any(axis=1)] = True  # no object drawn: everything counts as off it
    area = region_area(size, size)
    out: dict[str, Any] = {"size": size, "region_area": nest_regions(area), "classes": {}, "skipped": []}
    out["skipped"] = [{"id": ids[i], "reason": "map is all zero or not finite"} for i in np.flatnonzero(~ok)]
    for c in np.unique(labels[ok]):
        idx = np.flatnonzero((labels == c) & ok)
        x = small[idx].reshape(len(idx), -1)
        if len(idx) >= max(min_images, 3):
            assign, k, eig = _cluster(x, max_clusters, seed)
        else:
            assign, k, eig = np.zeros(len(idx), dtype=int), 1, []
        clusters = []
        for j in range(k):
            mem = np.flatnonzero(assign == j)
            if not len(mem):
                continue
            centroid = x[mem].mean(axis=0)
            near = mem[np.argsort(np.linalg.norm(x[mem] - centroid, axis=1))[:exemplars]]
            mean_map = small[idx[mem]].mean(axis=0)
            cl: dict[str, Any] = {
                "size": int(len(mem)),
                "fraction": len(mem) / len(idx),
                "ids": [ids[idx[m]] for m in mem],
                "exemplar_ids": [ids[idx[m]] for m in near],
                "mean_map": np.round(mean_map, 6).tolist(),
                "regions": nest_regions(region_mass(mean_map[None])[0]),
            }
            members = small[idx[mem]]
            per_image = region_mass(members)
            if off is not None:
                o = off[idx[mem]]
                per_image = region_mass(members, o)
                cl["off_object"] = float((members * o).sum(axis=(1, 2)).mean())
                cl["regions_off_object"] = nest_regions(per_image.mean(axis=0))
            cl["consistency"] = nest_regions((per_image >= hot_lift * area[None, :]).mean(axis=0))
            clusters.append(cl)
        clusters.sort(key=lambda cl: -cl["size"])
        out["classes"][classes[c]] = {"count": int(len(idx)), "k": k, "eigenvalues": eig, "clusters": clusters}
    return out
