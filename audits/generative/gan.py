"""A small class-conditional DCGAN: generator, discriminator and the training loop.

Architecture after Radford et al. 2016 (DCGAN): strided (transposed)
convolutions, BatchNorm, ReLU in G and LeakyReLU(0.2) in D, Adam(2e-4,
betas=(0.5, 0.999)), weights drawn from N(0, 0.02). Conditioning after Mirza &
Osindero 2014: G gets the class embedding concatenated to z; D gets the class
as one extra image plane.

The generator works in pixel space: ``generator(z, labels)`` returns images in
[0, 1], so counterfactuals and in-fill never need to know about tanh scaling.
Its latent code is split in two parts that callers may optimise separately:
``z`` (style) and ``e = generator.embed(labels)`` (class, continuous), joined in
``generator.synthesize(z, e)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from imaudit.errors import BadInputError


@dataclass(frozen=True)
class GanConfig:
    """Everything that fixes the shape of the networks (stored in checkpoints as ``arch``)."""

    n_classes: int
    image_size: int = 32
    channels: int = 1
    z_dim: int = 64
    embed_dim: int = 16
    width: int = 32  # ngf = ndf; the widest layer has width * image_size / 8 channels

    def __post_init__(self) -> None:
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise BadInputError(f"image_size {self.image_size}: the DCGAN needs a power of two >= 8")
        if self.n_classes < 1:
            raise BadInputError("n_classes: the generator needs at least one class")

    @property
    def n_up(self) -> int:
        """Stride-2 stages between the 4x4 seed and the output size."""
        return int(math.log2(self.image_size)) - 2

    def to_dict(self) -> dict:
        return asdict(self)


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN paper init: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ConditionalGenerator(nn.Module):
    """(z, class) -> image in [0, 1] of shape (C, image_size, image_size)."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        self.n_classes = config.n_classes
        self.embedding = nn.Embedding(config.n_classes, config.embed_dim)
        ch = config.width * 2 ** (config.n_up - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(config.z_dim + config.embed_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(config.n_up - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, config.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def embed(self, labels: Tensor) -> Tensor:
        """The continuous class code of ``labels`` (N,) -> (N, embed_dim)."""
        return self.embedding(labels)

    def synthesize(self, z: Tensor, e: Tensor) -> Tensor:
        """Images from a style code ``z`` and a (possibly interpolated) class code ``e``."""
        h = torch.cat([z, e], dim=1)[:, :, None, None]
        return (self.net(h) + 1) / 2  # tanh range -> pixel range [0, 1]

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.synthesize(z, self.embed(labels))


class ConditionalDiscriminator(nn.Module):
    """(image in [0, 1], class) -> real/fake logit."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.config = config
        size = config.image_size
        self.label_plane = nn.Embedding(config.n_classes, size * size)
        ch = config.width
        layers: list[nn.Module] = [nn.Conv2d(config.channels + 1, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for _ in range(config.n_up - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0)]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        size = self.config.image_size
        plane = self.label_plane(labels).view(-1, 1, size, size)
        return self.net(torch.cat([x * 2 - 1, plane], dim=1)).flatten()


def sample_latents(n: int, z_dim: int, seed: int) -> Tensor:
    """Deterministic standard-normal latents for a seed (CPU generator, so any device repeats)."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def class_mean_gap(generator: ConditionalGenerator, images: Tensor, labels: Tensor, per_class: int = 32, seed: int = 0) -> float:
    """Mean squared gap between real and generated per-class mean images.

    A fixed evaluation of the generator that, unlike the adversarial losses,
    does not depend on the discriminator's current state: an untrained G
    outputs grey noise, a trained one matches each class's average image.
    """
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    gaps = []
    for c in labels.unique().tolist():
        real = images[labels == c].mean(0)
        z = sample_latents(per_class, generator.z_dim, seed + c).to(device)
        fake = generator(z, torch.full((per_class,), c, device=device)).mean(0).cpu()
        gaps.append(F.mse_loss(fake, real).item())
    generator.train(was_training)
    return float(sum(gaps) / len(gaps))


def train_gan(
    images: Tensor,
    labels: Tensor,
    config: GanConfig,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[ConditionalGenerator, ConditionalDiscriminator, list[dict[str, float]]]:
    """Train a conditional DCGAN on pixel tensors (N,C,S,S in [0,1]) and integer labels.

    Returns (generator in eval mode, discriminator, losses): one row per epoch
    with the mean ``d_loss`` and ``g_loss`` (non-saturating), D's mean
    probability on real and fake batches, and ``mean_gap`` (class_mean_gap on a
    fixed subset; lower is better).
    """
    if images.dim() != 4 or images.shape[1:] != (config.channels, config.image_size, config.image_size):
        raise BadInputError(
            f"images: expected (N, {config.channels}, {config.image_size}, {config.image_size}), got {tuple(images.shape)}"
        )
    if len(images) != len(labels) or len(images) == 0:
        raise BadInputError(f"images/labels: need the same non-zero length, got {len(images)} and {len(labels)}")
    device = torch.device(device)
    torch.manual_seed(seed)
    g_net, d_net = ConditionalGenerator(config).to(device), ConditionalDiscriminator(config).to(device)
    opt_g = torch.optim.Adam(g_net.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d_net.parameters(), lr=lr, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    rng = torch.Generator().manual_seed(seed)
    labels = labels.long()
    eval_idx = torch.randperm(len(images), generator=rng)[:512]
    eval_x, eval_y = images[eval_idx], labels[eval_idx]
    # Keep batches of >= 2 so BatchNorm has statistics; drop a trailing singleton.
    bs = max(2, min(batch_size, len(images)))
    losses: list[dict[str, float]] = []
    step = 0
    bar = tqdm(range(epochs), desc="gan", disable=None if progress else True, leave=False)
    for epoch in bar:
        g_net.train()
        d_net.train()
        perm = torch.randperm(len(images), generator=rng)
        sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
        batches = 0
        for start in range(0, len(perm), bs):
            idx = perm[start : start + bs]
            if len(idx) < 2:
                continue
            x, y = images[idx].to(device), labels[idx].to(device)
            z = torch.randn(len(idx), config.z_dim, generator=rng).to(device)
            fake_y = torch.randint(0, config.n_classes, (len(idx),), generator=rng).to(device)
            fake = g_net(z, fake_y)

            # D step; one-sided label smoothing (real target 0.9, Salimans et al. 2016) steadies D on tiny sets.
            real_logit, fake_logit = d_net(x, y), d_net(fake.detach(), fake_y)
            d_loss = bce(real_logit, torch.full_like(real_logit, 0.9)) + bce(fake_logit, torch.zeros_like(fake_logit))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()

            # G step, non-saturating loss: maximise log D(G(z)).
            gen_logit = d_net(fake, fake_y)
            g_loss = bce(gen_logit, torch.ones_like(gen_logit))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()

            sums["d_loss"] += d_loss.item()
            sums["g_loss"] += g_loss.item()
            sums["d_real"] += torch.sigmoid(real_logit).mean().item()
            sums["d_fake"] += torch.sigmoid(fake_logit).mean().item()
            batches += 1
            step += 1
        row = {"epoch": epoch + 1, "step": step, **{k: v / max(batches, 1) for k, v in sums.items()}}
        row["mean_gap"] = class_mean_gap(g_net, eval_x, eval_y, seed=seed)
        losses.append(row)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k in ("d_loss", "g_loss", "mean_gap")})
    g_net.eval()
    d_net.eval()
    return g_net, d_net, losses
