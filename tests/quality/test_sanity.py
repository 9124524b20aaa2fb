"""Model-parameter randomisation sanity check: maps that follow the weights change, others do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from imaudit.audits.quality import randomisation_sanity
from imaudit.audits.quality.sanity import layer_order, randomise_top_layers


def _linear_model() -> nn.Module:
    """A linear classifier whose class-0 weights pick out the top-left quadrant of a 16x16 image."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with torch.no_grad():
        w = torch.zeros(3, 16, 16)
        w[:, :8, :8] = torch.linspace(1, 2, 64).reshape(8, 8)
        model[1].weight.zero_()
        model[1].weight[0] = w.flatten()
    return model.eval()


def gradient_map(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """|d logit_target / d x| summed over channels: for a linear model, the target's weights."""
    x = images.clone().requires_grad_(True)
    model(x).gather(1, targets.long()[:, None]).sum().backward()
    return x.grad.abs().sum(1).numpy()


def image_only_map(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """A 'method' that ignores the model (an edge detector): exactly what the check must catch."""
    return images.diff(dim=-1, append=images[..., -1:]).abs().sum(1).numpy()


def test_model_dependent_maps_pass_and_model_independent_maps_fail():
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = torch.zeros(6)
    model = _linear_model()
    good = randomisation_sanity(model, images, targets, gradient_map, layers=1)
    bad = randomisation_sanity(model, images, targets, image_only_map, layers=1)
    assert good["passed"] is True and good["rank_corr"] < 0.5
    assert bad["passed"] is False and bad["rank_corr"] > 0.99 and bad["ssim"] > 0.99
    assert good["layers"] == ["1"] and good["count"] == 6


def test_randomisation_works_on_a_copy_in_execution_order():
    class Backwards(nn.Module):
        """Defines the head before the stem, so definition order is not data-flow order."""

        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(8, 2)
            self.stem = nn.Conv2d(3, 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.stem(x).mean(dim=(2, 3)))

    model = Backwards()
    x = torch.rand(1, 3, 8, 8)
    assert layer_order(model, x) == ["stem", "head"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clone, chosen = randomise_top_layers(model, x, layers=1, seed=3)
    assert chosen == ["head"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(clone.head.weight, model.head.weight)
    assert torch.equal(clone.stem.weight, model.stem.weight)


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()


def test_cascade_randomises_block_by_block_from_the_top_and_judges_at_stated_depths():
    from imaudit.audits.quality.sanity import cascading_sanity, model_blocks

    model = _small_cnn()
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = torch.zeros(6)
    blocks = model_blocks(model, images[:1])
    assert blocks == [["0"], ["1"], ["3"], ["7"]]  # weighted and norm layers, in execution order
    good = cascading_sanity(model, images, targets, gradient_map, judge_at=(0.5, 1.0))
    bad = cascading_sanity(model, images, targets, image_only_map, judge_at=(0.5, 1.0))
    assert [row["depth"] for row in good["curve"]] == [1, 2, 3, 4]
    assert [row["block"] for row in good["curve"]] == ["7", "3", "1", "0"]  # from the logits down
    assert [j["depth"] for j in good["judged"]] == [2, 4]
    assert good["passed"] is True and bad["passed"] is False
    assert all(row["rank_corr"] > 0.99 for row in bad["curve"])
    before = [p.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the model itself is untouched


def test_one_scratch_copy_shared_by_cascades_gives_each_the_trained_model_to_start_from():
    from imaudit.audits.quality.sanity import ScratchCopy, cascading_sanity, model_blocks

    model = _small_cnn()
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = torch.zeros(6)
    blocks = model_blocks(model, images[:1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    alone = cascading_sanity(model, images, targets, gradient_map, judge_at=(0.5, 1.0))
    scratch = ScratchCopy(model)
    first = cascading_sanity(model, images, targets, gradient_map, judge_at=(0.5, 1.0), blocks=blocks, scratch=scratch)
    # The first cascade left every block of the copy randomised (BatchNorm statistics too); a second
    # method's cascade must still start from the trained weights: the same curve as a fresh copy's.
    assert any(not torch.equal(before[k], v) for k, v in scratch.copy.state_dict().items())
    second = cascading_sanity(model, images, targets, gradient_map, judge_at=(0.5, 1.0), blocks=blocks, scratch=scratch)
    for run in (first, second):
        assert [(r["rank_corr"], r["ssim"]) for r in run["curve"]] == [(r["rank_corr"], r["ssim"]) for r in alone["curve"]]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model itself is untouched
    with pytest.raises(ValueError, match="another model"):
        cascading_sanity(_small_cnn(), images, targets, gradient_map, scratch=scratch)


def test_timm_blocks_come_from_its_group_matcher():
    import timm

    from imaudit.audits.quality.sanity import model_blocks

    model = timm.create_model("test_resnet", num_classes=3).eval()
    blocks = model_blocks(model, torch.zeros(1, 3, 32, 32))
    assert blocks[0][0].startswith("conv1") and blocks[-1] == ["fc"] and len(blocks) == 6
    assert any(name.endswith("bn1") for name in blocks[1])  # norm layers are randomised too


def test_vanished_randomised_maps_are_reported_not_scored_as_zero_correlation():
    from imaudit.audits.quality.sanity import cascading_sanity

    model = _small_cnn()
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    trained = gradient_map(model, images, torch.zeros(4))

    def vanishing(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        return trained if m is model else np.zeros_like(trained)  # every randomised map comes out all zero

    r = cascading_sanity(model, images, torch.zeros(4), vanishing, original_maps=trained, judge_at=(1.0,))
    row = r["judged"][0]
    assert row["vanished"] == 4 and row["scored"] == 0 and row["rank_corr"] is None
    assert row["passed"] is None and "all zero" in row["inconclusive"] and r["passed"] is None


def test_blocks_of_a_wrapped_model_are_its_inner_models_named_from_the_wrapper():
    import timm

    from imaudit.audits.classmap import RestrictedHead
    from imaudit.audits.quality.sanity import model_blocks

    inner = timm.create_model("test_resnet", num_classes=5).eval()
    wrapped = RestrictedHead(inner, [4, 0, 2])
    blocks = model_blocks(wrapped, torch.zeros(1, 3, 32, 32))
    assert blocks == [[f"inner.{m}" for m in b] for b in model_blocks(inner, torch.zeros(1, 3, 32, 32))]
    names = dict(wrapped.named_modules())
    assert all(m in names for b in blocks for m in b)


def test_batched_ssim_is_skimages_ssim_pair_by_pair():
    from skimage.metrics import structural_similarity

    from imaudit.audits.quality.sanity import ssim_batch

    rng = np.random.default_rng(0)
    for shape in [(5, 16, 16), (3, 5, 9), (2, 40, 33)]:  # 7x7 windows; a 5x5 window (5 rows); odd sizes
        a = rng.normal(size=shape)
        b = a + rng.normal(scale=0.5, size=shape)
        b[0] = 0.0  # a randomised map gone all zero
        win = min(7, *shape[1:])
        win = win if win % 2 else win - 1

        def scaled(m: np.ndarray) -> np.ndarray:
            return np.abs(m) / max(float(np.abs(m).max()), 1e-12)

        expected = [structural_similarity(scaled(x), scaled(y), data_range=1.0, win_size=win) for x, y in zip(a, b)]
        np.testing.assert_allclose(ssim_batch(a, b), expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ssim_batch(a, a), 1.0)  # identical maps
    assert np.isnan(ssim_batch(np.ones((2, 2, 2)), np.ones((2, 2, 2)))).all()  # no 3x3 window fits: undefined
    assert ssim_batch(np.zeros((0, 8, 8)), np.zeros((0, 8, 8))).shape == (0,)
