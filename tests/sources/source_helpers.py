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
