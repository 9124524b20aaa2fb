"""LIME (Ribeiro et al. 2016) through lime.lime_image: SLIC superpixels, lime's neighbourhood and ridge fit.

Two ways to build the perturbed images, the same explanation either way:
``perturb: device`` (default) draws lime's random on/off matrix exactly as
``LimeImageExplainer.data_labels`` does, then assembles the perturbed batch on
the model's device with one gather and one select per batch; ``perturb:
library`` lets lime copy and mask each sample in its Python loop. Everything
else (segmentation, the mean-colour fill, cosine distances, the kernel, the
feature selection and the ridge fit of ``LimeBase``) is lime's own code in
both, so on a fixed seed the maps are equal (tests/explain/test_perturb_fast.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import lime.lime_image as lime_image
import numpy as np
import torch
from lime.wrappers.scikit_image import SegmentationAlgorithm
from torch import Tensor
from tqdm.auto import tqdm

from imaudit.audits.device import forward_batched, forward_built
from imaudit.audits.explain.base import BatchResult, Explainer
from imaudit.audits.explain.methods import EXPLAINERS
from imaudit.errors import BadInputError

PERTURB = ("device", "library")


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


class DeviceNeighbourhood(lime_image.LimeImageExplainer):
    """lime's LimeImageExplainer whose neighbourhood is built on the model's device.

    ``data_labels`` is the one step replaced: the on/off matrix comes from the
    same ``random_state.randint`` call as lime's, and each batch of perturbed
    images is ``where(on[:, segments], image, fudged)`` on the device instead
    of a deep copy and a mask per sample. ``score(batch)`` turns the
    normalised (B, C, H, W) batch into class probabilities.
    """

    def __init__(self, kernel_width: float, random_state: int, to_model: Callable[[np.ndarray], Tensor],
                 score: Callable[[int, Callable[[int, int], Tensor]], np.ndarray]) -> None:
        super().__init__(kernel_width=kernel_width, random_state=random_state)
        self._to_model, self._score = to_model, score

    def data_labels(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size=10):  # noqa: ANN001
        """(on/off matrix, probabilities) as lime's own ``data_labels`` returns them."""
        n_features = np.unique(segments).shape[0]
        data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
        data[0, :] = 1
        # lime hides superpixel z when column z is 0 (labels >= n_features, if any, are never hidden).
        table = np.ones((num_samples, max(int(segments.max()) + 1, n_features)), dtype=bool)
        table[:, :n_features] = data.astype(bool)
        # Normalising commutes with picking pixels: normalise the two sources once.
        keep_img, fill_img = self._to_model(image), self._to_model(fudged_image)
        on = torch.from_numpy(table).to(keep_img.device)
        seg = torch.from_numpy(np.ascontiguousarray(segments, dtype=np.int64)).to(keep_img.device)

        def build(a: int, b: int) -> Tensor:
            return torch.where(on[a:b][:, seg].unsqueeze(1), keep_img, fill_img)

        return data, self._score(num_samples, build)


@EXPLAINERS.register()
class LimeExplainer(Explainer):
    """A sparse linear model over superpixels fitted to the model's outputs on perturbed images.

    Superpixels: SLIC, about one per ``pixels_per_segment`` pixels (16 at
    32 px, 100 at 224 px); hidden superpixels take their mean colour. The map
    gives each pixel its superpixel's weight for the target class (signed).
    ``num_samples`` 500 perturbations per image are all handed to the model at
    once and scored in device-sized batches, built on the device (``perturb``
    "device") or by lime's per-sample loop ("library"): the same maps.
    Deterministic for a given seed. Typical sample: 8-16 images (seconds each).
    """

    name = "lime"
    defaults = {"num_samples": 500, "pixels_per_segment": 500, "compactness": 10.0, "kernel_width": 0.25,
                "perturb": "device"}
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

    def segmenter(self, height: int, width: int) -> SegmentationAlgorithm:
        """lime's SLIC wrapper with this method's settings: about one superpixel per ``pixels_per_segment``."""
        return SegmentationAlgorithm(
            "slic",
            n_segments=slic_segments(height, width, int(self.settings["pixels_per_segment"])),
            compactness=float(self.settings["compactness"]),
            sigma=1.0,
            start_label=0,
            random_seed=self.seed,
        )

    def _lime(self) -> lime_image.LimeImageExplainer:
        """lime's explainer, with the neighbourhood built on the device unless ``perturb`` is "library"."""
        mode = self.settings["perturb"]
        if mode not in PERTURB:
            raise BadInputError(f"method_settings.lime.perturb: {mode!r}; expected one of {', '.join(PERTURB)}")
        width = float(self.settings["kernel_width"])
        if mode == "library":
            return lime_image.LimeImageExplainer(kernel_width=width, random_state=self.seed)
        c = self._channels
        mean, std = self._norm_stats(c)

        def to_model(pixels: np.ndarray) -> Tensor:
            # float32, normalised with numpy as from_pixels does: the model sees bit for bit what the
            # library path feeds it (torch divides by a one-element tensor as a reciprocal multiply).
            hwc = (np.asarray(pixels[..., :c], dtype=np.float32) - mean) / std
            return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1))).to(self.device)

        def score(n: int, build: Callable[[int, int], Tensor]) -> np.ndarray:
            probs = forward_built(self.model, n, build, self.device, self.batch_size, softmax=True)
            return probs.numpy().astype(np.float64)

        return DeviceNeighbourhood(width, self.seed, to_model, score)

    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        _, _, h, w = images.shape
        self._channels = images.shape[1]
        image = self.to_pixels(images)[0].astype(np.float64)
        if self._channels == 1:
            # lime_image hard-codes three channels when it fills hidden superpixels with their mean colour.
            image = np.repeat(image, 3, axis=-1)
        target = int(targets[0])
        segmenter = self.segmenter(h, w)
        explainer = self._lime()
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
