"""Prefect @task wrappers around the audit stages. No logic lives here.

Retries are only on the stage that fetches inputs (models, datasets: I/O),
and only for I/O errors; compute stages fail fast and are recorded as failed
stages in audit.json. Prediction and explanation run as chunk tasks cached
by their content key (imaudit.tasks.chunk_cache).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import task

from imaudit.audits import pipeline, stage_chunks
from imaudit.audits.chunks import Chunk
from imaudit.audits.spec import AuditSpec
from imaudit.tasks.chunk_cache import CHUNK_CACHE, retry_on_io


@task(name="identify", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=retry_on_io)
def identify(spec: AuditSpec, work: Path) -> dict[str, Any]:
    return pipeline.identify(spec, work)


@task(name="check-data")
def check_data(spec: AuditSpec, work: Path) -> dict[str, Any]:
    return pipeline.check_data(spec, work)


@task(name="plan-predict")
def plan_predict(spec: AuditSpec) -> list[Chunk]:
    return stage_chunks.predict_plan(spec)


@task(name="predict-chunk", task_run_name="predict-chunk-{chunk.index}", **CHUNK_CACHE)
def predict_chunk(spec: AuditSpec, chunk: Chunk) -> dict[str, Any]:
    # A bar only where someone watches a terminal; worker logs stay clean.
    return stage_chunks.predict_chunk(spec, chunk, progress=sys.stderr.isatty())


@task(name="assemble-predictions", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=retry_on_io)
def assemble_predictions(spec: AuditSpec, work: Path, chunk_paths: list[str]) -> dict[str, Any]:
    return stage_chunks.predict_assemble(spec, work, chunk_paths)


@task(name="check-outputs")
def check_outputs(spec: AuditSpec, work: Path) -> dict[str, Any]:
    return pipeline.check_outputs(spec, work)


@task(name="diagnose")
def diagnose(spec: AuditSpec, work: Path, history: list[dict] | None) -> dict[str, Any]:
    return pipeline.diagnose(spec, work, history)


@task(name="choose-sample")
def choose_sample(spec: AuditSpec, work: Path) -> dict[str, Any]:
    return pipeline.choose_sample(spec, work)


@task(name="plan-explain", task_run_name="plan-explain-{method}")
def plan_explain(spec: AuditSpec, work: Path, method: str) -> list[Chunk]:
    return stage_chunks.explain_plan(spec, work, method)


@task(name="explain-chunk", task_run_name="explain-{method}-chunk-{chunk.index}", **CHUNK_CACHE)
def explain_chunk(spec: AuditSpec, work: Path, method: str, chunk: Chunk) -> dict[str, Any]:
    return stage_chunks.explain_chunk(spec, work, method, chunk)


@task(name="assemble-explanation", task_run_name="assemble-explanation-{method}")
def assemble_explanation(spec: AuditSpec, work: Path, method: str, chunk_paths: list[str]) -> dict[str, Any]:
    return stage_chunks.explain_assemble(spec, work, method, chunk_paths)


@task(name="gallery")
def gallery(spec: AuditSpec, work: Path, records: dict[str, dict]) -> dict[str, Any]:
    return pipeline.gallery(spec, work, records)


@task(name="insights")
def insights(spec: AuditSpec, work: Path, records: dict[str, dict]) -> dict[str, Any]:
    return pipeline.insights(spec, work, records)
