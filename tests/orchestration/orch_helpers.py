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


def audit_numbers(folder: Path) -> dict[str, Any]:
    """The parts of audit.json that describe the model and data (not when or how fast it ran)."""
    d = json.loads((Path(folder) / "audit.json").read_text())
    return {
        "model": d["model"]["digest"],
        "dataset": d["dataset"]["digest"],
        "metrics": d["metrics"],
        "per_class": d["per_class"],
        "confusion": d["confusion"],
        "calibration": d["calibration"],
        "fit": d["fit"],
        "findings": sorted((f["code"], f["severity"]) for f in d["findings"]),
        "global_importance": {m: g.get("grid") for m, g in d["global_importance"].items()},
        "explained": {m: (e["count"], len(e.get("failures", []))) for m, e in d["explanations"].items()},
        "status": d["status"],
    }


def assert_close(a: Any, b: Any, path: str = "", rel: float = 1e-4, abs_: float = 1e-6) -> None:
    """Equal structure and values; floats within float32 rounding of one another.

    Dask workers run torch with one thread, the sequential run with several:
    float sums may differ in their last bits, nothing more.
    """
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}", rel, abs_)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]", rel, abs_)
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{path}: {a} != {b}"
        assert abs(a - b) <= abs_ + rel * max(abs(a), abs(b)), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
