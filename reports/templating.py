"""The one Jinja2 environment for every page (autoescape always on) and its filters."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template
from jinja2.ext import Extension
from markupsafe import Markup

from imaudit import __version__
from imaudit.reports.identity import short_name


def num(value: object, digits: int = 4) -> str:
    """A number for a table cell: ints as is, floats to ``digits`` significant digits, missing as an em dash."""
    if value is None or isinstance(value, bool):
        return "—" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else "—"
    return str(value)


def signed(value: object, digits: int = 3) -> str:
    """A delta with its sign (+0.012 / -0.004)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}"


def pct(value: object, digits: int = 1) -> str:
    """A proportion as a percentage (0.9972 -> '99.7%')."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return f"{100 * value:.{digits}f}%"


def points(value: object, digits: int = 1) -> str:
    """A change of a proportion in percentage points, with its sign (+0.3 pt)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return f"{100 * value:+.{digits}f} pt".replace("-", "−")


def human(key: object) -> str:
    """A machine key as words: 'deletion_auc' -> 'deletion AUC', 'rank_corr' -> 'rank corr'."""
    words = str(key).replace("_", " ").replace("-", " ").split()
    upper = {"auc": "AUC", "ece": "ECE", "ssim": "SSIM", "id": "id", "ids": "ids", "n": "n"}
    return " ".join(upper.get(w.lower(), w) for w in words) or str(key)


class ScriptNonce(Extension):
    """Gives every ``<script>`` written in a template's source the response's CSP nonce.

    The review app's content security policy runs only scripts carrying the nonce of
    that response. Only template text gets it: text from data is escaped by autoescape,
    so a script smuggled in through an audit never runs. Static pages render with an
    empty nonce and no attribute.
    """

    _TAG = re.compile(r"<script(?=[\s>])", re.IGNORECASE)

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return self._TAG.sub('<script{% if csp_nonce %} nonce="{{ csp_nonce }}"{% endif %}', source)


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Templates live in reports/templates (imaudit.reports); autoescape is on for every template so user text is always text."""
    env = Environment(
        loader=PackageLoader("imaudit.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[ScriptNonce],
    )
    env.filters.update(num=num, signed=signed, pct=pct, points=points, human=human, short_name=short_name)
    env.globals["version"] = __version__
    # Per-request values of the review app; static pages keep these defaults.
    env.globals.update(csp_nonce="", user=None, csrf_token="")
    return env


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)


@lru_cache(maxsize=None)
def _section_template(cls: type) -> Template:
    return environment().from_string(cls.template)


def render_section(cls: type, **context: Any) -> Markup:
    """A report section's template (its ``template`` source, compiled once) rendered with ``context``."""
    return Markup(_section_template(cls).render(**context))
