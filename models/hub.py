"""hf-hub:ORG/NAME models through timm and the Hugging Face cache (works offline).

timm reads the repo's config.json (architecture, num_classes, pretrained_cfg,
label_names) and weights through huggingface_hub, so the cache layout and
offline mode (HF_HUB_OFFLINE=1) are huggingface_hub's own.
"""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from torch import nn

from imaudit.errors import CheckpointError, RefError
from imaudit.io import sha256_file
from imaudit.models.loaded import model_digest

# The weight files timm looks for, in its order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")


def hf_cache_dir() -> Path | None:
    """The hub cache as the environment says now (huggingface_hub reads it only at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return None


def _offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(hf_constants.HF_HUB_OFFLINE)


def _create(repo: str, cache_dir: Path | None, **kwargs) -> nn.Module:
    ref = f"hf-hub:{repo}"
    try:
        with torch.random.fork_rng(devices=[]):  # weights are loaded; keep the global RNG untouched
            return timm.create_model(ref, pretrained=True, cache_dir=cache_dir, **kwargs).eval()
    except LocalEntryNotFoundError as exc:
        where = cache_dir or hf_constants.HF_HUB_CACHE
        mode = "the hub is offline" if _offline() else "the hub could not be reached"
        raise RefError(f"{ref} is not in the local Hugging Face cache ({where}) and {mode}") from exc
    except HfHubHTTPError as exc:
        raise RefError(f"{ref}: the Hugging Face hub refused it ({' '.join(str(exc).split())[:120]})") from exc
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise RefError(f"{ref}: its config.json names an architecture timm does not know ({exc})") from exc
        raise CheckpointError(f"{ref}: weights do not load into its architecture: {str(exc).splitlines()[0]}") from exc


def load_hub_model(repo: str, *, input_size: int | None = None) -> tuple[nn.Module, str]:
    """Create the hub model with its weights; return (module, hex sha256 of its weight file).

    For fixed-size architectures (ViTs) an explicit ``input_size`` different from
    the hub config's rebuilds the model with that ``img_size`` so timm resamples
    the position embeddings.
    """
    cache_dir = hf_cache_dir()
    module = _create(repo, cache_dir)
    cfg = module.pretrained_cfg
    if input_size is not None and cfg.get("fixed_input_size") and tuple(cfg["input_size"][1:]) != (input_size,) * 2:
        module = _create(repo, cache_dir, img_size=input_size)
    return module, _weights_digest(repo, cache_dir, module)


def _weights_digest(repo: str, cache_dir: Path | None, module: nn.Module) -> str:
    """sha256 of the cached weight file timm used; of the weights if it cannot be found."""
    repo_id, _, revision = repo.partition("@")
    for name in WEIGHT_FILES:
        found = huggingface_hub.try_to_load_from_cache(repo_id, name, cache_dir=cache_dir,
                                                       revision=revision or None)
        if isinstance(found, str):
            return sha256_file(found)
    return model_digest(module)


def hub_classes(module: nn.Module) -> list[str] | None:
    """Class names from the hub config's label_names (a list, or a dict id -> name)."""
    names = getattr(module, "pretrained_cfg", {}).get("label_names")
    if not names:
        return None
    if isinstance(names, dict):
        items = sorted((int(k), str(v)) for k, v in names.items())
        if [i for i, _ in items] != list(range(len(items))):
            return None  # ids with gaps cannot be a class list
        return [v for _, v in items]
    return [str(n) for n in names]
