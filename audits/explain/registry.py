"""Explainers by name, in the spirit of timm's create_model / list_models.

The registry itself is ``EXPLAINERS`` (imaudit.audits.explain.methods, the
one plug-in idiom of imaudit.registry); these functions are the lookups the
audit, the CLI and the benchmark use.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from imaudit.audits.explain.base import Explainer
from imaudit.audits.explain.methods import EXPLAINERS


def list_methods() -> list[str]:
    """Names of all registered methods, in registration order."""
    return EXPLAINERS.names()


def get_method(name: str) -> type[Explainer]:
    """The explainer class registered as ``name`` (BadInputError naming close matches and the known ones)."""
    return EXPLAINERS.get(name)


def method_defaults(name: str) -> dict[str, Any]:
    """A copy of the documented default settings of ``name``."""
    return dict(get_method(name).defaults)


def create_explainer(name: str, model: nn.Module, **kw: Any) -> Explainer:
    """Build the explainer ``name`` for ``model``; ``kw`` as in ``Explainer.__init__``."""
    return get_method(name)(model, **kw)


def typical_samples(name: str) -> int:
    """How many images ``name`` usually explains in an audit (cheap gradient methods more, LIME/SHAP fewer)."""
    return get_method(name).typical_samples
