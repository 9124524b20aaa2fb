"""Pretrained timm weights through the Hugging Face cache (works offline).

Both ``hf-hub:ORG/NAME`` refs and pretrained ``timm:NAME[.TAG]`` refs end here:
timm resolves the weights (a hub repo's config.json, or timm's own pretrained
config naming ``timm/NAME.TAG``) and downloads them through huggingface_hub, so
the cache layout and offline mode (HF_HUB_OFFLINE=1) are huggingface_hub's own.
"""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
import timm
import torch
from timm.models import get_pretrained_cfg
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


def _create(name: str, ref: str, cache_dir: Path | None, **kwargs) -> nn.Module:
    """timm.create_model(name, pretrained=True) with its failures turned into one-line errors naming ``ref``."""
    try:
        with torch.random.fork_rng(devices=[]):  # weights are loaded; keep the global RNG untouched
            return timm.create_model(name, pretrained=True, cache_dir=cache_dir, **kwargs).eval()
    except LocalEntryNotFoundError as exc:
        where = cache_dir or hf_constants.HF_HUB_CACHE
        mode = "the hub is offline" if _offline() else "the hub could not be reached"
        random = f"; use {ref}?pretrained=false for random weights" if ref.startswith("timm:") else ""
        raise RefError(f"{ref}: weights {_weights_repo(name)} are not in the local Hugging Face cache ({where}) "
                       f"and {mode}{random}") from exc
    except HfHubHTTPError as exc:
        raise RefError(f"{ref}: the Hugging Face hub refused it ({' '.join(str(exc).split())[:120]})") from exc
    except RuntimeError as exc:
        text = str(exc)
        if "Unknown model" in text:
            raise RefError(f"{ref}: its config.json names an architecture timm does not know ({exc})") from exc
        if "Invalid pretrained" in text or "pretrained tag" in text:
            raise RefError(f"{ref}: timm has no pretrained weights for it; use {ref}?pretrained=false "
                           f"for random weights") from exc
        raise CheckpointError(f"{ref}: weights do not load into its architecture: {text.splitlines()[0]}") from exc
    except OSError as exc:  # weights hosted at a plain URL (torch hub) that cannot be fetched offline
        raise RefError(f"{ref}: cannot fetch its pretrained weights ({' '.join(str(exc).split())[:120]})") from exc


def _weights_repo(name: str) -> str:
    """The hub repo that holds the weights of a timm model name or ``hf-hub:`` name."""
    if name.startswith("hf-hub:"):
        return name[len("hf-hub:"):]
    cfg = get_pretrained_cfg(name)
    return (cfg.hf_hub_id if cfg is not None and cfg.hf_hub_id else None) or name


def load_pretrained(name: str, ref: str, *, input_size: int | None = None) -> tuple[nn.Module, str]:
    """Create a timm model with its pretrained weights; return (module, hex sha256 of the weight file).

    ``name`` is what timm.create_model takes (``resnet50.a1_in1k`` or
    ``hf-hub:ORG/NAME``). For fixed-size architectures (ViTs) an explicit
    ``input_size`` different from the config's rebuilds the model with that
    ``img_size`` so timm resamples the position embeddings.
    """
    cache_dir = hf_cache_dir()
    module = _create(name, ref, cache_dir)
    cfg = module.pretrained_cfg
    if input_size is not None and cfg.get("fixed_input_size") and tuple(cfg["input_size"][1:]) != (input_size,) * 2:
        module = _create(name, ref, cache_dir, img_size=input_size)
    repo = cfg.get("hf_hub_id") or _weights_repo(name)
    return module, _weights_digest(repo, cache_dir, module)


def load_hub_model(repo: str, *, input_size: int | None = None) -> tuple[nn.Module, str]:
    """An ``hf-hub:ORG/NAME`` model with its weights and the sha256 of its weight file."""
    return load_pretrained(f"hf-hub:{repo}", f"hf-hub:{repo}", input_size=input_size)


def _weights_digest(repo: str, cache_dir: Path | None, module: nn.Module) -> str:
    """sha256 of the cached weight file timm used; of the weights if it cannot be found."""
    repo_id, _, revision = repo.partition("@")
    for name in WEIGHT_FILES:
        found = huggingface_hub.try_to_load_from_cache(repo_id, name, cache_dir=cache_dir,
                                                       revision=revision or None)
        if isinstance(found, str):
            return sha256_file(found)
    return model_digest(module)
