"""LIME (Ribeiro et al. 2016) through lime.lime_image, all perturbations scored in large batches."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import lime.lime_image as lime_image
import numpy as np
from lime.wrappers.scikit_image import SegmentationAlgorithm
from torch import Tensor
from tqdm.auto import tqdm

from imaudit.audits.device import forward_batched
from imaudit.audits.explain.base import BatchResult, Explainer
from imaudit.audits.explain.methods import EXPLAINERS


def slic_segments(height: int, width: int, pixels_per_segment: int) -> int:
    """Superpixel count for an image: one per ``pixels_per_segment`` pixels, kept within [16, 150]."""
    return int(np.clip(round(height * width / pixels_per_segment), 16, 150))


def _unit_range(image: np.ndarray) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    if lo >= 0 and hi <= 1:
        return image
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


@contextlib.contextmanager
def _quiet_lime() -> Iterator[None]:
    """lime_image draws a tqdm bar per image with no switch to turn it off; silence it meanwhile."""
    original = lime_image.tqdm
    lime_image.tqdm = functools.partial(tqdm, disable=True)
    try:
        yield
    finally:
        lime_image.tqdm = original


@EXPLAINERS.register()
class LimeExplainer(Explainer):
    """A sparse linear model over superpixels fitted to the model's outputs on perturbed images.

    Superpixels: SLIC, about one per ``pixels_per_segment`` pixels (16 at
    32 px, 100 at 224 px); hidden superpixels take their mean colour. The map
    gives each pixel its superpixel's weight for the target class (signed).
    ``num_samples`` 500 perturbations per image are all handed to the model at
    once (lime's batch_size = num_samples) and scored in device-sized batches.
    Deterministic for a given seed. Typical sample: 8-16 images (seconds each).
    """

    name = "lime"
    defaults = {"num_samples": 500, "pixels_per_segment": 500, "compactness": 10.0, "kernel_width": 0.25}
    needs_gradients = False
    per_image = True
    typical_samples = 8
    samples_per_class = 4
    max_samples = 12
    baseline = "hidden superpixels take their own mean colour (lime's default)"

    def native_resolution(self) -> dict:
        h, w = self.input_shape[-2:] if self.input_shape else (None, None)
        if h is None:
            return {"cells": None, "note": "SLIC superpixels"}
        n = slic_segments(h, w, int(self.settings["pixels_per_segment"]))
        return {"cells": None, "segments": n, "note": f"about {n} SLIC superpixels, one weight each"}

    def _classifier(self, pixels: np.ndarray) -> np.ndarray:
        pixels = pixels[..., : self._channels]  # 1-channel images travel through lime as 3 equal channels
        probs = forward_batched(self.model, self.from_pixels(pixels), self.device, self.batch_size, softmax=True)
        return probs.numpy().astype(np.float64)

    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        _, _, h, w = images.shape
        self._channels = images.shape[1]
        image = self.to_pixels(images)[0].astype(np.float64)
        if self._channels == 1:
            # lime_image hard-codes three channels when it fills hidden superpixels with their mean colour.
            image = np.repeat(image, 3, axis=-1)
        target = int(targets[0])
        segmenter = SegmentationAlgorithm(
            "slic",
            n_segments=slic_segments(h, w, int(self.settings["pixels_per_segment"])),
            compactness=float(self.settings["compactness"]),
            sigma=1.0,
            start_label=0,
            random_seed=self.seed,
        )
        explainer = lime_image.LimeImageExplainer(
            kernel_width=float(self.settings["kernel_width"]), random_state=self.seed
        )
        num_samples = int(self.settings["num_samples"])
        with _quiet_lime():
            exp = explainer.explain_instance(
                image,
                self._classifier,
                labels=(target,),
                top_labels=None,
                num_features=100_000,  # every superpixel gets its weight
                num_samples=num_samples,
                batch_size=num_samples,
                # SLIC's Lab conversion expects [0, 1]: segment a rescaled copy (lime keeps the original).
                segmentation_fn=lambda im: segmenter(_unit_range(im)),
                random_seed=self.seed,
            )
        weights = np.zeros(int(exp.segments.max()) + 1, dtype=np.float32)
        for segment, weight in exp.local_exp[target]:
            weights[segment] = weight
        return BatchResult(maps=weights[exp.segments][None], per_image={"score": np.array([exp.score])})
