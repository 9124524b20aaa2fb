"""load_model(ref): one entry point for every model source.

Refs: ``timm:NAME`` (seeded random weights), ``hf-hub:ORG/NAME`` (timm hub
weights from the Hugging Face cache), ``file:PATH`` (a checkpoint), and
``release:NAME@VERSION`` (a registry release, digest-verified; VERSION may
be ``latest``, and ``release:NAME`` means latest).
Input size precedence: explicit argument > release manifest / checkpoint
metadata > timm's default.
"""

from __future__ import annotations

from pathlib import Path

import timm

from imaudit.errors import BadInputError, CheckpointError, RefError
from imaudit.io import sha256_file
from imaudit.models.archs import check_arch, create_arch, data_config
from imaudit.models.checkpoint import load_checkpoint_file, model_classes
from imaudit.models.hub import hub_classes, load_hub_model
from imaudit.models.loaded import LoadedModel, model_digest
from imaudit.models.registry import Registry

KINDS = ("timm", "hf-hub", "file", "release")


def parse_ref(ref: str) -> tuple[str, str]:
    """Split 'KIND:VALUE'; RefError with a hint when the kind is missing or unknown."""
    kind, sep, value = (ref or "").partition(":")
    if sep and kind in KINDS and value:
        return kind, value
    hint = ""
    if ref and Path(ref).expanduser().is_file():
        hint = f" (did you mean file:{ref}?)"
    elif ref and timm.is_model(ref):
        hint = f" (did you mean timm:{ref}?)"
    raise RefError(f"model ref '{ref}' must look like {', '.join(k + ':...' for k in KINDS)}{hint}")


def _check_args(input_size: int | None, num_classes: int | None, classes: list[str] | None) -> None:
    if input_size is not None and (not isinstance(input_size, int) or input_size <= 0):
        raise BadInputError(f"input_size must be a positive integer, got {input_size!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes <= 0):
        raise BadInputError(f"num_classes must be a positive integer, got {num_classes!r}")
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise BadInputError(f"classes: {len(classes)} names given but num_classes={num_classes}")


def load_model(ref: str, *, arch: str | None = None, input_size: int | None = None,
               num_classes: int | None = None, classes: list[str] | None = None) -> LoadedModel:
    """Load a model ref into a LoadedModel (eval mode, CPU) with its identity and data config.

    ``arch`` names the timm architecture of a bare state_dict; ``input_size``
    overrides the data config's input size; ``num_classes`` and ``classes`` are
    checked against what the weights say.
    """
    kind, value = parse_ref(ref)
    _check_args(input_size, num_classes, classes)
    if classes is not None and num_classes is None:
        num_classes = len(classes)
    if kind == "timm":
        return _load_timm(ref, value, arch=arch, input_size=input_size, num_classes=num_classes, classes=classes)
    if kind == "hf-hub":
        return _load_hub(ref, value, arch=arch, input_size=input_size, num_classes=num_classes, classes=classes)
    if kind == "file":
        loaded, _ = load_checkpoint_file(Path(value).expanduser(), arch=arch, input_size=input_size,
                                         num_classes=num_classes, classes=classes, ref=ref)
        return loaded
    return _load_release(value, arch=arch, input_size=input_size, num_classes=num_classes, classes=classes)


def _same_arch(given: str | None, actual: str, ref: str) -> None:
    if given is not None and given != actual:
        raise BadInputError(f"--arch {given} conflicts with {ref}, whose architecture is {actual}")


def _load_timm(ref: str, name: str, *, arch: str | None, input_size: int | None,
               num_classes: int | None, classes: list[str] | None) -> LoadedModel:
    check_arch(name)
    _same_arch(arch, name, ref)
    module = create_arch(name, num_classes=num_classes, input_size=input_size)
    return LoadedModel(module=module, ref=ref, arch=name, digest=model_digest(module),
                       num_classes=model_classes(module), classes=classes,
                       data_config=data_config(module, input_size))


def _load_hub(ref: str, repo: str, *, arch: str | None, input_size: int | None,
              num_classes: int | None, classes: list[str] | None) -> LoadedModel:
    module, digest = load_hub_model(repo, input_size=input_size)
    name = module.pretrained_cfg.get("architecture") or type(module).__name__
    _same_arch(arch, name, ref)
    n = model_classes(module)
    if num_classes is not None and num_classes != n:
        raise CheckpointError(f"{ref} has {n} classes but {num_classes} were asked for (timm architecture {name})")
    names = classes if classes is not None else hub_classes(module)
    if names is not None and len(names) != n:
        raise CheckpointError(f"{ref}: {len(names)} class names for {n} outputs (timm architecture {name})")
    return LoadedModel(module=module, ref=ref, arch=name, digest=digest, num_classes=n, classes=names,
                       data_config=data_config(module, input_size))


def _load_release(value: str, *, arch: str | None, input_size: int | None,
                  num_classes: int | None, classes: list[str] | None) -> LoadedModel:
    name, sep, version = value.partition("@")
    version = version if sep else "latest"  # release:NAME means the latest version
    if not name or not version:
        raise RefError(f"release ref 'release:{value}' must be release:NAME@VERSION (VERSION may be 'latest')")
    registry = Registry()
    manifest = registry.get(name, version)
    _same_arch(arch, manifest.arch, manifest.ref)
    path = registry.checkpoint_path(manifest)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} of release {manifest.ref} is missing")
    actual = sha256_file(path)
    if actual != manifest.sha256:
        raise CheckpointError(f"checkpoint {path} of {manifest.ref} has sha256 {actual[:12]}… but its manifest "
                              f"says {manifest.sha256[:12]}…; refusing to load a changed release")
    if num_classes is not None and num_classes != manifest.num_classes:
        raise CheckpointError(f"release {manifest.ref} ({manifest.arch}) has {manifest.num_classes} classes "
                              f"but {num_classes} were asked for")
    loaded, _ = load_checkpoint_file(
        path, arch=manifest.arch, num_classes=manifest.num_classes,
        input_size=input_size if input_size is not None else manifest.input_size,
        classes=classes if classes is not None else manifest.classes, ref=manifest.ref,
    )
    loaded.release = manifest
    if manifest.history is not None:
        loaded.history = manifest.history
    return loaded
