"""Train (or reuse) the class-conditional generator of an audit dataset.

``train_generator`` reads the train split at ``image_size``, trains the
DCGAN of ``gan.py`` and stores it keyed by the dataset digest; the same digest
and settings return the stored artifact without retraining.
``generative_cli_train`` is what ``imaudit generative train`` calls.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from tqdm.auto import tqdm

from imaudit.audits.device import default_workers, resolve_device
from imaudit.errors import BadInputError

from .gan import GanConfig, train_gan
from .store import GeneratorArtifact, config_version, find_generator, load_pretrained_generator, save_artifact

if TYPE_CHECKING:
    from imaudit.audits.data import DatasetBundle

DEFAULT_EPOCHS = 30  # builtin:digits at 32 px: about 40 s on 2 CPU cores, recognisable digits


def load_train_images(
    bundle: "DatasetBundle", image_size: int, *, max_images: int | None = None, seed: int = 0, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The train split as pixels (N,C,S,S in [0,1]) and label indices.

    Grey images arrive as RGB with equal channels (images.load_image); they are
    folded back to one channel so the generator learns 1/3 of the pixels.
    """
    from imaudit.audits.data import ImageDataset

    rows = bundle.split("train")
    if rows.empty:
        raise BadInputError(f"{bundle.ref}: no 'train' split to train a generator on (splits: {', '.join(bundle.splits)})")
    if max_images is not None and len(rows) > max_images:
        rows = rows.sample(n=max_images, random_state=seed).reset_index(drop=True)
    tf = transforms.Compose([transforms.Resize((image_size, image_size), antialias=True), transforms.ToTensor()])
    ds = ImageDataset(rows, bundle.classes, tf)
    # Worker processes cost seconds to start: only worth it for large sets.
    workers = default_workers(torch.device("cpu")) if len(rows) >= 2000 else 0
    loader = DataLoader(ds, batch_size=256, num_workers=workers)
    xs, ys = [], []
    for x, y, _ in tqdm(loader, desc="loading train images", disable=None if progress else True, leave=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    images, labels = torch.cat(xs), torch.cat(ys).long()
    if images.shape[1] == 3 and torch.equal(images[:, :1].expand_as(images), images):
        images = images[:, :1].contiguous()
    return images, labels


def train_generator(
    dataset_ref_or_bundle: "str | DatasetBundle",
    *,
    image_size: int = 32,
    epochs: int = DEFAULT_EPOCHS,
    z_dim: int = 64,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    store: Path | None = None,
    max_images: int | None = None,
    batch_size: int = 64,
    width: int = 32,
    force: bool = False,
) -> GeneratorArtifact:
    """Train the dataset's generator on its train split, or return the stored one for the same settings.

    The artifact lives under ``store`` (default ``cache_dir()/generative``)
    at ``<dataset digest>/<version>``, version = hash of the settings below.
    ``force`` retrains and replaces it.
    """
    from imaudit.audits.data import DatasetBundle, load_dataset

    if epochs < 1:
        raise BadInputError(f"epochs={epochs}: train for at least one epoch")
    bundle = dataset_ref_or_bundle if isinstance(dataset_ref_or_bundle, DatasetBundle) else load_dataset(
        str(dataset_ref_or_bundle), progress=progress
    )
    settings: dict[str, Any] = {
        "image_size": image_size,
        "epochs": epochs,
        "z_dim": z_dim,
        "seed": seed,
        "max_images": max_images,
        "batch_size": batch_size,
        "width": width,
        "lr": 2e-4,
        "classes": bundle.classes,
    }
    version = config_version(settings)
    if not force and (found := find_generator(bundle.digest, store, version=version)) is not None:
        return found
    images, labels = load_train_images(bundle, image_size, max_images=max_images, seed=seed, progress=progress)
    config = GanConfig(
        n_classes=len(bundle.classes), image_size=image_size, channels=images.shape[1], z_dim=z_dim, width=width
    )
    dev = resolve_device(None if device is None else str(device))
    start = time.perf_counter()
    g_net, d_net, losses = train_gan(
        images, labels, config, epochs=epochs, batch_size=batch_size, seed=seed, device=dev, progress=progress
    )
    settings.update(dataset_ref=bundle.ref, n_images=len(images), seconds=round(time.perf_counter() - start, 2), device=str(dev))
    return save_artifact(
        g_net.cpu(), bundle.classes, bundle.digest, version, losses=losses, discriminator=d_net.cpu(), settings=settings, store=store
    )


def summary_lines(artifact: GeneratorArtifact) -> list[str]:
    """A short human summary of an artifact (the CLI prints it)."""
    ident = artifact.identity()
    final = ident["losses_final"]
    lines = [
        f"generator  {artifact.source}, {artifact.image_size}x{artifact.image_size}x{artifact.channels}, z_dim {artifact.z_dim}",
        f"dataset    {artifact.dataset_digest[:16]} ({len(artifact.classes)} classes)",
        f"version    {artifact.version}",
        f"folder     {artifact.path}",
    ]
    if final:
        lines.append(
            f"losses     epoch {ident['epochs']}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in final.items() if isinstance(v, (int, float)))
        )
    samples = artifact.path / "samples.png"
    if samples.is_file():
        lines.append(f"samples    {samples}")
    return lines


def generative_cli_train(
    dataset: str,
    epochs: int = DEFAULT_EPOCHS,
    image_size: int = 32,
    *,
    checkpoint: Path | None = None,
    z_dim: int = 64,
    seed: int = 0,
    max_images: int | None = None,
    device: str | None = None,
    force: bool = False,
    progress: bool = True,
    echo: Any = print,
) -> GeneratorArtifact:
    """``imaudit generative train``: train (or register a pretrained ``checkpoint``) and print a summary.

    With ``checkpoint`` nothing is trained: the file is checked and stored
    under the dataset's digest so audits of that dataset find it.
    """
    from imaudit.audits.data import load_dataset

    bundle = load_dataset(dataset, progress=progress)
    if checkpoint is not None:
        art = load_pretrained_generator(Path(checkpoint), dataset_digest=bundle.digest, expected_classes=bundle.classes)
    else:
        art = train_generator(
            bundle, image_size=image_size, epochs=epochs, z_dim=z_dim, seed=seed, device=device,
            progress=progress, max_images=max_images, force=force,
        )
    for line in summary_lines(art):
        echo(line)
    return art
