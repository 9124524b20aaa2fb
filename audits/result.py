"""AuditResult: the one typed record that becomes audit.json.

Sections that later stages fill (explanations, global importance, quality,
strategies, generative) are typed loosely on purpose: their producers own
their shape, and readers (reports/) tolerate missing keys. The top-level keys
and the ones listed in DESIGN.md are the contract.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from imaudit import __version__
from imaudit.io import atomic_write_text

SCHEMA = "imaudit.audit/1"
Severity = Literal["info", "warning", "error"]
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}


class Finding(BaseModel):
    """One thing a reviewer should know, with the numbers that back it."""

    code: str
    severity: Severity
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    group: str | None = Field(default=None, description="model | data | explainer | run (from audits/findings)")


class ModelIdentity(BaseModel):
    model_config = ConfigDict(extra="allow")

    ref: str
    digest: str
    arch: str
    num_classes: int
    classes: list[str] | None = None
    params: int = 0
    data_config: dict[str, Any] = Field(default_factory=dict)
    release: dict[str, Any] | None = None
    origin: dict[str, Any] | None = Field(default=None, description="the registry entry it came from (MLflow)")


class DatasetIdentity(BaseModel):
    model_config = ConfigDict(extra="allow")

    ref: str
    digest: str
    classes: list[str]
    counts: dict[str, dict[str, int]] = Field(default_factory=dict, description="split -> class -> images")
    n_images: int = 0
    excluded: list[dict[str, Any]] = Field(default_factory=list, description="files left out, with the reason")
    dropped_masks: list[dict[str, Any]] = Field(
        default_factory=list, description="masks not used (their images stay, maskless), with the reason"
    )
    has_masks: bool = False


class SplitMetrics(BaseModel):
    """Metrics of one split in one view: ``all`` (outputs = dataset classes), ``restricted`` or ``full``

    (imaudit.audits.classmap). ``outside``: the share of top-1 predictions that are
    not one of the dataset's classes (full view only).
    """

    model_config = ConfigDict(extra="allow")

    view: Literal["all", "restricted", "full"] = "all"
    n: int
    accuracy: float | None
    top5: float | None = None
    loss: float | None
    ece: float | None
    nonfinite: int = 0
    outside: float | None = None


class FitResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    verdict: Literal["ok", "overfitting", "underfitting", "unknown"]
    reasons: list[str] = Field(default_factory=list)
    gap: dict[str, float | None] = Field(default_factory=dict)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    history: dict[str, Any] | None = None


class MethodRecord(BaseModel):
    """explanations.<method> in audit.json."""

    model_config = ConfigDict(extra="allow")

    settings: dict[str, Any] = Field(default_factory=dict)
    applicable: bool = True
    reason: str | None = None
    count: int = 0
    seconds: float = 0.0
    per_image_rate: float | None = Field(default=None, description="images explained per second")
    failures: list[dict[str, Any]] = Field(default_factory=list)
    maps_path: str | None = None
    quality: dict[str, Any] = Field(default_factory=dict)


class GateResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    passed: bool = True
    fail_on: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    expectations: list[dict[str, Any]] = Field(default_factory=list)


class AuditResult(BaseModel):
    """Everything one audit found. ``write`` makes audit.json."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_: str = Field(default=SCHEMA, alias="schema")
    id: str
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    finished: str | None = None
    imaudit_version: str = __version__
    # complete: every stage ran; partial: an optional stage failed (the gate fails);
    # failed: a required stage (REQUIRED_STAGES in assemble) failed (the gate fails, the CLI exits 3).
    status: Literal["complete", "partial", "failed"] = "complete"
    spec: dict[str, Any] = Field(default_factory=dict)
    model: ModelIdentity
    dataset: DatasetIdentity
    metrics: dict[str, SplitMetrics] = Field(default_factory=dict)
    metrics_full: dict[str, SplitMetrics] = Field(
        default_factory=dict, description="subset audits: metrics over all the model's outputs (view 'full')"
    )
    class_map: dict[str, Any] | None = Field(default=None, description="which model output is which dataset class")
    per_class: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    confusion: dict[str, list[list[int]]] = Field(default_factory=dict)
    calibration: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fit: FitResult = Field(default_factory=lambda: FitResult(verdict="unknown"))
    data_checks: dict[str, Any] = Field(default_factory=dict)
    explanations: dict[str, MethodRecord] = Field(default_factory=dict)
    global_importance: dict[str, dict[str, Any]] = Field(default_factory=dict)
    quality: dict[str, Any] = Field(default_factory=dict)
    strategies: dict[str, Any] = Field(default_factory=dict)
    shortcuts: dict[str, Any] = Field(default_factory=dict, description="search and intervention summary")
    coverage: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="check -> {ran, images, classes, reason, ...}: what each check saw or why not"
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="baselines, fills and native resolutions every method and check used"
    )
    sample: dict[str, Any] = Field(default_factory=dict, description="the explained images: split, classes, per method")
    generative: dict[str, Any] | None = None
    findings: list[Finding] = Field(default_factory=list)
    gates: GateResult = Field(default_factory=GateResult)
    artifacts: dict[str, Any] = Field(default_factory=dict, description="relative paths of files beside audit.json")
    timings: dict[str, float] = Field(default_factory=dict)
    errors: list[dict[str, Any]] = Field(default_factory=list, description="stages that failed, with the error")

    def to_json(self) -> str:
        return json.dumps(finite_json(self.model_dump(mode="json", by_alias=True)), indent=2, allow_nan=False) + "\n"

    def write(self, folder: str | Path) -> Path:
        """Write audit.json into ``folder`` atomically."""
        return atomic_write_text(Path(folder) / "audit.json", self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "AuditResult":
        """Read audit.json (a file or the folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "audit.json"
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: -SEVERITY_RANK[f.severity])


def finite_json(obj: Any) -> Any:
    """JSON has no NaN/Infinity: store them as null so every reader can parse audit.json."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def jsonable(obj: Any) -> Any:
    """Plain JSON values of ``obj`` (tuples as lists, other objects by their str), e.g. timm's data config."""
    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
