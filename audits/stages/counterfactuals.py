"""Stage counterfactuals: GAN counterfactuals for misclassified / near-boundary val images.

Runs when ``spec.counterfactuals`` > 0. Needs a generator for the dataset
(``imaudit generative train`` or ``spec.generator``); without one the section
says how to make it. The section's shape is audits/generative's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from imaudit.audits.data import ImageDataset
from imaudit.audits.device import resolve_device
from imaudit.audits.generative import resolve_generator, run_counterfactual_section
from imaudit.audits.predict import Predictions
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs, sample


def run(spec: AuditSpec, work: Path) -> dict[str, Any] | None:
    """The generative section of audit.json (None when not asked for)."""
    if spec.counterfactuals <= 0:
        return None
    ds, model = inputs.dataset(spec), inputs.model(spec)
    art = resolve_generator(ds.digest, ds.classes, spec.generator)
    if art is None:
        return {"skipped": f"no generator for this dataset; run: imaudit generative train --dataset {ds.ref}"}
    table = Predictions.load(work).table
    val = table[(table["split"] == (sample.eval_split(table) or "val")) & table["finite"]]
    # The section picks misclassified first, then the smallest margins: hand it those candidates only.
    cand = pd.concat([val[~val["correct"]], val[val["correct"]].sort_values("confidence")]).head(4 * spec.counterfactuals)
    rows = ds.manifest.set_index("id").loc[cand["id"]].reset_index()
    dset = ImageDataset(rows, ds.classes, model.transform())
    x = torch.stack([dset[i][0] for i in range(len(dset))]) if len(dset) else torch.empty(0)
    mean = torch.tensor(model.data_config["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(model.data_config["std"]).view(1, -1, 1, 1)
    pixels = (x * std + mean).clamp(0, 1)
    return run_counterfactual_section(
        model.module.to(resolve_device(spec.device)),
        pixels,
        torch.as_tensor(cand["y"].to_numpy().copy()),
        cand["id"].astype(str).tolist(),
        art,
        lambda p: (p - mean.to(p.device)) / std.to(p.device),
        work / "counterfactuals",
        n=spec.counterfactuals,
        seed=spec.seed,
    )
