"""load_model(ref): one entry point for every model source.

A ref is ``KIND:VALUE``; the kind picks a source from ``imaudit.models.sources``
(timm, hf-hub, file, release, ...). This module holds what sources share:
argument checks and turning a checkpoint file into a LoadedModel.
Input size precedence: explicit argument > release manifest / checkpoint
metadata > timm's default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm

from imaudit.errors import BadInputError, CheckpointError, RefError
from imaudit.io import sha256_file
from imaudit.models.archs import check_arch, classifier_key, create_arch, data_config
from imaudit.models.checkpoint import fit_state_dict, read_checkpoint
from imaudit.models.history import check_history
from imaudit.models.labels import from_names
from imaudit.models.loaded import LoadedModel
from imaudit.models.sources import MODEL_SOURCES, LoadRequest, ModelSource


def parse_ref(ref: str) -> tuple[str, str]:
    """Split 'KIND:VALUE'; RefError with a hint when the kind is missing or unknown."""
    kind, sep, value = (ref or "").partition(":")
    if sep and value and kind in MODEL_SOURCES:
        return kind, value
    hint = ""
    if ref and Path(ref).expanduser().is_file():
        hint = f" (did you mean file:{ref}?)"
    elif ref and timm.is_model(ref):
        hint = f" (did you mean timm:{ref}?)"
    forms = ", ".join(MODEL_SOURCES.get(k).usage for k in MODEL_SOURCES.names())
    raise RefError(f"model ref '{ref}' must look like {forms}{hint}")


def model_source(ref: str) -> tuple[ModelSource, str]:
    """The source that loads ``ref`` and the ref's value (the part after ``KIND:``)."""
    kind, value = parse_ref(ref)
    return MODEL_SOURCES.get(kind)(), value


def _check_request(request: LoadRequest) -> LoadRequest:
    input_size, num_classes, classes = request.input_size, request.num_classes, request.classes
    if input_size is not None and (not isinstance(input_size, int) or input_size <= 0):
        raise BadInputError(f"input_size must be a positive integer, got {input_size!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes <= 0):
        raise BadInputError(f"num_classes must be a positive integer, got {num_classes!r}")
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise BadInputError(f"classes: {len(classes)} names given but num_classes={num_classes}")
    if classes is not None and num_classes is None:
        return LoadRequest(arch=request.arch, input_size=input_size, num_classes=len(classes), classes=classes)
    return request


def load_model(ref: str, *, arch: str | None = None, input_size: int | None = None,
               num_classes: int | None = None, classes: list[str] | None = None) -> LoadedModel:
    """Load a model ref into a LoadedModel (eval mode, CPU) with its identity and data config.

    ``arch`` names the timm architecture of a bare state_dict; ``input_size``
    overrides the data config's input size; ``num_classes`` and ``classes`` are
    checked against what the weights say.
    """
    source, value = model_source(ref)
    request = _check_request(LoadRequest(arch=arch, input_size=input_size, num_classes=num_classes, classes=classes))
    return source.load(ref, value, request)


def same_arch(given: str | None, actual: str, ref: str) -> None:
    """Refuse an ``--arch`` that contradicts the architecture the ref itself names."""
    if given is not None and given != actual:
        raise BadInputError(f"--arch {given} conflicts with {ref}, whose architecture is {actual}")


def load_checkpoint_file(path: Path, request: LoadRequest | None = None,
                         ref: str | None = None) -> tuple[LoadedModel, dict[str, Any]]:
    """Load a checkpoint file into its timm architecture; also return the file's metadata.

    The class count comes from the classifier weight's first dimension; any
    disagreement with the metadata or the request's ``num_classes`` or
    ``classes`` is a CheckpointError naming the checkpoint and the architecture.
    """
    request = request or LoadRequest()
    ckpt = read_checkpoint(path)
    meta = ckpt.meta
    arch = request.arch or meta.get("arch")
    if not arch:
        raise CheckpointError(f"checkpoint {path} has no architecture metadata; pass --arch NAME (a timm architecture)")
    check_arch(arch, f" (for checkpoint {ckpt.name})")
    where = f"checkpoint {ckpt.name} vs timm architecture {arch}"

    n = None
    key = classifier_key(arch)
    weight = ckpt.state_dict.get(key) if key else None
    if weight is not None and weight.ndim >= 1:
        n = int(weight.shape[0])
    if meta.get("num_classes") is not None:
        if n is not None and meta["num_classes"] != n:
            raise CheckpointError(f"{where}: metadata says {meta['num_classes']} classes but {key} has {n} rows")
        n = meta["num_classes"]
    if request.num_classes is not None and n is not None and request.num_classes != n:
        shape = f" ({key} {list(weight.shape)})" if weight is not None else ""
        raise CheckpointError(f"{where}: the checkpoint has {n} classes{shape} but {request.num_classes} were asked for")
    n = n if n is not None else request.num_classes
    names = request.classes if request.classes is not None else meta.get("classes")
    if names is not None and n is not None and len(names) != n:
        raise CheckpointError(f"{where}: {len(names)} class names for {n} classes")

    size = request.input_size if request.input_size is not None else meta.get("input_size")
    module = create_arch(arch, num_classes=n, input_size=size)
    fit_state_dict(module, ckpt, arch)
    history = check_history(meta["history"], f"checkpoint {ckpt.name} history") if meta.get("history") else None
    loaded = LoadedModel(module=module, ref=ref or f"file:{path}", arch=arch, digest=sha256_file(path),
                         num_classes=int(module.num_classes), classes=names,
                         data_config=data_config(module, size), history=history,
                         labels=from_names(names, "checkpoint metadata") if names else None)
    return loaded, meta
