"""Prefect @task wrappers around the audit stages (imaudit.audits.stages). No logic lives here.

Retries are only on the steps that read inputs or write files (I/O), and only
for I/O errors; compute steps fail fast and are recorded as failed stages in
audit.json. Prediction and explanation run as one task per chunk, whose result
is its content-addressed file (see imaudit.tasks.policies: no Prefect cache).
The tasks that run the model hold a slot of the device's global concurrency
limit (policies.device_slot).
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import task

from imaudit.audits.chunks import Chunk
from imaudit.audits.diagnose import Diagnosis
from imaudit.audits.expect import GateReport
from imaudit.audits.result import MethodRecord
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import check_data as check_data_stage
from imaudit.audits.stages import check_outputs as check_outputs_stage
from imaudit.audits.stages import diagnose as diagnose_stage
from imaudit.audits.stages import explain as explain_stage
from imaudit.audits.stages import gallery as gallery_stage
from imaudit.audits.stages import identify as identify_stage
from imaudit.audits.stages import insights as insights_stage
from imaudit.audits.stages import predict as predict_stage
from imaudit.audits.stages import sample as sample_stage
from imaudit.audits.stages.records import (
    ChunkResult,
    Gallery,
    Identity,
    Insights,
    PredictionOutcome,
    SampleOutcome,
)
from imaudit.tasks.policies import COMPUTE, IO, device_slot


@task(name="identify", **IO)
def identify(spec: AuditSpec, work: Path) -> Identity:
    return identify_stage.run(spec, work)


@task(name="check-data", **COMPUTE)
def check_data(spec: AuditSpec, work: Path) -> GateReport:
    return check_data_stage.run(spec, work)


@task(name="plan-predict", **COMPUTE)
def plan_predict(spec: AuditSpec) -> list[Chunk]:
    return predict_stage.plan(spec)


@task(name="predict-chunk", task_run_name="predict-chunk-{chunk.index}", **COMPUTE)
def predict_chunk(spec: AuditSpec, chunk: Chunk) -> ChunkResult:
    # A bar only where someone watches a terminal; worker logs stay clean.
    with device_slot():
        return predict_stage.chunk(spec, chunk, progress=sys.stderr.isatty())


@task(name="assemble-predictions", **IO)
def assemble_predictions(spec: AuditSpec, work: Path, results: list[ChunkResult]) -> PredictionOutcome:
    return predict_stage.assemble(spec, work, results)


@task(name="check-outputs", **COMPUTE)
def check_outputs(spec: AuditSpec, work: Path) -> GateReport:
    return check_outputs_stage.run(spec, work)


@task(name="diagnose", **COMPUTE)
def diagnose(spec: AuditSpec, work: Path, history: list[dict] | None) -> Diagnosis:
    return diagnose_stage.run(spec, work, history)


@task(name="choose-sample", **COMPUTE)
def choose_sample(spec: AuditSpec, work: Path) -> SampleOutcome:
    return sample_stage.run(spec, work)


@task(name="plan-explain", task_run_name="plan-explain-{method}", **COMPUTE)
def plan_explain(spec: AuditSpec, work: Path, method: str) -> list[Chunk]:
    return explain_stage.plan(spec, work, method)


@task(name="explain-chunk", task_run_name="explain-{method}-chunk-{chunk.index}", **COMPUTE)
def explain_chunk(spec: AuditSpec, work: Path, method: str, chunk: Chunk) -> ChunkResult:
    with device_slot():
        return explain_stage.chunk(spec, work, method, chunk)


@task(name="assemble-explanation", task_run_name="assemble-explanation-{method}", **COMPUTE)
def assemble_explanation(spec: AuditSpec, work: Path, method: str, results: list[ChunkResult]) -> MethodRecord:
    return explain_stage.assemble(spec, work, method, results)


@task(name="gallery", **COMPUTE)
def gallery(spec: AuditSpec, work: Path, records: dict[str, MethodRecord]) -> Gallery:
    return gallery_stage.run(spec, work, records)


@task(name="insights", **COMPUTE)
def insights(spec: AuditSpec, work: Path, records: dict[str, MethodRecord]) -> Insights:
    with device_slot():
        return insights_stage.run(spec, work, records)
