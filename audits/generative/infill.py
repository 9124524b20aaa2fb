"""Generative in-fill: plausible replacement content for perturbation methods.

Grey or blurred patches push images off the data manifold, so a perturbation
method partly measures the model's reaction to artefacts (Chang et al. 2019,
"Explaining image classifiers by counterfactual generation"). Here the
replacement comes from the class-conditional generator instead:

- ``neutral`` (the default): GAN inversion with the class code fixed to the
  mean of all class codes, so neither the label nor the prediction enters:
  the image's layout drawn as "any class". This is the generative fill
  offered as a deletion baseline.
- ``reconstruction``: the image's reconstruction with the class code of the
  given label. It puts the class evidence back into every removed pixel, so
  deletion curves stay high whatever the map says: useful to look at, never
  a deletion baseline (the section does not offer it as one).

The content is computed once per image (mask-independent). Using the
generator to in-fill conditioned on the visible pixels of every mask would be
more faithful to Chang et al., but costs one inversion per perturbation.

The returned object is the ``Replacement`` that ``quality.deletion_insertion``
takes as ``baseline``: ``fn(images (B,C,H,W), removed (B,1,H,W) bool | None)
-> Tensor (B,C,H,W)`` of replacement pixels in the same space as ``images``
(model input when built with ``normalize``). It has ``mask_independent = True``
so deletion/insertion calls it once. For Captum Occlusion pass
``baselines=fill(inputs)``: a per-image baseline of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from imaudit.errors import BadInputError

from .latent import invert, match_images, to_generator_space
from .store import GeneratorArtifact

InfillMode = Literal["reconstruction", "neutral"]
MATCH_TOLERANCE = 1e-3  # RMS difference under which an incoming image counts as a known one


class GenerativeInfill:
    """Per-image replacement content, looked up by image (see module docstring)."""

    mask_independent = True

    def __init__(self, originals: Tensor, content: Tensor, mode: str, recon_error: Tensor) -> None:
        self.__name__ = f"generative-{mode}"  # quality.make_replacement names the baseline after it
        self.mode = mode
        self.originals = originals.detach().float().cpu()
        self.content = content.detach().float().cpu()
        self.recon_error = recon_error.detach().cpu()

    def __call__(self, images: Tensor, removed: Tensor | None = None) -> Tensor:
        """Replacement content for ``images`` (each must be one of the images the in-fill was built for)."""
        return self.content[self.lookup(images)].to(images.device, images.dtype)

    def baselines(self, images: Tensor) -> Tensor:
        """The same content as a per-image baseline tensor (Captum's ``baselines=``)."""
        return self(images)

    def lookup(self, images: Tensor) -> Tensor:
        """Index into the known images of each incoming image, by content (order and repeats may differ)."""
        flat = images.detach().float().cpu().flatten(1)
        known = self.originals.flatten(1)
        if flat.shape[1] != known.shape[1]:
            raise BadInputError(
                f"in-fill: images of shape {tuple(images.shape[1:])} do not match the {tuple(self.originals.shape[1:])} it was built for"
            )
        if flat.shape == known.shape and torch.allclose(flat, known, atol=1e-5):
            return torch.arange(len(flat))
        dist, idx = torch.cdist(flat, known).min(dim=1)
        unknown = int((dist / math.sqrt(flat.shape[1]) > MATCH_TOLERANCE).sum())
        if unknown:
            raise BadInputError(f"in-fill: {unknown} of {len(flat)} images are not among the {len(known)} it was built for")
        return idx


@torch.no_grad()
def _neutral_code(generator: torch.nn.Module, n: int, device: torch.device) -> Tensor:
    codes = generator.embed(torch.arange(generator.n_classes, device=device))
    return codes.mean(0, keepdim=True).expand(n, -1)


def generative_infill(
    generator_art: GeneratorArtifact,
    images_pixel: Tensor,
    labels: Tensor | Sequence[int] | None = None,
    *,
    normalize: Callable[[Tensor], Tensor] | None = None,
    mode: InfillMode = "neutral",
    steps: int = 200,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> GenerativeInfill:
    """Build the replacement-content source for ``images_pixel`` (N,C,H,W in [0, 1], the model's input space).

    ``labels`` fix the class code of each reconstruction (``reconstruction``
    mode only; ``neutral`` never looks at them). With ``normalize`` (pixel ->
    model input), both the images the returned function expects and the
    content it returns are in model-input space, as deletion/insertion and
    occlusion see them. ``recon_error`` is the RMS error of the fit.
    """
    if mode not in ("reconstruction", "neutral"):
        raise BadInputError(f"mode={mode!r}: expected 'reconstruction' or 'neutral'")
    if images_pixel.dim() != 4:
        raise BadInputError(f"images_pixel: expected (N, C, H, W), got shape {tuple(images_pixel.shape)}")
    if mode == "reconstruction":
        if labels is None:
            raise BadInputError("labels: the reconstruction fill needs a class per image")
        labels = torch.as_tensor(labels).long().reshape(-1)
        if len(labels) != len(images_pixel):
            raise BadInputError(f"labels: {len(labels)} labels for {len(images_pixel)} images")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(generator_art.classes)):
            raise BadInputError(f"labels: class indices must lie in [0, {len(generator_art.classes)})")
    normalize = normalize or (lambda x: x)
    device = torch.device(device or "cpu")
    generator = generator_art.load_generator().to(device)
    x = images_pixel.float().to(device)
    n, c, h, w = x.shape
    targets = to_generator_space(x, generator_art.channels, generator_art.image_size)
    if mode == "neutral":
        z, e = invert(generator, targets, codes=_neutral_code(generator, n, device), steps=steps, seed=seed)
    else:
        z, e = invert(generator, targets, labels.to(device), steps=steps, seed=seed)
    with torch.no_grad():
        content = match_images(generator.synthesize(z, e), c, h, w).clamp(0, 1)
        error = (content - x).pow(2).flatten(1).mean(1).sqrt()
        return GenerativeInfill(normalize(x), normalize(content), mode, error)
