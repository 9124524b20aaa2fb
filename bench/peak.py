"""Peak model throughput: a bare pass over synthetic input at the best batch size.

As timm's benchmark.py: synthetic input on the device, warm-up steps, then
timed steps; the median step time is kept (robust to a busy machine). On
CPUs small batches can beat large ones (cache), so the batch size is
searched over powers of two. Two peaks are measured because explanations
need two kinds of pass:

- ``forward``: inference (no autograd), what prediction and perturbation methods do;
- ``forward+backward``: a forward with autograd plus the gradient of the target
  logits w.r.t. the input (parameters frozen), what gradient methods do.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from imaudit.audits.device import autocast, is_oom, prepare_model, to_device

Mode = Literal["forward", "forward+backward"]
CPU_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
CUDA_BATCHES = (1, 4, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class Peak:
    """Best images/s of one kind of pass, the batch size that gave it and every size tried."""

    mode: str
    batch_size: int
    images_per_s: float
    by_batch: dict[int, float] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    step: Callable[[], object], device: torch.device, warmup: int, repeats: int, min_seconds: float = 0.2
) -> float:
    """Median wall time of ``step`` after ``warmup`` untimed calls.

    At least ``repeats`` timed calls, more (up to 10x) until ``min_seconds`` have
    passed: short steps on a shared CPU stall now and then, and the median of
    many calls ignores the stalls.
    """
    for _ in range(warmup):
        step()
    _sync(device)
    times: list[float] = []
    while len(times) < max(1, repeats) or (sum(times) < min_seconds and len(times) < 10 * repeats):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_step(model: nn.Module, x: torch.Tensor, mode: Mode, device: torch.device) -> Callable[[], object]:
    """One pass over the batch ``x`` (already on ``device``) of the given kind."""
    if mode == "forward":

        def forward() -> object:
            with torch.inference_mode(), autocast(device):
                return model(x)

        return forward
    target = torch.zeros(len(x), 1, dtype=torch.long, device=device)

    def forward_backward() -> object:
        inp = x.detach().requires_grad_(True)
        with autocast(device):
            out = model(inp)
        # d logit_target / d input, as saliency / Captum compute it.
        return torch.autograd.grad(out.float().gather(1, target).sum(), inp)[0]

    return forward_backward


def measure_peak(
    model: nn.Module,
    input_shape: Sequence[int],
    device: torch.device,
    mode: Mode = "forward",
    *,
    batch_sizes: Sequence[int] | None = None,
    warmup: int = 3,
    repeats: int = 7,
    rounds: int = 2,
    progress: bool = False,
) -> Peak:
    """Search batch sizes for the most images/s of ``mode`` passes on synthetic input.

    Every size is tried (no early stop: on a shared machine one slow reading
    would end the search too soon) in ``rounds`` sweeps; sizes at or above one
    that ran out of memory are dropped.
    """
    model = prepare_model(model, device)
    sizes = list(batch_sizes or (CUDA_BATCHES if device.type == "cuda" else CPU_BATCHES))
    sizes_left = set(sizes)
    gen = torch.Generator().manual_seed(0)
    by_batch: dict[int, float] = {}
    # Several sweeps, the best reading kept per size: a peak is an upper bound, and a
    # shared machine only ever makes a reading slower.
    for bs in tqdm(sizes * rounds, desc=f"peak {mode}", disable=None if progress else True, leave=False):
        if bs not in sizes_left:
            continue
        x = to_device(torch.randn(bs, *input_shape, generator=gen), device)
        try:
            sec = median_seconds(make_step(model, x, mode, device), device, warmup, repeats)
        except Exception as e:  # noqa: BLE001 - out-of-memory drops this size and larger; the rest re-raised
            if not is_oom(e):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            sizes_left = {b for b in sizes_left if b < bs}
            continue
        by_batch[bs] = max(by_batch.get(bs, 0.0), bs / sec)
    if not by_batch:
        raise RuntimeError(f"peak {mode}: not even a batch of {sizes[0]} fits on {device}")
    bs = max(by_batch, key=by_batch.__getitem__)
    return Peak(mode=mode, batch_size=bs, images_per_s=by_batch[bs], by_batch=by_batch)
