"""Shortcut candidates from maps with known hot spots: found wherever they sit, by rank not by mass."""

from __future__ import annotations

import numpy as np

from imaudit.audits.shortcuts import SearchSettings, find_candidates, merge_candidates
from imaudit.audits.shortcuts.search import background_probes, hot_cells

CLASSES = ["a", "b", "c"]


def _maps(spot: dict[int, tuple[int, int, int, int]], n: int = 10, size: int = 32, share: float = 0.15,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy maps; class k's maps put ``share`` of their mass on its box (x0, y0, x1, y1) every time."""
    rng = np.random.default_rng(seed)
    targets = np.repeat(np.arange(len(CLASSES)), n)
    maps = rng.random((len(targets), size, size))
    for i, c in enumerate(targets):
        if c in spot:
            x0, y0, x1, y1 = spot[c]
            box = maps[i, y0:y1, x0:x1]
            rest = maps[i].sum() - box.sum()
            # scale the box so it holds ``share`` of the map's mass: far from a 35 % majority.
            maps[i, y0:y1, x0:x1] *= share / (1 - share) * rest / box.sum()
    return maps, targets


def test_hot_cells_are_each_maps_top_share_and_a_flat_map_has_none():
    cells = np.zeros((2, 4, 4))
    cells[0, 1, 2] = 5.0
    cells[0, 3, 3] = 1.0
    hot = hot_cells(cells, 0.1)  # ceil(1.6) = 2 cells
    assert hot[0].sum() == 2 and hot[0, 1, 2] and hot[0, 3, 3]
    assert not hot[1].any()


def test_an_interior_spot_holding_15_percent_of_the_mass_is_found_for_its_class_only():
    box = (18, 10, 22, 14)  # 4x4 px inside the image, away from corners and edges
    maps, targets = _maps({1: box})
    found = find_candidates(maps, targets, CLASSES, method="saliency")
    assert [c["class"] for c in found] == ["b"]
    c = found[0]
    x0, y0, x1, y1 = c["box"]
    assert x0 <= 18 and y0 <= 10 and x1 >= 22 and y1 >= 14 and (x1 - x0) * (y1 - y0) <= 64
    assert c["hot_frequency"] == 1.0 and c["mass"] < 0.35 and c["lift"] > 5
    assert c["other_classes_hot_frequency"] < 0.3  # the other classes do not look there
    assert c["kind"] == "box" and c["source"] == "class" and c["images"] == 10


def test_a_spot_every_class_looks_at_is_found_for_each_and_merged_over_methods():
    maps, targets = _maps({0: (1, 1, 5, 5), 1: (1, 1, 5, 5), 2: (1, 1, 5, 5)})
    fine = find_candidates(maps, targets, CLASSES, method="saliency")
    coarse = find_candidates(maps, targets, CLASSES, method="gradcam", native=(2, 2))
    assert {c["class"] for c in fine} == {c["class"] for c in coarse} == set(CLASSES)
    assert all(c["box"] == [0, 0, 16, 16] for c in coarse)  # a 2x2 method names its own cell, a quarter
    merged = merge_candidates(fine + coarse)
    assert len(merged) == 3
    for m in merged:
        assert m["methods"] == ["gradcam", "saliency"]
        assert m["box"] != [0, 0, 16, 16]  # the finer method's box is kept
        assert m["same_spot_classes"] == CLASSES
        assert set(m["by_method"]) == {"gradcam", "saliency"}


def test_random_maps_and_boxes_on_the_object_are_not_candidates():
    maps, targets = _maps({})
    assert find_candidates(maps, targets, CLASSES, method="m") == []
    spot, targets = _maps({0: (12, 12, 20, 20)})
    masks = np.zeros(spot.shape, dtype=bool)
    masks[:, 10:22, 10:22] = True  # the object sits where the maps look: that is the object, not a cue
    assert find_candidates(spot, targets, CLASSES, method="m", masks=masks) == []
    assert find_candidates(spot, targets, CLASSES, method="m")  # without masks it is a candidate


def test_settings_are_honoured_and_small_classes_are_skipped():
    maps, targets = _maps({1: (18, 10, 22, 14)}, n=4)
    assert find_candidates(maps, targets, CLASSES, method="m") == []  # 4 maps < min_images 5
    assert find_candidates(maps, targets, CLASSES, method="m", settings=SearchSettings(min_images=4))
    maps, targets = _maps({1: (0, 0, 16, 16)}, share=0.8)
    assert find_candidates(maps, targets, CLASSES, method="m", settings=SearchSettings(max_area=0.1)) == []


def test_a_cue_in_part_of_a_class_shows_in_its_cluster():
    maps, targets = _maps({})
    sub, _ = _maps({0: (24, 24, 28, 28)}, seed=1)
    members = np.arange(5)  # half of class a's ten maps carry the cue
    maps[members] = sub[members]
    plain = find_candidates(maps, targets, CLASSES, method="m", settings=SearchSettings(min_frequency=0.7))
    assert plain == []
    found = find_candidates(maps, targets, CLASSES, method="m", settings=SearchSettings(min_frequency=0.7),
                            subsets=[{"class": 0, "members": members, "cluster": 1, "fraction": 0.5}])
    assert [(c["class"], c["source"], c["cluster_fraction"]) for c in found] == [("a", "spray", 0.5)]
    assert found[0]["images"] == 5 and found[0]["hot_frequency"] == 1.0


def test_off_object_hot_cells_make_a_background_candidate_and_probes_cover_every_class():
    rng = np.random.default_rng(2)
    targets = np.repeat([0, 1], 8)
    masks = np.zeros((16, 32, 32), dtype=bool)
    masks[:, 12:20, 12:20] = True
    maps = rng.random((16, 32, 32)) * 0.05
    for i, c in enumerate(targets):
        y, x = rng.integers(0, 32, (2, 40))
        keep = ~masks[i, y, x]
        if c == 0:  # class a: scattered hot pixels off the object only
            maps[i, y[keep], x[keep]] = 1.0
        else:  # class b: hot on the object
            maps[i, 12:20, 12:20] += rng.random((8, 8))
    found = find_candidates(maps, targets, CLASSES, method="m", masks=masks)
    assert [(c["class"], c["kind"]) for c in found] == [("a", "off-object")]
    assert found[0]["box"] == [0, 0, 32, 32] and found[0]["odds_ratio"] >= 3
    probes = background_probes(CLASSES, [0, 2], (32, 32))
    assert [(p["class"], p["kind"], p["source"]) for p in probes] == [("a", "off-object", "masks"), ("c", "off-object", "masks")]
