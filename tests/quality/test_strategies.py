"""SpRAy strategy clustering separates planted map families."""

from __future__ import annotations

import numpy as np
import pytest

from imaudit.audits.strategies import eigengap_k, spray_clusters


def _blob(cy: float, cx: float, size: int = 32, sigma: float = 3.0) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))


def _families(rng: np.random.Generator, n_corner: int, n_centre: int) -> np.ndarray:
    corner = [_blob(4 + rng.normal(0, 0.7), 4 + rng.normal(0, 0.7)) for _ in range(n_corner)]
    centre = [_blob(16 + rng.normal(0, 3), 16 + rng.normal(0, 3)) for _ in range(n_centre)]
    return np.stack(corner + centre) + rng.random((n_corner + n_centre, 32, 32)) * 0.02


def test_two_planted_families_become_two_pure_clusters():
    rng = np.random.default_rng(0)
    maps = np.concatenate([_families(rng, 8, 16), _families(rng, 0, 12)])
    labels = [0] * 24 + [1] * 12
    ids = [f"c{i}" if i < 8 else f"m{i}" for i in range(36)]
    out = spray_clusters(maps, labels, ids, ["cat", "dog"], size=16)
    cat = out["classes"]["cat"]
    assert cat["k"] == 2 and cat["count"] == 24
    big, small = cat["clusters"]
    assert set(small["ids"]) == {f"c{i}" for i in range(8)}
    assert set(big["ids"]) == {f"m{i}" for i in range(8, 24)}
    assert set(small["exemplar_ids"]) <= set(small["ids"]) and len(small["exemplar_ids"]) == 3
    assert small["regions"]["corners"]["top-left"] > 0.5 > big["regions"]["corners"]["top-left"]
    assert small["consistency"]["corners"]["top-left"] == 1.0
    assert np.sum(small["mean_map"]) == pytest.approx(1.0, abs=1e-4)
    assert small["fraction"] == pytest.approx(8 / 24)
    assert out["classes"]["dog"]["count"] == 12


def test_masks_move_on_object_mass_out_of_the_off_object_regions():
    rng = np.random.default_rng(1)
    maps = _families(rng, 8, 0)
    masks = np.zeros((8, 32, 32), dtype=bool)
    masks[:, :8, :8] = True  # the object itself sits in the corner: not a shortcut
    out = spray_clusters(maps, [0] * 8, [str(i) for i in range(8)], ["a"], masks=masks)
    cl = out["classes"]["a"]["clusters"][0]
    assert cl["regions"]["corners"]["top-left"] > 0.5
    assert cl["regions_off_object"]["corners"]["top-left"] == 0.0
    assert cl["off_object"] < 0.5


def test_eigengap_counts_disconnected_components():
    block = np.ones((4, 4)) - np.eye(4)
    aff = np.zeros((12, 12))
    for b in range(3):
        aff[4 * b : 4 * b + 4, 4 * b : 4 * b + 4] = block
    assert eigengap_k(aff, 5)[0] == 3


def test_small_classes_and_zero_maps():
    maps = np.random.default_rng(2).random((4, 8, 8))
    maps[3] = 0
    out = spray_clusters(maps, [0, 0, 0, 0], ["a", "b", "c", "d"], ["x"])
    assert out["classes"]["x"]["k"] == 1 and out["classes"]["x"]["clusters"][0]["size"] == 3
    assert out["skipped"] == [{"id": "d", "reason": "map is all zero or not finite"}]
