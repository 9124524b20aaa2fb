"""The model's input space: the exact images a model sees, as pixels in [0, 1].

A generator used to explain a model has to draw the images the model is fed:
the same resize, crop and size as the model's timm eval transform. A generator
trained on plainly resized images puts every detail a few pixels off and at
another scale after the model's crop, so its reconstructions and
counterfactuals would not line up with the audited images.

``InputSpace`` holds the geometric part of a timm data config (input size,
interpolation, crop_pct, crop_mode) plus the normalisation, and builds the
transform with timm itself: ``pixel_transform`` is timm's eval transform with
mean 0 and std 1, so it gives the denormalised model input exactly (no float
round trip through normalise/denormalise).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import timm.data
import torch
from torch import Tensor

from imaudit.errors import BadInputError

MAX_DEFAULT_GENERATOR_SIZE = 64  # larger inputs get a 64 px generator whose output is resized to the input


@dataclass(frozen=True)
class InputSpace:
    """Geometry and normalisation of a model's eval transform (from its timm data config)."""

    height: int
    width: int
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    crop_mode: str = "center"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    @classmethod
    def from_data_config(cls, cfg: Mapping[str, Any]) -> "InputSpace":
        """The space of a timm data config (``resolve_model_data_config`` output, as LoadedModel holds it)."""
        try:
            _, h, w = (int(v) for v in cfg["input_size"])
        except (KeyError, TypeError, ValueError):
            raise BadInputError(f"data config: 'input_size' must be (C, H, W), got {cfg.get('input_size')!r}") from None
        return cls(
            height=h,
            width=w,
            interpolation=str(cfg.get("interpolation") or "bilinear"),
            crop_pct=float(cfg.get("crop_pct") or timm.data.DEFAULT_CROP_PCT),
            crop_mode=str(cfg.get("crop_mode") or "center"),
            mean=tuple(float(v) for v in cfg.get("mean", timm.data.IMAGENET_DEFAULT_MEAN)),
            std=tuple(float(v) for v in cfg.get("std", timm.data.IMAGENET_DEFAULT_STD)),
        )

    def geometry(self) -> dict[str, Any]:
        """What decides which pixels the model sees (normalisation excluded: generators work in pixels)."""
        return {
            "input_size": [self.height, self.width],
            "interpolation": self.interpolation,
            "crop_pct": round(self.crop_pct, 6),
            "crop_mode": self.crop_mode,
        }

    def key(self) -> str:
        """A short id of the geometry: generators trained in the same space share it."""
        blob = json.dumps(self.geometry(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def describe(self) -> str:
        """One line for people: '32x32, bilinear, crop_pct 0.95 (center)'."""
        return f"{self.height}x{self.width}, {self.interpolation}, crop_pct {self.crop_pct:g} ({self.crop_mode})"

    def pixel_transform(self) -> Callable:
        """timm's eval transform for this space without normalisation: PIL image -> pixels (C,H,W) in [0, 1]."""
        return timm.data.create_transform(
            input_size=(3, self.height, self.width),
            interpolation=self.interpolation,
            crop_pct=self.crop_pct,
            crop_mode=self.crop_mode,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            is_training=False,
        )

    def normalize(self, pixels: Tensor) -> Tensor:
        """Pixels in [0, 1] -> model input (the transform's Normalize step)."""
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        return (pixels - mean) / std

    def to_pixels(self, inputs: Tensor) -> Tensor:
        """Model input -> pixels in [0, 1] (inverse of ``normalize``)."""
        mean = torch.tensor(self.mean, dtype=inputs.dtype, device=inputs.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=inputs.dtype, device=inputs.device).view(1, -1, 1, 1)
        return (inputs * std + mean).clamp(0, 1)

    def default_generator_size(self) -> int:
        """The largest power of two <= the input side, capped at MAX_DEFAULT_GENERATOR_SIZE (at least 8)."""
        side = min(self.height, self.width, MAX_DEFAULT_GENERATOR_SIZE)
        size = 8
        while size * 2 <= side:
            size *= 2
        return size


def same_geometry(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Whether two recorded geometries (``InputSpace.geometry()`` dicts) describe the same pixels."""
    if not a or not b:
        return False
    return json.dumps(dict(a), sort_keys=True) == json.dumps(dict(b), sort_keys=True)
