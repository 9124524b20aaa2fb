"""Global importance aggregation: hand-computed values, invariants and streaming."""

from __future__ import annotations

import numpy as np
import pytest

from imaudit.audits.aggregate import ImportanceAggregator, area_pool, region_masks
from imaudit.errors import BadInputError


def _two_maps() -> np.ndarray:
    """8x8 maps: one with all mass in the top-left 4x4 block, one uniform but signed."""
    block = np.zeros((8, 8))
    block[:4, :4] = 3.0
    signed = np.ones((8, 8))
    signed[::2] *= -1  # absolute values count, so this is uniform
    return np.stack([block, signed])


def test_hand_computed_grid_regions_and_per_class():
    agg = ImportanceAggregator(["a", "b"], grid=2)
    agg.update(_two_maps(), [0, 1])
    out = agg.compute()
    # block -> [[1, 0], [0, 0]], uniform -> 0.25 everywhere; the mean of the two:
    assert np.allclose(out["grid"], [[0.625, 0.125], [0.125, 0.125]])
    assert np.allclose(out["per_class"]["a"], [[1, 0], [0, 0]])
    assert np.allclose(out["per_class"]["b"], [[0.25, 0.25], [0.25, 0.25]])
    # top-left corner = rows/cols 0-1 (4 of the block's 16 px, 4 of 64 uniform px)
    assert out["regions"]["corners"]["top-left"] == pytest.approx((4 / 16 + 4 / 64) / 2)
    assert out["regions"]["corners"]["bottom-right"] == pytest.approx((0 + 4 / 64) / 2)
    # border = outer ring: block has row 0 (4 px) + column 0 rows 1-3 (3 px); uniform has 28 of 64
    assert out["regions"]["border"] == pytest.approx((7 / 16 + 28 / 64) / 2)
    # centre = rows/cols 2-5: the block's rows/cols 2-3 (4 px), uniform 16 of 64
    assert out["regions"]["centre"] == pytest.approx((4 / 16 + 16 / 64) / 2)
    assert out["region_area"]["corners"]["top-left"] == pytest.approx(1 / 16)
    assert out["region_area"]["border"] == pytest.approx(7 / 16)
    assert out["count"] == 2 and out["per_class_count"] == {"a": 1, "b": 1}
    # a corner is "hot" at >= 2.5 x its area share: in the block map (4x) but not the uniform one
    assert out["per_class_stats"]["a"]["consistency"]["corners"]["top-left"] == 1.0
    assert out["per_class_stats"]["b"]["consistency"]["corners"]["top-left"] == 0.0


def test_off_object_mass_and_channels():
    agg = ImportanceAggregator(["a", "b"], grid=2)
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[:, :, 4:] = True  # the object is the right half
    chan = np.ones((2, 3, 8, 8))
    chan[0, 0] = 2.0  # image 0: red counts twice -> [0.5, 0.25, 0.25]; image 1: thirds
    agg.update(_two_maps(), [0, 0], masks=masks, channel_maps=chan)
    out = agg.compute()
    assert out["off_object"] == pytest.approx((1.0 + 0.5) / 2)  # block is all off the object, uniform half
    assert out["object_area"] == pytest.approx(0.5)
    assert out["channels"] == pytest.approx([(0.5 + 1 / 3) / 2, (0.25 + 1 / 3) / 2, (0.25 + 1 / 3) / 2], abs=1e-5)
    # the block's top-left corner mass is entirely off the object
    assert out["regions_off_object"]["corners"]["top-left"] == pytest.approx((4 / 16 + 4 / 64) / 2)
    assert out["regions_off_object"]["corners"]["top-right"] == 0.0


@pytest.mark.parametrize("shape,grid", [((37, 29), 8), ((64, 64), 8), ((5, 7), 3)])
def test_grid_is_a_distribution_for_any_size(shape, grid):
    rng = np.random.default_rng(1)
    agg = ImportanceAggregator(["a", "b", "c"], grid=grid)
    agg.update(rng.normal(size=(10, *shape)), rng.integers(0, 3, 10))
    out = agg.compute()
    g = np.array(out["grid"])
    assert g.shape == (grid, grid) and (g >= 0).all() and g.sum() == pytest.approx(1.0, abs=1e-5)
    for cls_grid in out["per_class"].values():
        assert np.sum(cls_grid) == pytest.approx(1.0, abs=1e-5)
    assert np.sum(out["mean_map"]) == pytest.approx(1.0, abs=1e-5)


def test_area_pool_preserves_mass_and_sums_blocks():
    x = np.arange(16.0).reshape(4, 4)
    assert np.allclose(area_pool(x, 2), [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])
    y = np.random.default_rng(0).random((3, 13, 11))
    assert np.allclose(area_pool(y, (5, 4)).sum(axis=(1, 2)), y.sum(axis=(1, 2)))


def test_streaming_and_merge_equal_one_batch():
    rng = np.random.default_rng(2)
    maps, labels = rng.random((12, 16, 16)), rng.integers(0, 2, 12)
    masks = rng.random((12, 16, 16)) > 0.7
    one = ImportanceAggregator(["a", "b"])
    one.update(maps, labels, masks=masks)
    streamed = ImportanceAggregator(["a", "b"])
    streamed.update(maps[:5], labels[:5], masks=masks[:5])
    streamed.update(maps[5:], labels[5:], masks=masks[5:])
    part = ImportanceAggregator(["a", "b"])
    part.update(maps[:7], labels[:7], masks=masks[:7])
    rest = ImportanceAggregator(["a", "b"])
    rest.update(maps[7:], labels[7:], masks=masks[7:])
    part.merge(rest)
    a = one.compute()
    for other in (streamed.compute(), part.compute()):
        assert np.allclose(a["grid"], other["grid"])
        assert a["off_object"] == pytest.approx(other["off_object"])
        assert a["per_class_stats"]["a"]["consistency"] == other["per_class_stats"]["a"]["consistency"]


def test_unusable_maps_are_skipped_and_listed():
    maps = np.ones((3, 8, 8))
    maps[1] = 0.0
    maps[2, 0, 0] = np.nan
    agg = ImportanceAggregator(["a"])
    agg.update(maps, [0, 0, 0], ids=["x", "y", "z"])
    out = agg.compute()
    assert out["count"] == 1
    assert [s["id"] for s in out["skipped"]] == ["y", "z"]
    assert ImportanceAggregator(["a"]).compute()["grid"] is None


def test_bad_input_is_named():
    agg = ImportanceAggregator(["a"])
    with pytest.raises(BadInputError, match="maps"):
        agg.update(np.ones((8, 8)), [0])
    with pytest.raises(BadInputError, match="labels"):
        agg.update(np.ones((2, 8, 8)), [0, 3])


def test_region_definitions_on_an_8x8_grid():
    m = region_masks(8, 8)
    assert m["top-left"][:2, :2].all() and m["top-left"].sum() == 4
    assert m["border"].sum() == 28 and not m["border"][1:7, 1:7].any()
    assert m["centre"][2:6, 2:6].all() and m["centre"].sum() == 16
