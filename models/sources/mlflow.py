"""mlflow:models:/NAME/VERSION and mlflow:models:/NAME@ALIAS — a model from the MLflow model registry.

The tracking server is the one ``MLFLOW_TRACKING_URI`` names. The model
version's artifacts are downloaded (MLflow's own client) and read as MLflow
wrote them: the ``MLmodel`` file's ``metadata`` (``arch``, ``classes``,
``input_size``, ``mean``/``std``), its signature (input size from the tensor
spec) and the PyTorch flavour's weights.

- A timm model (``metadata.arch`` names a timm architecture) is rebuilt as
  that architecture and its weights loaded by name, so every explanation
  method applies as to any timm model.
- Any other PyTorch model is used as MLflow saved it: the ``pt2`` format
  (torch.export, MLflow's default) loads without running pickled code; the
  older pickle format runs code on load and is refused unless
  ``IMAUDIT_TRUST_CHECKPOINTS=1`` says the registry is trusted.

The model version's tag ``imaudit.dataset`` (or the registered model's) names
the dataset to audit against, as a release's manifest does; the run's
``train_loss``/``val_loss``/``train_acc``/``val_acc`` metric histories become
the training history the fit verdict reads.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch
import yaml
from torch import nn

from imaudit.errors import CheckpointError, RefError
from imaudit.io import sha256_file
from imaudit.models.archs import classifier_key, create_arch, data_config
from imaudit.models.checkpoint import TRUST_ENV, Checkpoint, fit_state_dict
from imaudit.models.history import check_history
from imaudit.models.labels import from_names
from imaudit.models.load import same_arch
from imaudit.models.loaded import LoadedModel
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource

DATASET_TAG = "imaudit.dataset"
HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")
_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))$")


@MODEL_SOURCES.register("mlflow")
class MlflowSource(ModelSource):
    """A registered model version (by number or alias), with its logged metadata and signature."""

    usage = "mlflow:models:/NAME/VERSION, mlflow:models:/NAME@ALIAS"

    def load(self, ref: str, value: str, request: LoadRequest) -> LoadedModel:
        name, version = resolve(ref, value)
        with tempfile.TemporaryDirectory(prefix="imaudit-mlflow-") as tmp:
            folder = _download(ref, name, version, Path(tmp))
            mlmodel = _read_mlmodel(ref, folder)
            weights = _weights_file(ref, folder, mlmodel)
            meta = _metadata(ref, mlmodel)
            loaded = _build(ref, weights, meta, request)
        mv = _client().get_model_version(name, version)
        loaded.history = _history(mv.run_id)
        loaded.origin = {"registry": "mlflow", "tracking_uri": _tracking_uri(), "name": name, "version": version,
                         "aliases": list(mv.aliases or []), "run_id": mv.run_id}
        return loaded

    def dataset(self, value: str) -> str | None:
        name, version = resolve(f"mlflow:{value}", value)
        client = _client()
        tags = dict(client.get_model_version(name, version).tags or {})
        return tags.get(DATASET_TAG) or dict(client.get_registered_model(name).tags or {}).get(DATASET_TAG)


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise RefError("mlflow: model refs need the mlflow library: pip install 'imaudit[mlflow]'") from None
    return mlflow


def _tracking_uri() -> str:
    return _mlflow().get_tracking_uri()


def _client() -> Any:
    return _mlflow().MlflowClient()


def resolve(ref: str, value: str) -> tuple[str, str]:
    """(registered model name, version number) of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    match = _REF.match(value)
    if not match:
        raise RefError(f"{ref}: expected mlflow:models:/NAME/VERSION or mlflow:models:/NAME@ALIAS")
    mlflow = _mlflow()
    name = match["name"]
    try:
        if match["alias"]:
            return name, str(_client().get_model_version_by_alias(name, match["alias"]).version)
        _client().get_model_version(name, match["version"])
        return name, match["version"]
    except mlflow.exceptions.MlflowException as exc:
        first = " ".join(str(exc).split())[:200]
        raise RefError(f"{ref}: not found in the MLflow registry at {_tracking_uri()} ({first})") from None


def _download(ref: str, name: str, version: str, out: Path) -> Path:
    mlflow = _mlflow()
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(out)))
    except mlflow.exceptions.MlflowException as exc:
        raise RefError(f"{ref}: cannot download its artifacts ({' '.join(str(exc).split())[:200]})") from None


def _read_mlmodel(ref: str, folder: Path) -> dict[str, Any]:
    path = folder / "MLmodel"
    if not path.is_file():
        raise CheckpointError(f"{ref}: its artifacts hold no MLmodel file")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "pytorch" not in (data.get("flavors") or {}):
        flavours = ", ".join(data.get("flavors") or {}) or "none"
        raise CheckpointError(f"{ref}: not a PyTorch model (MLflow flavours: {flavours})")
    return data


def _weights_file(ref: str, folder: Path, mlmodel: dict[str, Any]) -> Path:
    data = folder / (mlmodel["flavors"]["pytorch"].get("model_data") or "data")
    for name in ("model.pt2", "model.pth"):
        if (data / name).is_file():
            return data / name
    raise CheckpointError(f"{ref}: no model.pt2 or model.pth in its artifacts ({data.name}/)")


def _metadata(ref: str, mlmodel: dict[str, Any]) -> dict[str, Any]:
    """arch, classes, input_size, mean, std from the logged metadata, the input size also from the signature."""
    meta = dict(mlmodel.get("metadata") or {})
    signature = (mlmodel.get("signature") or {}).get("inputs")
    if meta.get("input_size") is None and signature:
        try:
            spec = json.loads(signature)[0]["tensor-spec"]["shape"]
        except (ValueError, KeyError, IndexError, TypeError):
            spec = []
        if len(spec) == 4 and spec[-1] == spec[-2] and spec[-1] > 0:
            meta["input_size"] = int(spec[-1])
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"{ref}: metadata 'classes' must be a list of names")
    size = meta.get("input_size")
    if size is not None and not (isinstance(size, int) and size > 0):
        raise CheckpointError(f"{ref}: metadata 'input_size' must be a positive integer")
    return meta


def _state_and_module(ref: str, weights: Path) -> tuple[dict[str, torch.Tensor], nn.Module | None]:
    """The weights by name, and the runnable module when the file holds one."""
    if weights.suffix == ".pt2":
        program = torch.export.load(str(weights))
        return dict(program.state_dict), _BatchSafe(program)
    if os.environ.get(TRUST_ENV) != "1":
        raise CheckpointError(
            f"{ref} was logged in MLflow's pickle format, which runs code when loaded; log it with "
            f"serialization_format='pt2' or set {TRUST_ENV}=1 if you trust the registry"
        )
    module = torch.load(weights, map_location="cpu", weights_only=False)
    return module.state_dict(), module


def _build(ref: str, weights: Path, meta: dict[str, Any], request: LoadRequest) -> LoadedModel:
    state, module = _state_and_module(ref, weights)
    classes = request.classes if request.classes is not None else meta.get("classes")
    size = request.input_size if request.input_size is not None else meta.get("input_size")
    arch = request.arch or meta.get("arch")
    if arch and timm.is_model(arch):
        if meta.get("arch"):
            same_arch(request.arch, meta["arch"], ref)
        key = classifier_key(arch)
        n = int(state[key].shape[0]) if key and key in state else (len(classes) if classes else None)
        module = create_arch(arch, num_classes=n, input_size=size)
        fit_state_dict(module, Checkpoint(path=weights, state_dict=state), arch)
        cfg = data_config(module, size)
    else:
        if module is None:
            raise CheckpointError(f"{ref}: no runnable model in its artifacts")
        module.eval()
        cfg = timm.data.resolve_data_config({"input_size": (3, size or 224, size or 224)})
        arch = arch or "pytorch"
    for key in ("mean", "std"):
        if meta.get(key):
            cfg[key] = tuple(meta[key])
    n = _outputs(module, cfg)
    if classes is not None and len(classes) != n:
        raise CheckpointError(f"{ref}: {len(classes)} class names logged for {n} outputs")
    if request.num_classes is not None and request.num_classes != n:
        raise CheckpointError(f"{ref} has {n} outputs but {request.num_classes} were asked for")
    return LoadedModel(module=module, ref=ref, arch=arch, digest=sha256_file(weights), num_classes=n,
                       classes=list(classes) if classes else None, data_config=cfg,
                       labels=from_names(list(classes), "MLflow metadata") if classes else None)


def _outputs(module: nn.Module, cfg: dict[str, Any]) -> int:
    """The number of outputs: the timm head's, else one forward pass on a zero image."""
    n = getattr(module, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    with torch.no_grad():
        return int(module(torch.zeros(1, *cfg["input_size"])).shape[-1])


class _BatchSafe(nn.Module):
    """An exported program as a module; one image at a time when it was exported for a batch of one.

    torch.export specialises the batch dimension to the input example's size
    (MLflow logs examples of one image); splitting the batch keeps such models usable.
    """

    def __init__(self, program: Any) -> None:
        super().__init__()
        self.inner = program.module()
        shape = _example_shape(program)
        self.batch = shape[0] if shape and isinstance(shape[0], int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None or x.shape[0] == self.batch:
            return self.inner(x)
        return torch.cat([self.inner(x[i:i + 1]) for i in range(x.shape[0])])


def _example_shape(program: Any) -> tuple | None:
    """The user input's shape as exported (ints where static)."""
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta.get("val")
            if val is not None:
                return tuple(d if isinstance(d, int) else None for d in val.shape)
    return None


def _history(run_id: str | None) -> list[dict[str, Any]] | None:
    """Per-epoch rows from the run's train/val loss and accuracy metrics (None when not logged)."""
    if not run_id:
        return None
    client = _client()
    rows: dict[int, dict[str, Any]] = {}
    for key in HISTORY_KEYS:
        for metric in client.get_metric_history(run_id, key):
            rows.setdefault(int(metric.step), {"epoch": int(metric.step)})[key] = float(metric.value)
    if not rows:
        return None
    return check_history([rows[k] for k in sorted(rows)], f"MLflow run {run_id} metrics")
