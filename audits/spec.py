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
    """Limits for explanation findings (shortcut, faithfulness, sanity, agreement). Unknown keys are rejected.

    shortcut, step 1 (candidates, audits/shortcuts/search.py): each map is
    pooled to ``shortcut_grid`` x ``shortcut_grid`` cells and its top
    ``shortcut_top_share`` of cells are its hot cells (a coarse method, such as
    Grad-CAM on a 2 x 2 feature map, on its own cells). A place is a candidate
    for a class (the class its maps explain) when it is hot in that class's
    maps (at least ``shortcut_min_images`` of them) at least
    ``shortcut_hot_frequency`` of the way from chance to every map, covers at most ``shortcut_max_area`` of
    the image and, with object masks, lies at most ``shortcut_max_on_object``
    on the objects. With masks, the area off the object is a candidate when
    the odds that a hot cell lies there exceed the odds of its area share by
    ``off_object_odds_ratio``. SpRAy clusters of at least
    ``spray_min_cluster_size`` images are searched the same way (a cue in part
    of a class). A box whose pixels vary over the images less than
    ``shortcut_min_contrast`` times the images' own variation (a blank border)
    cannot tell classes apart and is not tested. At most
    ``shortcut_max_candidates`` candidates, strongest first, go on to step 2.

    shortcut, step 2 (confirmation by intervention, audits/shortcuts/confirm.py):
    confirmed (an ``error``) when covering the box drops the class's accuracy
    by at least ``confirm_accuracy_drop`` more than covering the mirrored box,
    and pasting it into other classes' images flips at least
    ``confirm_flip_rate`` more of them to the class than pasting the same box
    from a third class does, each on at least ``confirm_min_images`` images.
    Otherwise the candidate is reported as ``info``.

    unfaithful-explanation: the 95 % interval of the relative deletion gain
    over random orders reaches 0 (not better than random beyond the interval),
    or the gain is below ``faithfulness_margin`` (a real but negligible gain
    is not faithfulness). With ``faithfulness_use_insertion`` a method also
    passes when its insertion gain passes the same test (shape-driven models recognise the
    silhouette a deletion fill leaves, which can make deletion look random).

    failed-sanity-check: at a judged depth of the cascading randomisation
    (``sanity_judge_at``: fractions of the model's blocks, rounded up) the mean
    Spearman correlation with the trained model's maps is at least
    ``sanity_max_rank_corr`` or the mean SSIM at least ``sanity_max_ssim``.

    low-method-agreement (info only): mean rank correlation between two
    methods below ``agreement_min``.

    ``grid`` is the global-importance grid; ``region_hot_lift`` marks a region
    "hot" in an image for global importance's consistency table (mass at least
    that many times its area share).
    """

    model_config = ConfigDict(extra="forbid")

    grid: int = Field(default=8, ge=1)
    region_hot_lift: float = 2.5
    shortcut_grid: int = Field(default=16, ge=2)
    shortcut_top_share: float = Field(default=0.05, gt=0, lt=1)
    shortcut_hot_frequency: float = Field(default=0.5, gt=0, le=1)
    shortcut_min_images: int = Field(default=5, ge=1)
    shortcut_max_area: float = Field(default=0.25, gt=0, le=1)
    shortcut_max_on_object: float = Field(default=0.5, ge=0, le=1)
    shortcut_max_candidates: int = Field(default=12, ge=0)
    shortcut_min_contrast: float = Field(default=0.1, ge=0)
    off_object_odds_ratio: float = 3.0
    spray_min_cluster_size: int = 3
    confirm_accuracy_drop: float = 0.3
    confirm_flip_rate: float = 0.5
    confirm_min_images: int = Field(default=5, ge=1)
    faithfulness_margin: float = 0.05
    faithfulness_use_insertion: bool = False
    sanity_max_rank_corr: float = 0.5
    sanity_max_ssim: float = 0.7
    sanity_judge_at: list[float] = Field(default_factory=lambda: [0.75, 1.0])
    agreement_min: float = 0.2


class CounterfactualThresholds(BaseModel):
    """When counterfactual changes become evidence (audits/generative/evidence.py).

    Changes are aggregated per target class (and over all targets) from the
    successful counterfactuals (audits/generative/concentration.py).
    A ``shortcut`` finding cites them when a group of at least ``min_images``
    puts at least ``cite_mass`` of its change inside the finding's box, at
    least ``cite_lift`` times the box's share of the image.
    A ``counterfactual-hotspot`` (info) finding is raised when a group's top
    box covers at most ``hotspot_max_area`` of the image, holds at least
    ``hotspot_mass`` of the change at ``hotspot_lift`` times its area share,
    is hot in at least ``hotspot_consistency`` of the group's images, and no
    shortcut finding's box holds half of that change.
    """

    model_config = ConfigDict(extra="forbid")

    min_images: int = Field(default=3, ge=1)
    cite_mass: float = 0.25
    cite_lift: float = 2.0
    hotspot_max_area: float = 0.05
    hotspot_mass: float = 0.5
    hotspot_lift: float = 5.0
    hotspot_consistency: float = 0.75


class Thresholds(BaseModel):
    """All finding thresholds, grouped by check."""

    model_config = ConfigDict(extra="forbid")

    fit: FitThresholds = Field(default_factory=FitThresholds)
    calibration: CalibrationThresholds = Field(default_factory=CalibrationThresholds)
    data: DataThresholds = Field(default_factory=DataThresholds)
    explanations: ExplanationThresholds = Field(default_factory=ExplanationThresholds)
    counterfactuals: CounterfactualThresholds = Field(default_factory=CounterfactualThresholds)


class QualitySettings(BaseModel):
    """How much explanation-quality checking to do (costs extra forward passes).

    Deletion/insertion curves run for every method on the first
    ``faithfulness_images`` of its explained images (a stratified prefix), each
    against ``random_orders`` random orders and the ``priors``, which are
    computed once and shared by the methods. The cascading randomisation sanity
    check re-explains ``sanity_images`` images once per model block, so by
    default only the cheap gradient methods take it. ``shortcuts`` turns the
    shortcut search and its confirmation on.
    """

    model_config = ConfigDict(extra="forbid")

    faithfulness: bool = True
    deletion_steps: int = Field(default=16, ge=2)
    faithfulness_images: int = Field(default=32, ge=0, description="images per method (a stratified share of its sample)")
    random_orders: int = Field(default=4, ge=1, description="random deletion orders per image (the reference)")
    priors: list[Literal["edges"]] = Field(default_factory=lambda: ["edges"], description="model-independent reference orders")
    fill: Literal["blur", "mean", "zero"] = Field(
        default="blur", description="what deleted / covered pixels become: faithfulness curves and shortcut covering"
    )
    sanity_methods: list[str] = Field(default_factory=lambda: ["saliency", "ig", "gradcam"])
    sanity_images: int = Field(default=8, ge=0)
    strategies: bool = True
    shortcuts: bool = True
    confirm_images: int = Field(default=64, ge=1, description="images per class and intervention (cover, paste)")


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


class GenerativeSettings(BaseModel):
    """Counterfactual settings (AuditSpec.counterfactuals turns them on with a number of images).

    Which images: ``select`` kinds in order of preference (misclassified;
    near-boundary = correct with top-1 minus top-2 probability below
    ``margin``; correct = the other correct images, classes in turn), only
    images labelled one of ``classes`` when given, moved towards ``target``
    (a class name) or, by default, towards the true label when misclassified
    and the runner-up class when correct.
    The search (audits/generative/counterfactual.py, which takes its defaults
    from here): Adam for at most ``steps`` steps until the model gives the
    target ``confidence``, with the weights of the pixel change
    (``proximity``), the latent prior (``prior``), the discriminator's realism
    (``realism``) and the mask's smoothness (``smoothness``); ``masked: false``
    searches the latent code alone; ``invert_steps`` for the reconstruction.
    The generator: the stored one for the dataset in the model's input space
    (with ``image_size``/``epochs``/``z_dim``/``batch_size``/``train_lr``/``width``
    when given: the settings it was trained with); with ``train`` the audit
    trains one with them when none is stored (unset ones: the training defaults). ``infill`` compares deletion curves
    under grey, blur and generative in-fill.
    """

    model_config = ConfigDict(extra="forbid")

    select: list[Literal["misclassified", "near-boundary", "correct"]] = Field(
        default_factory=lambda: ["misclassified", "near-boundary", "correct"])
    margin: float = Field(default=0.2, gt=0, le=1)
    classes: list[str] = Field(default_factory=list)
    target: str | None = None
    confidence: float = Field(default=0.9, ge=0, lt=1)
    steps: int = Field(default=300, ge=1)
    lr: float = Field(default=0.05, gt=0)
    proximity: float = Field(default=10.0, ge=0)
    prior: float = Field(default=0.01, ge=0)
    realism: float = Field(default=0.05, ge=0)
    smoothness: float = Field(default=0.1, ge=0)
    masked: bool = True
    invert_steps: int = Field(default=200, ge=1)
    image_size: int | None = Field(default=None, ge=8)
    epochs: int | None = Field(default=None, ge=1)
    z_dim: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=2)
    train_lr: float | None = Field(default=None, gt=0, le=1)
    width: int | None = Field(default=None, ge=1)
    train: bool = False
    infill: bool = True

    @field_validator("select", "classes", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v


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
    samples: int | None = Field(
        default=None, ge=0,
        description="Val images each method explains (default: per explained class, by the method's cost)",
    )
    method_samples: dict[str, int] = Field(default_factory=dict, description="Per-method sample size")
    max_classes: int = Field(
        default=10, ge=1, description="Explain at most this many classes (the most confused first) on larger class lists"
    )
    gallery: int = Field(default=48, ge=0, description="Sample images drawn with every method's overlay in the report")
    method_settings: dict[str, dict] = Field(default_factory=dict, description="Per-method settings overrides")
    target: Literal["pred", "true"] = Field(default="pred", description="Explain the predicted or the true class")
    splits: list[str] | None = Field(default=None, description="Splits to predict (default: all in the dataset)")
    train_cap: int = Field(default=2000, ge=0, description="At most this many train images are predicted")
    out: Path | None = Field(default=None, description="Report store folder (default IMAUDIT_HOME/reports)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int | None = Field(default=None, ge=1, description="Inference batch size (default by device)")
    workers: int | None = Field(
        default=None, ge=0,
        description="DataLoader decoding processes (default: 0 on CPU, where threads decode while the model runs; "
        "up to 8 on CUDA)",
    )
    decode: Literal["auto", "cpu", "gpu"] = Field(
        default="auto",
        description="Where JPEGs are decoded for prediction: auto = on the GPU (nvJPEG) when the device is CUDA and "
        "the files are JPEGs of at least 128x128; cpu = always PIL; gpu = torchvision's decode_jpeg on the device",
    )
    rehash: bool = Field(
        default=False,
        description="Hash and decode every dataset file again instead of trusting the manifest cache "
        "(which re-reads a file only when its size or modification time changed)",
    )
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
        default=0, ge=0, description="Val images to explain with GAN counterfactuals (0: off)"
    )
    generator: Path | None = Field(
        default=None, description="Generator checkpoint for counterfactuals (default: the one trained for the dataset)"
    )
    generative: GenerativeSettings = Field(default_factory=GenerativeSettings)

    @field_validator("methods", mode="before")
    @classmethod
    def _split_methods(cls, v: object) -> object:
        if isinstance(v, str):
            return [m.strip() for m in v.split(",") if m.strip()]
        return v

    def samples_for(self, method: str, n_classes: int | None = None) -> int:
        """How many val images ``method`` explains when ``n_classes`` classes are explained.

        ``method_samples`` wins, then ``samples``, then the method's own
        images-per-class default times the number of explained classes, at
        most its ``max_samples`` (with no class count given: its typical sample).
        """
        if method in self.method_samples:
            return self.method_samples[method]
        if self.samples is not None:
            return self.samples
        from imaudit.audits.explain.registry import get_method  # the registry imports explainers: only when needed

        cls = get_method(method)
        return cls.typical_samples if n_classes is None else min(cls.samples_per_class * n_classes, cls.max_samples)
