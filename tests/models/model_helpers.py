"""Helpers shared by the model-source tests (a unique module name, unlike conftest)."""

from __future__ import annotations

import timm
import torch


def tiny_model(arch: str = "test_resnet", num_classes: int = 3, seed: int = 1, **kwargs) -> torch.nn.Module:
    """A timm test model with weights drawn from ``seed`` (different seeds, different weights)."""
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs).eval()


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: int = 32) -> bool:
    """Whether two models give the same logits on a fixed random batch."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-6)
