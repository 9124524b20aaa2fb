"""Explainers by name, in the spirit of timm's create_model / list_models."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from imaudit.audits.explain.base import Explainer
from imaudit.errors import BadInputError

_REGISTRY: dict[str, type[Explainer]] = {}
_BUILTIN_MODULES = (
    "saliency",
    "integrated_gradients",
    "gradcam",
    "occlusion",
    "lime_method",
    "shap_method",
    "shap_gradient",
)


def register(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator: make ``cls`` reachable by ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"imaudit.audits.explain.{mod}")


def list_methods() -> list[str]:
    """Names of all registered methods, in registration order."""
    _load_builtins()
    return list(_REGISTRY)


def get_method(name: str) -> type[Explainer]:
    """The explainer class registered as ``name`` (BadInputError listing the known ones)."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BadInputError(f"methods: unknown explanation method {name!r}; known: {', '.join(_REGISTRY)}") from None


def method_defaults(name: str) -> dict[str, Any]:
    """A copy of the documented default settings of ``name``."""
    return dict(get_method(name).defaults)


def create_explainer(name: str, model: nn.Module, **kw: Any) -> Explainer:
    """Build the explainer ``name`` for ``model``; ``kw`` as in ``Explainer.__init__``."""
    return get_method(name)(model, **kw)


def typical_samples(name: str) -> int:
    """How many images ``name`` usually explains in an audit (cheap gradient methods more, LIME/SHAP fewer)."""
    return get_method(name).typical_samples
