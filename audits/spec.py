"""AuditSpec: the one configuration record of an audit.

It is the Prefect flow's parameter, what the CLI builds and what prefect.yaml
fills in. Every threshold a finding uses lives here, documented, so a reviewer
can see and change what "overfitting" or "shortcut" means for their model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_METHODS = ["saliency", "ig", "gradcam", "occlusion", "lime", "shap"]


class FitThresholds(BaseModel):
    """When the train/val comparison becomes a finding.

    overfitting: train accuracy exceeds val accuracy by more than
    ``overfit_accuracy_gap`` (or val loss exceeds train loss by more than
    ``overfit_loss_ratio`` times while the accuracy gap is at least half the
    threshold), or the release's history shows val loss rising for
    ``history_patience`` epochs after its minimum by more than
    ``history_rise`` (relative) while train loss kept falling.

    underfitting: train accuracy below chance + ``underfit_margin`` x
    (1 - chance), chance = 1 / number of classes: the model cannot even fit
    the data it was trained on.
    """

    model_config = ConfigDict(extra="forbid")

    overfit_accuracy_gap: float = 0.10
    overfit_loss_ratio: float = 2.0
    underfit_margin: float = 0.5
    history_patience: int = 3
    history_rise: float = 0.10


class CalibrationThresholds(BaseModel):
    """Expected calibration error (15 equal-width confidence bins) limits."""

    model_config = ConfigDict(extra="forbid")

    bins: int = 15
    ece_warning: float = 0.10
    ece_error: float = 0.25


class DataThresholds(BaseModel):
    """Data-gate limits: class imbalance is max/min class count in a split; a class with
    fewer than ``min_class_images`` images in the evaluated split is a ``tiny-class``."""

    model_config = ConfigDict(extra="forbid")

    imbalance_ratio: float = 10.0
    min_class_images: int = Field(default=5, ge=1)


class ExplanationThresholds(BaseModel):
    """Limits for explanation findings (shortcut, faithfulness, sanity, agreement).

    shortcut: a region (corner/border band) or the off-object area holding at
    least ``shortcut_mass`` of a class's mean attribution and at least
    ``shortcut_lift`` times its share of the image area.
    unfaithful-explanation: deletion AUC not better than the random-order
    baseline by ``faithfulness_margin`` (relative).
    With ``faithfulness_use_insertion`` (default) a method also passes when its
    insertion AUC beats the random order by the margin: filling deleted pixels
    leaves the object's silhouette, which shape-driven models still recognise,
    so deletion alone wrongly condemns faithful maps of such models.
    failed-sanity-check: mean Spearman correlation between maps of the trained
    and the top-layer-randomised model above ``sanity_max_rank_corr``.
    low-method-agreement: mean rank correlation between two methods below
    ``agreement_min``.

    Shortcut details (audits/explain_findings.py): a corner or edge
    region fires for a class with at least ``shortcut_min_images`` explained
    images when its mass (off the object, where masks exist) passes
    ``shortcut_mass`` and ``shortcut_lift`` and the region is "hot" (holds at
    least ``shortcut_lift`` x its area share) in at least
    ``shortcut_consistency`` of the class's images. Off-object attention fires
    when the odds of mass off the object exceed the odds of its area share by
    ``off_object_odds_ratio``. A SpRAy strategy cluster of at least
    ``spray_min_cluster_size`` images whose mean map passes the same mass and
    lift tests is evidence too, for the images it holds.
    """

    model_config = ConfigDict(extra="allow")

    grid: int = 8
    shortcut_mass: float = 0.35
    shortcut_lift: float = 2.5
    faithfulness_margin: float = 0.05
    faithfulness_use_insertion: bool = True
    sanity_max_rank_corr: float = 0.5
    sanity_max_ssim: float = 0.7
    agreement_min: float = 0.2
    shortcut_consistency: float = 0.5
    shortcut_min_images: int = 5
    off_object_odds_ratio: float = 3.0
    spray_min_cluster_size: int = 3


class Thresholds(BaseModel):
    """All finding thresholds, grouped by check."""

    model_config = ConfigDict(extra="forbid")

    fit: FitThresholds = Field(default_factory=FitThresholds)
    calibration: CalibrationThresholds = Field(default_factory=CalibrationThresholds)
    data: DataThresholds = Field(default_factory=DataThresholds)
    explanations: ExplanationThresholds = Field(default_factory=ExplanationThresholds)


class QualitySettings(BaseModel):
    """How much explanation-quality checking to do (costs extra forward passes).

    Deletion/insertion curves run for every method on its explained images.
    The randomisation sanity check re-explains with a randomised model, so by
    default only the cheap gradient methods take it.
    """

    model_config = ConfigDict(extra="forbid")

    faithfulness: bool = True
    deletion_steps: int = Field(default=16, ge=2)
    sanity_methods: list[str] = Field(default_factory=lambda: ["saliency", "ig", "gradcam"])
    sanity_images: int = Field(default=8, ge=0)
    strategies: bool = True


class ImageLimits(BaseModel):
    """What a dataset image file may be; checked before it is read or decoded.

    ``max_file_mb`` is checked from the file system before any byte is read,
    ``max_pixels`` from the image header before any pixel is decoded; a file
    over either is left out of the audit and listed with the reason. The
    defaults fit every camera photo (medium-format bodies reach about 102 MP)
    and bound memory: one decode needs at most ``max_pixels`` x 4 bytes (480 MB),
    images over 16 MP are decoded one at a time, so checking a dataset stays
    under about 1 GB whatever its files claim to be.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_file_mb: float = Field(default=1024.0, gt=0, description="Largest image file read, in MiB")
    max_pixels: int = Field(default=120_000_000, gt=0, description="Largest image decoded, width x height")


class AuditSpec(BaseModel):
    """What to audit and how. Defaults give a useful audit on a laptop CPU."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model ref: timm:NAME, hf-hub:ORG/NAME, file:PATH or release:NAME@VERSION")
    dataset: str | None = Field(
        default=None,
        description="Dataset ref: folder:PATH, csv:PATH, builtin:digits, builtin:shapes[?opts]; "
        "defaults to the release's dataset for release: refs",
    )
    arch: str | None = Field(default=None, description="timm architecture of a bare state_dict checkpoint")
    class_map: str | None = Field(
        default=None,
        description="File (or URL) mapping dataset classes to model outputs: YAML/JSON {class: label, WordNet id "
        "or output index} or CSV class,model; needed only where names do not match by themselves",
    )
    input_size: int | None = Field(default=None, description="Override the data config's input size (pixels)")
    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    samples: int = Field(default=16, ge=0, description="Val images each method explains")
    method_samples: dict[str, int] = Field(default_factory=dict, description="Per-method sample size")
    method_settings: dict[str, dict] = Field(default_factory=dict, description="Per-method settings overrides")
    target: Literal["pred", "true"] = Field(default="pred", description="Explain the predicted or the true class")
    splits: list[str] | None = Field(default=None, description="Splits to predict (default: all in the dataset)")
    train_cap: int = Field(default=2000, ge=0, description="At most this many train images are predicted")
    out: Path | None = Field(default=None, description="Report store folder (default IMAUDIT_HOME/reports)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int | None = Field(default=None, ge=1, description="Inference batch size (default by device)")
    workers: int | None = Field(default=None, ge=0, description="DataLoader workers (default by CPU count)")
    chunk_size: int = Field(default=512, ge=1, description="Images per cached prediction/explanation chunk")
    fail_on: Literal["warning", "error"] | None = Field(default=None, description="Gate: fail on findings this severe")
    seed: int = 0
    task_runner: Literal["sequential", "dask"] = "sequential"
    dask_address: str | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    limits: ImageLimits = Field(default_factory=ImageLimits, description="Image file size and dimension limits")
    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders besides a CSV dataset's own that its image and mask paths may point into",
    )
    quality: QualitySettings = Field(default_factory=QualitySettings)
    counterfactuals: int = Field(
        default=0, ge=0, description="Misclassified val images to explain with GAN counterfactuals (0: off)"
    )
    generator: Path | None = Field(
        default=None, description="Generator checkpoint for counterfactuals (default: the one trained for the dataset)"
    )

    @field_validator("methods", mode="before")
    @classmethod
    def _split_methods(cls, v: object) -> object:
        if isinstance(v, str):
            return [m.strip() for m in v.split(",") if m.strip()]
        return v

    def samples_for(self, method: str) -> int:
        """How many val images ``method`` explains."""
        return self.method_samples.get(method, self.samples)
