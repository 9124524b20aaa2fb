"""SHAP PartitionExplainer (Owen values over an image-region hierarchy) with a blur masker.

Two ways to build the masked images, the same explanation either way:
``perturb: device`` (default, blur masker) hands shap a masker that returns
the coalition masks themselves, and the model function turns each batch of
masks into images on the model's device with one select
(``where(mask, image, blurred)``); ``perturb: library`` lets shap's Image
masker copy and fill every masked image in its Python loop. The partition
hierarchy, the Owen-value recursion and the blur (OpenCV, computed once per
image by shap's own code) are shap's in both, so on a fixed seed the maps are
equal (tests/explain/test_perturb_fast.py). In-painting maskers fill each
masked image differently and always take the library path.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import shap
import torch
from torch import Tensor

from imaudit.audits.device import forward_batched, forward_built
from imaudit.audits.explain.base import BatchResult, Explainer, seeded_numpy
from imaudit.audits.explain.methods import EXPLAINERS
from imaudit.errors import BadInputError

PERTURB = ("device", "library")


def blur_kernel(height: int, width: int) -> str:
    """shap's image masker spec: a box blur an eighth of the image side (hides detail, keeps colour)."""
    return f"blur({max(2, height // 8)},{max(2, width // 8)})"


class DeviceImageMasker(shap.maskers.Image):
    """shap's blur Image masker (same partition tree, same blur) that leaves the masking to the model function.

    ``__call__`` returns the coalition mask itself; ``score(masks)`` builds
    the masked images for a whole batch of masks on ``device`` and runs the
    model. Both share the current image, set when shap first masks it (as
    shap's own masker caches its blur per image).
    """

    def __init__(self, mask_value: str, shape: tuple[int, int, int], channels: int,
                 to_model: Any, run: Any) -> None:
        super().__init__(mask_value, shape=shape)
        if self.blur_kernel is None:
            raise BadInputError(f"masker {mask_value!r}: the device path needs a blur masker")
        self._channels, self._to_model, self._run = channels, to_model, run
        self._image: Tensor | None = None
        self._blurred: Tensor | None = None
        self._source: Any = None

    def __call__(self, mask: Any, x: Any) -> tuple[np.ndarray]:
        # The image shap is masking, by identity with the object held: an id() alone can be reused by the
        # next image once the last one is freed, and the next image would then be explained as the last.
        if x is not self._source:
            pixels = np.asarray(x, dtype=np.float32).reshape(self.input_shape)
            # shap's own blur of this image, computed once (as shap.maskers.Image does)
            self._image = self._to_model(pixels[..., : self._channels])
            self._blurred = self._to_model(cv2.blur(pixels, self.blur_kernel)[..., : self._channels])
            self._source = x
        if mask is None:
            mask = np.zeros(int(np.prod(self.input_shape)), dtype=bool)
        return (np.asarray(mask, dtype=bool).reshape(1, -1),)

    def score(self, masks: np.ndarray) -> np.ndarray:
        """Model outputs for a (B, H*W*C') batch of coalition masks (True = pixel kept)."""
        h, w, c3 = self.input_shape
        on = torch.from_numpy(np.ascontiguousarray(masks, dtype=bool)).to(self._image.device)

        def build(a: int, b: int) -> Tensor:
            keep = on[a:b].view(b - a, h, w, c3)[..., : self._channels]
            # Written into a plainly strided (B, C, H, W) tensor: with one channel a permuted
            # view would pass for channels-last and the convolutions would take another path.
            out = torch.empty((b - a, self._channels, h, w), dtype=self._image.dtype, device=self._image.device)
            out.copy_(torch.where(keep, self._image, self._blurred).permute(0, 3, 1, 2))
            return out

        return self._run(len(masks), build)


@EXPLAINERS.register()
class ShapPartitionExplainer(Explainer):
    """SHAP values of the target logit over a hierarchy of image regions (shap.PartitionExplainer).

    Hidden regions are blurred (``masker`` "blur" -> kernel an eighth of the side,
    or "inpaint_telea"/"inpaint_ns"). ``max_evals`` 400 model calls per image,
    sent to the model ``batch_size`` at a time, the masked images built on the
    device (``perturb`` "device") or by shap's masker ("library"): the same maps.
    Map = SHAP values summed over channels (signed); deterministic. Typical
    sample: 8-16 images.
    """

    name = "shap"
    defaults = {"max_evals": 400, "masker": "blur", "perturb": "device"}
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

    def _to_model(self, hwc: np.ndarray) -> Tensor:
        """(H, W, C) pixels -> normalised (H, W, C) float32 on the device.

        Normalised with numpy as ``from_pixels`` does (once per image), so the
        model sees bit for bit what the library path feeds it (torch divides by
        a one-element tensor as a multiplication by its reciprocal).
        """
        mean, std = self._norm_stats(hwc.shape[-1])
        return torch.from_numpy((np.asarray(hwc, dtype=np.float32) - mean) / std).to(self.device)

    def _run(self, n: int, build: Any) -> np.ndarray:
        return forward_built(self.model, n, build, self.device, self.batch_size).numpy()

    def _explainer(self, spec: str, shape: tuple[int, int, int]) -> shap.PartitionExplainer:
        """shap's explainer for images of ``shape``; the device path's is built once and reused."""
        mode = self.settings["perturb"]
        if mode not in PERTURB:
            raise BadInputError(f"method_settings.shap.perturb: {mode!r}; expected one of {', '.join(PERTURB)}")
        if mode == "library" or not spec.startswith("blur("):
            return shap.PartitionExplainer(self._model_fn, shap.maskers.Image(spec, shape=shape))
        key = (spec, shape, self._channels)
        cached = getattr(self, "_cached", None)
        if cached is None or cached[0] != key:
            masker = DeviceImageMasker(spec, shape, self._channels, self._to_model, self._run)
            self._cached = (key, shap.PartitionExplainer(masker.score, masker))
        return self._cached[1]

    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        _, c, h, w = images.shape
        self._channels = c
        pixels = self.to_pixels(images)
        if c == 1:
            # shap's OpenCV blur drops a single channel axis; mask a 3-channel copy instead.
            pixels = np.repeat(pixels, 3, axis=-1)
        masker_name = self.settings["masker"]
        spec = blur_kernel(h, w) if masker_name == "blur" else masker_name
        explainer = self._explainer(spec, pixels.shape[1:])
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
