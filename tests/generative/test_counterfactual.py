"""Counterfactuals reach the target confidence, change what the model reads, and are counted honestly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image
from torch import nn

from imaudit.audits.generative import GeneratorArtifact, SearchSettings, counterfactuals, find_counterfactuals
from imaudit.audits.generative.counterfactual import default_targets, diff_grid, summarise
from imaudit.audits.generative.figures import CHANGE_CMAP, CHANGE_SCALE, change_rgb, colour_rgb
from imaudit.errors import BadInputError

from gen_helpers import QUADRANTS, BlockGenerator, QuadrantRule, block_images, quadrant


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("where", sorted(QUADRANTS))
def test_counterfactual_reaches_the_target_by_changing_the_quadrant_the_model_reads(where, masked):
    model, gen = QuadrantRule(where), BlockGenerator()
    x = block_images(6, seed=1)
    quadrant(x, where)[:3] = 0.3  # class 0: dark quadrant
    quadrant(x, where)[3:] = 0.7  # class 1: bright quadrant
    res = find_counterfactuals(model, gen, x, torch.tensor([0, 0, 0, 1, 1, 1]),
                               settings=SearchSettings(masked=masked), seed=0)
    assert res.outcomes == ["success"] * 6
    assert torch.equal(res.targets, torch.tensor([1, 1, 1, 0, 0, 0]))  # correct images -> runner-up class
    probs = model(res.counterfactuals).softmax(1)[torch.arange(6), res.targets]
    assert (probs >= 0.9).all() and torch.allclose(probs, res.cf_confidence, atol=1e-5)
    diff = res.differences
    share = quadrant(diff.abs(), where).sum((1, 2, 3)) / diff.abs().sum((1, 2, 3))
    assert (share > 0.9).all(), share
    signed = quadrant(diff, where).mean((1, 2, 3))  # dark quadrants brighten to become class 1, bright ones darken
    assert (signed[:3] > 0).all() and (signed[3:] < 0).all()
    assert (res.first_reached >= 1).all() and (res.steps_taken >= res.first_reached).all()


def test_searching_on_after_the_first_hit_gets_closer():
    model, gen = QuadrantRule("top-left"), BlockGenerator()
    x = block_images(3, seed=4)
    quadrant(x, "top-left")[:] = 0.3
    full = find_counterfactuals(model, gen, x, settings=SearchSettings(confidence=0.9), seed=0)
    assert full.outcomes == ["success"] * 3
    # The search is deterministic: stopping it at the first hit gives the first-hit counterfactual.
    k = int(full.first_reached.max())
    first = find_counterfactuals(model, gen, x, settings=SearchSettings(confidence=0.9, steps=k), seed=0)
    assert first.outcomes == ["success"] * 3
    assert (full.pixel_distance <= first.pixel_distance + 1e-6).all()
    assert (full.pixel_distance < first.pixel_distance - 0.005).all()


class PixelRule(nn.Module):
    """Three outputs: class 1 vs 0 from the top-left quadrant's mean plus a two-pixel detail; class 2 never wins.

    The detail (pixel (0,0) minus pixel (0,1)) sits inside one block of the
    BlockGenerator, which cannot draw it: reconstructions lose it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(20.0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = quadrant(x, "top-left").mean((1, 2, 3))
        logit = self.gain * (m - 0.5) + 2 * self.gain * (x[:, 0, 0, 0] - x[:, 0, 0, 1])
        return torch.stack([-logit / 2, logit / 2, torch.full_like(logit, -10.0)], dim=1)


class ThreeClassBlocks(BlockGenerator):
    def __init__(self) -> None:
        super().__init__()
        self.n_classes = 3
        self.embedding = nn.Embedding(3, 1)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.tensor([[-2.0], [2.0], [0.0]]))


def _hand_made_cases() -> tuple[torch.Tensor, list[int], list[int], list[str]]:
    """Six images with a known outcome each (see the expected list)."""
    x = block_images(6, seed=7)
    tl = [0.3, 0.3, 0.45, 0.3, 0.3, 0.35]
    for i, v in enumerate(tl):
        quadrant(x, "top-left")[i] = v
    for i in (2, 3):  # the detail the generator cannot draw makes the model say class 1
        x[i, 0, 0, 0], x[i, 0, 0, 1] = 1.0, 0.0
    labels = [0, 0, 1, 1, 0, 0]
    targets = [1, 0, 0, 0, 2, 1]
    expected = [
        "success",  # dark quadrant, class 0 -> 1
        "unchanged-target",  # asked for the class it already is
        "reconstruction-flipped",  # the reconstruction drops the detail: class 0 at 0.73, not the original's 1
        "zero-step",  # same, and the reconstruction already is class 0 at 0.98 >= 0.9
        "not-reached",  # class 2 never wins
        "success",
    ]
    return x, labels, targets, expected


def test_outcomes_are_counted_apart_and_only_real_searches_succeed(tmp_path):
    x, labels, targets, expected = _hand_made_cases()
    art = GeneratorArtifact.in_memory(ThreeClassBlocks(), ["dark", "bright", "never"])
    out = counterfactuals(PixelRule(), art, x, labels, target_classes=targets, out_dir=tmp_path,
                          settings=SearchSettings(steps=60), ids=[f"i{k}" for k in range(6)])
    items = out["items"]
    assert [it["outcome"] for it in items] == expected
    assert out["counts"] == {"success": 2, "not-reached": 1, "unchanged-target": 1, "zero-step": 1,
                             "reconstruction-flipped": 1}
    assert out["searched"] == 3 and out["success_rate"] == pytest.approx(2 / 3)
    assert out["mean_distance"] == pytest.approx((items[0]["distance"] + items[5]["distance"]) / 2)
    # Left-out items carry no counterfactual, no distance and no change images; they say why.
    for it in items[1:4]:
        assert it["distance"] is None and it["steps"] == 0 and set(it["pngs"]) == {"original", "reconstruction"}
    assert items[2]["prediction_survives"] is False and "cannot draw" in items[2]["reason"]
    assert items[3]["reconstruction_pred"] == 0 and "already" in items[3]["reason"]
    assert "already the model's prediction" in items[1]["reason"]
    assert items[4]["counterfactual_confidence"] < 0.9 and items[4]["steps"] == 60
    for it in (items[0], items[5]):
        assert it["counterfactual_confidence"] >= 0.9 and it["prediction_survives"]
        # The path shown ends at the counterfactual kept.
        assert it["path_steps"][-1] == it["steps"] >= it["first_reached"] >= 1
        assert it["path_confidence"][-1] == pytest.approx(it["counterfactual_confidence"], abs=1e-5)
        assert set(it["pngs"]) == {"original", "reconstruction", "counterfactual", "change", "colour"}
        assert np.array(it["diff_grid"])[:2, :2].sum() > 0.9
        assert set(out["changes"]) == {"i0", "i5"}


def test_summary_matches_hand_counts():
    items = [
        {"outcome": "success", "distance": 0.1, "latent_distance": 1.0, "recon_error": 0.05},
        {"outcome": "success", "distance": 0.3, "latent_distance": 3.0, "recon_error": 0.05},
        {"outcome": "not-reached", "distance": 0.9, "latent_distance": 9.0, "recon_error": 0.05},
        {"outcome": "zero-step", "distance": None, "latent_distance": None, "recon_error": 0.2},
        {"outcome": "zero-step", "distance": None, "latent_distance": None, "recon_error": 0.2},
        {"outcome": "reconstruction-flipped", "distance": None, "latent_distance": None, "recon_error": 0.3},
        {"outcome": "unchanged-target", "distance": None, "latent_distance": None, "recon_error": 0.05},
    ]
    s = summarise(items)
    assert s["counts"] == {"success": 2, "not-reached": 1, "unchanged-target": 1, "zero-step": 2,
                           "reconstruction-flipped": 1}
    assert s["searched"] == 3 and s["success_rate"] == pytest.approx(2 / 3)
    assert s["mean_distance"] == pytest.approx(0.2) and s["mean_latent_distance"] == pytest.approx(2.0)
    assert summarise([items[3]])["success_rate"] is None  # nothing searched: no rate, never 0 or 1


def test_change_maps_use_one_fixed_scale():
    small, large = np.zeros((4, 4)), np.zeros((4, 4))
    small[0, 0], large[0, 0], large[1, 1] = 0.1, 0.1, 0.9
    # The same change gets the same colour whatever else changed in the image.
    assert (change_rgb(small)[0, 0] == change_rgb(large)[0, 0]).all()
    expected = np.round(np.array(colormaps[CHANGE_CMAP](0.1 / CHANGE_SCALE)[:3]) * 255)
    assert np.abs(change_rgb(small)[0, 0].astype(int) - expected).max() <= 1
    assert (change_rgb(large)[1, 1] == change_rgb(np.full((1, 1), CHANGE_SCALE))[0, 0]).all()  # saturates
    diff = np.zeros((3, 2, 2))
    diff[0, 0, 0], diff[2, 1, 1] = 0.25, -0.25
    rgb = colour_rgb(diff).astype(int)
    assert list(rgb[0, 1]) == [128, 128, 128]  # unchanged: grey
    assert rgb[0, 0, 0] > 128 and rgb[1, 1, 2] < 128  # red added, blue taken away


def test_item_pngs_are_the_model_input_size(tmp_path):
    model = QuadrantRule("top-left")
    art = GeneratorArtifact.in_memory(BlockGenerator(), ["dark", "bright"])
    x = block_images(2, seed=2)
    quadrant(x, "top-left")[:] = 0.35
    out = counterfactuals(model, art, x, [0, 0], out_dir=tmp_path, ids=["a/1.png", "a/1.jpg"])
    names = [set(it["pngs"].values()) for it in out["items"]]
    assert not names[0] & names[1]  # ids that differ only by extension keep their own files
    for it in out["items"]:
        for name in it["pngs"].values():
            with Image.open(tmp_path / name) as im:
                assert im.size == (32, 32)
    with Image.open(tmp_path / out["items"][0]["pngs"]["original"]) as im:
        assert np.asarray(im)[0, 0] == round(0.35 * 255)


def test_default_targets_are_the_true_label_when_wrong_else_the_runner_up():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0]])
    assert default_targets(logits, torch.tensor([0, 0, 2])).tolist() == [1, 0, 1]
    assert default_targets(logits, None).tolist() == [1, 2, 1]


def test_diff_grid_puts_the_mass_where_the_change_is():
    d = torch.zeros(1, 8, 8)
    d[0, 6:, :2] = -1.0
    grid = np.array(diff_grid(d))
    assert grid[3, 0] == pytest.approx(1.0) and grid.sum() == pytest.approx(1.0)
    assert np.array(diff_grid(torch.zeros(1, 8, 8))).sum() == 0


def test_bad_targets_settings_and_class_count_are_bad_input():
    x = block_images(2)
    with pytest.raises(BadInputError, match="target_classes"):
        find_counterfactuals(QuadrantRule(), BlockGenerator(), x, target_classes=[0, 5])
    three = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 3))
    with pytest.raises(BadInputError, match="classes"):
        find_counterfactuals(three, BlockGenerator(), x)
    with pytest.raises(BadInputError, match="confidence"):
        SearchSettings(confidence=1.0)


def test_counterfactuals_with_a_trained_gan_repeat_with_a_seed(tiny_gan, tmp_path):
    art, x, y = tiny_gan

    class TinyCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                     nn.Linear(64, 2))

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.net(t)

    model = TinyCNN().eval()
    # Model input 24 px from a 16 px generator: the adapters resize both ways; the discriminator scores realism.
    images = nn.functional.interpolate(x[:4], size=24, mode="bilinear", align_corners=False)
    runs = [counterfactuals(model, art, images, y[:4], settings=SearchSettings(steps=10, invert_steps=40), seed=s)
            for s in (5, 5, 6)]
    assert runs[0]["items"] == runs[1]["items"]
    assert runs[0]["items"] != runs[2]["items"]
    assert runs[0]["settings"]["realism_term"] is True
    for it in runs[0]["items"]:
        assert it["recon_error"] < 0.25 and 0 <= it["reconstruction_realism"] <= 1
