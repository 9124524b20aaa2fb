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
    return chunks.plan(
        "predict",
        _rows(spec)["sha256"].astype(str).tolist(),
        spec.chunk_size,
        model_digest=inputs.model(spec).digest,
        config=chunk_config(spec),
        # Autocast on CUDA changes the numbers: GPU and CPU results are different entries.
        settings={"device": resolve_device(spec.device).type},
    )


def chunk(spec: AuditSpec, c: chunks.Chunk, progress: bool = False) -> ChunkResult:
    """Logits of one chunk's rows into its content-addressed .npy (reused when it exists)."""
    c = chunks.Chunk.model_validate(c)
    reusable, rejected = chunks.lookup(c)
    if reusable:
        return ChunkResult(path=c.path, computed=False, n=c.size)
    ds, model = inputs.dataset(spec), inputs.model(spec)
    rows = _rows(spec).iloc[c.start : c.stop].reset_index(drop=True)
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
    return ChunkResult(path=c.path, computed=True, n=c.size, rejected=rejected)


def assemble(spec: AuditSpec, work: Path, results: list[ChunkResult]) -> PredictionOutcome:
    """Concatenate chunk logits in order; write predictions.csv + logits.npy."""
    ds, model, rows = inputs.dataset(spec), inputs.model(spec), _rows(spec)
    parts = [chunks.load_array(r.path) for r in results]
    logits = np.concatenate(parts) if parts else np.zeros((0, model.num_classes), np.float32)
    if len(logits) != len(rows):
        raise RuntimeError(f"prediction chunks hold {len(logits)} rows for {len(rows)} images")
    order = inputs.class_order(model.classes, ds.classes, spec.model, model.num_classes)
    if order is not None:
        logits = logits[:, order]
    files = Predictions(build_table(rows, ds.classes, logits), logits).save(work)
    return PredictionOutcome(files=files, n=len(rows), chunks=ChunkStats.of(results))


def run(spec: AuditSpec, work: Path, progress: bool = True) -> PredictionOutcome:
    """Plan, compute (or reuse) and assemble every chunk in this process."""
    return assemble(spec, work, [chunk(spec, c, progress=progress) for c in plan(spec)])
