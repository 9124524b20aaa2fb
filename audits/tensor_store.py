"""Pre-transformed images, cached by image content and transform, so no image is decoded twice.

Every method, the gallery and the quality checks look at the same sample of
images; before this store each of them decoded and transformed the files
again (sixteen times per audit with seven methods), and every re-audit did it
once more. A model-ready image is written once as ``float32 (C, H, W)`` .npy
under ``cache_dir()/tensors/<transform key>/<sha256>.npy``: the key covers the
model's data config (input size, interpolation, crop, mean and std) and the
code that decodes and transforms, the file name is the image's content hash,
so it is shared by every dataset holding that image and every audit of a
model with that preprocessing. Files are written atomically with their size
and sha256 beside them (``.sum``); one that does not verify, or does not read
back as the expected shape, is decoded and written again.

Prediction does not go through the store: it reads each image once, and
keeping a float copy of a whole dataset (600 KB per image at 224 px) would
cost far more disk than the decode it saves.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from imaudit import paths
from imaudit.audits import chunks
from imaudit.audits.images import ImageDataset
from imaudit.audits.loading import threaded_batches
from imaudit.io import read_verified, write_verified

log = logging.getLogger(__name__)
_CODE = ("imaudit.audits.images", "imaudit.audits.loading", "imaudit.audits.tensor_store")


def store_dir(config: Mapping[str, Any]) -> Path:
    """The folder of one transform's tensors: ``cache_dir()/tensors/<key>``."""
    key = chunks.digest("tensors", dict(config), chunks.source_digest(_CODE))
    return paths.cache_dir() / "tensors" / key[:32]


def _read(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The cached tensor, or None when it is missing or does not verify (size + sha256 in its ``.sum``,
    imaudit.io.read_verified: a changed byte would otherwise feed every method a wrong image) or does not
    read back whole as the expected shape."""
    data, problem = read_verified(path)
    if data is None:
        if problem:
            log.warning("cached image tensor %s did not verify (%s); decoding the image again", path, problem)
        return None
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        log.warning("cached image tensor %s unreadable (%s); decoding the image again", path, e)
        return None
    if arr.dtype != np.float32 or tuple(arr.shape) != shape:
        log.warning("cached image tensor %s has shape %s, expected %s; decoding again", path, arr.shape, shape)
        return None
    return torch.from_numpy(arr)


def _write(path: Path, x: torch.Tensor) -> None:
    """Write the tensor atomically with its size + sha256 beside it (imaudit.io.write_verified)."""
    buf = io.BytesIO()
    np.save(buf, x.numpy().astype(np.float32, copy=False), allow_pickle=False)
    write_verified(path, buf.getvalue())


def cached_images(rows: pd.DataFrame, classes: list[str], transform: Any, config: Mapping[str, Any],
                  batch_size: int = 64) -> torch.Tensor:
    """Model-ready images (N, C, H, W) of manifest ``rows`` (path, sha256, ...), from the store or decoded into it.

    ``config`` is the model's data config: its ``input_size`` gives the
    expected shape, and it keys the store together with the code version.
    """
    if len(rows) == 0:
        return torch.empty(0)
    shape = tuple(int(v) for v in config["input_size"])
    folder = store_dir(config)
    shas = rows["sha256"].astype(str).tolist()
    found: dict[str, torch.Tensor] = {}
    for sha in dict.fromkeys(shas):
        x = _read(folder / f"{sha}.npy", shape)
        if x is not None:
            found[sha] = x
    missing = [i for i, sha in enumerate(shas) if sha not in found]
    if missing:
        first = {}
        for i in missing:
            first.setdefault(shas[i], i)
        todo = rows.iloc[list(first.values())].reset_index(drop=True)
        decoded = torch.cat(list(threaded_batches(ImageDataset(todo, classes, transform), batch_size)))
        for sha, x in zip(first, decoded):
            x = x.contiguous()
            found[sha] = x
            if tuple(x.shape) == shape:
                _write(folder / f"{sha}.npy", x)
    return torch.stack([found[sha] for sha in shas])
