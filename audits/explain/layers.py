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
    passthrough: bool = False  # returns its input unchanged (Identity, DropPath in eval): nothing to explain


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
            # By type, not by ``out is input``: an in-place ReLU returns its input object too.
            passthrough = isinstance(mod, nn.Identity) or type(mod).__name__ in PASSTHROUGH_TYPES
            # re-insert: last call wins order
            order[name] = LayerInfo(name, mod, tuple(out.shape[1:]), calls, passthrough)

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


# Modules that hand their input on unchanged in eval mode: hooking one explains nothing of its
# own and, for DropPath, sits on a residual branch, not the trunk (Swin's last module is drop_path2).
PASSTHROUGH_TYPES = ("Identity", "DropPath", "DropBlock2d", "Dropout", "Dropout2d")


def _grid_factor_ok(hw: tuple[int, int], input_shape: Sequence[int] | None) -> bool:
    """Both axes down-sampled by the same factor (within 25 %), as a conv stage is."""
    if hw[0] <= 1 or hw[1] <= 1:
        return False
    if input_shape is None:
        return True
    fy, fx = input_shape[-2] / hw[0], input_shape[-1] / hw[1]
    return fy >= 1 and fx >= 1 and max(fy, fx) / min(fy, fx) <= 1.25


def layout_of(info: LayerInfo, input_shape: Sequence[int] | None = None) -> str | None:
    """"nchw" for a (C, h, w) map, "nhwc" for a channels-last (h, w, C) map (Swin, MambaOut stages), else None.

    Channels-last is recognised when (h, w) follow the input's down-sampling and
    the (C, h, w) reading does not.
    """
    if len(info.shape) != 3:
        return None
    if _grid_factor_ok((info.shape[1], info.shape[2]), input_shape):
        return "nchw"
    if input_shape is not None and _grid_factor_ok((info.shape[0], info.shape[1]), input_shape):
        return "nhwc"
    return None


def spatial_layers(infos: list[LayerInfo], input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
    """Modules called once, not pass-through, whose output is a spatial map (C, h, w) or (h, w, C), h, w > 1.

    With ``input_shape`` also the same down-sampling factor along both axes
    (within 25%), which keeps conv stages and drops look-alikes such as
    attention tensors (heads, tokens, head_dim).
    """
    return [i for i in infos if i.calls == 1 and not i.passthrough and layout_of(i, input_shape) is not None]


@dataclass
class CamLayer:
    """Where Grad-CAM looks: a spatial module, or a token module with its grid geometry."""

    info: LayerInfo
    prefix: int = 0
    grid: tuple[int, int] | None = None  # set for token layers
    layout: str = "nchw"  # "nhwc": channels-last output, permuted for Grad-CAM

    @property
    def spatial(self) -> tuple[int, int]:
        """The (h, w) of the map Grad-CAM weighs: the map's native resolution."""
        if self.grid is not None:
            return self.grid
        s = self.info.shape
        return (s[0], s[1]) if self.layout == "nhwc" else (s[1], s[2])


def gradcam_layer(model: nn.Module, input_shape: Sequence[int]) -> CamLayer | None:
    """The last spatial stage, or for transformers (whose token blocks run after the patch-embedding
    conv) the token layer; None when the model has neither."""
    infos = probe_layers(model, input_shape)
    position = {id(i.module): k for k, i in enumerate(infos)}
    spatial = spatial_layers(infos, input_shape)
    tokens = _token_layer(model, infos)
    if tokens is not None and (not spatial or position[id(tokens.info.module)] > position[id(spatial[-1].module)]):
        return tokens
    if not spatial:
        return None
    return CamLayer(spatial[-1], layout=layout_of(spatial[-1], input_shape) or "nchw")


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
    tokens = [i for i in infos if len(i.shape) == 2 and i.calls == 1 and not i.passthrough]
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
    """Routes a token or channels-last module's output through a ``TokenGrid`` as (N, D, h, w).

    Equivalent to pytorch-grad-cam's reshape_transform, but done inside the
    forward pass so Captum's LayerGradCam sees a spatial layer and gets its
    gradients: tokens (N, T, D) -> drop ``prefix`` tokens -> grid -> back; with
    ``channels_last`` a (N, h, w, C) map -> (N, C, h, w) -> back.
    """

    def __init__(self, module: nn.Module, prefix: int = 0, grid: tuple[int, int] | None = None,
                 channels_last: bool = False) -> None:
        self.module, self.prefix, self.grid, self.channels_last = module, prefix, grid, channels_last
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
        if self.channels_last:
            return self.layer(out.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        n, _t, d = out.shape
        head, tokens = out[:, : self.prefix], out[:, self.prefix :]
        grid = tokens.transpose(1, 2).reshape(n, d, *self.grid)
        grid = self.layer(grid)
        return torch.cat([head, grid.reshape(n, d, -1).transpose(1, 2)], dim=1)
