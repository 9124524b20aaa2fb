"""The MLflow model registry as imaudit reads it: versions, aliases, tags, run metrics, artifacts.

The server is the one ``MLFLOW_TRACKING_URI`` names (``MLFLOW_REGISTRY_URI``
when the registry lives elsewhere), reached through MLflow's own client, so its
authentication variables (``MLFLOW_TRACKING_TOKEN``, ...) apply as usual.

What a model version says about itself (run, tags, aliases, the run's metric
history) and its artifacts are kept in imaudit's cache, keyed by server, name
and version. A version's artifacts never change in MLflow, so they are
downloaded once; its description is refreshed whenever the server answers.
When the server cannot be reached, ``models:/NAME/VERSION`` loads from that
cache (offline), while ``models:/NAME@ALIAS`` cannot: where an alias points is
only known to the server.

The watcher (imaudit.models.watch) reads whole registries through ``listing``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imaudit import paths
from imaudit.errors import RefError
from imaudit.io import atomic_dir, atomic_write_json
from imaudit.models.history import check_history

URI_ENV = "MLFLOW_TRACKING_URI"
DATASET_TAG = "imaudit.dataset"
HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")
PROBE_TIMEOUT_S = 10.0
_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))$")
_INFO = "version.json"
_ARTIFACTS = "artifacts"


@dataclass
class ModelVersion:
    """One registered model version, as the registry described it (``offline``: from imaudit's cache)."""

    tracking_uri: str
    name: str
    version: str
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # the version's tags over its registered model's
    aliases: list[str] = field(default_factory=list)
    history: list[dict] | None = None
    offline: bool = False

    @property
    def ref(self) -> str:
        """The model ref of exactly this version."""
        return f"mlflow:models:/{self.name}/{self.version}"

    @property
    def dataset(self) -> str | None:
        """The dataset ref the ``imaudit.dataset`` tag names, if any."""
        return self.tags.get(DATASET_TAG) or None

    def origin(self) -> dict[str, Any]:
        """Where the model came from, for audit.json's model identity."""
        return {"registry": "mlflow", "tracking_uri": self.tracking_uri, "name": self.name,
                "version": self.version, "aliases": self.aliases, "run_id": self.run_id, "offline": self.offline}


def mlflow_module() -> Any:
    """The mlflow package, or bad input saying how to install it (it is an optional extra)."""
    try:
        import mlflow
    except ImportError:
        raise RefError("mlflow: refs need the mlflow library: pip install 'imaudit[mlflow]'") from None
    if not sys.stderr.isatty():
        # MLflow draws download progress bars even into log files; imaudit shows progress only at a terminal.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return mlflow


def tracking_uri() -> str:
    """The tracking server's URI; bad input when none is configured (MLflow would invent a local one)."""
    uri = os.environ.get(URI_ENV, "").strip().rstrip("/")
    if not uri:
        raise RefError(f"mlflow: refs need {URI_ENV} (the tracking server, e.g. http://mlflow.internal:5000)")
    return uri


def client(uri: str | None = None) -> Any:
    """An MlflowClient for ``uri`` (default: the configured server)."""
    return mlflow_module().MlflowClient(tracking_uri=uri or tracking_uri())


def reachable(uri: str) -> bool:
    """Whether the server answers at all (any HTTP status); local stores always do.

    MLflow's client retries an unreachable server for minutes before giving up,
    so one short probe decides between the server and the offline cache.
    """
    if not uri.startswith(("http://", "https://")):
        return True
    import httpx

    try:
        httpx.get(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return True


def parse(ref: str, value: str) -> tuple[str, str | None, str | None]:
    """(name, version, alias) of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    match = _REF.match(value)
    if not match:
        raise RefError(f"{ref}: expected mlflow:models:/NAME/VERSION or mlflow:models:/NAME@ALIAS")
    return match["name"], match["version"], match["alias"]


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _cache_folder(uri: str, name: str, version: str) -> Path:
    # Hashed: registered model names may hold any character, "/" and ".." included.
    key = hashlib.sha256(f"{uri}\n{name}\n{version}".encode()).hexdigest()[:32]
    return paths.cache_dir() / "mlflow" / key


def describe(ref: str, value: str) -> ModelVersion:
    """The model version ``value`` names, from the server (refreshing the cache) or, offline, the cache."""
    uri = tracking_uri()
    name, version, alias = parse(ref, value)
    if not reachable(uri):
        return _cached(ref, uri, name, version, alias)
    mlflow = mlflow_module()
    c = client(uri)
    try:
        mv = c.get_model_version_by_alias(name, alias) if alias else c.get_model_version(name, version)
        model_tags = dict(c.get_registered_model(name).tags or {})
        history = _history(c, mv.run_id)
    except mlflow.exceptions.MlflowException as exc:
        # MLflow says RESOURCE_DOES_NOT_EXIST for a missing model or version, INVALID_PARAMETER_VALUE for an alias.
        missing = exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
        what = "not found in" if missing else "cannot be read from"
        raise RefError(f"{ref}: {what} the MLflow registry at {uri} ({_short(exc)})") from None
    info = ModelVersion(tracking_uri=uri, name=name, version=str(mv.version), run_id=mv.run_id,
                        tags={**model_tags, **dict(mv.tags or {})}, aliases=sorted(mv.aliases or []),
                        history=history)
    folder = _cache_folder(uri, info.name, info.version)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / _INFO, asdict(info))
    return info


def _cached(ref: str, uri: str, name: str, version: str | None, alias: str | None) -> ModelVersion:
    if alias:
        raise RefError(f"{ref}: the MLflow tracking server {uri} is unreachable, and where an alias points is "
                       f"only known to the server (a cached version loads as models:/{name}/VERSION)")
    path = _cache_folder(uri, name, version or "") / _INFO
    if not path.is_file():
        raise RefError(f"{ref}: the MLflow tracking server {uri} is unreachable and this version is not in "
                       f"imaudit's cache ({paths.cache_dir() / 'mlflow'})")
    data = json.loads(path.read_text(encoding="utf-8"))
    return ModelVersion(**{**data, "offline": True})


def artifacts(ref: str, info: ModelVersion) -> Path:
    """A local folder holding the version's artifacts (MLmodel, data/...): downloaded once, then cached."""
    final = _cache_folder(info.tracking_uri, info.name, info.version) / _ARTIFACTS
    if (final / "MLmodel").is_file():
        return final
    if info.offline:
        raise RefError(f"{ref}: the MLflow tracking server {info.tracking_uri} is unreachable and the artifacts "
                       f"of version {info.version} are not in imaudit's cache")
    mlflow = mlflow_module()
    try:
        with atomic_dir(final, replace=False) as tmp:
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{info.name}/{info.version}",
                                                dst_path=str(tmp), tracking_uri=info.tracking_uri)
    except mlflow.exceptions.MlflowException as exc:
        raise RefError(f"{ref}: cannot download its artifacts ({_short(exc)})") from None
    return final


def _history(c: Any, run_id: str | None) -> list[dict] | None:
    """Per-epoch rows from the run's train/val loss and accuracy metrics (None when none were logged)."""
    if not run_id:
        return None
    rows: dict[int, dict[str, Any]] = {}
    for key in HISTORY_KEYS:
        for metric in c.get_metric_history(run_id, key):
            rows.setdefault(int(metric.step), {"epoch": int(metric.step)})[key] = float(metric.value)
    if not rows:
        return None
    return check_history([rows[k] for k in sorted(rows)], f"MLflow run {run_id} metrics")


@dataclass
class Listing:
    """What a registry holds now: each model's ready versions (with their dataset tag) and its aliases."""

    versions: dict[str, dict[str, str | None]]  # name -> {version: dataset ref or None}
    aliases: dict[str, dict[str, str]]  # name -> {alias: version}


def listing(uri: str, page: int = 1000) -> Listing:
    """Every registered model's READY versions and aliases (paged through the whole registry)."""
    c = client(uri)
    versions: dict[str, dict[str, str | None]] = {}
    aliases: dict[str, dict[str, str]] = {}
    model_dataset: dict[str, str | None] = {}
    for rm in _pages(lambda token: c.search_registered_models(max_results=page, page_token=token)):
        aliases[rm.name] = {a: str(v) for a, v in dict(rm.aliases or {}).items()}
        model_dataset[rm.name] = dict(rm.tags or {}).get(DATASET_TAG) or None
        versions.setdefault(rm.name, {})
    for mv in _pages(lambda token: c.search_model_versions(max_results=page, page_token=token)):
        if str(getattr(mv, "status", "READY")) != "READY":
            continue  # still uploading: seen on a later poll
        tag = dict(mv.tags or {}).get(DATASET_TAG) or model_dataset.get(mv.name)
        versions.setdefault(mv.name, {})[str(mv.version)] = tag
    return Listing(versions=versions, aliases=aliases)


def _pages(fetch: Any) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        page = fetch(token)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out
