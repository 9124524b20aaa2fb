"""Prefect tasks for generative explanations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from imaudit.audits import pipeline
from imaudit.audits.spec import AuditSpec


@task(name="counterfactuals")
def counterfactuals(spec: AuditSpec, work: Path) -> dict[str, Any] | None:
    return pipeline.counterfactuals(spec, work)


@task(name="train-generator")
def train_generator(dataset: str, epochs: int = 30, image_size: int = 32, seed: int = 0) -> str:
    """Train (or reuse) the class-conditional GAN for ``dataset``; returns the artifact folder."""
    from imaudit.audits.generative import train_generator as train

    return str(train(dataset, epochs=epochs, image_size=image_size, seed=seed, progress=False).path)
