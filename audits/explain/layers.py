"""Finding layers by probing a forward pass: the last spatial stage, conv stages, ViT token grids.

The probe (forward hooks on every module, one dummy forward) works for any
architecture without a per-family table of layer names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class LayerInfo:
    """One module call seen by the probe."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]  # output shape without the batch dim
    calls: int


def guess_input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) for a probe: timm's pretrained_cfg when present, else first conv's channels at 64 px."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if isinstance(cfg, dict) and cfg.get("input_size"):
        c, h, w = cfg["input_size"]
        return int(c), int(h), int(w)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels, 64, 64
    return 3, 64, 64


def probe_layers(model: nn.Module, input_shape: Sequence[int]) -> list[LayerInfo]:
    """Every submodule with a tensor output, in the order their forward finished."""
    order: dict[str, LayerInfo] = {}
    handles = []

    def hook(name: str):
        def fn(mod: nn.Module, _inp: object, out: object) -> None:
            if not isinstance(out, Tensor):
                return
            info = order.pop(name, None)
            calls = info.calls + 1 if info else 1
            order[name] = LayerInfo(name, mod, tuple(out.shape[1:]), calls)  # re-insert: last call wins order

        return fn

    for name, mod in model.named_modules():
        if name:
            handles.append(mod.register_forward_hook(hook(name)))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return list(order.values())


def spatial_layers(infos: list[LayerInfo], input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
    """Modules called once whose output is a (C, h, w) map with h, w > 1.

    With ``input_shape`` also the same down-sampling factor along both axes
    (within 25%), which keeps conv stages and drops look-alikes such as
    attention tensors (heads, tokens, head_dim).
    """
    out = []
    for i in infos:
        if len(i.shape) != 3 or i.shape[1] <= 1 or i.shape[2] <= 1 or i.calls != 1:
            continue
        if input_shape is not None:
            fy, fx = input_shape[-2] / i.shape[1], input_shape[-1] / i.shape[2]
            if fy < 1 or fx < 1 or max(fy, fx) / min(fy, fx) > 1.25:
                continue
        out.append(i)
    return out


@dataclass
class CamLayer:
    """Where Grad-CAM looks: a spatial module, or a token module with its grid geometry."""

    info: LayerInfo
    prefix: int = 0
    grid: tuple[int, int] | None = None  # set for token layers


def gradcam_layer(model: nn.Module, input_shape: Sequence[int]) -> CamLayer | None:
    """The last spatial stage, or for transformers (whose token blocks run after the patch-embedding
    conv) the token layer; None when the model has neither."""
    infos = probe_layers(model, input_shape)
    position = {id(i.module): k for k, i in enumerate(infos)}
    spatial = spatial_layers(infos, input_shape)
    tokens = _token_layer(model, infos)
    if tokens is not None and (not spatial or position[id(tokens.info.module)] > position[id(spatial[-1].module)]):
        return tokens
    return CamLayer(spatial[-1]) if spatial else None


def last_spatial_layer(model: nn.Module, input_shape: Sequence[int]) -> LayerInfo | None:
    """The last spatial stage (Grad-CAM's usual layer for CNNs), or None if the model has none."""
    found = spatial_layers(probe_layers(model, input_shape), input_shape)
    return found[-1] if found else None


def _token_layer(model: nn.Module, infos: list[LayerInfo]) -> CamLayer | None:
    """For transformer models: the token module Grad-CAM should use, with prefix count and grid.

    timm ViTs pool the class token, whose final value depends on patch tokens
    only through the last block's attention; so the layer is the last block's
    ``norm1`` output (as pytorch-grad-cam recommends), else the last module
    with a (T, D) output whose patch tokens form a square grid.
    """
    prefix = int(getattr(model, "num_prefix_tokens", 1 if hasattr(model, "cls_token") else 0))
    tokens = [i for i in infos if len(i.shape) == 2 and i.calls == 1]
    by_module = {id(i.module): i for i in tokens}
    blocks = getattr(model, "blocks", None)
    preferred = None
    if isinstance(blocks, nn.Sequential | nn.ModuleList) and len(blocks) and hasattr(blocks[-1], "norm1"):
        preferred = by_module.get(id(blocks[-1].norm1))
    for info in ([preferred] if preferred else []) + tokens[::-1]:
        side = math.isqrt(max(0, info.shape[0] - prefix))
        if side > 1 and side * side == info.shape[0] - prefix:
            return CamLayer(info, prefix, (side, side))
    return None


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """All Conv2d modules with their names, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


class TokenGrid(nn.Module):
    """Identity on a (N, D, h, w) token grid: the layer Captum hooks for ViT Grad-CAM."""

    def forward(self, grid: Tensor) -> Tensor:
        return grid


class TokenGridHook:
    """Routes a token module's output through a ``TokenGrid`` as (N, D, h, w).

    Equivalent to pytorch-grad-cam's reshape_transform, but done inside the
    forward pass so Captum's LayerGradCam sees a spatial layer and gets its
    gradients: tokens (N, T, D) -> drop ``prefix`` tokens -> grid -> back.
    """

    def __init__(self, module: nn.Module, prefix: int, grid: tuple[int, int]) -> None:
        self.module, self.prefix, self.grid = module, prefix, grid
        self.layer = TokenGrid()
        self._handle = None

    def __enter__(self) -> "TokenGridHook":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, _mod: nn.Module, _inp: object, out: Tensor) -> Tensor:
        n, _t, d = out.shape
        head, tokens = out[:, : self.prefix], out[:, self.prefix :]
        grid = tokens.transpose(1, 2).reshape(n, d, *self.grid)
        grid = self.layer(grid)
        return torch.cat([head, grid.reshape(n, d, -1).transpose(1, 2)], dim=1)
