"""The typed records the audit's stages hand each other, and what the flow collects for assemble.

Small on purpose: they are Prefect task results (and, for chunks, Dask
messages). Large data stays in files of the audit's work folder or of the
chunk cache; records carry their relative paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from imaudit.audits.diagnose import Diagnosis
from imaudit.audits.expect import GateReport
from imaudit.audits.result import DatasetIdentity, Finding, MethodRecord, ModelIdentity


class Identity(BaseModel):
    """identify's output: what was audited."""

    model: ModelIdentity
    dataset: DatasetIdentity
    history: list[dict[str, Any]] | None = Field(default=None, description="the release's training history, if any")
    class_map: dict[str, Any] | None = Field(default=None, description="which model output is which dataset class")
    seconds: float = 0.0
    cache: "ChunkStats | None" = Field(default=None, description="a generated (builtin) set: reused or generated")
    manifest: "ChunkStats | None" = Field(
        default=None, description="files of a local dataset taken from the manifest cache (reused) or probed (computed)"
    )


class ChunkResult(BaseModel):
    """One chunk's result: its content-addressed file, and whether this run computed it (else reused)."""

    model_config = ConfigDict(frozen=True)

    path: str
    computed: bool
    n: int
    rejected: str | None = None  # why a cached file was not trusted (then computed again)


class ChunkStats(BaseModel):
    """How many of a stage's chunks were reused from the cache (audit.json ``cache``).

    ``rejected``: cached results that were there but did not verify (size or
    checksum), so were computed again; they count as computed, never reused.
    """

    model_config = ConfigDict(extra="allow")

    total: int = 0
    reused: int = 0
    computed: int = 0
    rejected: int = 0

    @classmethod
    def of(cls, results: list[ChunkResult]) -> "ChunkStats":
        done = sum(r.computed for r in results)
        return cls(total=len(results), reused=len(results) - done, computed=done,
                   rejected=sum(r.rejected is not None for r in results))


class PredictionOutcome(BaseModel):
    """predict's output: files written into the work folder (predictions.csv, logits.npy)."""

    files: dict[str, str]
    n: int
    chunks: ChunkStats = Field(default_factory=ChunkStats)


class SampleOutcome(BaseModel):
    """sample's output: how many val images the methods explain (rows of sample.csv), from which split,
    how many each method takes from the front, which classes and why (also in sample.json)."""

    n: int
    split: str | None
    per_method: dict[str, int] = Field(default_factory=dict)
    classes: list[str] = Field(default_factory=list, description="the explained classes")
    class_selection: str = "all classes"
    grouped_by: str = Field(default="pred", description="the column holding the explained class: pred or y")


class GalleryItem(BaseModel):
    """One sampled image in the report's gallery, with each method's overlay (relative paths)."""

    id: str
    label: str
    pred: str
    correct: bool
    confidence: float
    image: str
    overlays: dict[str, str] = Field(default_factory=dict)


class Gallery(BaseModel):
    """gallery's output: the gallery rows and the layer views (activations, filters) or why they failed."""

    items: list[GalleryItem] = Field(default_factory=list)
    views: dict[str, Any] | None = None


class Insights(BaseModel):
    """insights' output: the audit.json sections computed from the maps, and their findings."""

    global_importance: dict[str, dict[str, Any]] = Field(default_factory=dict)
    strategies: dict[str, Any] = Field(default_factory=dict)
    quality: dict[str, Any] = Field(default_factory=dict)
    method_quality: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per method, for explanations.<m>.quality")
    shortcuts: dict[str, Any] = Field(default_factory=dict, description="search, background tests, confirmation")
    coverage: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per check: images, classes or why not")
    settings: dict[str, Any] = Field(default_factory=dict, description="baselines, fills, native resolutions")
    findings: list[Finding] = Field(default_factory=list)
    cache: "ChunkStats | None" = Field(default=None, description="reused from the insights cache, or computed")


class StageError(BaseModel):
    """A stage that failed after the inputs loaded: recorded, shown, and the audit goes on."""

    stage: str
    error: str


@dataclass
class StageOutputs:
    """Everything the stages of one audit produced; a failed or skipped stage leaves its field empty."""

    identity: Identity
    data_gate: GateReport | None = None
    prediction: PredictionOutcome | None = None
    prediction_gate: GateReport | None = None
    diagnosis: Diagnosis | None = None
    sample: SampleOutcome | None = None
    explanations: dict[str, MethodRecord] = field(default_factory=dict)
    gallery: Gallery | None = None
    insights: Insights | None = None
    generative: dict[str, Any] | None = None  # the generative section's own shape (audits/generative)
    errors: list[StageError] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cache: dict[str, ChunkStats] = field(default_factory=dict)


Identity.model_rebuild()
