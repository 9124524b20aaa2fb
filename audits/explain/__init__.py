"""Explanation methods behind one interface, a registry by name, and the runner the audit uses.

    from imaudit.audits.explain import create_explainer, explain_method, list_methods

base.py is the Explainer interface; methods/ holds one module per method
(registered in EXPLAINERS); run.py explains a batch with one method and records
it (``explain_method``, what the audit's explain stage calls); overlay.py and
views.py draw maps and layer views.
"""

from imaudit.audits.explain.base import Explainer, Explanation
from imaudit.audits.explain.methods import EXPLAINERS
from imaudit.audits.explain.overlay import safe_name
from imaudit.audits.explain.registry import (
    create_explainer,
    list_methods,
    method_defaults,
    typical_samples,
)
from imaudit.audits.explain.run import (
    denormalize,
    explain_method,
    layer_views,
    load_maps,
    render_overlays,
    save_maps,
)
from imaudit.audits.explain.sample import background_rows, explained_classes, select_sample

__all__ = [
    "EXPLAINERS",
    "Explainer",
    "Explanation",
    "background_rows",
    "create_explainer",
    "denormalize",
    "explain_method",
    "explained_classes",
    "layer_views",
    "list_methods",
    "load_maps",
    "method_defaults",
    "render_overlays",
    "safe_name",
    "save_maps",
    "select_sample",
    "typical_samples",
]
