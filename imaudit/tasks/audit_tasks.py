"""Prefect @task wrappers around the audit stages. No logic lives here.

Retries are only on the stages that read inputs from disk or a hub (I/O);
compute stages fail fast and are recorded as failed stages in audit.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from imaudit.audits import pipeline
from imaudit.audits.spec import AuditSpec


@task(name="identify", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=None)
def identify(spec: AuditSpec, work: Path) -> dict[str, Any]:
    return pipeline.identify(spec, work)


@task(name="check-data")
def check_data(spec: AuditSpec, work: Path) -> dict[str, Any]:
    return pipeline.check_data(spec, work)


@task(name="predict")
def predict(spec: AuditSpec, work: Path) -> dict[str, Any]:
    return pipeline.predict(spec, work)


@task(name="check-outputs")
def check_outputs(spec: AuditSpec, work: Path) -> dict[str, Any]:
    return pipeline.check_outputs(spec, work)


@task(name="diagnose")
def diagnose(spec: AuditSpec, work: Path, history: list[dict] | None) -> dict[str, Any]:
    return pipeline.diagnose(spec, work, history)


@task(name="choose-sample")
def choose_sample(spec: AuditSpec, work: Path) -> dict[str, Any]:
    return pipeline.choose_sample(spec, work)


@task(name="explain", task_run_name="explain-{method}")
def explain(spec: AuditSpec, work: Path, method: str) -> dict[str, Any]:
    return pipeline.explain(spec, work, method)


@task(name="gallery")
def gallery(spec: AuditSpec, work: Path, records: dict[str, dict]) -> dict[str, Any]:
    return pipeline.gallery(spec, work, records)


@task(name="insights")
def insights(spec: AuditSpec, work: Path, records: dict[str, dict]) -> dict[str, Any]:
    return pipeline.insights(spec, work, records)
