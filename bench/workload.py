"""What every benchmark row runs on: one timm model, real images from builtin:digits, one device."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from imaudit.audits.data import DatasetBundle, ImageDataset, load_dataset
from imaudit.audits.device import forward_batched, prepare_model, resolve_device
from imaudit.errors import BadInputError
from imaudit.models import load_model
from imaudit.models.loaded import LoadedModel

DATASET = "builtin:digits"


@dataclass
class Workload:
    """A model ready on ``device`` and ``images`` (normalised val images) with their predicted classes."""

    model: LoadedModel
    dataset: DatasetBundle
    device: torch.device
    images: Tensor
    targets: Tensor
    ids: list[str]

    @property
    def mean(self) -> list[float] | None:
        return self.model.data_config.get("mean")

    @property
    def std(self) -> list[float] | None:
        return self.model.data_config.get("std")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def model_ref(self) -> str:
        return self.model.ref

    def head(self, n: int) -> "Workload":
        """The same model and device with only the first ``n`` images."""
        return replace(self, images=self.images[:n], targets=self.targets[:n], ids=self.ids[:n])


def random_timm_ref(model: str) -> str:
    """``timm:<model>?pretrained=false``: the bench times random weights (no download, any architecture)."""
    ref = model if model.startswith("timm:") else f"timm:{model}"
    return ref if "?" in ref else f"{ref}?pretrained=false"


def build_workload(model: str, image_size: int, images: int, device: str = "auto",
                   dataset: str = DATASET) -> Workload:
    """Load ``timm:<model>`` (random weights, one output per class) at ``image_size`` px and
    the first ``images`` val images of ``dataset`` (default builtin:digits) through the
    model's own preprocessing.

    Targets are the model's predicted classes, so every method explains the same
    class a library's "top prediction" default would.
    """
    if image_size < 8:
        raise BadInputError(f"--image-size {image_size}: need at least 8 pixels")
    if images < 1:
        raise BadInputError(f"--images {images}: need at least 1 image")
    dev = resolve_device(device)
    ref = random_timm_ref(model)
    ds = load_dataset(dataset, progress=False)
    lm = load_model(ref, num_classes=len(ds.classes), input_size=image_size)
    prepare_model(lm.module, dev)
    rows = ds.split("val").head(images)
    dset = ImageDataset(rows, ds.classes, lm.transform())
    x = torch.stack([dset[i][0] for i in range(len(dset))])
    targets = forward_batched(lm.module, x, dev).argmax(-1)
    return Workload(lm, ds, dev, x, targets, rows["id"].astype(str).tolist())
