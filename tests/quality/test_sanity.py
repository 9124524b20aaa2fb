"""Model-parameter randomisation sanity check: maps that follow the weights change, others do not."""

from __future__ import annotations

import numpy as np
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
