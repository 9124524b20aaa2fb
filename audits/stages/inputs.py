"""The model and dataset an AuditSpec names, loaded once per process, and how they fit (the class map).

Stages ask ``dataset(spec)`` and ``model(spec)`` instead of loading: consecutive
stages in one worker (and the CLI's preflight before the flow, imaudit.audits.preflight)
share one copy.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from imaudit.audits.classmap import ClassMap, RestrictedHead, match_classes, read_mapping
from imaudit.audits.data import DatasetBundle, load_dataset
from imaudit.audits.spec import AuditSpec, ImageLimits
from imaudit.errors import BadInputError
from imaudit.models import LoadedModel, load_model, model_source
from imaudit.models.labels import LabelSet, from_names
from imaudit.storage import fetch_file, is_url


@functools.lru_cache(maxsize=4)
def _dataset(ref: str, limits: ImageLimits, roots: tuple[Path, ...] = (), rehash: bool = False) -> DatasetBundle:
    return load_dataset(ref, limits=limits, roots=roots, rehash=rehash)


@functools.lru_cache(maxsize=4)
def _model(ref: str, arch: str | None, input_size: int | None, num_classes: int | None) -> LoadedModel:
    return load_model(ref, arch=arch, input_size=input_size, num_classes=num_classes)


def forget() -> None:
    """Drop the loaded models and datasets (the benchmark times each audit's own loading)."""
    _dataset.cache_clear()
    _model.cache_clear()
    _class_map.cache_clear()
    _restricted.cache_clear()


def dataset_ref(spec: AuditSpec) -> str:
    """The spec's dataset, or the dataset the model names for itself (a release's own data)."""
    if spec.dataset:
        return spec.dataset
    source, value = model_source(spec.model)
    own = source.dataset(value)
    if own:
        return own
    if spec.model.startswith("release:"):
        raise BadInputError(f"release {spec.model[len('release:'):]} names no dataset; pass --dataset")
    if spec.model.startswith("mlflow:"):
        raise BadInputError(f"{spec.model} names no dataset (MLflow tag imaudit.dataset); pass --dataset")
    raise BadInputError("no dataset: pass --dataset REF (folder:PATH, csv:PATH, builtin:digits, builtin:shapes)")


def dataset(spec: AuditSpec) -> DatasetBundle:
    """The audited dataset (manifest, classes, digest), its files checked against ``spec.limits`` and
    confined to its folder and ``spec.allowed_roots``; ``spec.rehash`` probes every file again."""
    return _dataset(dataset_ref(spec), spec.limits, tuple(spec.allowed_roots), spec.rehash)


def _model_key(spec: AuditSpec) -> tuple[str, str | None, int | None, int | None]:
    """The arguments ``_model`` caches on; sources with random weights get one output per dataset class."""
    source, value = model_source(spec.model)
    source.check(spec.model, value)  # a bad name is answered before the dataset is read (to size the head)
    n = len(dataset(spec).classes) if source.sized_by_dataset(value) else None
    return spec.model, spec.arch, spec.input_size, n


def model_only(spec: AuditSpec) -> LoadedModel:
    """A model whose outputs are its own weights' (every source not sized by the dataset), loaded
    without reading the dataset: the preflight (imaudit.audits.preflight) checks the model side first."""
    return _model(spec.model, spec.arch, spec.input_size, None)


def raw_model(spec: AuditSpec) -> LoadedModel:
    """The model as its source loads it, with all its outputs."""
    return _model(*_model_key(spec))


def class_map(spec: AuditSpec) -> ClassMap:
    """Which model output is which dataset class (imaudit.audits.classmap); bad input when they do not fit."""
    lm, ds = raw_model(spec), dataset(spec)
    labels = lm.labels or (from_names(lm.classes, "model classes") if lm.classes else None)
    return _class_map(spec.model, tuple(ds.classes), labels, lm.num_classes, spec.class_map)


@functools.lru_cache(maxsize=8)
def _class_map(model_ref: str, classes: tuple[str, ...], labels: LabelSet | None, n_outputs: int,
               mapping_ref: str | None) -> ClassMap:
    mapping = None
    if mapping_ref:
        local = fetch_file(mapping_ref) if is_url(mapping_ref) else Path(mapping_ref).expanduser()
        mapping = read_mapping(local, mapping_ref)
    return match_classes(list(classes), labels, n_outputs, model_ref, mapping)


def model(spec: AuditSpec) -> LoadedModel:
    """The audited model, seen through the dataset's classes.

    When the model's outputs are not exactly the dataset's classes in order (a
    permutation, or a many-class model audited on a subset), its module is a
    RestrictedHead, so every stage indexes the dataset's classes and explains
    the right outputs; ``classmap.full_module`` gives back all outputs.
    """
    cmap = class_map(spec)
    if cmap.identity:
        return raw_model(spec)
    return _restricted(_model_key(spec), tuple(cmap.columns))


@functools.lru_cache(maxsize=4)
def _restricted(key: tuple[str, str | None, int | None, int | None], columns: tuple[int, ...]) -> LoadedModel:
    lm = _model(*key)
    return dataclasses.replace(lm, module=RestrictedHead(lm.module, list(columns)).eval())
