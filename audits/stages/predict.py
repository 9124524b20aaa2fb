"""Stage predict: batched inference over the chosen splits (train capped), chunk by chunk.

Three steps, so the flow can run each chunk as its own task (in turn, or
spread over Dask workers): ``plan`` keys the chunks, ``chunk`` computes one
into its content-addressed file under the chunk cache (or finds it there),
``assemble`` writes predictions.csv + logits.npy. ``run`` does all three
in-process. The chunk files are the cache: a re-audit of an unchanged model
on unchanged data reuses them, a killed audit resumes from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imaudit.audits import chunks
from imaudit.audits.classmap import full_module, full_view_columns, reduce_logits
from imaudit.audits.data import ImageDataset
from imaudit.audits.device import resolve_device
from imaudit.audits.predict import Predictions, build_table, infer_logits, select_rows
from imaudit.audits.result import jsonable
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs
from imaudit.audits.stages.records import ChunkResult, ChunkStats, PredictionOutcome


def chunk_config(spec: AuditSpec) -> dict[str, Any]:
    """The preprocessing a chunk's result depends on (timm data config)."""
    return jsonable(inputs.model(spec).data_config)


def _rows(spec: AuditSpec) -> pd.DataFrame:
    return select_rows(inputs.dataset(spec).manifest, spec.splits, spec.train_cap, spec.seed)


def plan(spec: AuditSpec) -> list[chunks.Chunk]:
    """The prediction chunks of this audit, in row order, keyed for caching."""
    cmap = inputs.class_map(spec)
    # Autocast on CUDA and GPU JPEG decoding change the numbers: they are different entries.
    settings: dict[str, Any] = {"device": resolve_device(spec.device).type, "decode": spec.decode}
    if cmap.subset:  # a subset chunk keeps the matched outputs' logits and the full view's top outputs
        settings["columns"] = cmap.columns
    return chunks.plan(
        "predict",
        _rows(spec)["sha256"].astype(str).tolist(),
        spec.chunk_size,
        model_digest=inputs.model(spec).digest,
        config=chunk_config(spec),
        settings=settings,
        suffix=".npz" if cmap.subset else ".npy",
    )


def chunk(spec: AuditSpec, c: chunks.Chunk, progress: bool = False) -> ChunkResult:
    """Logits of one chunk's rows into its content-addressed file (reused when it exists).

    All outputs are computed; a subset audit keeps the matched outputs' logits
    plus the full view's top outputs (``classmap.reduce_logits``) in an .npz.
    """
    c = chunks.Chunk.model_validate(c)
    reusable, rejected = chunks.lookup(c)
    if reusable:
        return ChunkResult(path=c.path, computed=False, n=c.size)
    ds, model = inputs.dataset(spec), inputs.model(spec)
    rows = _rows(spec).iloc[c.start : c.stop].reset_index(drop=True)
    logits = infer_logits(
        full_module(model.module),
        ImageDataset(rows, ds.classes, model.transform()),
        resolve_device(spec.device),
        batch_size=spec.batch_size,
        workers=spec.workers,
        decode=spec.decode,
        progress=progress,
        desc=f"predict chunk {c.index}",
        image_hw=tuple(model.data_config["input_size"][-2:]),
    )
    cmap = inputs.class_map(spec)
    if cmap.subset:
        chunks.save_arrays(c.path, reduce_logits(logits, cmap.columns))
    else:
        chunks.save_array(c.path, logits.astype(np.float32))
    return ChunkResult(path=c.path, computed=True, n=c.size, rejected=rejected)


def assemble(spec: AuditSpec, work: Path, results: list[ChunkResult]) -> PredictionOutcome:
    """Concatenate chunk logits in order; write predictions.csv + logits.npy (dataset class order).

    A subset audit's table also carries the full view's columns (``*_full``,
    ``in_classes``); its logits.npy holds the restricted view's logits.
    """
    ds, rows, cmap = inputs.dataset(spec), _rows(spec), inputs.class_map(spec)
    reduced: dict[str, np.ndarray] | None = None
    if cmap.subset:
        parts = [chunks.load_arrays(r.path) for r in results]
        reduced = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else None
        logits = reduced["logits"] if reduced else np.zeros((0, len(ds.classes)), np.float32)
    else:
        whole = [chunks.load_array(r.path) for r in results]
        logits = np.concatenate(whole) if whole else np.zeros((0, cmap.n_outputs), np.float32)
        if not cmap.identity and len(logits):
            logits = logits[:, cmap.columns]
    if len(logits) != len(rows):
        raise RuntimeError(f"prediction chunks hold {len(logits)} rows for {len(rows)} images")
    table = build_table(rows, ds.classes, logits)
    if reduced is not None:
        table = table.assign(**full_view_columns(table["y"].to_numpy(), logits, reduced, cmap))
    files = Predictions(table, logits).save(work)
    return PredictionOutcome(files=files, n=len(rows), chunks=ChunkStats.of(results))


def run(spec: AuditSpec, work: Path, progress: bool = True) -> PredictionOutcome:
    """Plan, compute (or reuse) and assemble every chunk in this process."""
    return assemble(spec, work, [chunk(spec, c, progress=progress) for c in plan(spec)])
