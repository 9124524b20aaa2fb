"""Checkpoint files: read (torch or safetensors, bare or full), fit to an architecture, save.

A full checkpoint is a dict holding the weights under one of ``STATE_KEYS``
plus optional metadata (``META_FIELDS``). Safetensors files keep the same
metadata in their header (JSON-encoded strings).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from imaudit.errors import BadInputError, CheckpointError, RefError
from imaudit.io import sha256_file

log = logging.getLogger(__name__)

# Where training scripts put the weights, in order of preference (timm's train.py
# writes state_dict and state_dict_ema; Lightning-free loops often use model_state_dict).
STATE_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")
META_FIELDS = ("arch", "num_classes", "classes", "input_size", "history", "extra")
# Prefixes left by DataParallel/DDP ("module.") and torch.compile ("_orig_mod.").
STRIP_PREFIXES = ("module.", "_orig_mod.")
# Objects that timm's train.py pickles next to the weights and that are plain data.
SAFE_GLOBALS = [argparse.Namespace]
TRUST_ENV = "IMAUDIT_TRUST_CHECKPOINTS"


@dataclass
class Checkpoint:
    """Weights read from a file plus whatever metadata it carried."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _torch_load(path: Path) -> Any:
    """torch.load with weights_only=True; pickled code is never run unless trusted.

    A file that holds Python objects beyond tensors and plain containers is refused
    with a message naming them, unless IMAUDIT_TRUST_CHECKPOINTS=1 says the user
    trusts it (then it is loaded with weights_only=False and a warning is logged).
    """
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - classified below, always re-raised
        load_error = exc
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a torch zip file at all: report the load error
        unsafe = []
    if not unsafe:
        raise CheckpointError(f"cannot read checkpoint {path}: {_one_line(load_error)}") from load_error
    if os.environ.get(TRUST_ENV) == "1":
        log.warning("loading %s with weights_only=False (%s=1); it may run code: %s",
                    path, TRUST_ENV, ", ".join(unsafe))
        return torch.load(path, map_location="cpu", weights_only=False)
    raise CheckpointError(
        f"checkpoint {path} holds Python objects ({', '.join(unsafe[:3])}) that are not loaded "
        f"without trust; re-save its state_dict or set {TRUST_ENV}=1 if you trust the file"
    ) from load_error


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        state = safetensors.torch.load_file(path, device="cpu")
        with safetensors.safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {_one_line(exc)}") from exc
    meta: dict[str, Any] = {}
    for key in META_FIELDS:
        if key not in header:
            continue
        if key == "arch":
            meta[key] = header[key]
            continue
        try:
            meta[key] = json.loads(header[key])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"checkpoint {path}: metadata field '{key}' is not JSON") from exc
    return state, meta


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _split(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Separate weights from metadata in whatever torch.load returned."""
    if _is_state_dict(obj):
        return dict(obj), {}
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if _is_state_dict(obj.get(key)):
                meta = {k: obj[k] for k in META_FIELDS if obj.get(k) is not None}
                return dict(obj[key]), meta
        keys = ", ".join(str(k) for k in list(obj)[:8])
        raise CheckpointError(
            f"checkpoint {path} holds no state_dict (looked for {', '.join(STATE_KEYS)}; "
            f"top-level keys: {keys or 'none'})"
        )
    raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in STRIP_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def _check_meta(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """Validate metadata types so later code can trust them; name the bad field."""
    def bad(key: str, want: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: metadata field '{key}' must be {want}")

    if "arch" in meta and not isinstance(meta["arch"], str):
        raise bad("arch", "a timm architecture name")
    if "num_classes" in meta and not (isinstance(meta["num_classes"], int) and meta["num_classes"] > 0):
        raise bad("num_classes", "a positive integer")
    if "classes" in meta:
        if not (isinstance(meta["classes"], (list, tuple)) and all(isinstance(c, str) for c in meta["classes"])):
            raise bad("classes", "a list of class names")
        meta["classes"] = list(meta["classes"])
    if "input_size" in meta:
        size = meta["input_size"]
        if isinstance(size, (list, tuple)) and size:  # timm style (C, H, W): keep H
            size = size[-2] if len(size) >= 2 else size[0]
        if not (isinstance(size, int) and size > 0):
            raise bad("input_size", "a positive integer")
        meta["input_size"] = size
    if "history" in meta and not (isinstance(meta["history"], list)
                                  and all(isinstance(r, dict) for r in meta["history"])):
        raise bad("history", "a list of rows (dicts)")
    return meta


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file: torch (.pt/.pth/.bin/...) or .safetensors, bare or full."""
    path = Path(path)
    if not path.is_file():
        raise RefError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
    else:
        state, meta = _split(_torch_load(path), path)
    if not state:
        raise CheckpointError(f"checkpoint {path} holds no tensors")
    return Checkpoint(path=path, state_dict=_strip_prefixes(state), meta=_check_meta(meta, path))


def _examples(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def fit_state_dict(module: nn.Module, ckpt: Checkpoint, arch: str) -> None:
    """Load the checkpoint's weights into ``module`` or say exactly why they do not fit."""
    want = module.state_dict()
    missing = [k for k in want if k not in ckpt.state_dict]
    unexpected = [k for k in ckpt.state_dict if k not in want]
    mismatched = [
        f"{k}: checkpoint {list(ckpt.state_dict[k].shape)} vs model {list(v.shape)}"
        for k, v in want.items() if k in ckpt.state_dict and ckpt.state_dict[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {_examples(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {_examples(mismatched, 2)})")
    if problems:
        raise CheckpointError(
            f"checkpoint {ckpt.name} does not fit timm architecture {arch}: {'; '.join(problems)}"
        )
    module.load_state_dict(ckpt.state_dict, strict=True)


def _num_classes(model: nn.Module) -> int | None:
    n = getattr(model, "num_classes", None)
    return int(n) if isinstance(n, int) else None


def save_checkpoint(path: str | Path, model: nn.Module, *, arch: str, classes: list[str] | None = None,
                    input_size: int | None = None, history: list[dict] | None = None,
                    extra: dict | None = None) -> str:
    """Write the model's weights and metadata atomically; return the file's hex sha256.

    ``.safetensors`` paths get a safetensors file with the metadata in its header;
    any other suffix gets a torch file that loads with weights_only=True.
    """
    path = Path(path)
    num_classes = _num_classes(model)
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise BadInputError(f"classes: {len(classes)} names given for a model with {num_classes} outputs")
    meta: dict[str, Any] = {"arch": arch, "num_classes": num_classes, "classes": classes,
                            "input_size": input_size, "history": history, "extra": extra}
    meta = {k: v for k, v in meta.items() if v is not None}
    try:
        json.dumps(meta, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"checkpoint metadata for {path.name} is not plain data: {exc}") from exc
    # Clone so tied weights become separate tensors (safetensors refuses shared storage).
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            header = {k: (v if k == "arch" else json.dumps(v)) for k, v in meta.items()}
            safetensors.torch.save_file(state, tmp, metadata=header)
        else:
            torch.save({"state_dict": state, **meta, "imaudit_checkpoint": 1}, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return sha256_file(path)
