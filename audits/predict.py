"""Batched inference over the dataset's splits -> a per-image table + logits.

The table is what diagnostics, sampling for explanations and comparisons
read; logits stay on disk (logits.npy) so nothing big travels between tasks.
Its main columns (pred, pred_label, confidence, loss, correct, top5) and
logits.npy are in the dataset's class order: the ``all`` view, or for a model
audited on a subset of its classes the ``restricted`` view; such a table also
has the ``full`` view's columns (pred_full, pred_full_label, confidence_full,
loss_full, correct_full, top5_correct_full, in_classes), see
imaudit.audits.classmap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from imaudit.audits.device import autocast, default_batch_size, default_workers, prepare_model, to_device
from imaudit.audits.images import ImageDataset
from imaudit.audits.loading import batches

PRED_COLUMNS = ["id", "split", "label", "y", "pred", "pred_label", "confidence", "loss", "correct", "finite", "top5"]


@dataclass
class Predictions:
    """Per-image predictions; rows align with ``logits`` rows."""

    table: pd.DataFrame
    logits: np.ndarray

    @property
    def probs(self) -> np.ndarray:
        return softmax(self.logits)

    def split(self, name: str) -> tuple[pd.DataFrame, np.ndarray]:
        mask = (self.table["split"] == name).to_numpy()
        return self.table[mask], self.logits[mask]

    def save(self, folder: str | Path) -> dict[str, str]:
        """Write predictions.csv and logits.npy into ``folder``; return their names."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        t = self.table.copy()
        t["top5"] = t["top5"].map(json.dumps)
        t.to_csv(folder / "predictions.csv", index=False)
        np.save(folder / "logits.npy", self.logits.astype(np.float32))
        return {"predictions": "predictions.csv", "logits": "logits.npy"}

    @classmethod
    def load(cls, folder: str | Path) -> "Predictions":
        folder = Path(folder)
        t = pd.read_csv(folder / "predictions.csv",
                        dtype={"id": str, "label": str, "pred_label": str, "pred_full_label": str})
        t["top5"] = t["top5"].map(json.loads)
        return cls(t, np.load(folder / "logits.npy"))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax in float64; non-finite rows stay non-finite (they are findings, not zeros)."""
    z = logits.astype(np.float64)
    z = z - np.max(z, axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def select_rows(manifest: pd.DataFrame, splits: list[str] | None, train_cap: int, seed: int = 0) -> pd.DataFrame:
    """Rows to predict: the chosen splits, with train capped to a deterministic sample."""
    rows = manifest if splits is None else manifest[manifest["split"].isin(splits)]
    train = rows[rows["split"] == "train"]
    if len(train) > train_cap:
        keep = train.sample(n=train_cap, random_state=seed).index
        rows = rows[(rows["split"] != "train") | rows.index.isin(keep)]
    return rows.reset_index(drop=True)


@torch.no_grad()
def infer_logits(
    module: torch.nn.Module,
    dataset: ImageDataset,
    device: torch.device,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    decode: str = "auto",
    progress: bool = True,
    desc: str = "predict",
    image_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """Logits (N, K) float32 for every item of ``dataset``, in order.

    Images are decoded while the model runs (imaudit.audits.loading: threads
    on CPU, worker processes or GPU JPEG decoding on CUDA).
    """
    module = prepare_model(module, device)
    bs = batch_size or default_batch_size(device, image_hw)  # image_hw: the model's input size
    nw = default_workers(device) if workers is None else workers
    it, _ = batches(dataset, device, bs, nw, decode)
    out: list[torch.Tensor] = []
    # disable=None: a bar only where stderr is a terminal (tqdm checks isatty)
    for x in tqdm(it, desc=desc, disable=None if progress else True, leave=False, unit="batch",
                  total=-(-len(dataset) // bs)):
        x = to_device(x, device)
        with autocast(device):
            logits = module(x)
        out.append(logits.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def build_table(rows: pd.DataFrame, classes: list[str], logits: np.ndarray) -> pd.DataFrame:
    """Per-image table from manifest rows and their logits (non-finite rows flagged, never dropped)."""
    k = logits.shape[1] if logits.ndim == 2 else len(classes)
    y = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    finite = np.isfinite(logits).all(axis=1)
    probs = softmax(np.where(np.isfinite(logits), logits, 0.0))
    pred = probs.argmax(axis=1)
    conf = probs[np.arange(len(pred)), pred]
    p_true = probs[np.arange(len(y)), np.clip(y, 0, k - 1)]
    loss = -np.log(np.clip(p_true, 1e-12, 1.0))
    top = np.argsort(-probs, axis=1)[:, : min(5, k)]
    names = np.array(classes + [str(i) for i in range(len(classes), k)], dtype=object)
    table = pd.DataFrame(
        {
            "id": rows["id"].astype(str).to_numpy(),
            "split": rows["split"].to_numpy(),
            "label": rows["label"].astype(str).to_numpy(),
            "y": y,
            "pred": pred,
            "pred_label": names[pred],
            "confidence": np.where(finite, conf, np.nan),
            "loss": np.where(finite, loss, np.nan),
            "correct": (pred == y) & finite,
            "finite": finite,
            "top5": [list(map(int, t)) for t in top],
        }
    )
    return table
