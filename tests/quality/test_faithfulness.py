"""Deletion / insertion on a model with a known answer, and batching into few forward calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from imaudit.audits.quality import deletion_insertion
from imaudit.errors import BadInputError

SCALE = 4.0


class QuadrantModel(nn.Module):
    """Two logits: SCALE x mean of the top-left quadrant (class 0) and 0 (class 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.calls = 0
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.sizes.append(len(x))
        h, w = x.shape[-2:]
        q = x[:, :, : h // 2, : w // 2].mean(dim=(1, 2, 3)) * SCALE
        return torch.stack([q, torch.zeros_like(q)], dim=1) + self.anchor


def _quadrant_map(n: int, size: int, anti: bool = False) -> np.ndarray:
    m = np.zeros((n, size, size), dtype=np.float32)
    m[:, : size // 2, : size // 2] = 1.0
    return 1.0 - m if anti else m


def test_known_answer_for_an_ideal_map():
    """All-ones images, zero fill: removing the quadrant first lowers logit 0 linearly over 4 of 16 steps."""
    n, size, steps = 3, 32, 16
    x = torch.ones(n, 3, size, size)
    r = deletion_insertion(QuadrantModel(), x, torch.zeros(n), _quadrant_map(n, size), steps=steps,
                           baseline="zero", batch_size=64)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    deletion = [sig(SCALE * max(0.0, 1 - k / 4)) for k in range(steps + 1)]
    insertion = [sig(SCALE * min(1.0, k / 4)) for k in range(steps + 1)]
    assert r["curves"]["deletion"] == pytest.approx(deletion, abs=1e-5)
    assert r["curves"]["insertion"] == pytest.approx(insertion, abs=1e-5)
    assert r["deletion_auc"] == pytest.approx(np.trapezoid(deletion, dx=1 / steps), abs=1e-5)


def _good_and_anti(seed: int, n: int, size: int, random_trials: int) -> tuple[dict, dict]:
    """Deletion/insertion of the right map (the quadrant the model reads) and of its complement, on random images."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    t = torch.zeros(n)
    return tuple(deletion_insertion(QuadrantModel(), x, t, _quadrant_map(n, size, anti=anti), steps=8,
                                    baseline="zero", random_trials=random_trials) for anti in (False, True))


def test_map_beats_random_and_anti_map_loses():
    n = 6
    good, anti = _good_and_anti(seed=0, n=n, size=32, random_trials=2)
    assert good["deletion_auc"] < good["random_deletion_auc"] < anti["deletion_auc"]
    assert good["insertion_auc"] > good["random_insertion_auc"] > anti["insertion_auc"]
    assert good["deletion_gain"] > 0.1 and anti["deletion_gain"] < -0.1
    assert len(good["per_image"]) == n and good["curves"]["x"][-1] == 1.0


@pytest.mark.parametrize("steps,trials,bs", [(4, 1, 32), (7, 2, 50), (16, 0, 1000)])
def test_images_and_steps_share_big_forward_batches(steps, trials, bs):
    n = 5
    model = QuadrantModel()
    r = deletion_insertion(model, torch.rand(n, 3, 16, 16), torch.zeros(n), _quadrant_map(n, 16), steps=steps,
                           random_trials=trials, batch_size=bs, baseline="mean")
    total = n * (1 + trials) * 2 * (steps + 1)
    assert model.calls == r["forward_passes"] == math.ceil(total / bs)
    assert max(model.sizes) == min(bs, total) and sum(model.sizes) == total


def test_replacement_is_pluggable_and_sees_the_removed_mask():
    seen = []

    def fill_zero(images: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        seen.append((images.shape, removed.shape, removed.dtype))
        return torch.zeros_like(images)

    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t, maps = torch.zeros(4), _quadrant_map(4, 16)
    custom = deletion_insertion(QuadrantModel(), x, t, maps, steps=4, baseline=fill_zero, batch_size=16)
    builtin = deletion_insertion(QuadrantModel(), x, t, maps, steps=4, baseline="zero", batch_size=16)
    assert custom["deletion_auc"] == pytest.approx(builtin["deletion_auc"])
    assert custom["insertion_auc"] == pytest.approx(builtin["insertion_auc"])
    assert seen and all(s[1][1] == 1 and s[1][2:] == (16, 16) and s[2] == torch.bool for s in seen)


def test_bad_map_is_recorded_and_the_rest_evaluated():
    maps = _quadrant_map(3, 16)
    maps[1, 0, 0] = np.nan
    r = deletion_insertion(QuadrantModel(), torch.rand(3, 3, 16, 16), torch.zeros(3), maps, steps=4,
                           ids=["a", "b", "c"])
    assert r["failures"] == [{"id": "b", "error": "attribution map is not finite"}]
    assert [p["id"] for p in r["per_image"]] == ["a", "c"]
    with pytest.raises(BadInputError, match="baseline"):
        deletion_insertion(QuadrantModel(), torch.rand(1, 3, 8, 8), torch.zeros(1), maps[:1], baseline="nope")


def test_random_orders_give_an_interval_and_a_verdict():
    good, anti = _good_and_anti(seed=3, n=12, size=16, random_trials=4)
    lo, hi = good["deletion_gain_ci"]
    assert lo < good["deletion_gain"] < hi and lo > 0 and good["deletion_vs_random"] == "better"
    assert anti["deletion_gain_ci"][1] < 0 and anti["deletion_vs_random"] == "worse"
    assert good["random_orders"] == 4 and len(good["random_deletion_auc_per_order"]) == 4
    assert len(good["per_image"][0]["random_deletion_aucs"]) == 4


def test_a_shared_reference_gives_the_same_numbers_as_computing_it_again():
    from imaudit.audits.quality.faithfulness import reference_curves
    from imaudit.audits.quality.priors import edge_maps

    gen = torch.Generator().manual_seed(4)
    n, size = 8, 16
    x = torch.rand(n, 3, size, size, generator=gen)
    t = torch.zeros(n)
    ids = [f"i{k}" for k in range(n)]
    priors = {"edges": edge_maps(x)}
    model = QuadrantModel()
    own = deletion_insertion(model, x[:5], t[:5], _quadrant_map(5, size), steps=6, baseline="zero", ids=ids[:5],
                             random_trials=3, priors={"edges": priors["edges"][:5]})
    ref = reference_curves(model, x, t, ids=ids, priors=priors, random_trials=3, steps=6, baseline="zero")
    calls = model.calls
    shared = deletion_insertion(model, x[:5], t[:5], _quadrant_map(5, size), steps=6, baseline="zero", ids=ids[:5],
                                reference=ref)
    assert shared["inputs_evaluated"] == 5 * 2 * 7  # only the map's own order was evaluated
    assert model.calls - calls == shared["forward_passes"]
    assert shared["deletion_auc"] == pytest.approx(own["deletion_auc"])
    assert [r["random_deletion_auc"] for r in shared["per_image"]] == pytest.approx(
        [r["random_deletion_auc"] for r in own["per_image"]])
    assert shared["deletion_gain"] == pytest.approx(own["deletion_gain"])
    assert set(shared["priors"]["edges"]) >= {"deletion_auc", "map_deletion_gain", "map_deletion_gain_ci", "map_vs_prior"}
    # the random orders' spread, drawn as a band in the report: it holds their mean curve at every step
    for m in ("deletion", "insertion"):
        low, high = own["curves"][f"random_{m}_band"]
        mean = own["curves"][f"random_{m}"]
        assert len(low) == len(high) == len(mean) == 7
        assert all(lo - 1e-9 <= y <= hi + 1e-9 for lo, y, hi in zip(low, mean, high))
        assert shared["curves"][f"random_{m}_band"] == ref["curves"][f"random_{m}_band"]


def test_edge_prior_ranks_the_edges_of_the_image_first():
    from imaudit.audits.quality.priors import edge_maps

    x = torch.zeros(1, 3, 16, 16)
    x[:, :, :, 8:] = 1.0  # one vertical edge at column 8
    e = edge_maps(x)[0]
    assert e.shape == (16, 16) and e[:, 7:9].min() > e[:, :5].max()
