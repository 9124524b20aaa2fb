"""Occlusion (Zeiler & Fergus 2014) through Captum, perturbed inputs evaluated in big batches."""

from __future__ import annotations

import torch
from captum.attr import Occlusion
from torch import Tensor

from imaudit.audits.explain.base import BatchResult, Explainer
from imaudit.audits.explain.methods import EXPLAINERS


def occlusion_window(height: int, width: int) -> tuple[int, int]:
    """(window, stride) for an image: an eighth of the shorter side, stride half the window."""
    window = max(2, min(height, width) // 8)
    return window, max(1, window // 2)


@EXPLAINERS.register()
class OcclusionExplainer(Explainer):
    """Output drop when a square window is replaced by the baseline (zeros = mean image).

    Settings: ``window``/``stride`` None -> an eighth of the image side and half
    of that (8x8 window, stride 4 at 64 px: 225 perturbations per image);
    ``per_channel`` False occludes all channels together (True: one channel at
    a time, C times the cost, gives ``channel_maps``). ``baseline`` None fills
    with zeros (the mean image in normalised space); a callable
    ``baseline(x) -> tensor like x`` supplies per-image replacement content, e.g.
    generative in-fill (``GenerativeInfill.baselines``), so occluded windows hold
    plausible pixels instead of out-of-distribution grey. Perturbations go through
    the model ``batch_size`` inputs at a time. Typical sample: 16 images.
    """

    name = "occlusion"
    defaults = {"window": None, "stride": None, "per_channel": False, "baseline": None}
    needs_gradients = False
    typical_samples = 16
    samples_per_class = 6
    max_samples = 24

    def baseline_text(self) -> str:
        if callable(self.settings["baseline"]):
            return "custom replacement content (a callable)"
        return "zeros after normalisation: windows filled with the normalisation mean colour"

    def native_resolution(self) -> dict:
        h, w = self.input_shape[-2:] if self.input_shape else (None, None)
        if h is None:
            return {"cells": None, "note": "windows over the image"}
        auto_window, auto_stride = occlusion_window(h, w)
        window = int(self.settings["window"] or auto_window)
        stride = int(self.settings["stride"] or auto_stride)
        cells = [(h - window) // stride + 1, (w - window) // stride + 1]
        return {"cells": cells, "note": f"{window}x{window} px windows every {stride} px ({cells[0]}x{cells[1]} positions)"}

    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        n, c, h, w = images.shape
        auto_window, auto_stride = occlusion_window(h, w)
        window = int(self.settings["window"] or auto_window)
        stride = int(self.settings["stride"] or auto_stride)
        per_channel = bool(self.settings["per_channel"])
        x = self.to_model(images)
        fill = self.settings["baseline"]
        baselines = fill(x).to(x.device, x.dtype) if callable(fill) else 0.0
        # float32 on purpose: occlusion scores are small output differences that bf16 would blur.
        with torch.no_grad():
            attr = Occlusion(self.model).attribute(
                x,
                sliding_window_shapes=(1 if per_channel else c, window, window),
                strides=(1 if per_channel else c, stride, stride),
                baselines=baselines,
                target=targets.to(self.device),
                # Captum evaluates n * perturbations_per_eval inputs per forward pass.
                perturbations_per_eval=max(1, self.pass_size // n),
            )
        attr = attr.detach().float().cpu()
        if per_channel:
            return BatchResult(maps=attr.sum(dim=1).numpy(), channel_maps=attr.numpy())
        # With all channels occluded together every channel holds the same value.
        return BatchResult(maps=attr[:, 0].numpy())
