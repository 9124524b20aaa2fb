"""Small models and data for the source tests, and an independent prediction oracle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from imaudit.audits.data import DatasetBundle, ImageDataset
from imaudit.models.loaded import LoadedModel

SHAPES = "builtin:shapes?n=48&size=32"


def audit_folder(store: Path) -> Path:
    """The folder of the only audit in a report store."""
    (folder,) = [p for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder


def audit_json(store: Path) -> dict:
    return json.loads((audit_folder(store) / "audit.json").read_text())


def oracle_logits(model: LoadedModel, bundle: DatasetBundle, split: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """(logits, true label indices) of one split computed here, outside the audit, in manifest order."""
    rows = bundle.split(split)
    ds = ImageDataset(rows, bundle.classes, model.transform())
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        return model.module(x).numpy(), np.array(ds.labels)


def audit_predictions(store: Path, split: str = "val") -> pd.DataFrame:
    table = pd.read_csv(audit_folder(store) / "predictions.csv", dtype={"id": str, "label": str, "pred_label": str})
    return table[table["split"] == split]


def save_hf_dataset(cache: Path, repo: str, splits: dict[str, list[tuple[bytes, int]]], names: list[str]) -> Path:
    """Save a small image dataset with ``datasets`` where a download of ``repo`` would have left it.

    The parquet builder prepares the Arrow files (what ``load_dataset`` does
    after downloading a hub dataset's parquet shards), then the prepared folder
    is placed under the hub dataset's cache name ``ORG___NAME``, which is where
    ``load_dataset(repo)`` looks when the hub is offline.
    """
    import shutil
    import tempfile

    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet

    org, name = repo.split("/")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    work = Path(tempfile.mkdtemp(dir=cache.parent))
    files = {}
    for split, rows in splits.items():
        table = datasets.Dataset.from_dict(
            {"image": [{"bytes": data, "path": None} for data, _ in rows], "label": [y for _, y in rows]},
            features=features,
        )
        files[split] = [str(work / f"{split}.parquet")]
        table.to_parquet(files[split][0])
    builder = Parquet(cache_dir=str(work / "prepared"), dataset_name=name, data_files=files, features=features,
                      hash="0123456789abcdef", config_id="default")
    builder.download_and_prepare()
    target = cache / f"{org}___{name}"
    shutil.move(str(work / "prepared" / name), target)
    shutil.rmtree(work, ignore_errors=True)
    return target


def png_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def count_probes(monkeypatch) -> list[str]:
    """Paths whose bytes the dataset loader reads and decodes (probe_image calls), collected from now on."""
    from imaudit.audits import data as data_module

    seen: list[str] = []
    original = data_module.probe_image

    def counting(path, *args, **kwargs):
        seen.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(data_module, "probe_image", counting)
    return seen


def age_files(root: Path, seconds: int = 3600) -> None:
    """Move every file's mtime under ``root`` into the past, past the manifest cache's racy window (as time would)."""
    import os
    import time

    past = time.time_ns() - seconds * 10**9
    for f in Path(root).rglob("*"):
        if f.is_file():
            os.utime(f, ns=(past, past))
