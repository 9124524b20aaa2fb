"""The same explanations done the way the libraries document them, with their default execution settings.

Each baseline computes the same explanation as our method (same settings:
steps, windows, superpixels, number of samples, background), but calls the
library as its documentation shows, leaving every execution parameter at its
default:

- Captum: one ``attribute`` call over all images, no ``internal_batch_size``
  (IG) and ``perturbations_per_eval=1`` (Occlusion);
- lime_image: ``explain_instance`` with its default ``batch_size=10``, a
  classifier function that runs the model on each batch it is handed;
- shap PartitionExplainer: ``explainer(image, max_evals=..., outputs=...)``
  with the default ``batch_size="auto"`` (10 for an image masker);
- shap GradientExplainer: ``GradientExplainer(model, background)`` (default
  ``batch_size=50``) and ``shap_values(images, nsamples, ranked_outputs=1)``.

Our speed-up is our rate over the baseline's, on the same images.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from imaudit.audits.explain import method_defaults
from imaudit.audits.explain.layers import TokenGridHook, gradcam_layer
from imaudit.audits.explain.methods.lime_method import slic_segments
from imaudit.audits.explain.methods.occlusion import occlusion_window
from imaudit.audits.explain.methods.shap_method import blur_kernel
from imaudit.bench.methods import MethodRow, Peaks, make_row, method_images, timed_count, warm_up
from imaudit.bench.workload import Workload

Baseline = Callable[[Workload, Tensor, Tensor, dict], None]


@dataclass
class BaselineRow:
    """A method done the library's default way, and how much faster ours is."""

    name: str
    how: str
    row: MethodRow
    ours_images_per_s: float | None
    speedup: float | None


def _pixels(work: Workload, x: Tensor) -> np.ndarray:
    mean = np.asarray(work.mean or [0.0], np.float32)
    std = np.asarray(work.std or [1.0], np.float32)
    return (x.numpy().transpose(0, 2, 3, 1) * std + mean).astype(np.float64)


def _model_fn(work: Workload, softmax: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The classifier function the LIME / SHAP tutorials write: normalise the batch, run the model."""
    mean = np.asarray(work.mean or [0.0], np.float32)
    std = np.asarray(work.std or [1.0], np.float32)
    model = work.model.module

    def fn(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(((np.asarray(images, np.float32) - mean) / std).transpose(0, 3, 1, 2).copy())
        with torch.no_grad():
            out = model(batch.to(work.device)).float()
        return (out.softmax(-1) if softmax else out).cpu().numpy()

    return fn


def saliency(work: Workload, x: Tensor, t: Tensor, s: dict) -> None:
    from captum.attr import Saliency

    Saliency(work.model.module).attribute(x.to(work.device).requires_grad_(True), target=t.to(work.device), abs=True)


def integrated_gradients(work: Workload, x: Tensor, t: Tensor, s: dict) -> None:
    from captum.attr import IntegratedGradients

    xd = x.to(work.device).requires_grad_(True)
    IntegratedGradients(work.model.module).attribute(
        xd, baselines=torch.zeros_like(xd), target=t.to(work.device), n_steps=int(s["n_steps"]), method=s["method"]
    )


def gradcam(work: Workload, x: Tensor, t: Tensor, s: dict) -> None:
    from captum.attr import LayerAttribution, LayerGradCam

    model = work.model.module
    found = gradcam_layer(model, work.input_shape)
    if found is None:
        raise RuntimeError("no spatial layer for Grad-CAM")
    hook = TokenGridHook(found.info.module, found.prefix, found.grid) if found.grid is not None else None
    layer = hook.layer if hook is not None else found.info.module
    with hook if hook is not None else contextlib.nullcontext():
        cam = LayerGradCam(model, layer).attribute(x.to(work.device).requires_grad_(True), target=t.to(work.device),
                                                   relu_attributions=True)
    LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")


def occlusion(work: Workload, x: Tensor, t: Tensor, s: dict) -> None:
    from captum.attr import Occlusion

    c, h, w = x.shape[1:]
    window, stride = occlusion_window(h, w)
    window, stride = int(s["window"] or window), int(s["stride"] or stride)
    with torch.no_grad():
        Occlusion(work.model.module).attribute(
            x.to(work.device), sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
            baselines=0.0, target=t.to(work.device),
        )


def lime_image_default(work: Workload, x: Tensor, t: Tensor, s: dict) -> None:
    import lime.lime_image as lime_image
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    fn = _model_fn(work, softmax=True)
    h, w = x.shape[-2:]
    # lime_image draws a tqdm bar per image and has no switch for it: hide it (output only).
    quiet = mock.patch.object(lime_image, "tqdm", functools.partial(tqdm, disable=True))
    for image, target in zip(_pixels(work, x), t.tolist()):
        seg = SegmentationAlgorithm("slic", n_segments=slic_segments(h, w, int(s["pixels_per_segment"])),
                                    compactness=float(s["compactness"]), sigma=1.0, start_label=0, random_seed=0)
        lo, hi = image.min(), image.max()
        explainer = lime_image.LimeImageExplainer(kernel_width=float(s["kernel_width"]), random_state=0)
        with quiet:
            explainer.explain_instance(
                image, fn, labels=(target,), top_labels=None, num_samples=int(s["num_samples"]),
                segmentation_fn=lambda im, lo=lo, hi=hi: seg((im - lo) / max(hi - lo, 1e-12)), random_seed=0,
            )


def shap_partition(work: Workload, x: Tensor, t: Tensor, s: dict) -> None:
    import shap

    pixels = _pixels(work, x)
    h, w = x.shape[-2:]
    spec = blur_kernel(h, w) if s["masker"] == "blur" else s["masker"]
    explainer = shap.PartitionExplainer(_model_fn(work, softmax=False), shap.maskers.Image(spec, shape=pixels.shape[1:]))
    for i, target in enumerate(t.tolist()):
        explainer(pixels[i : i + 1], max_evals=int(s["max_evals"]), outputs=np.array([target]), silent=True)


def shap_gradient(work: Workload, x: Tensor, t: Tensor, s: dict) -> None:
    import shap

    order = np.random.default_rng(0).permutation(len(work.images))[: int(s["background_size"])]
    background = work.images[order].to(work.device)
    explainer = shap.GradientExplainer(work.model.module, background)
    # ranked_outputs=1 explains the top predicted class: our targets are the predictions.
    explainer.shap_values(x.to(work.device), nsamples=int(s["nsamples"]), ranked_outputs=1, rseed=0)


BASELINES: dict[str, tuple[Baseline, str]] = {
    "saliency": (saliency, "Captum Saliency, one call"),
    "ig": (integrated_gradients, "Captum IG, no internal_batch_size"),
    "gradcam": (gradcam, "Captum LayerGradCam, one call"),
    "occlusion": (occlusion, "Captum Occlusion, perturbations_per_eval=1"),
    "lime": (lime_image_default, "lime_image, batch_size=10"),
    "shap": (shap_partition, "shap Partition, batch_size auto (10)"),
    "shap-gradient": (shap_gradient, "shap GradientExplainer, batch_size=50"),
}


def bench_baseline(work: Workload, method: str, peaks: Peaks, ours: MethodRow | None,
                   settings: dict | None = None) -> BaselineRow | None:
    """Time the library-default way of ``method`` on the images our row explained (None: no baseline)."""
    if method not in BASELINES:
        return None
    fn, how = BASELINES[method]
    s = {**method_defaults(method), **(settings or {})}
    sub = work.head(ours.images if ours and ours.images else method_images(method, len(work.images)))
    x, t = sub.images, sub.targets
    warm_up(lambda k: fn(sub, x[:k], t[:k], s), len(x))
    _, seconds, count = timed_count(sub.model.module, lambda: fn(sub, x, t, s))
    row = make_row(method, len(x), seconds, count, peaks)
    ours_rate = ours.images_per_s if ours and ours.images else None
    speedup = ours_rate / row.images_per_s if ours_rate and row.images_per_s > 0 else None
    return BaselineRow(method, how, row, ours_rate, speedup)
