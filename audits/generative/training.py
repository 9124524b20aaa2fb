"""Train (or reuse) the class-conditional generator of an audit dataset, in a model's input space.

``train_generator`` reads the train split through the model's own timm eval
transform (``InputSpace.pixel_transform``: resize, crop and size exactly as the
model sees them, without normalisation), trains the DCGAN of ``gan.py`` on those
pixels and stores it keyed by the dataset digest; the same digest, input space
and settings return the stored artifact without retraining.
``generative_cli_train`` is what ``imaudit generative train`` calls.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from imaudit.audits.device import default_workers, resolve_device
from imaudit.errors import BadInputError

from .gan import GanConfig, train_gan
from .space import InputSpace
from .store import GeneratorArtifact, config_version, find_generator, load_pretrained_generator, save_artifact

if TYPE_CHECKING:
    from imaudit.audits.data import DatasetBundle

DEFAULT_EPOCHS = 30  # README: measured training times at 32 and 64 px with these defaults
DEFAULT_Z_DIM = 64


@dataclass(frozen=True)
class GeneratorSettings:
    """What fixes a trained generator besides the data and the input space (its store version hashes these)."""

    image_size: int | None = None  # None: the input space's default (its side, a power of two, at most 64)
    epochs: int = DEFAULT_EPOCHS
    z_dim: int = DEFAULT_Z_DIM
    seed: int = 0
    max_images: int | None = None
    batch_size: int = 64
    width: int = 32
    lr: float = 2e-4

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise BadInputError(f"epochs={self.epochs}: train for at least one epoch")
        if self.z_dim < 1:
            raise BadInputError(f"z_dim={self.z_dim}: the latent code needs at least one dimension")
        if self.batch_size < 2 or self.width < 1 or not self.lr > 0:
            raise BadInputError(f"batch_size={self.batch_size}, width={self.width}, lr={self.lr}: need a batch of at "
                                "least 2, a positive width and a positive learning rate")


def load_space_images(
    bundle: "DatasetBundle", space: InputSpace, size: int, *, max_images: int | None = None, seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The train split as the model sees it, in pixels (N,C,size,size in [0,1]), and label indices.

    Images go through the model's eval transform (no normalisation); when the
    generator is smaller than the input they are then resized as a whole (same
    field of view, so generator output resized back lands on the same pixels).
    Grey images arrive as RGB with equal channels; they are folded back to one
    channel so the generator learns a third of the numbers.
    """
    from imaudit.audits.data import ImageDataset

    rows = bundle.split("train")
    if rows.empty:
        raise BadInputError(f"{bundle.ref}: no 'train' split to train a generator on (splits: {', '.join(bundle.splits)})")
    if max_images is not None and len(rows) > max_images:
        rows = rows.sample(n=max_images, random_state=seed).reset_index(drop=True)
    ds = ImageDataset(rows, bundle.classes, space.pixel_transform())
    # Worker processes cost seconds to start: only worth it for large sets.
    workers = default_workers(torch.device("cpu")) if len(rows) >= 2000 else 0
    loader = DataLoader(ds, batch_size=256, num_workers=workers)
    xs, ys = [], []
    for x, y, _ in tqdm(loader, desc="loading train images", disable=None if progress else True, leave=False):
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        xs.append(x)
        ys.append(torch.as_tensor(y))
    images, labels = torch.cat(xs), torch.cat(ys).long()
    if images.shape[1] == 3 and torch.allclose(images[:, :1].expand_as(images), images, atol=1e-6):
        images = images[:, :1].contiguous()
    return images, labels


def train_generator(
    dataset_ref_or_bundle: "str | DatasetBundle",
    space: InputSpace,
    settings: GeneratorSettings | None = None,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
    store: Path | None = None,
    force: bool = False,
) -> GeneratorArtifact:
    """Train the dataset's generator in ``space`` on its train split, or return the stored one.

    The artifact lives under ``store`` (default ``cache_dir()/generative``) at
    ``<dataset digest>/<version>``, version = hash of the input space's
    geometry, the settings and the class list. ``force`` retrains and replaces it.
    """
    from imaudit.audits.data import DatasetBundle, load_dataset

    settings = settings or GeneratorSettings()
    bundle = dataset_ref_or_bundle if isinstance(dataset_ref_or_bundle, DatasetBundle) else load_dataset(
        str(dataset_ref_or_bundle), progress=progress
    )
    size = settings.image_size or space.default_generator_size()
    keyed: dict[str, Any] = {**asdict(settings), "image_size": size, "space": space.geometry(), "classes": bundle.classes}
    version = config_version(keyed)
    if not force and (found := find_generator(bundle.digest, store, version=version)) is not None:
        return found
    images, labels = load_space_images(bundle, space, size, max_images=settings.max_images, seed=settings.seed,
                                       progress=progress)
    config = GanConfig(
        n_classes=len(bundle.classes), image_size=size, channels=images.shape[1], z_dim=settings.z_dim,
        width=settings.width,
    )
    dev = resolve_device(None if device is None else str(device))
    start = time.perf_counter()
    g_net, d_net, losses = train_gan(
        images, labels, config, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
        seed=settings.seed, device=dev, progress=progress,
    )
    record = {**keyed, "dataset_ref": bundle.ref, "n_images": len(images),
              "seconds": round(time.perf_counter() - start, 2), "device": str(dev)}
    return save_artifact(
        g_net.cpu(), bundle.classes, bundle.digest, version, losses=losses, discriminator=d_net.cpu(),
        settings=record, space=space.geometry(), store=store,
    )


def summary_lines(artifact: GeneratorArtifact) -> list[str]:
    """A short human summary of an artifact (the CLI prints it)."""
    ident = artifact.identity()
    final = ident["losses_final"]
    space = artifact.space
    lines = [
        f"generator  {artifact.source}, {artifact.image_size}x{artifact.image_size}x{artifact.channels}, z_dim {artifact.z_dim}",
        "space      " + (_space_line(space) if space else "unknown (pretrained checkpoint without a recorded input space)"),
        f"dataset    {artifact.dataset_digest[:16]} ({len(artifact.classes)} classes)",
        f"version    {artifact.version}",
        f"folder     {artifact.path}",
    ]
    seconds = (artifact.train or {}).get("seconds")
    if final:
        lines.append(
            f"losses     epoch {ident['epochs']}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in final.items() if isinstance(v, (int, float)))
            + (f" ({seconds:.0f} s)" if isinstance(seconds, (int, float)) else "")
        )
    samples = artifact.path / "samples.png"
    if samples.is_file():
        lines.append(f"samples    {samples}")
    return lines


def _space_line(space: dict[str, Any]) -> str:
    h, w = space.get("input_size", ["?", "?"])
    return f"{h}x{w} model input, {space.get('interpolation')}, crop_pct {space.get('crop_pct')} ({space.get('crop_mode')})"


def model_space(model: str, *, arch: str | None = None, input_size: int | None = None,
                n_classes: int | None = None) -> InputSpace:
    """The input space of a model ref (only its data config is used)."""
    from imaudit.models import load_model

    lm = load_model(model, arch=arch, input_size=input_size, num_classes=n_classes if model.startswith("timm:") else None)
    return InputSpace.from_data_config(lm.data_config)


def train_for_model(
    dataset: str,
    model: str,
    settings: GeneratorSettings | None = None,
    *,
    arch: str | None = None,
    input_size: int | None = None,
    checkpoint: Path | None = None,
    device: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> GeneratorArtifact:
    """Train (or reuse) the generator of ``dataset`` in ``model``'s input space, or register a pretrained ``checkpoint``.

    With ``checkpoint`` nothing is trained: the file is checked and stored
    under the dataset's digest (with the model's input space, which the
    checkpoint is taken to be drawn in) so audits of that dataset find it.
    """
    from imaudit.audits.data import load_dataset

    bundle = load_dataset(dataset, progress=progress)
    space = model_space(model, arch=arch, input_size=input_size, n_classes=len(bundle.classes))
    if checkpoint is not None:
        return load_pretrained_generator(Path(checkpoint), dataset_digest=bundle.digest,
                                         expected_classes=bundle.classes, space=space.geometry())
    return train_generator(bundle, space, settings, device=device, progress=progress, force=force)


def generative_cli_train(
    dataset: str,
    model: str,
    settings: GeneratorSettings | None = None,
    *,
    echo: Any = print,
    **options: Any,
) -> GeneratorArtifact:
    """``imaudit generative train``: ``train_for_model`` (same options), then print a summary."""
    art = train_for_model(dataset, model, settings, **options)
    for line in summary_lines(art):
        echo(line)
    return art
