"""Prefect tasks for generative explanations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from imaudit.audits.generative.training import GeneratorSettings, train_for_model
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import counterfactuals as counterfactuals_stage
from imaudit.tasks.policies import COMPUTE, device_slot


@task(name="counterfactuals", **COMPUTE)
def counterfactuals(spec: AuditSpec, work: Path) -> dict[str, Any] | None:
    with device_slot():
        return counterfactuals_stage.run(spec, work)


@task(name="train-generator", **COMPUTE)
def train_generator(dataset: str, model: str, epochs: int = 30, image_size: int | None = None, seed: int = 0) -> str:
    """Train (or reuse) the class-conditional GAN for ``dataset`` in ``model``'s input space; returns its folder."""
    settings = GeneratorSettings(epochs=epochs, image_size=image_size, seed=seed)
    return str(train_for_model(dataset, model, settings, progress=False).path)
