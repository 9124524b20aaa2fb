"""Generative explanations: a class-conditional GAN of the audit dataset,
counterfactual images from it, and generative in-fill for perturbation methods.

- gan: the DCGAN generator/discriminator and training loop
- store: GeneratorArtifact, versioned on disk by dataset digest; pretrained checkpoints
- training: train_generator (train or reuse), generative_cli_train
- latent: GAN inversion and generator <-> image space adapters
- counterfactual: the smallest latent move that flips the model's prediction
- infill: replacement content for occlusion and deletion/insertion
- section: the ``generative`` section of audit.json

Never imports prefect.
"""

from imaudit.audits.generative.counterfactual import counterfactuals, find_counterfactuals
from imaudit.audits.generative.gan import ConditionalDiscriminator, ConditionalGenerator, GanConfig, train_gan
from imaudit.audits.generative.infill import GenerativeInfill, generative_infill
from imaudit.audits.generative.section import compare_infill, run_counterfactual_section
from imaudit.audits.generative.store import (
    GeneratorArtifact,
    export_checkpoint,
    find_generator,
    load_pretrained_generator,
    resolve_generator,
)
from imaudit.audits.generative.training import generative_cli_train, summary_lines, train_generator

__all__ = [
    "ConditionalDiscriminator",
    "ConditionalGenerator",
    "GanConfig",
    "GenerativeInfill",
    "GeneratorArtifact",
    "compare_infill",
    "counterfactuals",
    "export_checkpoint",
    "find_counterfactuals",
    "find_generator",
    "generative_cli_train",
    "generative_infill",
    "load_pretrained_generator",
    "resolve_generator",
    "run_counterfactual_section",
    "summary_lines",
    "train_gan",
    "train_generator",
]
