"""Generative explanations: a class-conditional GAN of the audit dataset drawn in the
model's input space, counterfactual images from it, where their changes concentrate,
and generative in-fill for perturbation methods.

- space: InputSpace, the exact pixels a model sees (its timm eval transform)
- gan: the DCGAN generator/discriminator and training loop
- store: GeneratorArtifact, versioned on disk by dataset digest and input space; pretrained checkpoints
- training: train_generator (train or reuse, in a model's input space), generative_cli_train
- latent: GAN inversion and generator <-> image space adapters
- counterfactual: the latent search to a target confidence, with honest outcomes
- concentration: change maps and boxes per target class
- evidence: counterfactual evidence for shortcut findings, or a hotspot finding
- figures: item images, fixed-scale change maps, the legend
- infill: replacement content for occlusion and deletion/insertion
- section: the ``generative`` section of audit.json; stage: the audit's counterfactual stage

Never imports prefect.
"""

from imaudit.audits.generative.counterfactual import SearchSettings, counterfactuals, find_counterfactuals
from imaudit.audits.generative.gan import ConditionalDiscriminator, ConditionalGenerator, GanConfig, train_gan
from imaudit.audits.generative.infill import GenerativeInfill, generative_infill
from imaudit.audits.generative.section import (
    Candidates,
    SectionSettings,
    Selection,
    compare_infill,
    run_counterfactual_section,
    select_images,
)
from imaudit.audits.generative.space import InputSpace
from imaudit.audits.generative.store import (
    GeneratorArtifact,
    export_checkpoint,
    find_generator,
    load_pretrained_generator,
    resolve_generator,
)
from imaudit.audits.generative.training import (
    GeneratorSettings,
    generative_cli_train,
    summary_lines,
    train_generator,
)

__all__ = [
    "Candidates",
    "ConditionalDiscriminator",
    "ConditionalGenerator",
    "GanConfig",
    "GenerativeInfill",
    "GeneratorArtifact",
    "GeneratorSettings",
    "InputSpace",
    "SearchSettings",
    "SectionSettings",
    "Selection",
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
    "select_images",
    "summary_lines",
    "train_gan",
    "train_generator",
]
