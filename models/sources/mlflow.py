"""mlflow:models:/NAME/VERSION and mlflow:models:/NAME@ALIAS — a model from the MLflow model registry.

The version's artifacts (imaudit.models.mlflow_registry: the server of
``MLFLOW_TRACKING_URI``, or imaudit's cache when it is unreachable) are read as
MLflow wrote them: the ``MLmodel`` file's ``metadata`` (``arch``, ``classes``,
``input_size``, ``mean``/``std``), its signature (input size from the tensor
spec) and the PyTorch flavour's weights.

- A timm model (``metadata.arch`` names a timm architecture) is rebuilt as that
  architecture and its weights loaded by name, so every explanation method
  (hooks on named layers included) applies as to any timm model.
- Any other PyTorch model is used as MLflow saved it. The ``pt2`` format
  (torch.export, MLflow's default) is loaded through MLflow, which first checks
  that the archive holds no pickled objects; the older pickle format runs code
  on load and is refused, as are logged ``code`` paths, unless
  ``IMAUDIT_TRUST_CHECKPOINTS=1`` says the registry is trusted.

The version's (or registered model's) tag ``imaudit.dataset`` names the dataset
to audit against, as a release's manifest does; the run's ``train_loss``,
``val_loss``, ``train_acc`` and ``val_acc`` histories become the training
history the fit verdict reads.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch
import yaml
from torch import nn

from imaudit.errors import CheckpointError
from imaudit.io import sha256_file
from imaudit.models.archs import classifier_key, create_arch, data_config
from imaudit.models.checkpoint import TRUST_ENV, Checkpoint, fit_state_dict
from imaudit.models.labels import from_names
from imaudit.models.load import same_arch
from imaudit.models.loaded import LoadedModel
from imaudit.models.mlflow_registry import artifacts, describe, mlflow_module
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource

log = logging.getLogger(__name__)


@MODEL_SOURCES.register("mlflow")
class MlflowSource(ModelSource):
    """A registered model version (by number or alias), with its logged metadata and signature."""

    usage = "mlflow:models:/NAME/VERSION, mlflow:models:/NAME@ALIAS"

    def load(self, ref: str, value: str, request: LoadRequest) -> LoadedModel:
        info = describe(ref, value)
        folder = artifacts(ref, info)
        mlmodel = _read_mlmodel(ref, folder)
        loaded = _build(ref, folder, mlmodel, request)
        loaded.history = info.history
        loaded.origin = info.origin()
        return loaded

    def dataset(self, value: str) -> str | None:
        return describe(f"mlflow:{value}", value).dataset


def _trusted() -> bool:
    return os.environ.get(TRUST_ENV) == "1"


def _read_mlmodel(ref: str, folder: Path) -> dict[str, Any]:
    path = folder / "MLmodel"
    if not path.is_file():
        raise CheckpointError(f"{ref}: its artifacts hold no MLmodel file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{ref}: its MLmodel file is not valid YAML ({' '.join(str(exc).split())[:120]})") from None
    flavours = data.get("flavors") if isinstance(data, dict) else None
    if not isinstance(flavours, dict) or not isinstance(flavours.get("pytorch"), dict):
        names = ", ".join(flavours or {}) or "none"
        raise CheckpointError(f"{ref}: not a PyTorch model (MLflow flavours: {names})")
    return data


def metadata(ref: str, mlmodel: dict[str, Any]) -> dict[str, Any]:
    """arch, classes, input_size, mean, std from the logged metadata; the input size also from the signature."""
    meta = dict(mlmodel.get("metadata") or {})
    signature = (mlmodel.get("signature") or {}).get("inputs")
    if meta.get("input_size") is None and signature:
        try:
            shape = json.loads(signature)[0]["tensor-spec"]["shape"]
        except (ValueError, KeyError, IndexError, TypeError):
            shape = []
        if len(shape) == 4 and shape[-1] == shape[-2] and shape[-1] > 0:  # [batch, channels, height, width]
            meta["input_size"] = int(shape[-1])
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"{ref}: metadata 'classes' must be a list of names")
    size = meta.get("input_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise CheckpointError(f"{ref}: metadata 'input_size' must be a positive integer")
    arch = meta.get("arch")
    if arch is not None and not isinstance(arch, str):
        raise CheckpointError(f"{ref}: metadata 'arch' must be a timm architecture name")
    for key in ("mean", "std"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, list) and len(value) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise CheckpointError(f"{ref}: metadata '{key}' must be three numbers (one per channel)")
    return meta


def _weights(ref: str, folder: Path, mlmodel: dict[str, Any]) -> Path:
    data = folder / str(mlmodel["flavors"]["pytorch"].get("model_data") or "data")
    for name in ("model.pt2", "model.pth"):
        if (data / name).is_file() and data.resolve().is_relative_to(folder.resolve()):
            return data / name
    raise CheckpointError(f"{ref}: no model.pt2 or model.pth in its artifacts ({data.name}/)")


def _runnable(ref: str, folder: Path, mlmodel: dict[str, Any], weights: Path) -> nn.Module:
    """The logged module, loaded without running pickled code unless the registry is trusted."""
    if mlmodel["flavors"]["pytorch"].get("code") and not _trusted():
        # MLflow puts logged code on sys.path before loading: code from the registry would run.
        raise CheckpointError(f"{ref} was logged with code paths, which run when loaded; "
                              f"set {TRUST_ENV}=1 if you trust the registry")
    if weights.suffix == ".pt2":
        if _trusted():
            return torch.export.load(str(weights)).module()
        mlflow = mlflow_module()
        try:
            # MLflow checks that every record of the archive is tensors or plain data before loading it.
            return mlflow.pytorch.load_model(str(folder))
        except mlflow.exceptions.MlflowException as exc:
            raise CheckpointError(f"{ref}: MLflow refused to load its pt2 archive without trust "
                                  f"({' '.join(str(exc).split())[:160]}); set {TRUST_ENV}=1 if you trust "
                                  f"the registry") from None
    if not _trusted():
        raise CheckpointError(
            f"{ref} was logged in MLflow's pickle format, which runs code when loaded; log it with "
            f"serialization_format='pt2' or set {TRUST_ENV}=1 if you trust the registry"
        )
    log.warning("loading %s from MLflow's pickle format (%s=1); it may run code", ref, TRUST_ENV)
    module = torch.load(weights, map_location="cpu", weights_only=False)
    if not isinstance(module, nn.Module):
        raise CheckpointError(f"{ref}: its model.pth holds a {type(module).__name__}, not a PyTorch module")
    return module


def _build(ref: str, folder: Path, mlmodel: dict[str, Any], request: LoadRequest) -> LoadedModel:
    meta = metadata(ref, mlmodel)
    weights = _weights(ref, folder, mlmodel)
    module = _runnable(ref, folder, mlmodel, weights)
    classes = request.classes if request.classes is not None else meta.get("classes")
    arch = request.arch or meta.get("arch")
    if arch and timm.is_model(arch):
        if meta.get("arch"):
            same_arch(request.arch, meta["arch"], ref)
        size = request.input_size if request.input_size is not None else meta.get("input_size")
        module = _as_timm(ref, arch, module.state_dict(), size, weights)
        cfg = data_config(module, size)
    else:
        exported = _exported_input(module)
        size = _fixed_size(ref, exported, request.input_size, meta.get("input_size"))
        module = _BatchSafe(module, exported[0] if exported else None)
        cfg = dict(timm.data.resolve_data_config({"input_size": (3, size, size)}))
        arch = arch or "pytorch"
    for key in ("mean", "std"):
        if meta.get(key):
            cfg[key] = tuple(float(v) for v in meta[key])
    n = _outputs(module, cfg)
    if classes is not None and len(classes) != n:
        raise CheckpointError(f"{ref}: {len(classes)} class names logged for {n} outputs")
    if request.num_classes is not None and request.num_classes != n:
        raise CheckpointError(f"{ref} has {n} outputs but {request.num_classes} were asked for")
    return LoadedModel(module=module, ref=ref, arch=arch, digest=sha256_file(weights), num_classes=n,
                       classes=list(classes) if classes else None, data_config=cfg,
                       labels=from_names(list(classes), "MLflow metadata") if classes else None)


def _as_timm(ref: str, arch: str, state: dict[str, torch.Tensor], size: int | None, weights: Path) -> nn.Module:
    """The timm architecture with the logged weights, matched by name."""
    key = classifier_key(arch)
    n = int(state[key].shape[0]) if key and key in state else None
    module = create_arch(arch, num_classes=n, input_size=size)
    fit_state_dict(module, Checkpoint(path=weights, state_dict=state), arch)
    return module.eval()


def _exported_input(module: nn.Module) -> tuple[int | None, ...] | None:
    """The input shape a torch.export graph was specialised to (None where a dimension is dynamic)."""
    graph = getattr(module, "graph", None)
    for node in getattr(graph, "nodes", ()):
        if node.op == "placeholder":
            val = node.meta.get("val")
            if val is not None and hasattr(val, "shape"):
                return tuple(d if isinstance(d, int) else None for d in val.shape)
            return None
    return None


def _fixed_size(ref: str, exported: tuple[int | None, ...] | None, asked: int | None, logged: int | None) -> int:
    """The input size of a model that is not rebuilt: what its export fixed, else what was logged or asked."""
    fixed = exported[-1] if exported and len(exported) == 4 and exported[-1] == exported[-2] else None
    if fixed is not None and asked is not None and asked != fixed:
        raise CheckpointError(f"{ref} was exported for {fixed}x{fixed} inputs; --input-size {asked} cannot apply")
    return fixed or asked or logged or 224


def _outputs(module: nn.Module, cfg: dict[str, Any]) -> int:
    """The number of outputs: the timm head's, else one forward pass on a zero image."""
    n = getattr(module, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    with torch.no_grad():
        return int(module(torch.zeros(2, *cfg["input_size"])).shape[-1])


class _BatchSafe(nn.Module):
    """A logged module as audits call it: one image at a time when it was exported for a fixed batch.

    torch.export specialises a batch dimension of one (MLflow's input examples
    often hold one image) to a constant; splitting larger batches keeps such
    models usable at the cost of speed.
    """

    def __init__(self, inner: nn.Module, batch: int | None) -> None:
        super().__init__()
        self.inner = inner
        self.batch = batch

        self.training = False

    def train(self, mode: bool = True) -> _BatchSafe:
        """Only this wrapper's flag: an exported graph's mode was fixed when it was exported (it refuses eval())."""
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None or x.shape[0] == self.batch:
            return self.inner(x)
        outs = []
        for start in range(0, x.shape[0], self.batch):
            chunk = x[start:start + self.batch]
            short = self.batch - chunk.shape[0]
            if short:  # the last chunk, padded to the exported batch size
                chunk = torch.cat([chunk, chunk.new_zeros(short, *chunk.shape[1:])])
            outs.append(self.inner(chunk)[: self.batch - short])
        return torch.cat(outs)
