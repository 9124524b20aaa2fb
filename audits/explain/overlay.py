"""Heatmap-over-image PNGs for the report gallery, and images back in pixel space."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from imaudit.io import atomic_write_bytes


def denormalize(images: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """Normalised (N,C,H,W) tensor -> uint8 (N,H,W,3) pictures (1 channel repeated, extra channels dropped)."""
    x = images.detach().float().cpu()
    c = x.shape[1]
    m = torch.as_tensor(mean if mean is not None else [0.0] * c, dtype=torch.float32).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std if std is not None else [1.0] * c, dtype=torch.float32).reshape(1, -1, 1, 1)
    pix = (x * s + m).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if c == 1:
        pix = np.repeat(pix, 3, axis=-1)
    return np.ascontiguousarray(pix[..., :3])


def safe_name(image_id: str) -> str:
    """A file-name-safe, collision-free stem for an image id (ids may hold slashes)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id)[-40:].strip("._") or "img"
    return f"{stem}-{hashlib.sha1(image_id.encode()).hexdigest()[:8]}"


def heatmap_overlay(image: np.ndarray, attribution: np.ndarray, size: int = 96, alpha: float = 0.5) -> Image.Image:
    """|attribution| scaled to its 99th percentile, coloured (inferno) and alpha-blended over ``image``."""
    mag = np.abs(np.nan_to_num(attribution.astype(np.float32)))
    top = float(np.percentile(mag, 99)) if mag.size else 0.0
    mag = np.clip(mag / top, 0, 1) if top > 0 else np.zeros_like(mag)
    heat = (matplotlib.colormaps["inferno"](mag)[..., :3] * 255).astype(np.uint8)
    base = Image.fromarray(image).convert("RGB").resize((size, size), Image.BILINEAR)
    heat_img = Image.fromarray(heat).resize((size, size), Image.BILINEAR)
    return Image.blend(base, heat_img, alpha)


def render_overlays(
    images_uint8: np.ndarray, maps: np.ndarray, ids: list[str], out_dir: Path, method: str, size: int = 96
) -> dict[str, str]:
    """One small PNG per image (heatmap over image) in ``out_dir``; returns id -> file name relative to it."""
    out_dir = Path(out_dir)
    if not (len(images_uint8) == len(maps) == len(ids)):
        raise ValueError(f"render_overlays: {len(images_uint8)} images, {len(maps)} maps, {len(ids)} ids")
    method_stem = re.sub(r"[^A-Za-z0-9_-]+", "_", method)
    written: dict[str, str] = {}
    for image, attr, image_id in zip(images_uint8, maps, ids):
        rel = f"{method_stem}-{safe_name(str(image_id))}.png"
        buf = io.BytesIO()
        # A 128-colour palette halves the bytes with no visible loss at gallery size.
        heatmap_overlay(image, attr, size).quantize(colors=128).save(buf, format="PNG", optimize=True)
        atomic_write_bytes(out_dir / rel, buf.getvalue())
        written[str(image_id)] = rel
    return written
