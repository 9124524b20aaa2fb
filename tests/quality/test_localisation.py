"""Localisation (pointing game, relevance mass) and method agreement known answers."""

from __future__ import annotations

import numpy as np
import pytest

from imaudit.audits.quality import agreement, localisation, rowwise_spearman


def test_pointing_game_and_mass_inside():
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[:, :4, :4] = True  # object: top-left quarter
    maps = np.ones((3, 8, 8))
    maps[0, 1, 1] = 5.0  # peak inside the object
    maps[1, 7, 7] = 5.0  # peak outside
    maps[2] = 0.0
    maps[2, :4, :4] = 1.0  # all mass inside, peak inside
    r = localisation(maps, masks, ids=["p", "q", "r"])
    assert r["pointing_game"] == pytest.approx(2 / 3)
    assert r["per_image"][0]["mass_inside"] == pytest.approx((15 + 5) / 68)
    assert r["per_image"][1]["mass_inside"] == pytest.approx(16 / 68)
    assert r["per_image"][2]["mass_inside"] == pytest.approx(1.0)
    assert r["mask_area"] == pytest.approx(0.25)


def test_masks_are_resized_and_empty_masks_skipped():
    masks = np.zeros((2, 16, 16), dtype=np.float32)
    masks[0, 8:, 8:] = 1.0  # bottom-right quarter at twice the map resolution
    maps = np.zeros((2, 8, 8))
    maps[:, 4:, 4:] = 1.0
    r = localisation(maps, masks, ids=["a", "b"])
    assert r["count"] == 1 and r["mass_inside"] == pytest.approx(1.0) and r["pointing_game"] == 1.0
    assert r["skipped"] == [{"id": "b", "reason": "empty mask"}]


def test_agreement_with_itself_is_one_and_with_a_shuffle_or_anti_map_lower():
    rng = np.random.default_rng(0)
    maps = rng.random((10, 8, 8))
    ids = [f"i{k}" for k in range(10)]
    shuffled = np.stack([rng.permutation(m.ravel()).reshape(8, 8) for m in maps])
    anti = maps.max() - maps  # ranks reversed
    labels = [0] * 5 + [1] * 5
    r = agreement({"a": maps, "same": maps.copy(), "shuffle": shuffled, "anti": anti},
                  {k: ids for k in ("a", "same", "shuffle", "anti")}, labels, ["x", "y"], size=8)
    assert r["matrix"]["a"]["a"] == 1.0
    assert r["matrix"]["a"]["same"] == pytest.approx(1.0)
    assert abs(r["matrix"]["a"]["shuffle"]) < 0.3
    assert r["matrix"]["a"]["anti"] == pytest.approx(-1.0)
    assert r["per_class"]["x"]["a"]["same"] == pytest.approx(1.0)


def test_agreement_uses_common_ids_only():
    maps = np.random.default_rng(1).random((4, 8, 8))
    r = agreement({"a": maps, "b": maps[[3, 2]]}, {"a": ["w", "x", "y", "z"], "b": ["z", "y"]},
                  {"w": 0, "x": 0, "y": 1, "z": 1}, ["c0", "c1"])
    pair = r["pairs"][0]
    assert pair["count"] == 2 and pair["mean"] == pytest.approx(1.0) and set(pair["per_class"]) == {"c1"}


def test_rowwise_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    a, b = rng.random((3, 20)), rng.random((3, 20))
    b[1] = a[1] ** 3  # monotone: rho 1
    got = rowwise_spearman(a, b)
    assert got == pytest.approx([spearmanr(x, y).statistic for x, y in zip(a, b)])
    assert got[1] == pytest.approx(1.0)
    assert np.isnan(rowwise_spearman(np.ones((1, 5)), a[:1, :5]))[0]
