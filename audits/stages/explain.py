"""Stage explain: one method over the audit's sample, chunk by chunk; the one entry point for explaining.

Like predict, three steps the flow runs as separate tasks: ``plan`` keys the
chunks of the method's share of the sample (its first rows), ``chunk`` explains one chunk
(imaudit.audits.explain.explain_method) into its content-addressed .npz under
the chunk cache (or finds it there), ``assemble`` merges the chunks into the
method's maps (explanations/<method>.npz), overlays and its audit.json record.
``run`` does all three in-process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from imaudit.audits import chunks
from imaudit.audits.device import resolve_device
from imaudit.audits.data import ImageDataset
from imaudit.audits.explain import (
    Explanation,
    background_rows,
    create_explainer,
    denormalize,
    explain_method,
    method_defaults,
    render_overlays,
    save_maps,
)
from imaudit.audits.result import MethodRecord
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs, sample
from imaudit.audits.stages.predict import chunk_config
from imaudit.audits.stages.records import ChunkResult


def _target_column(spec: AuditSpec) -> str:
    """The explained class: the prediction (default) or the true label."""
    return "pred" if spec.target == "pred" else "y"


def _rows(spec: AuditSpec, work: Path, method: str) -> pd.DataFrame:
    """The sample rows ``method`` explains: its share of sample.csv, from the front."""
    return sample.rows(work).head(sample.share(work, method))


def background(spec: AuditSpec, method: str) -> tuple[torch.Tensor, list[str]] | None:
    """A fixed background of train images for methods that need one (shap-gradient), with their sha256.

    The same seeded images for every chunk and image, so a map never depends on its batch;
    None for other methods or when the spec gives its own background.
    """
    given = spec.method_settings.get(method) or {}
    if method != "shap-gradient" or given.get("background") is not None:
        return None
    ds, model = inputs.dataset(spec), inputs.model(spec)
    n = int(given.get("background_size") or method_defaults(method)["background_size"])
    rows = background_rows(ds.manifest, n, spec.seed)
    dset = ImageDataset(rows, ds.classes, model.transform())
    if not len(dset):
        return None
    return torch.stack([dset[i][0] for i in range(len(dset))]), rows["sha256"].astype(str).tolist()


def _settings(spec: AuditSpec, method: str) -> dict[str, Any]:
    """What an explanation chunk's result depends on besides model and images."""
    bg = background(spec, method)
    settings = {
        "method": method,
        "settings": spec.method_settings.get(method) or {},
        "seed": spec.seed,
        "target": spec.target,
        "device": resolve_device(spec.device).type,
        **({"background": bg[1]} if bg is not None else {}),
    }
    cmap = inputs.class_map(spec)
    if not cmap.identity:  # targets are dataset classes: which outputs they are belongs to the result
        settings["columns"] = cmap.columns
    return settings


def plan(spec: AuditSpec, work: Path, method: str) -> list[chunks.Chunk]:
    """The explanation chunks of one method over the audit's sample, keyed for caching."""
    rows = _rows(spec, work, method)
    sha = inputs.dataset(spec).manifest.set_index("id").loc[rows["id"], "sha256"].astype(str).tolist()
    return chunks.plan(
        f"explain:{method}",
        sha,
        spec.chunk_size,
        model_digest=inputs.model(spec).digest,
        config=chunk_config(spec),
        settings=_settings(spec, method),
        # Ids name the maps and targets pick the explained class: both belong to the result.
        per_image={"id": rows["id"].astype(str).tolist(), "target": rows[_target_column(spec)].astype(int).tolist()},
        suffix=".npz",
    )


def _images(spec: AuditSpec, work: Path, method: str, start: int, stop: int) -> tuple[torch.Tensor, pd.DataFrame]:
    """Model-ready images of rows [start, stop) of ``method``'s share of the sample."""
    x, rows, _ = sample.tensors(spec, work, start, min(stop, sample.share(work, method)), masks=False)
    return x, rows


def chunk(spec: AuditSpec, work: Path, method: str, c: chunks.Chunk) -> ChunkResult:
    """Explain one chunk of the sample; maps, failures and the record into its content-addressed .npz."""
    c = chunks.Chunk.model_validate(c)
    reusable, rejected = chunks.lookup(c)
    if reusable:
        return ChunkResult(path=c.path, computed=False, n=c.size)
    model = inputs.model(spec)
    x, rows = _images(spec, work, method, c.start, c.stop)
    settings = dict(spec.method_settings.get(method) or {})
    bg = background(spec, method)
    if bg is not None:
        settings["background"] = bg[0]
    expl, record = explain_method(
        model.module,
        x,
        torch.tensor(rows[_target_column(spec)].to_numpy(), dtype=torch.long),  # a copy: pandas arrays are read-only
        rows["id"].astype(str).tolist(),
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
    return ChunkResult(path=c.path, computed=True, n=c.size, rejected=rejected)


def _merge(parts: list[dict[str, np.ndarray]]) -> Explanation:
    """One Explanation from chunk files, in chunk order."""
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


def assemble(spec: AuditSpec, work: Path, method: str, results: list[ChunkResult]) -> MethodRecord:
    """Merge a method's chunks: maps npz, overlays and the audit.json record."""
    if not results:
        return MethodRecord(applicable=False, reason="no evaluation images to explain")
    parts = [chunks.load_arrays(r.path) for r in results]
    recs = [MethodRecord.model_validate(json.loads(str(p["record"]))) for p in parts]
    if not recs[0].applicable:
        return recs[0]
    expl = _merge(parts)
    seconds = sum(r.seconds for r in recs)
    record = recs[0].model_copy(
        update={
            "count": len(expl.ids),
            "seconds": round(seconds, 4),
            "per_image_rate": (len(expl.ids) / seconds) if seconds > 0 and expl.ids else None,
            "failures": expl.failures,
        }
    )
    model = inputs.model(spec)
    mean, std = model.data_config.get("mean"), model.data_config.get("std")
    if len(parts) > 1 and getattr(recs[0], "details", None):
        # Method summaries (e.g. IG completeness) are over all images, not per chunk.
        explainer = create_explainer(method, model.module, mean=mean, std=std, seed=spec.seed,
                                     **(spec.method_settings.get(method) or {}))
        record.details = {**recs[0].details, **explainer._summarise(expl.extras)}  # type: ignore[attr-defined]
    if expl.ids:
        rel = Path("explanations") / f"{method}.npz"
        (work / "explanations").mkdir(parents=True, exist_ok=True)
        keep = _rows(spec, work, method).set_index("id").loc[expl.ids]
        save_maps(expl, work / rel, targets=keep[_target_column(spec)].to_numpy(), labels=keep["y"].to_numpy(),
                  preds=keep["pred"].to_numpy())
        record.maps_path = rel.as_posix()
        # Overlays for the gallery's images only (the first spec.gallery of the sample).
        x, rows = _images(spec, work, method, 0, min(spec.gallery, sample.share(work, method)))
        ids = rows["id"].astype(str).tolist()
        shown = [k for k, i in enumerate(expl.ids) if i in set(ids)]
        pixels = denormalize(x[[ids.index(expl.ids[k]) for k in shown]], mean, std)
        overlays = render_overlays(pixels, expl.maps[shown], [expl.ids[k] for k in shown],
                                   work / "explanations" / "overlays", method)
        record.overlays = {k: (Path("explanations") / "overlays" / v).as_posix() for k, v in overlays.items()}  # type: ignore[attr-defined]
        record.target = spec.target  # type: ignore[attr-defined]
    return record


def run(spec: AuditSpec, work: Path, method: str) -> MethodRecord:
    """Plan, compute (or reuse) and assemble every chunk of ``method`` in this process."""
    return assemble(spec, work, method, [chunk(spec, work, method, c) for c in plan(spec, work, method)])
