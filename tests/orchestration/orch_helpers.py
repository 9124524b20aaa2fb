"""Shared bits of the orchestration tests: a tiny released-able model, fast audit settings,
and the numbers of an audit.json that must not depend on how the audit ran."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASET = "builtin:shapes?n=48&size=32"
ARCH = "test_resnet"
CLASSES = ["circle", "square", "triangle"]

# A quick audit: one gradient method on four images, light quality checks.
FAST: dict[str, Any] = {
    "methods": ["saliency"],
    "samples": 4,
    "device": "cpu",
    "quality": {"deletion_steps": 4, "sanity_images": 2, "strategies": False},
}


def tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """An untrained test_resnet (3 classes, 32 px) saved as a checkpoint; ``seed`` picks its weights."""
    import torch

    from imaudit.models import load_model, save_checkpoint

    torch.manual_seed(seed)
    lm = load_model(f"timm:{ARCH}?pretrained=false", num_classes=len(CLASSES), input_size=32)
    with torch.no_grad():
        for p in lm.module.parameters():
            p.add_(torch.randn_like(p) * 0.01 * seed)
    path = Path(folder) / f"tiny-{seed}.pt"
    save_checkpoint(path, lm.module, arch=ARCH, classes=CLASSES, input_size=32)
    return path


def same_numbers(a: Path, b: Path, rel: float = 0.0, ignore: frozenset[str] = frozenset()) -> list[str]:
    """Every number (and string) of two audits' audit.json that differs, run details aside.

    scripts/same_numbers.py, the check a refactor runs on the demo audit. ``rel``
    0 asks for identical numbers; Dask workers run torch with one thread and the
    sequential run with several, so their float sums may differ in the last bits
    (rel 1e-4 then).
    """
    return _script.differences(_script.load(a), _script.load(b), rel=rel, abs_=1e-6 if rel else 0.0, ignore=ignore)


def _load_script():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "same_numbers.py"
    spec = importlib.util.spec_from_file_location("same_numbers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_script = _load_script()
