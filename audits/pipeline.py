"""The audit's stages as plain functions: (spec, work folder) in, small records out.

Prefect tasks (tasks/, imaudit.tasks) are one call around each of these, and the
benchmark calls them directly to measure the orchestration overhead. Stages
hand large data to each other through files in the audit's work folder:
manifest.csv, predictions.csv + logits.npy, sample.csv, explanations/*.npz.
Loaded models and datasets are cached per process, so consecutive stages in
one worker do not reload them.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from imaudit.audits.device import resolve_device
from imaudit.audits.result import DatasetIdentity, Finding, ModelIdentity
from imaudit.audits.spec import AuditSpec, ImageLimits
from imaudit.errors import BadInputError
from imaudit.io import atomic_write_json, text_safe

EVAL_SPLITS = ("val", "test")


# --- cached loaders -------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _dataset(ref: str, limits: ImageLimits, roots: tuple[Path, ...] = ()):
    from imaudit.audits.data import load_dataset

    return load_dataset(ref, limits=limits, roots=roots)


@functools.lru_cache(maxsize=4)
def _model(ref: str, arch: str | None, input_size: int | None, num_classes: int | None):
    from imaudit.models import load_model

    return load_model(ref, arch=arch, input_size=input_size, num_classes=num_classes)


def dataset_ref(spec: AuditSpec) -> str:
    """The spec's dataset, or the dataset the model names for itself (a release's own data)."""
    if spec.dataset:
        return spec.dataset
    from imaudit.models import model_source

    source, value = model_source(spec.model)
    own = source.dataset(value)
    if own:
        return own
    if spec.model.startswith("release:"):
        raise BadInputError(f"release {spec.model[len('release:'):]} names no dataset; pass --dataset")
    raise BadInputError("no dataset: pass --dataset REF (folder:PATH, csv:PATH, builtin:digits, builtin:shapes)")


def get_dataset(spec: AuditSpec):
    return _dataset(dataset_ref(spec), spec.limits, tuple(spec.allowed_roots))


def get_model(spec: AuditSpec):
    """The audited model; sources with random weights (timm:) get one output per dataset class."""
    from imaudit.models import model_source

    source, value = model_source(spec.model)
    if source.sized_by_dataset(value):
        return _model(spec.model, spec.arch, spec.input_size, len(get_dataset(spec).classes))
    return load_model_only(spec)


def load_model_only(spec: AuditSpec):
    """A model whose class count is its own weights' (every source not sized by the dataset),
    loaded without reading the dataset."""
    return _model(spec.model, spec.arch, spec.input_size, None)


def class_order(model_classes: list[str] | None, data_classes: list[str], model_ref: str, n_out: int) -> list[int] | None:
    """Column permutation mapping model outputs onto the dataset's class order (None: identity).

    A model whose outputs cannot be matched to the dataset's classes is bad
    input: its metrics would be meaningless.
    """
    if n_out != len(data_classes):
        raise BadInputError(
            f"model {model_ref} has {n_out} outputs but the dataset has {len(data_classes)} classes"
        )
    if not model_classes or list(model_classes) == list(data_classes):
        return None
    if sorted(model_classes) != sorted(data_classes):
        missing = sorted(set(data_classes) - set(model_classes))[:5]
        raise BadInputError(f"model {model_ref} classes do not match the dataset's (e.g. missing {missing})")
    return [list(model_classes).index(c) for c in data_classes]


# --- stages ---------------------------------------------------------------------------------

def identify(spec: AuditSpec, work: Path) -> dict[str, Any]:
    """Load model and dataset, check they fit, write manifest.csv; return their identities."""
    t0 = time.perf_counter()
    from imaudit.audits.degenerate import require_classes

    ds = get_dataset(spec)
    require_classes(ds)
    model = get_model(spec)
    class_order(model.classes, ds.classes, spec.model, model.num_classes)
    work.mkdir(parents=True, exist_ok=True)
    # File paths that are not UTF-8 are written with \\x escapes (the manifest is for people and tools).
    ds.manifest.assign(**{c: ds.manifest[c].map(lambda p: text_safe(p) if isinstance(p, str) else p)
                          for c in ("path", "mask")}).to_csv(work / "manifest.csv", index=False)
    counts = {
        split: {c: int(n) for c, n in grp["label"].value_counts().reindex(ds.classes, fill_value=0).items()}
        for split, grp in ds.manifest.groupby("split", sort=False)
    }
    mid = ModelIdentity(
        ref=spec.model,
        digest=model.digest,
        arch=model.arch,
        num_classes=model.num_classes,
        classes=model.classes or ds.classes,
        params=model.params,
        data_config=_jsonable(model.data_config),
        release=model.release.model_dump(mode="json") if model.release is not None else None,
    )
    did = DatasetIdentity(
        ref=ds.ref,
        digest=ds.digest,
        classes=ds.classes,
        counts=counts,
        n_images=int(len(ds.manifest)),
        excluded=ds.excluded,
        dropped_masks=ds.meta.get("dropped_masks", []),
        has_masks=bool(ds.has_masks),
    )
    return {
        "model": mid.model_dump(mode="json"),
        "dataset": did.model_dump(mode="json"),
        "history": model.history,
        "seconds": time.perf_counter() - t0,
        # A generated (builtin) set's cache use: reused after verification, or generated (again).
        "cache": {"builtin": ds.meta["cache"]} if ds.meta.get("cache") else {},
    }


def check_data(spec: AuditSpec, work: Path) -> dict[str, Any]:
    """Great Expectations suite over the manifest -> expectations, summary, findings."""
    from imaudit.audits.expect import check_manifest

    from imaudit.audits import degenerate

    ds = get_dataset(spec)
    rep = check_manifest(ds, spec.thresholds.data)
    rep.findings += degenerate.findings(ds, spec)
    return _gate_dict(rep)


def predict(spec: AuditSpec, work: Path, progress: bool = True) -> dict[str, Any]:
    """Predict the chosen splits (train capped) chunk by chunk; write predictions.csv + logits.npy.

    Chunks already computed for this model and data (content-addressed files
    under the cache) are reused; the Prefect flow runs the same three steps
    (plan, chunk, assemble) as separate, cached tasks.
    """
    t0 = time.perf_counter()
    from imaudit.audits import stage_chunks as sc

    parts = [sc.predict_chunk(spec, c, progress=progress) for c in sc.predict_plan(spec)]
    out = sc.predict_assemble(spec, work, [p["path"] for p in parts])
    out["chunks"] = {"total": len(parts), "computed": sum(bool(p["computed"]) for p in parts)}
    out["seconds"] = time.perf_counter() - t0
    out["images_per_second"] = out["n"] / max(out["seconds"], 1e-9)
    return out


def check_outputs(spec: AuditSpec, work: Path) -> dict[str, Any]:
    """Great Expectations suite over predictions (finite logits, valid probabilities)."""
    from imaudit.audits.expect import check_predictions
    from imaudit.audits.predict import Predictions

    p = Predictions.load(work)
    return _gate_dict(check_predictions(p.table, p.probs, p.logits))


def diagnose(spec: AuditSpec, work: Path, history: list[dict] | None) -> dict[str, Any]:
    """Metrics per split, per-class table, confusion, calibration, fit verdict and their findings."""
    from imaudit.audits.diagnose import diagnose as run
    from imaudit.audits.predict import Predictions

    d = run(Predictions.load(work), get_dataset(spec).classes, spec.thresholds, history)
    return {
        "metrics": {k: v.model_dump(mode="json") for k, v in d.metrics.items()},
        "per_class": d.per_class,
        "confusion": d.confusion,
        "calibration": d.calibration,
        "fit": d.fit.model_dump(mode="json"),
        "findings": [f.model_dump(mode="json") for f in d.findings],
    }


def choose_sample(spec: AuditSpec, work: Path) -> dict[str, Any]:
    """Pick the val images to explain (shared by all methods, so they can be compared)."""
    from imaudit.audits.explain.run import select_sample
    from imaudit.audits.predict import Predictions

    table = Predictions.load(work).table
    table = table[table["finite"]]
    split = next((s for s in EVAL_SPLITS if (table["split"] == s).any()), None)
    n = max([spec.samples_for(m) for m in spec.methods] + [0])
    if split is None or n == 0:
        sample = table.iloc[0:0]
    else:
        sample = select_sample(table, n, seed=spec.seed, split=split)
    sample.to_csv(work / "sample.csv", index=False)
    return {"n": int(len(sample)), "split": split}


def sample_tensors(
    spec: AuditSpec, work: Path, start: int = 0, stop: int | None = None, masks: bool = True
) -> tuple[torch.Tensor, pd.DataFrame, np.ndarray | None]:
    """Model-ready images of sample rows [start, stop), the rows, and (when asked and the
    dataset has them) their object masks at input size."""
    from imaudit.audits.data import ImageDataset

    ds, model = get_dataset(spec), get_model(spec)
    sample = pd.read_csv(work / "sample.csv", dtype={"id": str, "label": str, "pred_label": str})
    sample = sample.iloc[start:stop].reset_index(drop=True)
    rows = ds.manifest.set_index("id").loc[sample["id"]].reset_index()
    size = int(model.data_config["input_size"][-1])
    with_mask = masks and bool(ds.has_masks)
    dset = ImageDataset(rows, ds.classes, model.transform(), return_mask=with_mask, mask_size=size)
    items = [dset[i] for i in range(len(dset))]
    if not items:
        return torch.empty(0), sample, None
    x = torch.stack([it[0] for it in items])
    mask_arr = np.stack([np.asarray(it[3], dtype=np.float32) for it in items]) if with_mask else None
    return x, sample, mask_arr


def explain(spec: AuditSpec, work: Path, method: str) -> dict[str, Any]:
    """Explain the first samples_for(method) sample images with one method, chunk by chunk;
    maps and overlays to disk. Finished chunks are reused like prediction chunks."""
    from imaudit.audits import stage_chunks as sc

    parts = [sc.explain_chunk(spec, work, method, c) for c in sc.explain_plan(spec, work, method)]
    return sc.explain_assemble(spec, work, method, [p["path"] for p in parts])


def gallery(spec: AuditSpec, work: Path, records: dict[str, dict]) -> dict[str, Any]:
    """Gallery rows (image + every method's overlay) and layer views for the report."""
    from imaudit.audits.explain.overlay import safe_name
    from imaudit.audits.explain.run import denormalize, layer_views

    model = get_model(spec)
    x, sample, _ = sample_tensors(spec, work)
    out: dict[str, Any] = {"gallery": [], "views": None}
    if len(sample) == 0:
        return out
    pix = denormalize(x, model.data_config.get("mean"), model.data_config.get("std"))
    gdir = work / "explanations" / "images"
    gdir.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for i, row in enumerate(sample.itertuples(index=False)):
        name = f"{safe_name(row.id)}.png"
        Image.fromarray(pix[i]).resize((96, 96), Image.NEAREST).save(gdir / name, optimize=True)
        out["gallery"].append(
            {
                "id": row.id,
                "label": row.label,
                "pred": row.pred_label,
                "correct": bool(row.correct),
                "confidence": float(row.confidence),
                "image": f"explanations/images/{name}",
                "overlays": {m: r.get("overlays", {}).get(row.id) for m, r in records.items() if r.get("overlays", {}).get(row.id)},
            }
        )
    try:
        out["views"] = _rel_views(layer_views(model.module, x[:1], work / "views"), work)
    except Exception as e:  # noqa: BLE001 - a view that cannot be drawn is recorded, not fatal
        out["views"] = {"error": f"{type(e).__name__}: {e}"}
    return out


_INSIGHTS_CODE = (
    ("imaudit.audits.insights", "imaudit.audits.aggregate", "imaudit.audits.strategies",
     "imaudit.audits.explain_findings", "imaudit.audits.pipeline"),
    ("imaudit.audits.quality", "imaudit.audits.explain"),
)


def insights(spec: AuditSpec, work: Path, records: dict[str, dict]) -> dict[str, Any]:
    """Global importance, strategies, explanation quality, agreement and their findings.

    Cached like the chunks: the same maps of the same model and data, checked
    with the same settings and code, give the same insights, so a warm audit
    reuses them instead of re-running deletion curves and sanity checks.
    """
    from imaudit.audits import chunks
    from imaudit.audits import insights as ins
    from imaudit.audits.result import finite_json
    from imaudit.io import sha256_file

    model, ds = get_model(spec), get_dataset(spec)
    maps = {m: sha256_file(work / r["maps_path"]) for m, r in sorted(records.items()) if r.get("maps_path")}
    key = chunks.digest(
        "insights", model.digest, ds.digest, maps,
        spec.quality.model_dump(mode="json"), spec.thresholds.explanations.model_dump(mode="json"),
        spec.method_settings, spec.seed, resolve_device(spec.device).type,
        chunks.source_digest(*_INSIGHTS_CODE),
    )
    path = chunks.chunk_dir().parent / "insights" / f"{key}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed and rewritten
    out = ins.run_insights(spec, work, records, model, ds)
    atomic_write_json(path, finite_json(_jsonable(out)))
    return out


def counterfactuals(spec: AuditSpec, work: Path) -> dict[str, Any] | None:
    """GAN counterfactuals for misclassified / near-boundary val images (spec.counterfactuals of them).

    Needs a generator for this dataset (``imaudit generative train`` or
    spec.generator); without one the section says how to make it.
    """
    if spec.counterfactuals <= 0:
        return None
    from imaudit.audits.data import ImageDataset
    from imaudit.audits.generative import resolve_generator, run_counterfactual_section
    from imaudit.audits.predict import Predictions

    ds, model = get_dataset(spec), get_model(spec)
    art = resolve_generator(ds.digest, ds.classes, spec.generator)
    if art is None:
        return {"skipped": f"no generator for this dataset; run: imaudit generative train --dataset {ds.ref}"}
    table = Predictions.load(work).table
    val = table[(table["split"] == next((s for s in EVAL_SPLITS if (table["split"] == s).any()), "val")) & table["finite"]]
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


# --- helpers --------------------------------------------------------------------------------

def _gate_dict(rep: Any) -> dict[str, Any]:
    return {
        "suite": rep.suite,
        "expectations": rep.expectations,
        "summary": rep.summary,
        "findings": [f.model_dump(mode="json") if isinstance(f, Finding) else f for f in rep.findings],
    }


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _rel_views(views: dict, work: Path) -> dict:
    """Make layer-view PNG paths relative to the audit folder."""
    def rel(p: Any) -> Any:
        if isinstance(p, str) and Path(p).is_absolute():
            return Path(p).relative_to(work).as_posix()
        return p

    acts = [{**a, "png": rel(a.get("png"))} for a in views.get("activations", [])]
    filt = views.get("filters")
    return {"activations": acts, "filters": ({**filt, "png": rel(filt.get("png"))} if filt else None)}
