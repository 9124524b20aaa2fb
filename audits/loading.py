"""Batches of model-ready images for prediction, decoded while the model runs.

Three ways, picked per device (``batches``):

- **threads** (CPU default): images are decoded and transformed by a small
  thread pool a few batches ahead of the model. PIL releases the GIL while it
  decodes and resizes, and the tensor steps are torch ops, so decoding
  overlaps the model's forward passes without the start-up cost and pickling
  of worker processes (which, spawned, cost seconds per chunk).
- **workers** (CUDA default, or ``--workers N``): a DataLoader with spawned
  worker processes and pinned memory, for when decoding needs more cores than
  threads get.
- **GPU JPEG** (CUDA, ``decode`` "auto" or "gpu"): file bytes are read by
  threads and decoded on the GPU by torchvision's ``decode_jpeg`` (nvJPEG),
  then resized, cropped and normalised there by the model's own timm
  transform steps applied to tensors. Used where every file of the chunk is a
  JPEG the transform can follow on tensors and the images are big enough for
  the GPU to win (``GPU_DECODE_MIN_PIXELS``); the numbers differ from PIL's in
  the last bits (another resize implementation), so the chunk cache keys say
  which decoder ran.

Written by hand because the DataLoader offers only processes, and neither it
nor timm overlaps decoding with the model in threads.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from imaudit.audits.images import ImageDataset

JPEG_SUFFIXES = (".jpg", ".jpeg")
JPEG_MODES = ("RGB", "L")  # CMYK and YCCK JPEGs are left to PIL, which converts them properly
# Below this many pixels per image (median) the GPU's per-image launches cost more than PIL's decode.
GPU_DECODE_MIN_PIXELS = 128 * 128
PREFETCH_BATCHES = 2


def default_threads() -> int:
    """Decoding threads on CPU: one per core, at least two (one decodes while the other waits on I/O), at most 8."""
    return max(2, min(8, os.cpu_count() or 1))


def threaded_batches(dataset: ImageDataset, batch_size: int, threads: int | None = None,
                     prefetch: int = PREFETCH_BATCHES) -> Iterator[torch.Tensor]:
    """Stacked images of ``dataset`` in order, ``batch_size`` at a time, decoded ``prefetch`` batches ahead."""
    n = len(dataset)
    starts = iter(range(0, n, batch_size))

    def image(i: int) -> torch.Tensor:
        return dataset[i][0]

    with ThreadPoolExecutor(max_workers=threads or default_threads(), thread_name_prefix="imaudit-decode") as pool:
        pending: deque[list[Future]] = deque()

        def submit_next() -> None:
            start = next(starts, None)
            if start is not None:
                pending.append([pool.submit(image, i) for i in range(start, min(n, start + batch_size))])

        for _ in range(max(1, prefetch)):
            submit_next()
        while pending:
            futures = pending.popleft()
            submit_next()
            yield torch.stack([f.result() for f in futures])


def worker_batches(dataset: ImageDataset, batch_size: int, workers: int, pin_memory: bool) -> Iterator[torch.Tensor]:
    """The DataLoader way: spawned worker processes (never forked: forked workers died inside Prefect flows)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        multiprocessing_context=multiprocessing.get_context("spawn"),
    )
    for batch in loader:
        yield batch[0]


def tensor_steps(transform: Callable | None) -> list[Callable[[torch.Tensor], torch.Tensor]] | None:
    """The model's eval transform as steps on float (C, H, W) tensors in [0, 1], or None if a step has no such twin.

    timm's eval transforms are torchvision Resize / CenterCrop / Normalize
    around a ToTensor; those three work on tensors as they are. Resizing is
    done on 0..255 values, clamped and rounded as PIL's 8-bit resize is.
    """
    from torchvision import transforms as T

    steps = getattr(transform, "transforms", None)
    if not steps:
        return None
    out: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for step in steps:
        kind = type(step).__name__
        if kind in ("ToTensor", "MaybeToTensor"):
            continue
        if isinstance(step, T.Resize):
            out.append(lambda x, step=step: step(x * 255.0).clamp_(0, 255).round_().div_(255.0))
        elif isinstance(step, (T.CenterCrop, T.Normalize)):
            out.append(step)
        else:
            return None
    return out


def jpeg_files(dataset: ImageDataset) -> bool:
    """Whether every row is a JPEG that decode_jpeg reads as PIL would and the transform can follow on tensors."""
    if not dataset.paths or tensor_steps(dataset.transform) is None:
        return False
    if not all(Path(p).suffix.lower() in JPEG_SUFFIXES for p in dataset.paths):
        return False
    return all(m is None or m in JPEG_MODES for m in dataset.modes)


def gpu_decodable(dataset: ImageDataset) -> bool:
    """``jpeg_files``, and the images big enough (median) for the GPU to beat PIL."""
    if not jpeg_files(dataset):
        return False
    areas = sorted(s[0] * s[1] for s in dataset.sizes if s is not None)
    return bool(areas) and areas[len(areas) // 2] >= GPU_DECODE_MIN_PIXELS


def jpeg_batches(dataset: ImageDataset, batch_size: int, device: torch.device, threads: int | None = None,
                 prefetch: int = PREFETCH_BATCHES) -> Iterator[torch.Tensor]:
    """Batches decoded by torchvision's decode_jpeg on ``device`` (nvJPEG on CUDA) and transformed there.

    Threads read the next batches' bytes while the device decodes this one.
    Works on any device (the tests run it on the CPU).
    """
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    steps = tensor_steps(dataset.transform)
    if steps is None:
        raise ValueError("the model's transform has a step that does not work on tensors")
    n = len(dataset)
    starts = iter(range(0, n, batch_size))

    def read(start: int) -> list[torch.Tensor]:
        return [read_file(dataset.paths[i]) for i in range(start, min(n, start + batch_size))]

    with ThreadPoolExecutor(max_workers=threads or default_threads(), thread_name_prefix="imaudit-read") as pool:
        pending: deque[Future] = deque()

        def submit_next() -> None:
            start = next(starts, None)
            if start is not None:
                pending.append(pool.submit(read, start))

        for _ in range(max(1, prefetch)):
            submit_next()
        while pending:
            data = pending.popleft().result()
            submit_next()
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
            out = []
            for img in images:
                x = img.float().div_(255.0)
                for step in steps:
                    x = step(x)
                out.append(x)
            yield torch.stack(out)


def choose(dataset: ImageDataset, device: torch.device, batch_size: int, workers: int, decode: str = "auto") -> str:
    """How ``batches`` will decode: "gpu-jpeg", "workers" or "threads".

    ``decode`` "auto" takes the GPU JPEG path on CUDA where ``gpu_decodable``;
    "gpu" asks for it wherever the files allow (on any device); "cpu" never.
    ``workers`` > 0 means DataLoader processes; 0 means decoding threads.
    """
    if decode not in ("auto", "cpu", "gpu"):
        raise ValueError(f"decode={decode!r}: expected auto, cpu or gpu")
    if (decode == "gpu" and jpeg_files(dataset)) or (decode == "auto" and device.type == "cuda" and gpu_decodable(dataset)):
        return "gpu-jpeg"
    if workers > 0 and len(dataset) > batch_size:
        return "workers"
    return "threads"


def batches(dataset: ImageDataset, device: torch.device, batch_size: int, workers: int, decode: str = "auto",
            threads: int | None = None) -> tuple[Iterator[torch.Tensor], str]:
    """Model-ready batches of ``dataset`` for ``device``, and how they are decoded (see ``choose``)."""
    how = choose(dataset, device, batch_size, workers, decode)
    if how == "gpu-jpeg":
        return jpeg_batches(dataset, batch_size, device, threads), how
    if how == "workers":
        return worker_batches(dataset, batch_size, workers, device.type == "cuda"), how
    it = threaded_batches(dataset, batch_size, threads)
    if device.type == "cuda":  # pinned pages let the copy run while the next batch is decoded
        it = (b.pin_memory() for b in it)
    return it, how
