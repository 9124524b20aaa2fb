"""Moving between image space and the generator's latent space.

``match_images`` adapts generator output (S x S, C_g channels) to the images
a model sees (H x W, C channels); ``to_generator_space`` goes the other way;
``invert`` finds a latent code whose generated image is close to a given image
(GAN inversion by optimisation, Zhu et al. 2016 "Generative visual
manipulation on the natural image manifold", with random restarts).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from imaudit.errors import BadInputError

from .gan import sample_latents


def _adapt_channels(x: Tensor, channels: int) -> Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1)
    if channels == 1:
        return x.mean(1, keepdim=True)
    raise BadInputError(f"images: cannot map {x.shape[1]} generator channels to {channels} image channels")


def match_images(generated: Tensor, channels: int, height: int, width: int) -> Tensor:
    """Generator output resized (bilinear) and channel-matched to (channels, height, width)."""
    x = _adapt_channels(generated, channels)
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x


def to_generator_space(images: Tensor, channels: int, size: int) -> Tensor:
    """Pixel images (N,C,H,W) resized with antialiasing to the generator's (channels, size, size)."""
    x = images
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return _adapt_channels(x, channels).clamp(0, 1)


def invert(
    generator: nn.Module,
    targets: Tensor,
    labels: Tensor | None = None,
    *,
    codes: Tensor | None = None,
    steps: int = 200,
    restarts: int = 4,
    lr: float = 0.05,
    prior: float = 1e-3,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Latent codes (z, e) whose generated images best match ``targets`` (already in generator space).

    The class code e is fixed to ``embed(labels)`` (or to the given ``codes``,
    e.g. the mean class code for a label-free fit); z is optimised with Adam on
    the pixel MSE plus a small Gaussian prior (``prior`` * mean z^2) that keeps
    z where the generator was trained. ``restarts`` random starts per image run
    for a quarter of the steps; the best start per image continues.
    """
    targets = targets.detach()
    device = targets.device
    n = len(targets)
    if codes is None and labels is None:
        raise BadInputError("invert: give labels or class codes")
    with torch.no_grad():
        e = (generator.embed(labels.to(device)) if codes is None else codes.to(device)).detach()

    def fit(z0: Tensor, e_: Tensor, x_: Tensor, k: int) -> tuple[Tensor, Tensor]:
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(k):
            per_image = (generator.synthesize(z, e_) - x_).pow(2).flatten(1).mean(1) + prior * z.pow(2).mean(1)
            opt.zero_grad(set_to_none=True)
            per_image.sum().backward()  # images are independent: summing keeps per-image gradients
            opt.step()
        with torch.no_grad():
            err = (generator.synthesize(z, e_) - x_).pow(2).flatten(1).mean(1)
        return z.detach(), err

    r = max(1, restarts)
    z_all = sample_latents(n * r, generator.z_dim, seed).to(device)
    z_try, err = fit(z_all, e.repeat(r, 1), targets.repeat(r, 1, 1, 1), max(1, steps // 4) if r > 1 else steps)
    best = err.view(r, n).argmin(0)
    z = z_try.view(r, n, -1)[best, torch.arange(n, device=device)]
    if r > 1:
        z, _ = fit(z, e, targets, steps - steps // 4)
    return z, e
