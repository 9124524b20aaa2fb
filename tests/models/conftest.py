"""Tiny checkpoints for the model-source tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from model_helpers import tiny_model

from imaudit.models import save_checkpoint


@pytest.fixture
def make_checkpoint(tmp_path: Path) -> Callable[..., tuple[Path, torch.nn.Module, str]]:
    """Factory: save a tiny model as a full checkpoint; returns (path, module, sha256)."""

    def make(name: str = "model.pt", arch: str = "test_resnet", num_classes: int = 3, seed: int = 1,
             **meta) -> tuple[Path, torch.nn.Module, str]:
        module = tiny_model(arch, num_classes, seed)
        path = tmp_path / name
        digest = save_checkpoint(path, module, arch=arch, **meta)
        return path, module, digest

    return make
