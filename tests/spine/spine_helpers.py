"""Trained tiny models shared by the spine tests (trained once per test process)."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import torch

from imaudit.audits.data import ImageDataset, load_dataset
from imaudit.models import load_model, save_checkpoint
from imaudit.models.train import train_classifier

ARCH, SIZE = "test_resnet", 32


@functools.lru_cache(maxsize=None)
def trained_digits(folder: str, epochs: int = 6) -> tuple[str, list[dict]]:
    """The demo recipe: test_resnet on builtin:digits; returns (checkpoint path, history)."""
    ds = load_dataset("builtin:digits", progress=False)
    lm = load_model(f"timm:{ARCH}?pretrained=false", num_classes=len(ds.classes), input_size=SIZE)
    tf = lm.transform()
    hist = train_classifier(
        lm.module, ImageDataset(ds.split("train"), ds.classes, tf), ImageDataset(ds.split("val"), ds.classes, tf),
        epochs=epochs, progress=False,
    )
    path = Path(folder) / "digits.pt"
    save_checkpoint(path, lm.module, arch=ARCH, classes=ds.classes, input_size=SIZE, history=hist)
    return str(path), hist


@functools.lru_cache(maxsize=None)
def memorised_digits(folder: str, n_train: int = 40, epochs: int = 60) -> tuple[str, str]:
    """test_resnet trained to memorise a tiny train set: the overfitting case.

    Returns (checkpoint, csv dataset ref) where the CSV's train split is exactly
    the memorised images and its val split is 200 unseen digits.
    """
    ds = load_dataset("builtin:digits", progress=False)
    lm = load_model(f"timm:{ARCH}?pretrained=false", num_classes=len(ds.classes), input_size=SIZE)
    tiny = ds.split("train").groupby("label", group_keys=False).head(n_train // len(ds.classes))
    train_classifier(lm.module, ImageDataset(tiny, ds.classes, lm.transform()), epochs=epochs, batch_size=20,
                     lr=3e-3, weight_decay=0.0, progress=False)
    path = Path(folder) / "memorised.pt"
    save_checkpoint(path, lm.module, arch=ARCH, classes=ds.classes, input_size=SIZE)
    rows = pd.concat([tiny.assign(split="train"), ds.split("val").head(200).assign(split="val")])
    csv = Path(folder) / "memorised.csv"
    rows[["path", "label", "split"]].to_csv(csv, index=False)
    return str(path), f"csv:{csv}"


def nan_checkpoint(folder: Path, n_classes: int = 10) -> Path:
    """A test_resnet checkpoint whose classifier bias is NaN: every logit is NaN."""
    lm = load_model(f"timm:{ARCH}?pretrained=false", num_classes=n_classes, input_size=SIZE)
    with torch.no_grad():
        lm.module.get_classifier().bias.fill_(float("nan"))
    path = folder / "nan.pt"
    save_checkpoint(path, lm.module, arch=ARCH, input_size=SIZE)
    return path
