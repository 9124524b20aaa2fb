"""timm architectures by name: checked names, seeded creation, classifier lookup, data config."""

from __future__ import annotations

import difflib
from typing import Any

import timm
import timm.data
import torch
from timm.models import get_pretrained_cfg
from torch import nn

from imaudit.errors import RefError

SEED = 0


def check_arch(name: str, context: str = "") -> str:
    """Return ``name`` if timm knows it, else raise RefError suggesting close names.

    ``context`` says where the name came from, e.g. " (named by checkpoint x.pt)".
    """
    if name and timm.is_model(name):
        return name
    known = timm.list_models()
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    # A wildcard catches names that difflib ranks low, e.g. "resnet" -> resnet18.
    close += [m for m in timm.list_models(f"*{name}*")[:5] if m not in close]
    hint = f"; did you mean {', '.join(close[:5])}?" if close else "; see timm.list_models()"
    raise RefError(f"unknown timm architecture '{name}'{context}{hint}")


def is_fixed_input_size(arch: str) -> bool:
    """Whether the architecture bakes its input size in (ViTs: position embeddings)."""
    cfg = get_pretrained_cfg(arch)
    return bool(cfg and cfg.fixed_input_size)


def create_arch(arch: str, *, num_classes: int | None = None, input_size: int | None = None,
                **kwargs: Any) -> nn.Module:
    """timm.create_model with random weights seeded deterministically, in eval mode.

    The seed is set inside a forked RNG state, so the caller's global RNG stream
    is untouched. For fixed-size architectures the input size is passed on as
    ``img_size`` so the position embeddings match images of that size.
    """
    check_arch(arch)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if input_size is not None and is_fixed_input_size(arch):
        kwargs["img_size"] = input_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        module = timm.create_model(arch, pretrained=False, **kwargs)
    return module.eval()


def classifier_key(arch: str) -> str | None:
    """State-dict key of the classifier weight (its first dim is the class count)."""
    cfg = get_pretrained_cfg(arch)
    classifier = cfg.classifier if cfg else None
    if isinstance(classifier, (tuple, list)):  # distilled models have two heads
        classifier = classifier[0]
    return f"{classifier}.weight" if classifier else None


def data_config(module: nn.Module, input_size: int | None) -> dict:
    """timm's resolved data config, with the input size overridden when one is known.

    Mean, std, interpolation and crop_pct stay as timm resolves them.
    """
    cfg = dict(timm.data.resolve_model_data_config(module))
    if input_size is not None:
        channels = cfg.get("input_size", (3,))[0]
        cfg["input_size"] = (channels, int(input_size), int(input_size))
    return cfg
