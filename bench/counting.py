"""Counting the images a piece of code pushes through a model, forward and backward.

A forward hook on the model's root module sees every call, whoever makes it
(Captum, shap, lime's classifier function, the quality checks, deep copies
made by the sanity check: ``copy.deepcopy`` keeps the hook). When the output
takes part in autograd, a tensor hook on it fires when a backward pass
reaches the model's output, so backward passes are counted per image too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class PassCount:
    """Images through the model: ``forward`` (every call, batch rows summed), ``backward``
    (rows whose output received a gradient), ``calls`` (forward calls) and
    ``forward_seconds`` (wall time inside forward calls; CPU only, None on CUDA where
    kernels run asynchronously and timing them would need a sync that changes the run)
    and ``wall_seconds`` of the counted block (set by the caller), so their ratio is the
    share of time spent in the model."""

    forward: int = 0
    backward: int = 0
    calls: int = 0
    forward_seconds: float | None = 0.0
    wall_seconds: float | None = None  # wall time of the counted block, when the caller timed it


def _rows(x: object) -> int:
    if isinstance(x, Tensor):
        return int(x.shape[0]) if x.dim() else 1
    if isinstance(x, (tuple, list)) and x:
        return _rows(x[0])
    return 0


@contextmanager
def count_passes(model: nn.Module) -> Iterator[PassCount]:
    """Count forward/backward images through ``model`` (and its deep copies) inside the block."""
    count = PassCount()
    timed = next(model.parameters(), torch.empty(0)).device.type == "cpu"
    if not timed:
        count.forward_seconds = None
    started: list[float] = []

    def before(_mod: nn.Module, _inp: object) -> None:
        if timed:
            started.append(time.perf_counter())

    def after(_mod: nn.Module, _inp: object, out: object) -> None:
        rows = _rows(out)
        count.forward += rows
        count.calls += 1
        if timed and started:
            count.forward_seconds += time.perf_counter() - started.pop()
        if isinstance(out, Tensor) and out.requires_grad:

            def on_grad(grad: Tensor, rows: int = rows) -> None:
                count.backward += rows

            out.register_hook(on_grad)

    handles = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
    try:
        yield count
    finally:
        for h in handles:
            h.remove()
