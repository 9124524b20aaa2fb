"""Counterfactuals change what the model reads, flip the prediction, and repeat with a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from imaudit.audits.generative import GeneratorArtifact, counterfactuals, find_counterfactuals, run_counterfactual_section
from imaudit.audits.generative.counterfactual import default_targets, diff_grid
from imaudit.errors import BadInputError

from gen_helpers import QUADRANTS, BlockGenerator, QuadrantRule, block_images, quadrant


@pytest.mark.parametrize("where", sorted(QUADRANTS))
def test_counterfactual_changes_the_quadrant_the_model_reads(where):
    model, gen = QuadrantRule(where), BlockGenerator()
    x = block_images(6, seed=1)
    quadrant(x, where)[:3] = 0.3  # class 0: dark quadrant
    quadrant(x, where)[3:] = 0.7  # class 1: bright quadrant
    res = find_counterfactuals(model, gen, x, torch.tensor([0, 0, 0, 1, 1, 1]), seed=0)
    assert res.success.all()
    assert torch.equal(res.targets, torch.tensor([1, 1, 1, 0, 0, 0]))  # correct images -> runner-up class
    assert torch.equal(model(res.counterfactuals).argmax(1), res.targets)
    diff = res.differences
    share = quadrant(diff.abs(), where).sum((1, 2, 3)) / diff.abs().sum((1, 2, 3))
    assert (share > 0.95).all(), share
    # Dark quadrants brighten to become class 1, bright ones darken.
    signed = quadrant(diff, where).mean((1, 2, 3))
    assert (signed[:3] > 0).all() and (signed[3:] < 0).all()
    assert (res.latent_distance > 0).all()


def test_a_confidence_floor_moves_further():
    model, gen = QuadrantRule("top-left"), BlockGenerator()
    x = block_images(3, seed=4)
    quadrant(x, "top-left")[:] = 0.3
    flip = find_counterfactuals(model, gen, x, seed=0)
    sure = find_counterfactuals(model, gen, x, seed=0, confidence=0.9)
    assert sure.success.all() and (sure.cf_confidence >= 0.9).all()
    assert (flip.cf_confidence < 0.9).all()
    assert (sure.latent_distance > flip.latent_distance).all()


def test_counterfactual_dict_reports_items_pngs_and_distances(tmp_path):
    model = QuadrantRule("top-left")
    art = GeneratorArtifact.in_memory(BlockGenerator(), ["dark", "bright"])
    x = block_images(4, seed=2)
    quadrant(x, "top-left")[:] = 0.35
    out = counterfactuals(model, art, x, [1, 0, 0, 0], out_dir=tmp_path, ids=["a/1", "b", "c", "d"])
    items = {it["id"]: it for it in out["items"]}
    assert items["a/1"]["target"] == 1  # misclassified (label 1, predicted 0): target is the true label
    assert out["success_rate"] == 1.0
    assert out["mean_distance"] == pytest.approx(np.mean([it["distance"] for it in out["items"]]))
    for it in out["items"]:
        grid = np.array(it["diff_grid"])
        assert grid.sum() == pytest.approx(1.0, abs=1e-4) and grid[:2, :2].sum() > 0.95
        assert it["path_confidence"][-1] == pytest.approx(it["counterfactual_confidence"], abs=1e-5)
        assert it["path_confidence"][-1] > 0.5 > it["path_confidence"][0]
        assert set(it["pngs"]) == {"original", "reconstruction", "counterfactual", "difference"}
        for name in it["pngs"].values():
            with Image.open(tmp_path / name) as im:
                assert im.size == (32, 32)
    with Image.open(tmp_path / items["b"]["pngs"]["original"]) as im:
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


def test_bad_targets_and_class_count_are_bad_input():
    x = block_images(2)
    with pytest.raises(BadInputError, match="target_classes"):
        find_counterfactuals(QuadrantRule(), BlockGenerator(), x, target_classes=[0, 5])
    three = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 3))
    with pytest.raises(BadInputError, match="classes"):
        find_counterfactuals(three, BlockGenerator(), x)


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_counterfactuals_with_a_trained_gan_repeat_with_a_seed(tiny_gan, tmp_path):
    art, x, y = tiny_gan
    model = TinyCNN().eval()
    # Model input 24 px from a 16 px generator: the adapters resize both ways.
    images = nn.functional.interpolate(x[:4], size=24, mode="bilinear", align_corners=False)
    runs = [counterfactuals(model, art, images, y[:4], steps=30, seed=s, out_dir=tmp_path / str(i))
            for i, s in enumerate((5, 5, 6))]
    assert runs[0]["items"] == runs[1]["items"]
    assert runs[0]["items"] != runs[2]["items"]
    assert runs[0]["generator"]["dataset_digest"] == "tinydigest"
    for it in runs[0]["items"]:
        assert it["recon_error"] < 0.25  # the GAN reproduces its own toy classes roughly


def test_section_picks_misclassified_first_and_compares_infill(tiny_gan, tmp_path):
    art, x, y = tiny_gan
    # The rule reads the top-left quadrant: "left" images (bright left half, y=0) come out as class 1,
    # "right" ones as class 0. Labels 1 - y make the model right everywhere except the first two images.
    model = QuadrantRule("top-left")
    labels = 1 - y[:8]
    labels[:2] = y[:2]
    ids = [f"img{i}" for i in range(8)]
    sec = run_counterfactual_section(model, x[:8], labels, ids, art, lambda t: t, tmp_path / "counterfactuals",
                                     n=4, steps=40, deletion_steps=4)
    assert sec["selection"] == {"n": 4, "misclassified": 2, "near_boundary": 2}
    chosen = sec["items"]
    assert {it["id"] for it in chosen[:2]} == {"img0", "img1"}
    assert [it["selected_as"] for it in chosen] == ["misclassified"] * 2 + ["near-boundary"] * 2
    assert [it["target"] for it in chosen[:2]] == [int(labels[int(it["id"][3:])]) for it in chosen[:2]]
    for it in chosen:
        for rel in it["pngs"].values():
            assert rel.startswith("counterfactuals/") and (tmp_path / rel).is_file()
    assert (tmp_path / sec["samples_png"]).is_file()
    infill = sec["infill"]
    assert "error" not in infill, infill
    assert set(infill["baselines"]) == {"blur", "grey", "generative-reconstruction", "generative-neutral"}
    for scores in infill["baselines"].values():
        assert 0 <= scores["deletion_auc"] <= 1 and 0 <= scores["insertion_auc"] <= 1
    assert sec["generator"]["losses_final"]["g_loss"] == art.losses[-1]["g_loss"]
