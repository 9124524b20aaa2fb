"""Prediction throughput through the real pipeline: decode, transform, loader, model.

The audit's own prediction path (``imaudit.audits.predict.infer_logits`` over an
``ImageDataset`` with the model's timm transform, default batch size,
workers and decoder for the device: threads on CPU) on the workload's files
(builtin:digits PNGs, or the realistic row's JPEGs), as images/s and as a
share of the bare-forward peak.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from imaudit.audits.data import ImageDataset
from imaudit.audits.device import default_batch_size, default_workers
from imaudit.audits.loading import choose
from imaudit.audits.predict import infer_logits
from imaudit.bench.counting import count_passes
from imaudit.bench.peak import Peak
from imaudit.bench.workload import Workload


@dataclass
class PipelineRow:
    """Images/s predicted from files, the batch size and workers used, and the ratio to the peak."""

    images: int
    seconds: float
    images_per_s: float
    batch_size: int
    workers: int
    ratio_to_peak: float
    model_share: float | None
    decoder: str = "threads"  # how the images were decoded: threads, workers (processes) or gpu-jpeg


def bench_prediction(work: Workload, peak: Peak, images: int, batch_size: int | None = None,
                     workers: int | None = None, repeats: int = 3, decode: str = "auto") -> PipelineRow:
    """Predict the first ``images`` files of the workload's dataset (train and val), as an audit
    does; the median of ``repeats`` runs."""
    rows = work.dataset.manifest.head(images).reset_index(drop=True)
    dset = ImageDataset(rows, work.dataset.classes, work.model.transform())
    bs = batch_size or default_batch_size(work.device, tuple(work.model.data_config["input_size"][-2:]))
    nw = default_workers(work.device) if workers is None else workers
    model = work.model.module
    # Warm-up on one batch: decoder, transform and kernels for this batch shape.
    infer_logits(model, ImageDataset(rows.head(bs), work.dataset.classes, work.model.transform()), work.device,
                 batch_size=bs, workers=0, decode=decode, progress=False)
    runs: list[tuple[float, float | None]] = []
    for _ in range(repeats):
        with count_passes(model) as count:
            t0 = time.perf_counter()
            infer_logits(model, dset, work.device, batch_size=bs, workers=nw, decode=decode, progress=False)
            runs.append((time.perf_counter() - t0, count.forward_seconds))
    seconds, in_model = sorted(runs)[len(runs) // 2]  # the median run
    rate = len(rows) / max(seconds, 1e-9)
    share = None if in_model is None else in_model / max(seconds, 1e-9)
    return PipelineRow(len(rows), seconds, rate, bs, nw, rate / peak.images_per_s, share,
                       choose(dset, work.device, bs, nw, decode))
