"""SHAP PartitionExplainer (Owen values over an image-region hierarchy) with a blur masker."""

from __future__ import annotations

import numpy as np
import shap
from torch import Tensor

from imaudit.audits.device import forward_batched
from imaudit.audits.explain.base import BatchResult, Explainer, seeded_numpy
from imaudit.audits.explain.methods import EXPLAINERS


def blur_kernel(height: int, width: int) -> str:
    """shap's image masker spec: a box blur an eighth of the image side (hides detail, keeps colour)."""
    return f"blur({max(2, height // 8)},{max(2, width // 8)})"


@EXPLAINERS.register()
class ShapPartitionExplainer(Explainer):
    """SHAP values of the target logit over a hierarchy of image regions (shap.PartitionExplainer).

    Hidden regions are blurred (``masker`` "blur" -> kernel an eighth of the side,
    or "inpaint_telea"/"inpaint_ns"). ``max_evals`` 400 model calls per image,
    sent to the model ``batch_size`` at a time. Map = SHAP values summed over
    channels (signed); deterministic. Typical sample: 8-16 images.
    """

    name = "shap"
    defaults = {"max_evals": 400, "masker": "blur"}
    needs_gradients = False
    per_image = True
    typical_samples = 8
    samples_per_class = 4
    max_samples = 12

    def baseline_text(self) -> str:
        if self.settings["masker"] == "blur":
            return "hidden regions blurred (box blur an eighth of the side: hides detail, keeps colour)"
        return f"hidden regions in-painted ({self.settings['masker']})"

    def native_resolution(self) -> dict:
        return {"cells": None, "note": f"a partition hierarchy of image regions, refined while the {self.settings['max_evals']} "
                                       "evaluations last"}

    def _model_fn(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.shape[-1] != self._channels:  # 1-channel images are masked as 3 equal channels
            pixels = pixels[..., : self._channels]
        return forward_batched(self.model, self.from_pixels(pixels), self.device, self.batch_size).numpy()

    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        _, c, h, w = images.shape
        self._channels = c
        pixels = self.to_pixels(images)
        if c == 1:
            # shap's OpenCV blur drops a single channel axis; mask a 3-channel copy instead.
            pixels = np.repeat(pixels, 3, axis=-1)
        masker_name = self.settings["masker"]
        spec = blur_kernel(h, w) if masker_name == "blur" else masker_name
        masker = shap.maskers.Image(spec, shape=pixels.shape[1:])
        explainer = shap.PartitionExplainer(self._model_fn, masker)
        with seeded_numpy(self.seed):
            out = explainer(
                pixels,
                max_evals=int(self.settings["max_evals"]),
                batch_size=self.batch_size,
                outputs=np.array([int(targets[0])]),
                silent=True,
            )
        values = np.asarray(out.values, dtype=np.float32)[..., 0]  # (1, H, W, C')
        if c == 1:
            values = values.sum(axis=-1, keepdims=True)  # copies 2 and 3 are ignored by _model_fn: zeros
        return BatchResult(maps=values.sum(axis=-1), channel_maps=values.transpose(0, 3, 1, 2))
