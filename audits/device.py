"""Device choice and batched execution shared by prediction and explanation.

On CUDA: autocast (bf16 where supported), channels_last, pinned memory and
non-blocking copies. On CPU: plain float32. Every batched loop backs off to
half the batch size on out-of-memory instead of failing the audit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

from imaudit.errors import BadInputError

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is bad input."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise BadInputError(f"--device {name}: {e}") from None


# On a CPU the best batch is not the biggest one. Measured by `imaudit bench` (2-core x86 host): timm
# test_resnet at 64 px runs fastest at 64 images a batch (262k pixels; 128 images is 26 % slower), resnet50 at
# 224 px at 8 (401k pixels; 32 and 64 images run at 0.69 and 0.62 of that): past about half a million pixels a
# batch the activations no longer stay in the caches. So the CPU default is the largest power of two up to 64
# whose batch stays within this many pixels; --batch-size overrides it.
CPU_BATCH_PIXELS = 450_000


def default_batch_size(device: torch.device, image_hw: tuple[int, int] | None = None) -> int:
    """Images per forward pass when the user gave none: 256 on CUDA; on CPU 64, fewer for large
    inputs (``image_hw``) so that a batch stays within ``CPU_BATCH_PIXELS``."""
    if device.type == "cuda":
        return 256
    bs = 64
    if image_hw is not None:
        pixels = max(1, int(image_hw[0]) * int(image_hw[1]))
        while bs > 1 and bs * pixels > CPU_BATCH_PIXELS:
            bs //= 2
    return bs


def default_workers(device: torch.device) -> int:
    """Decode in worker processes on CUDA (the GPU outruns one decoding core); on CPU
    none: threads decode while the model runs (audits/loading), without spawning processes."""
    cpus = os.cpu_count() or 1
    return min(8, cpus) if device.type == "cuda" else 0


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA; a no-op elsewhere (CPU autocast slows small models)."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode, frozen parameters, on ``device`` (channels_last on CUDA)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a batch to ``device`` the fast way (non-blocking, channels_last for images on CUDA)."""
    if device.type == "cuda":
        if x.dim() == 4:
            return x.to(device, non_blocking=True, memory_format=torch.channels_last)
        return x.to(device, non_blocking=True)
    return x.to(device)


def is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def backoff_chunks(n: int, batch_size: int, run: Callable[[int, int], T]) -> Iterator[T]:
    """Call ``run(start, stop)`` over [0, n) in chunks, halving the chunk on OOM.

    Yields each chunk's result in order. Raises the OOM only when a single
    item does not fit.
    """
    start, bs = 0, max(1, batch_size)
    while start < n:
        stop = min(n, start + bs)
        try:
            out = run(start, stop)
        except Exception as e:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            if not is_oom(e) or bs == 1:
                raise
            bs = max(1, bs // 2)
            log.warning("out of memory; batch size now %d", bs)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        yield out
        start = stop


@torch.no_grad()
def forward_built(
    model: nn.Module,
    n: int,
    build: Callable[[int, int], torch.Tensor],
    device: torch.device,
    batch_size: int | None = None,
    softmax: bool = False,
) -> torch.Tensor:
    """Model outputs for ``n`` inputs that ``build(a, b)`` makes (rows a..b-1), as float32 on CPU.

    ``build`` returns its rows already on ``device``, so perturbation methods
    (LIME, SHAP) assemble their perturbed images there with array operations
    and no image crosses the host boundary; batches of ``batch_size`` rows are
    halved on out-of-memory like every batched loop here.
    """
    bs = batch_size or default_batch_size(device)

    def run(a: int, b: int) -> torch.Tensor:
        x = build(a, b)
        if device.type == "cuda" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            out = model(x)
        out = out.float()
        return (out.softmax(-1) if softmax else out).cpu()

    parts = list(backoff_chunks(n, bs, run))
    if not parts:
        return torch.empty(0)
    return torch.cat(parts)


def forward_batched(
    model: nn.Module,
    x: torch.Tensor,
    device: torch.device | None = None,
    batch_size: int | None = None,
    softmax: bool = False,
) -> torch.Tensor:
    """Model outputs for a (possibly huge) CPU tensor of inputs, as float32 on CPU.

    Used by perturbation methods (occlusion, deletion curves, the library
    paths of LIME and SHAP) to push all perturbed images through the model in
    large batches.
    """
    device = device or next(model.parameters()).device
    batch_size = batch_size or default_batch_size(device, tuple(x.shape[-2:]))
    return forward_built(model, len(x), lambda a, b: to_device(x[a:b], device), device, batch_size, softmax)
