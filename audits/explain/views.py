"""Layer activation views (feature maps of chosen layers) and first-layer filter views, as small PNGs."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from imaudit.audits.explain.base import frozen
from imaudit.audits.explain.layers import conv_layers, probe_layers, spatial_layers
from imaudit.errors import BadInputError
from imaudit.io import atomic_write_bytes


def _unit(a: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (a constant array becomes zeros)."""
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a, dtype=np.float32)


def tile(tiles: list[np.ndarray], pad: int = 1) -> np.ndarray:
    """Arrange equal-sized (h, w[, 3]) tiles in a near-square grid with ``pad`` pixel gaps."""
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    h, w = tiles[0].shape[:2]
    grid = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad, *tiles[0].shape[2:]), dtype=np.float32)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = t
    return grid


def _save_png(rgb01: np.ndarray, path: Path, min_side: int = 96, max_side: int = 256) -> None:
    img = Image.fromarray((np.clip(rgb01, 0, 1) * 255).astype(np.uint8))
    side = max(img.size)
    scale = max(1, min_side // max(1, side)) if side < min_side else min(1.0, max_side / side)
    if scale != 1:
        img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.NEAREST)
    buf = io.BytesIO()
    # A 64-colour palette keeps noisy feature-map grids at a few KB.
    img.quantize(colors=64).save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())


def default_view_layers(model: nn.Module, input_shape: tuple[int, ...], count: int = 3) -> list[str]:
    """``count`` evenly spaced spatial stages (first, middle, last).

    Stages are the ones timm models declare in ``feature_info`` (e.g. resnet's
    act1, layer1..layer4) when they give spatial maps; otherwise the conv layers.
    """
    spatial = [i.name for i in spatial_layers(probe_layers(model, input_shape), input_shape)]
    info = getattr(model, "feature_info", None)
    declared = [f.get("module") for f in info if isinstance(f, dict)] if isinstance(info, list) else []
    stages = [name for name in declared if name in spatial]
    if not stages:
        convs = {n for n, _ in conv_layers(model)}
        stages = [name for name in spatial if name in convs]
    if not stages:
        return []
    picks = np.unique(np.linspace(0, len(stages) - 1, num=min(count, len(stages))).round().astype(int))
    return [stages[i] for i in picks]


def layer_views(
    model: nn.Module, image: Tensor, out_dir: Path, layers: list[str] | None = None, max_channels: int = 16
) -> dict[str, Any]:
    """Feature-map grids of a few layers for one normalised image, and the first conv layer's filters.

    Returns {"activations": [{"layer", "png", "shape"}], "filters": {"layer", "png", "shape"} | None};
    png names are relative to ``out_dir``. Channels shown: the ``max_channels``
    most active (highest mean activation), each scaled to its own range.
    """
    out_dir = Path(out_dir)
    x = image.detach().float().cpu()
    x = x[None] if x.dim() == 3 else x[:1]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    names = layers if layers is not None else default_view_layers(model, tuple(x.shape[1:]))
    modules = {}
    for name in names:
        try:
            modules[name] = model.get_submodule(name)
        except AttributeError:
            raise BadInputError(f"layers: no module named {name!r}") from None
    captured: dict[str, Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, n=n: captured.__setitem__(n, out.detach().float().cpu()))
        for n, m in modules.items()
    ]
    try:
        with frozen(model), torch.no_grad():
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()

    cmap = matplotlib.colormaps["viridis"]
    activations = []
    for i, name in enumerate(names):
        act = captured.get(name)
        if act is None or act.dim() != 4:
            continue
        fmap = act[0].numpy()
        top = np.argsort(-fmap.mean(axis=(1, 2)))[:max_channels]
        grid = tile([cmap(_unit(fmap[c]))[..., :3] for c in sorted(top)])
        rel = f"layer-{i:02d}-{name.replace('.', '_')}.png"
        _save_png(grid, out_dir / rel)
        activations.append({"layer": name, "png": rel, "shape": list(fmap.shape)})

    filters = None
    convs = conv_layers(model)
    if convs:
        name, conv = convs[0]
        w = conv.weight.detach().float().cpu().numpy()[:max_channels * 4]  # (out, in, k, k)
        if w.shape[1] == 3:
            tiles = [_unit(k.transpose(1, 2, 0)) for k in w]  # RGB kernels read as colour patches
        else:
            tiles = [cmap(_unit(k.mean(axis=0)))[..., :3] for k in w]
        rel = "filters-" + name.replace(".", "_") + ".png"
        _save_png(tile(tiles), out_dir / rel)
        filters = {"layer": name, "png": rel, "shape": list(conv.weight.shape)}
    return {"activations": activations, "filters": filters}
