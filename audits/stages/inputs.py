"""The model and dataset an AuditSpec names, loaded once per process, and whether they fit.

Stages ask ``dataset(spec)`` and ``model(spec)`` instead of loading: consecutive
stages in one worker (and the CLI's preflight before the flow, imaudit.audits.preflight)
share one copy.
"""

from __future__ import annotations

import functools
from pathlib import Path

from imaudit.audits.data import DatasetBundle, load_dataset
from imaudit.audits.spec import AuditSpec, ImageLimits
from imaudit.errors import BadInputError
from imaudit.models import LoadedModel, load_model, model_source


@functools.lru_cache(maxsize=4)
def _dataset(ref: str, limits: ImageLimits, roots: tuple[Path, ...] = ()) -> DatasetBundle:
    return load_dataset(ref, limits=limits, roots=roots)


@functools.lru_cache(maxsize=4)
def _model(ref: str, arch: str | None, input_size: int | None, num_classes: int | None) -> LoadedModel:
    return load_model(ref, arch=arch, input_size=input_size, num_classes=num_classes)


def forget() -> None:
    """Drop the loaded models and datasets (the benchmark times each audit's own loading)."""
    _dataset.cache_clear()
    _model.cache_clear()


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
    raise BadInputError("no dataset: pass --dataset REF (folder:PATH, csv:PATH, builtin:digits, builtin:shapes)")


def dataset(spec: AuditSpec) -> DatasetBundle:
    """The audited dataset (manifest, classes, digest), its files checked against ``spec.limits``."""
    return _dataset(dataset_ref(spec), spec.limits, tuple(spec.allowed_roots))


def model(spec: AuditSpec) -> LoadedModel:
    """The audited model; sources with random weights (timm:) get one output per dataset class."""
    source, value = model_source(spec.model)
    if source.sized_by_dataset(value):
        return _model(spec.model, spec.arch, spec.input_size, len(dataset(spec).classes))
    return model_only(spec)


def model_only(spec: AuditSpec) -> LoadedModel:
    """A model whose class count is its own weights' (every source not sized by the dataset),
    loaded without reading the dataset (the preflight checks the model side first)."""
    return _model(spec.model, spec.arch, spec.input_size, None)


def class_order(model_classes: list[str] | None, data_classes: list[str], model_ref: str, n_out: int) -> list[int] | None:
    """Column permutation mapping model outputs onto the dataset's class order (None: identity).

    A model whose outputs cannot be matched to the dataset's classes is bad
    input: its metrics would be meaningless.
    """
    if n_out != len(data_classes):
        raise BadInputError(
            f"model {model_ref} has {n_out} outputs but the dataset has {len(data_classes)} classes"
        )
    if not model_classes or list(model_classes) == list(data_classes):
        return None
    if sorted(model_classes) != sorted(data_classes):
        missing = sorted(set(data_classes) - set(model_classes))[:5]
        raise BadInputError(f"model {model_ref} classes do not match the dataset's (e.g. missing {missing})")
    return [list(model_classes).index(c) for c in data_classes]


def check_fit(spec: AuditSpec) -> list[int] | None:
    """The spec's model and dataset loaded and matched; their class order (see ``class_order``)."""
    ds, lm = dataset(spec), model(spec)
    return class_order(lm.classes, ds.classes, spec.model, lm.num_classes)
