"""Prediction and explanation in chunks: each chunk's result is a content-addressed file
under the cache (see imaudit.audits.chunks), so re-audits reuse finished chunks and a
killed audit resumes. The Prefect flow runs plan / chunk / assemble as separate cached
tasks; ``pipeline.predict`` and ``pipeline.explain`` run the same three steps in-process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from imaudit.audits.device import resolve_device
from imaudit.audits.pipeline import (
    _jsonable,
    class_order,
    get_dataset,
    get_model,
    method_share,
    sample_tensors,
)
from imaudit.audits.result import MethodRecord
from imaudit.audits.spec import AuditSpec

def _chunk_config(model: Any) -> dict[str, Any]:
    """The preprocessing a chunk's result depends on (timm data config)."""
    return _jsonable(model.data_config)


def _predict_rows(spec: AuditSpec) -> pd.DataFrame:
    from imaudit.audits.predict import select_rows

    return select_rows(get_dataset(spec).manifest, spec.splits, spec.train_cap, spec.seed)


def predict_plan(spec: AuditSpec) -> list[Any]:
    """The prediction chunks of this audit, in row order, keyed for caching."""
    from imaudit.audits import chunks

    model, rows = get_model(spec), _predict_rows(spec)
    return chunks.plan(
        "predict",
        rows["sha256"].astype(str).tolist(),
        spec.chunk_size,
        model_digest=model.digest,
        config=_chunk_config(model),
        # Autocast on CUDA changes the numbers: GPU and CPU results are different entries.
        settings={"device": resolve_device(spec.device).type},
    )


def predict_chunk(spec: AuditSpec, chunk: Any, progress: bool = False) -> dict[str, Any]:
    """Logits of one chunk's rows into its content-addressed .npy (reused when it exists)."""
    from imaudit.audits import chunks
    from imaudit.audits.data import ImageDataset
    from imaudit.audits.predict import infer_logits

    c = chunks.Chunk.model_validate(chunk)
    if chunks.is_done(c):
        return {"path": c.path, "computed": False, "n": c.size}
    ds, model = get_dataset(spec), get_model(spec)
    rows = _predict_rows(spec).iloc[c.start : c.stop].reset_index(drop=True)
    logits = infer_logits(
        model.module,
        ImageDataset(rows, ds.classes, model.transform()),
        resolve_device(spec.device),
        batch_size=spec.batch_size,
        workers=spec.workers,
        progress=progress,
        desc=f"predict chunk {c.index}",
    )
    chunks.save_array(c.path, logits.astype(np.float32))
    return {"path": c.path, "computed": True, "n": c.size}


def predict_assemble(spec: AuditSpec, work: Path, chunk_paths: list[str]) -> dict[str, Any]:
    """Concatenate chunk logits in order; write predictions.csv + logits.npy."""
    from imaudit.audits import chunks
    from imaudit.audits.predict import Predictions, build_table

    ds, model, rows = get_dataset(spec), get_model(spec), _predict_rows(spec)
    parts = [chunks.load_array(p) for p in chunk_paths]
    logits = np.concatenate(parts) if parts else np.zeros((0, model.num_classes), np.float32)
    if len(logits) != len(rows):
        raise RuntimeError(f"prediction chunks hold {len(logits)} rows for {len(rows)} images")
    order = class_order(model.classes, ds.classes, spec.model, model.num_classes)
    if order is not None:
        logits = logits[:, order]
    files = Predictions(build_table(rows, ds.classes, logits), logits).save(work)
    return {"files": files, "n": len(rows)}


def _explain_sample(spec: AuditSpec, work: Path, method: str) -> pd.DataFrame:
    sample = pd.read_csv(work / "sample.csv", dtype={"id": str, "label": str, "pred_label": str})
    return sample.head(method_share(work, method))


def _background(spec: AuditSpec, method: str) -> tuple[torch.Tensor, list[str]] | None:
    """A fixed background of train images for methods that need one (shap-gradient), with their sha256.

    The same seeded images for every chunk and image: a map never depends on its batch.
    """
    if method != "shap-gradient" or (spec.method_settings.get(method) or {}).get("background") is not None:
        return None
    from imaudit.audits.data import ImageDataset
    from imaudit.audits.explain.registry import method_defaults
    from imaudit.audits.explain.sample import background_rows

    ds, model = get_dataset(spec), get_model(spec)
    n = int((spec.method_settings.get(method) or {}).get("background_size") or method_defaults(method)["background_size"])
    rows = background_rows(ds.manifest, n, spec.seed)
    dset = ImageDataset(rows, ds.classes, model.transform())
    if not len(dset):
        return None
    return torch.stack([dset[i][0] for i in range(len(dset))]), rows["sha256"].astype(str).tolist()


def _explain_settings(spec: AuditSpec, method: str) -> dict[str, Any]:
    """What an explanation chunk's result depends on besides model and images."""
    bg = _background(spec, method)
    return {
        "method": method,
        "settings": spec.method_settings.get(method) or {},
        "seed": spec.seed,
        "target": spec.target,
        "device": resolve_device(spec.device).type,
        **({"background": bg[1]} if bg is not None else {}),
    }


def explain_plan(spec: AuditSpec, work: Path, method: str) -> list[Any]:
    """The explanation chunks of one method over the audit's sample, keyed for caching."""
    from imaudit.audits import chunks

    model, sample = get_model(spec), _explain_sample(spec, work, method)
    sha = get_dataset(spec).manifest.set_index("id").loc[sample["id"], "sha256"].astype(str).tolist()
    ycol = "pred" if spec.target == "pred" else "y"
    return chunks.plan(
        f"explain:{method}",
        sha,
        spec.chunk_size,
        model_digest=model.digest,
        config=_chunk_config(model),
        settings=_explain_settings(spec, method),
        # Ids name the maps and targets pick the explained class: both belong to the result.
        per_image={"id": sample["id"].astype(str).tolist(), "target": sample[ycol].astype(int).tolist()},
        suffix=".npz",
    )


def _sample_slice(spec: AuditSpec, work: Path, method: str, start: int, stop: int) -> tuple[torch.Tensor, pd.DataFrame]:
    """Model-ready images of sample rows [start, stop) of ``method``'s share of the sample."""
    x, sample, _ = sample_tensors(spec, work, start, min(stop, method_share(work, method)), masks=False)
    return x, sample


def explain_chunk(spec: AuditSpec, work: Path, method: str, chunk: Any) -> dict[str, Any]:
    """Explain one chunk of the sample; maps, failures and the record into its content-addressed .npz."""
    from imaudit.audits import chunks
    from imaudit.audits.explain.run import explain_method

    c = chunks.Chunk.model_validate(chunk)
    if chunks.is_done(c):
        return {"path": c.path, "computed": False, "n": c.size}
    model = get_model(spec)
    x, sample = _sample_slice(spec, work, method, c.start, c.stop)
    ycol = "pred" if spec.target == "pred" else "y"
    settings = dict(spec.method_settings.get(method) or {})
    bg = _background(spec, method)
    if bg is not None:
        settings["background"] = bg[0]
    expl, record = explain_method(
        model.module,
        x,
        torch.tensor(sample[ycol].to_numpy(), dtype=torch.long),  # a copy: pandas arrays are read-only
        sample["id"].astype(str).tolist(),
        method,
        settings=settings,
        device=resolve_device(spec.device),
        mean=model.data_config.get("mean"),
        std=model.data_config.get("std"),
        seed=spec.seed,
    )
    # Settle torch's re-entrant state between methods (Captum hooks).
    model.module.zero_grad(set_to_none=True)
    arrays: dict[str, np.ndarray] = {
        "maps": np.asarray(expl.maps, dtype=np.float32),
        "ids": np.asarray(expl.ids, dtype=str),
        "index": np.asarray(expl.extras.get("index", []), dtype=np.int64) + c.start,
        "record": np.asarray(json.dumps(record.model_dump(mode="json"))),
        "failures": np.asarray(json.dumps(expl.failures)),
    }
    if expl.channel_maps is not None:
        arrays["channel_maps"] = np.asarray(expl.channel_maps, dtype=np.float32)
    for key, val in expl.extras.items():
        if isinstance(val, np.ndarray) and len(val) == len(expl.ids):
            arrays[f"extra_{key}"] = val
    chunks.save_arrays(c.path, arrays)
    return {"path": c.path, "computed": True, "n": c.size}


def _merge_explanations(parts: list[dict[str, np.ndarray]]) -> Any:
    """One Explanation from chunk files, in chunk order."""
    from imaudit.audits.explain.base import Explanation

    h, w = parts[0]["maps"].shape[-2:]
    chans = [p["channel_maps"] for p in parts if "channel_maps" in p]
    extras: dict[str, Any] = {"index": [int(i) for p in parts for i in p["index"]]}
    for key in {k for p in parts for k in p if k.startswith("extra_")}:
        if all(key in p for p in parts):
            extras[key[len("extra_"):]] = np.concatenate([p[key] for p in parts])
    return Explanation(
        maps=np.concatenate([p["maps"] for p in parts]) if parts else np.zeros((0, h, w), np.float32),
        ids=[str(i) for p in parts for i in p["ids"]],
        failures=[f for p in parts for f in json.loads(str(p["failures"]))],
        channel_maps=np.concatenate(chans) if chans and len(chans) == len(parts) else None,
        extras=extras,
    )


def explain_assemble(spec: AuditSpec, work: Path, method: str, chunk_paths: list[str]) -> dict[str, Any]:
    """Merge a method's chunks: maps npz, overlays and the audit.json record."""
    from imaudit.audits import chunks
    from imaudit.audits.explain.registry import create_explainer
    from imaudit.audits.explain.run import denormalize, render_overlays, save_maps

    if not chunk_paths:
        return MethodRecord(applicable=False, reason="no evaluation images to explain").model_dump(mode="json")
    parts = [chunks.load_arrays(p) for p in chunk_paths]
    recs = [MethodRecord.model_validate(json.loads(str(p["record"]))) for p in parts]
    if not recs[0].applicable:
        return recs[0].model_dump(mode="json")
    expl = _merge_explanations(parts)
    seconds = sum(r.seconds for r in recs)
    record = recs[0].model_copy(
        update={
            "count": len(expl.ids),
            "seconds": round(seconds, 4),
            "per_image_rate": (len(expl.ids) / seconds) if seconds > 0 and expl.ids else None,
            "failures": expl.failures,
        }
    )
    model = get_model(spec)
    mean, std = model.data_config.get("mean"), model.data_config.get("std")
    if len(parts) > 1 and getattr(recs[0], "details", None):
        # Method summaries (e.g. IG completeness) are over all images, not per chunk.
        explainer = create_explainer(method, model.module, mean=mean, std=std, seed=spec.seed,
                                     **(spec.method_settings.get(method) or {}))
        record.details = {**recs[0].details, **explainer._summarise(expl.extras)}  # type: ignore[attr-defined]
    if expl.ids:
        rel = Path("explanations") / f"{method}.npz"
        (work / "explanations").mkdir(parents=True, exist_ok=True)
        ycol = "pred" if spec.target == "pred" else "y"
        keep = _explain_sample(spec, work, method).set_index("id").loc[expl.ids]
        save_maps(expl, work / rel, targets=keep[ycol].to_numpy(), labels=keep["y"].to_numpy(), preds=keep["pred"].to_numpy())
        record.maps_path = rel.as_posix()
        # Overlays for the gallery's images only (the first spec.gallery of the sample).
        x, sample = _sample_slice(spec, work, method, 0, min(spec.gallery, method_share(work, method)))
        ids = sample["id"].astype(str).tolist()
        shown = [k for k, i in enumerate(expl.ids) if i in set(ids)]
        pixels = denormalize(x[[ids.index(expl.ids[k]) for k in shown]], mean, std)
        overlays = render_overlays(pixels, expl.maps[shown], [expl.ids[k] for k in shown],
                                   work / "explanations" / "overlays", method)
        record.overlays = {k: (Path("explanations") / "overlays" / v).as_posix() for k, v in overlays.items()}
        record.target = spec.target
    return record.model_dump(mode="json")
