"""The audit's counterfactual stage: find (or train) the generator, pick images, run the section.

Called by the audit's counterfactuals stage (audits/stages/counterfactuals.py) with the loaded model and
dataset and the audit's predictions. Everything it needs is read from the
AuditSpec (``counterfactuals``, ``generator``, ``generative``); the result is
the ``generative`` section of audit.json, or a record saying why the stage
could not run (``skipped`` + ``coverage``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from imaudit.errors import BadInputError

from .counterfactual import SearchSettings
from .section import Candidates, SectionSettings, Selection, run_counterfactual_section, select_images
from .space import InputSpace
from .store import GeneratorArtifact, resolve_generator
from .training import GeneratorSettings, train_generator

if TYPE_CHECKING:
    import pandas as pd

    from imaudit.audits.data import DatasetBundle
    from imaudit.audits.predict import Predictions
    from imaudit.audits.spec import AuditSpec
    from imaudit.models.loaded import LoadedModel

EVAL_SPLITS = ("val", "test")


def _class_index(classes: list[str], name: str, field: str) -> int:
    if name not in classes:
        raise BadInputError(f"generative.{field}: unknown class {name!r} (classes: {', '.join(classes[:10])})")
    return classes.index(name)


def selection_of(spec: "AuditSpec", classes: list[str]) -> Selection:
    """The Selection an AuditSpec asks for (class names -> indices)."""
    g = spec.generative
    return Selection(
        select=tuple(g.select),
        margin=g.margin,
        classes=tuple(_class_index(classes, c, "classes") for c in g.classes),
        target=None if g.target is None else _class_index(classes, g.target, "target"),
    )


def search_of(spec: "AuditSpec") -> SearchSettings:
    g = spec.generative
    return SearchSettings(confidence=g.confidence, steps=g.steps, lr=g.lr, proximity=g.proximity, prior=g.prior,
                          realism=g.realism, invert_steps=g.invert_steps, masked=g.masked, smoothness=g.smoothness)


def _skipped(reason: str, *, could_not_run: bool = False) -> dict[str, Any]:
    """The section of a search that did not happen. ``could_not_run``: what was asked for was impossible
    (no generator, no split to explain), so the audit is partial (audits/assemble.py), never passed; a
    selection that matched no image is a result, not a failure."""
    return {"skipped": reason, "could_not_run": could_not_run,
            "coverage": {"ran": False, "images": 0, "classes": [], "reason": reason}}


def generator_for(spec: "AuditSpec", bundle: "DatasetBundle", space: InputSpace,
                  device: torch.device | None = None) -> tuple[GeneratorArtifact | None, str | None]:
    """The generator the audit uses (stored, given, or trained when ``generative.train``), or None and why not."""
    g = spec.generative
    # Keys as the artifact's training record names them (the search has its own ``lr``: ``train_lr`` here).
    wanted = {"image_size": g.image_size, "epochs": g.epochs, "z_dim": g.z_dim, "batch_size": g.batch_size,
              "lr": g.train_lr, "width": g.width}
    art, why = resolve_generator(bundle.digest, bundle.classes, space.geometry(), spec.generator, wanted=wanted)
    if art is None and g.train:
        settings = GeneratorSettings(**{k: v for k, v in wanted.items() if v is not None}, seed=spec.seed)
        art = train_generator(bundle, space, settings, device=device, progress=False)
    if art is not None:
        return art, None
    hint = f"imaudit generative train --dataset {bundle.ref} --model {spec.model}"
    hint += f" --input-size {spec.input_size}" if spec.input_size else ""
    hint += f" --arch {spec.arch}" if spec.arch else ""
    return None, f"{why}; run: {hint} (or set generative.train)"


def load_candidates(bundle: "DatasetBundle", space: InputSpace, rows: "pd.DataFrame",
                    chosen: list[dict[str, Any]]) -> Candidates:
    """The chosen prediction rows' images as the model sees them (pixels), with object masks when the data has them."""
    from imaudit.audits.data import ImageDataset

    cand = rows.iloc[[c["index"] for c in chosen]].reset_index(drop=True)
    manifest = bundle.manifest.set_index("id").loc[cand["id"]].reset_index()
    has_masks = bool(bundle.has_masks)
    dset = ImageDataset(manifest, bundle.classes, space.pixel_transform(), return_mask=has_masks)
    items = [dset[i] for i in range(len(dset))]
    return Candidates(
        images=torch.stack([it[0] for it in items]),
        labels=torch.as_tensor(cand["y"].to_numpy().copy()),
        ids=cand["id"].astype(str).tolist(),
        masks=np.stack([np.asarray(it[3], dtype=np.float32) for it in items]) if has_masks else None,
        chosen=[{**c, "index": j} for j, c in enumerate(chosen)],
    )


def counterfactual_stage(
    spec: "AuditSpec",
    model: "LoadedModel",
    bundle: "DatasetBundle",
    predictions: "Predictions",
    work: Path,
    *,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """The ``generative`` section for ``spec.counterfactuals`` val (or test) images; see module docstring."""
    from imaudit.audits.predict import softmax

    g = spec.generative
    selection = selection_of(spec, bundle.classes)
    space = InputSpace.from_data_config(model.data_config)
    art, why = generator_for(spec, bundle, space, device)
    if art is None:
        return _skipped(str(why), could_not_run=True)
    table, logits = predictions.table, predictions.logits
    split = next((s for s in EVAL_SPLITS if (table["split"] == s).any()), None)
    if split is None:
        return _skipped("no val or test split to explain", could_not_run=True)
    keep = ((table["split"] == split) & table["finite"]).to_numpy()
    rows, probs = table[keep].reset_index(drop=True), torch.from_numpy(softmax(logits[keep]))
    chosen = select_images(probs, torch.as_tensor(rows["y"].to_numpy().copy()).long(), spec.counterfactuals, selection)
    if not chosen:
        return _skipped(f"no {split} image matches generative.select={g.select}"
                        + (f", classes={g.classes}" if g.classes else "") + (f", target={g.target}" if g.target else ""))
    dev = device or torch.device("cpu")
    net = model.module.to(dev).eval()
    settings = SectionSettings(n=spec.counterfactuals, selection=selection, search=search_of(spec), seed=spec.seed,
                               infill=g.infill, deletion_steps=spec.quality.deletion_steps)
    out = run_counterfactual_section(net, art, space.normalize, load_candidates(bundle, space, rows, chosen),
                                     work / "counterfactuals", settings)
    out["space"] = {**space.geometry(), "generator_size": art.image_size, "split": split}
    return out
