"""Helpers for the generative tests: hand-built generators and rule models with known answers, toy data."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from imaudit.audits.generative.gan import GanConfig

QUADRANTS = {"top-left": (0, 0), "top-right": (0, 1), "bottom-left": (1, 0), "bottom-right": (1, 1)}


def quadrant(x: torch.Tensor, name: str) -> torch.Tensor:
    """The (…, H/2, W/2) quadrant ``name`` of images (N,C,H,W)."""
    r, c = QUADRANTS[name]
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    return x[..., r * h : (r + 1) * h, c * w : (c + 1) * w]


class BlockGenerator(nn.Module):
    """A generator with a known latent space: z[k] paints block k of a grid x grid mosaic.

    pixel = sigmoid(z of its block + class code on the top-left quadrant). Each
    latent dimension moves exactly one block, so a minimal latent move changes
    only the blocks the model reads. Class 0 darkens the top-left, class 1
    brightens it; the mean class code is 0.
    """

    def __init__(self, grid: int = 4, size: int = 32) -> None:
        super().__init__()
        self.grid, self.size = grid, size
        self.z_dim, self.n_classes = grid * grid, 2
        self.embedding = nn.Embedding(2, 1)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.tensor([[-2.0], [2.0]]))
        mask = torch.zeros(1, 1, size, size)
        mask[..., : size // 2, : size // 2] = 1
        self.register_buffer("tl_mask", mask)

    def embed(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding(labels)

    def synthesize(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        blocks = F.interpolate(z.view(-1, 1, self.grid, self.grid), size=self.size, mode="nearest")
        return torch.sigmoid(blocks + e[:, :1, None, None] * self.tl_mask)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.synthesize(z, self.embed(labels))


class QuadrantRule(nn.Module):
    """Class 1 iff the mean brightness of one quadrant exceeds 0.5 (logit margin 20 x (mean - 0.5))."""

    def __init__(self, where: str = "top-left") -> None:
        super().__init__()
        self.where = where
        self.gain = nn.Parameter(torch.tensor(20.0), requires_grad=False)  # a parameter so device lookups work

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = quadrant(x, self.where).mean((1, 2, 3))
        logit = self.gain * (m - 0.5)
        return torch.stack([-logit / 2, logit / 2], dim=1)


def block_images(n: int, seed: int = 0, size: int = 32, grid: int = 4) -> torch.Tensor:
    """Block mosaics in [0.2, 0.8]: exactly representable by BlockGenerator."""
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(n, 1, grid, grid, generator=g) * 0.6 + 0.2
    return F.interpolate(v, size=size, mode="nearest")


def halves(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-class toy set: class 0 bright left half, class 1 bright right half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.full((n, 1, size, size), 0.1)
    for i in range(n):
        if y[i] == 0:
            x[i, :, :, : size // 2] = 0.9
        else:
            x[i, :, :, size // 2 :] = 0.9
    return (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1), y


TINY = GanConfig(n_classes=2, image_size=16, channels=1, z_dim=8, embed_dim=4, width=16)
# A fast learning rate for the tiny toy set (real training keeps DCGAN's 2e-4).
TINY_TRAIN = dict(epochs=10, batch_size=16, lr=2e-3)


# --- plain shapes: a data set a tiny GAN learns in seconds, with or without a planted corner patch ----------------

PATCH_COLOURS = [(255, 40, 40), (40, 255, 40), (40, 80, 255)]
PATCH = (1, 1, 5, 5)  # x0, y0, x1, y1 (exclusive) in the 32 px source images


def plain_shapes(root, *, patch: bool, n: int = 300, size: int = 32, seed: int = 0) -> str:
    """A csv: dataset of one light grey shape (circle, square, triangle = the class) on a flat dark background.

    With ``patch`` every image also carries a 4 x 4 patch of its class's colour
    at PATCH, and the shapes keep 2 px away from it: a model trained on it
    learns the patch (the planted shortcut). Object masks come with every image.
    """
    from pathlib import Path

    import numpy as np
    from PIL import Image, ImageDraw

    classes = ("circle", "square", "triangle")
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = ["path,label,split,mask"]
    for i in range(n):
        c = i % len(classes)
        split = "train" if i < int(0.7 * n) else "val"
        # Flat colours: a tiny GAN learns shape and place in seconds, and draws them clearly enough for the model.
        img, mask = Image.new("RGB", (size, size), (40 + i % 7, 40, 60)), Image.new("L", (size, size), 0)
        r = rng.uniform(5, 8)
        cx, cy = rng.uniform(r + 7, size - r - 1, 2)
        colour = (225, 225, 225)
        for draw, fill in ((ImageDraw.Draw(img), colour), (ImageDraw.Draw(mask), 255)):
            if classes[c] == "circle":
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
            elif classes[c] == "square":
                draw.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), fill=fill)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=fill)
        a = np.asarray(img).copy()
        if patch:
            x0, y0, x1, y1 = PATCH
            a[y0:y1, x0:x1] = PATCH_COLOURS[c]
        for kind, im in (("img", Image.fromarray(a)), ("mask", mask)):
            (root / kind).mkdir(parents=True, exist_ok=True)
            im.save(root / kind / f"{i:04d}.png")
        rows.append(f"img/{i:04d}.png,{classes[c]},{split},mask/{i:04d}.png")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return f"csv:{root / 'data.csv'}"


def train_checkpoint(dataset: str, path, *, epochs: int, arch: str = "test_resnet", size: int = 32,
                     robust: bool = False) -> str:
    """Train timm's ``arch`` on the dataset's train split through the model's own transform; save a checkpoint.

    ``robust`` adds blurred and noisy copies of every image, so the model reads
    shapes the way a small GAN draws them (soft edges, speckled background).
    """
    from torch.utils.data import DataLoader, TensorDataset

    from imaudit.audits.data import ImageDataset, load_dataset
    from imaudit.models import load_model, save_checkpoint
    from imaudit.models.train import train_classifier

    ds = load_dataset(dataset, progress=False)
    lm = load_model(f"timm:{arch}?pretrained=false", num_classes=len(ds.classes), input_size=size)
    train = ImageDataset(ds.split("train"), ds.classes, lm.transform())
    x, y, _ = next(iter(DataLoader(train, batch_size=len(train))))  # decode once, not once per epoch
    if robust:
        from torchvision.transforms.functional import gaussian_blur

        g = torch.Generator().manual_seed(0)
        x = torch.cat([x, gaussian_blur(x, [3, 3], [1.0, 1.0]), x + 0.3 * torch.randn(x.shape, generator=g)])
        y = y.repeat(3)
    train_classifier(lm.module, TensorDataset(x, y), epochs=epochs, lr=0.01, progress=False)
    save_checkpoint(path, lm.module, arch=arch, classes=ds.classes, input_size=size)
    return f"file:{path}"
