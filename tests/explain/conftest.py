"""Tiny models with known right answers for the explanation tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

SIZE = 32
CLASSES = 3

# Small settings so every method runs in well under a second per image on CPU.
FAST = {
    # compactness 100: near-square superpixels, so the quadrant boundary is not smeared by big segments
    "lime": {"num_samples": 150, "compactness": 100.0},
    "shap": {"max_evals": 150},
    "ig": {"n_steps": 16},
    "shap-gradient": {"nsamples": 24, "background_size": 8},
}


class QuadrantNet(nn.Module):
    """Logits depend only on the top-left quadrant: a bias-free conv over x * mask, ReLU, mean pool, linear.

    Bias-free so the activations outside the quadrant are exactly zero, which
    also keeps Grad-CAM's answer in the quadrant.
    """

    def __init__(self, channels: int = 3, size: int = SIZE, classes: int = CLASSES) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        mask = torch.zeros(1, 1, size, size)
        mask[..., : size // 2, : size // 2] = 1
        self.register_buffer("mask", mask)
        self.conv = nn.Conv2d(channels, 8, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g))
            self.fc.bias.copy_(torch.randn(self.fc.bias.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.conv(x * self.mask))).flatten(1))


class ConstantNet(QuadrantNet):
    """Same layers, but the logits ignore the input (value-wise; the graph still reaches it)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 0 + self.bias


class FailingNet(QuadrantNet):
    """Raises for any input whose pixel (0, 0, 0) is above 1000: the marker of a 'bad' image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0, 0, 0] > 1000).any()):
            raise ValueError("marked image")
        return super().forward(x)


class SmallMemoryNet(QuadrantNet):
    """Raises an out-of-memory error for batches larger than ``limit`` (what a full GPU does)."""

    limit = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory: batch of {len(x)}")
        return super().forward(x)


class LinearNet(nn.Module):
    def __init__(self, channels: int = 3, size: int = SIZE, classes: int = CLASSES) -> None:
        super().__init__()
        self.fc = nn.Linear(channels * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class MLP(nn.Module):
    def __init__(self, channels: int = 3, size: int = SIZE, classes: int = CLASSES) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_images(n: int = 4, channels: int = 3, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """Smooth random images (noise upsampled) so superpixels and blurs behave like on photos."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, channels, size // 4, size // 4, generator=g)
    return nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


def quadrant_share(maps) -> torch.Tensor:
    m = torch.as_tensor(maps).abs()
    h, w = m.shape[-2:]
    return m[:, : h // 2, : w // 2].sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp_min(1e-12)


@pytest.fixture(scope="module")
def quadrant_model() -> QuadrantNet:
    torch.manual_seed(0)
    return QuadrantNet()
