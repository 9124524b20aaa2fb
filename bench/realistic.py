"""The realistic row: a model of the size users audit (resnet50 at 224 px, random weights) on JPEG photos.

The default rows use a 64 px test network, where decoding a PNG costs as much
as the model and the numbers say little about real audits. Here prediction
reads a few dozen 320 px JPEGs through the audit's own path and every method
and quality check is measured against this model's peaks. Images per method
are capped (``METHOD_IMAGES``) so the row stays affordable on a CPU: a single
LIME image is 500 resnet50 passes.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from imaudit.bench.datasets import jpeg_set
from imaudit.bench.methods import Peaks, bench_method, bench_methods
from imaudit.bench.peak import measure_peak
from imaudit.bench.pipeline import bench_prediction
from imaudit.bench.workload import Workload, build_workload

MODEL = "resnet50"
IMAGE_SIZE = 224
IMAGES = 48  # photos predicted; the methods explain the first few of them
METHOD_IMAGES = {"saliency": 8, "gradcam": 8, "ig": 2, "occlusion": 1, "lime": 1, "shap": 1, "shap-gradient": 2,
                 "deletion/insertion": 4}
CPU_PEAK_BATCHES = (1, 8, 32)


def bench_realistic(methods: list[str], device: str, say: Any = print, quick: bool = False,
                    profile_below: float | None = None) -> dict[str, Any]:
    """Peaks, prediction from JPEG files and every method's efficiency for resnet50 at 224 px
    (``profile_below``: profile the method rows under that efficiency)."""
    model, size, n = ("test_resnet", 48, 8) if quick else (MODEL, IMAGE_SIZE, IMAGES)
    folder = jpeg_set(n)
    say(f"realistic: timm:{model} at {size} px, {n} JPEGs")
    work = build_workload(model, size, n, device, dataset=f"folder:{folder}")
    sizes = (1, 4) if quick else (CPU_PEAK_BATCHES if work.device.type == "cpu" else None)
    peaks = Peaks(
        measure_peak(work.model.module, work.input_shape, work.device, "forward", batch_sizes=sizes, repeats=3),
        measure_peak(work.model.module, work.input_shape, work.device, "forward+backward", batch_sizes=sizes,
                     repeats=3),
    )
    pred = bench_prediction(work, peaks.forward, len(work.dataset.manifest), repeats=1 if quick else 3)
    caps = {k: 1 for k in METHOD_IMAGES} if quick else METHOD_IMAGES
    rows, _ = bench_methods(work, methods, peaks, caps=caps, profile_below=profile_below)
    gpu = bench_gpu(work, peaks, methods, caps) if work.device.type == "cuda" else None
    return {
        "gpu": gpu,
        "model": f"timm:{model}",
        "image_size": size,
        "images": len(work.dataset.manifest),
        "peaks": {"forward": asdict(peaks.forward), "forward+backward": asdict(peaks.backward)},
        "prediction": asdict(pred),
        "methods": [asdict(r) for r in rows],
    }


def bench_gpu(work: Workload, peaks: Peaks, methods: list[str], caps: dict[str, int]) -> dict[str, Any]:
    """On CUDA: JPEG decoding by PIL in worker processes against nvJPEG on the device, and LIME / SHAP
    with their perturbed images built by the libraries against built on the device."""
    n = len(work.dataset.manifest)
    out: dict[str, Any] = {"prediction": {d: asdict(bench_prediction(work, peaks.forward, n, decode=d))
                                          for d in ("cpu", "gpu")}}
    for m in ("lime", "shap"):
        if m in methods:
            sub = work.head(caps.get(m, 1))
            out[m] = {mode: asdict(bench_method(sub, m, peaks, settings={"perturb": mode})[0])
                      for mode in ("library", "device")}
    return out
