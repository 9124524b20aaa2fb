"""Helpers shared by the model-source tests (a unique module name, unlike conftest)."""

from __future__ import annotations

import shutil
from pathlib import Path

import timm
import torch
from timm.models import save_for_hf


def tiny_model(arch: str = "test_resnet", num_classes: int = 3, seed: int = 1, **kwargs) -> torch.nn.Module:
    """A timm test model with weights drawn from ``seed`` (different seeds, different weights)."""
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs).eval()


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: int = 32) -> bool:
    """Whether two models give the same logits on a fixed random batch."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-6)


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_repo(cache: Path, repo: str, module, labels: list[str] | None) -> Path:
    """Write ``module`` into the HF cache under ``repo`` as the hub serves it; return the weights file.

    timm's own save_for_hf writes config.json (architecture, num_classes,
    pretrained_cfg, label_names) and model.safetensors, laid out as
    huggingface_hub caches them: models--ORG--NAME/snapshots/<commit>/ and refs/main.
    """
    export = cache.parent / f"export-{repo.replace('/', '--')}"
    save_for_hf(module, export, model_config={"label_names": labels} if labels else None, safe_serialization=True)
    org, name = repo.split("/")
    folder = cache / f"models--{org}--{name}"
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for file in ("config.json", "model.safetensors"):
        shutil.copyfile(export / file, snapshot / file)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return snapshot / "model.safetensors"
