"""LoadedModel: a ready-to-audit module with its identity and preprocessing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import timm.data
import torch
from torch import nn

if TYPE_CHECKING:
    from imaudit.models.labels import LabelSet
    from imaudit.models.registry import ReleaseManifest


@dataclass
class LoadedModel:
    """A model in eval mode on the CPU, plus what an audit needs to know about it.

    ``digest`` is the hex sha256 of the checkpoint file the weights came from
    (for random timm weights: of the seeded state_dict, see ``model_digest``),
    so two audits of the same weights can be recognised and cached.
    ``labels`` says what each output is called (names, WordNet ids, synonyms)
    when the weights say so; audits match dataset classes against it.
    """

    module: nn.Module
    ref: str
    arch: str
    digest: str
    num_classes: int
    classes: list[str] | None
    data_config: dict
    release: ReleaseManifest | None = None
    history: list[dict] | None = None
    labels: LabelSet | None = None
    origin: dict | None = None  # where a registry source found it (e.g. MLflow name, version, aliases, run)

    def transform(self, is_training: bool = False) -> Callable:
        """timm's preprocessing for this model (PIL image -> normalised tensor)."""
        return timm.data.create_transform(**self.data_config, is_training=is_training)

    @property
    def params(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.module.parameters())


def model_digest(module: nn.Module) -> str:
    """Hex sha256 over the module's state_dict (names, dtypes, shapes and bytes).

    Written by hand rather than hashing ``safetensors.torch.save`` output because
    safetensors refuses tied (shared) and non-contiguous tensors.
    """
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        # Viewing as bytes works for every dtype, bfloat16 included (numpy has none).
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
