"""Stage sample: the validation images every method explains (shared, so methods can be compared).

Stratified by the explained class, every prefix too, misclassified images kept
in (audits/explain/sample.py); on more than ``max_classes`` classes, the most
confused ones. Writes sample.csv (rows of predictions.csv in that order) and
sample.json (the SampleOutcome: how many of the first rows each method
explains, which classes and why); later stages read rows back with ``rows``,
a method's share with ``share`` and turn rows into model-ready images with
``tensors``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from imaudit.audits.data import ImageDataset
from imaudit.audits.explain import explained_classes, select_sample
from imaudit.audits.predict import Predictions
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs
from imaudit.audits.stages.predict import chunk_config
from imaudit.audits.stages.records import SampleOutcome
from imaudit.audits.tensor_store import cached_images
from imaudit.io import atomic_write_json

EVAL_SPLITS = ("val", "test")


def eval_split(table: pd.DataFrame) -> str | None:
    """The split explanations and counterfactuals look at: val, else test, else none."""
    return next((s for s in EVAL_SPLITS if (table["split"] == s).any()), None)


def run(spec: AuditSpec, work: Path) -> SampleOutcome:
    """Pick the images (as many as the hungriest method explains); write sample.csv and sample.json."""
    table = Predictions.load(work).table
    table = table[table["finite"]]
    split = eval_split(table)
    names = inputs.dataset(spec).classes
    by = "pred" if spec.target == "pred" else "y"
    chosen, how = (explained_classes(table, len(names), spec.max_classes, split, by) if split is not None
                   else ([], "no evaluation split"))
    counts = {m: spec.samples_for(m, len(chosen)) for m in spec.methods}
    n = max([*counts.values(), 0])
    if split is None or n == 0:
        picked = table.iloc[0:0]
    else:
        picked = select_sample(table, n, seed=spec.seed, split=split, by=by, classes=chosen)
    picked.to_csv(work / "sample.csv", index=False)
    out = SampleOutcome(n=int(len(picked)), split=split, per_method={m: min(k, len(picked)) for m, k in counts.items()},
                        classes=[names[c] for c in chosen], class_selection=how, grouped_by=by)
    atomic_write_json(work / "sample.json", out.model_dump(mode="json"))
    return out


def share(work: Path, method: str) -> int:
    """How many of the sample's first rows ``method`` explains (sample.json)."""
    plan = json.loads((work / "sample.json").read_text(encoding="utf-8"))
    return int(plan["per_method"].get(method, 0))


def rows(work: Path, start: int = 0, stop: int | None = None) -> pd.DataFrame:
    """Rows [start, stop) of sample.csv."""
    sample = pd.read_csv(work / "sample.csv", dtype={"id": str, "label": str, "pred_label": str})
    return sample.iloc[start:stop].reset_index(drop=True)


def tensors(
    spec: AuditSpec, work: Path, start: int = 0, stop: int | None = None, masks: bool = True
) -> tuple[torch.Tensor, pd.DataFrame, np.ndarray | None]:
    """Model-ready images of sample rows [start, stop), the rows, and (when asked and the
    dataset has them) their object masks at input size.

    Images come from the tensor store (audits/tensor_store: decoded once per
    image and transform, shared by every method, the gallery, the quality
    checks and later audits); masks are read from their files without
    decoding the images again.
    """
    ds, model = inputs.dataset(spec), inputs.model(spec)
    sample = rows(work, start, stop)
    manifest_rows = ds.manifest.set_index("id").loc[sample["id"]].reset_index()
    x = cached_images(manifest_rows, ds.classes, model.transform(), chunk_config(spec), spec.batch_size or 64)
    if len(sample) == 0:
        return x, sample, None
    mask_arr = None
    if masks and bool(ds.has_masks):
        size = int(model.data_config["input_size"][-1])
        dset = ImageDataset(manifest_rows, ds.classes, model.transform(), return_mask=True, mask_size=size)
        mask_arr = np.stack([np.asarray(dset.mask(i), dtype=np.float32) for i in range(len(dset))])
    return x, sample, mask_arr
