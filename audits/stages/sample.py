"""Stage sample: the validation images every method explains (shared, so methods can be compared).

Writes sample.csv (rows of predictions.csv, misclassified first); later stages
read it back with ``rows`` and turn rows into model-ready images with ``tensors``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from imaudit.audits.data import ImageDataset
from imaudit.audits.explain import select_sample
from imaudit.audits.predict import Predictions
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs
from imaudit.audits.stages.records import SampleOutcome

EVAL_SPLITS = ("val", "test")


def eval_split(table: pd.DataFrame) -> str | None:
    """The split explanations and counterfactuals look at: val, else test, else none."""
    return next((s for s in EVAL_SPLITS if (table["split"] == s).any()), None)


def run(spec: AuditSpec, work: Path) -> SampleOutcome:
    """Pick the images (as many as the hungriest method explains) and write sample.csv."""
    table = Predictions.load(work).table
    table = table[table["finite"]]
    split = eval_split(table)
    n = max([spec.samples_for(m) for m in spec.methods] + [0])
    if split is None or n == 0:
        sample = table.iloc[0:0]
    else:
        sample = select_sample(table, n, seed=spec.seed, split=split)
    sample.to_csv(work / "sample.csv", index=False)
    return SampleOutcome(n=int(len(sample)), split=split)


def rows(work: Path, start: int = 0, stop: int | None = None) -> pd.DataFrame:
    """Rows [start, stop) of sample.csv."""
    sample = pd.read_csv(work / "sample.csv", dtype={"id": str, "label": str, "pred_label": str})
    return sample.iloc[start:stop].reset_index(drop=True)


def tensors(
    spec: AuditSpec, work: Path, start: int = 0, stop: int | None = None, masks: bool = True
) -> tuple[torch.Tensor, pd.DataFrame, np.ndarray | None]:
    """Model-ready images of sample rows [start, stop), the rows, and (when asked and the
    dataset has them) their object masks at input size."""
    ds, model = inputs.dataset(spec), inputs.model(spec)
    sample = rows(work, start, stop)
    manifest_rows = ds.manifest.set_index("id").loc[sample["id"]].reset_index()
    size = int(model.data_config["input_size"][-1])
    with_mask = masks and bool(ds.has_masks)
    dset = ImageDataset(manifest_rows, ds.classes, model.transform(), return_mask=with_mask, mask_size=size)
    items = [dset[i] for i in range(len(dset))]
    if not items:
        return torch.empty(0), sample, None
    x = torch.stack([it[0] for it in items])
    mask_arr = np.stack([np.asarray(it[3], dtype=np.float32) for it in items]) if with_mask else None
    return x, sample, mask_arr
