"""Layer views: what a few layers of the network respond to in one image, and the first layer's filters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register


def _shape(shape: Any) -> str | None:
    if isinstance(shape, list) and len(shape) == 3:
        return f"{shape[0]} channels, {shape[1]}×{shape[2]}"
    if isinstance(shape, list) and len(shape) == 4:
        return f"{shape[0]} filters, {shape[1]} in, {shape[2]}×{shape[3]}"
    return "×".join(map(str, shape)) if isinstance(shape, list) else None


@register
class Views(Section):
    name = "views"
    title = "Layer views"
    nav = "Layers"
    order = 130
    intro = ("Feature maps of a few layers for one validation image (the most active channels, each scaled to its "
             "own range; yellow = strong response) and the first layer's filters. Early layers should respond to "
             "edges and colours; a layer that is blank or noise everywhere can point at dead or untrained weights.")
    template = """{% import "_macros.html" as m %}
{% if v.error %}<p class="muted">Layer views could not be drawn: {{ v.error }}</p>{% endif %}
<div class="figs views">{% for it in v.tiles %}{{ m.fig(it.src, it.kind ~ " " ~ it.title, it.kind ~ " · " ~ it.title ~ (" · " ~ it.caption if it.caption else "")) }}{% endfor %}</div>
{% if v.missing %}<p class="muted small">{{ v.missing }} view file{{ "s" if v.missing != 1 }} listed in audit.json {{ "are" if v.missing != 1 else "is" }} not beside the report.</p>{% endif %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        views = page.r.artifacts.get("views")
        if not isinstance(views, Mapping):
            return None
        items = []
        for kind, body in views.items():
            if kind == "error":
                continue
            entries = body if isinstance(body, list) else [body] if isinstance(body, Mapping) and ("png" in body or "image" in body) \
                else [{"layer": k, "png": x} for k, x in body.items()] if isinstance(body, Mapping) else []
            for e in entries:
                if isinstance(e, str):
                    e = {"png": e}
                if not isinstance(e, Mapping):
                    continue
                png = e.get("png") or e.get("image") or e.get("path")
                items.append({"kind": "activations" if kind == "activations" else "filters" if kind == "filters" else str(kind),
                              "title": str(e.get("layer") or e.get("title") or e.get("name") or ""),
                              "caption": _shape(e.get("shape")), "png": png})
        error = views.get("error")
        if not items and not error:
            return None
        return {"tiles": items, "error": str(error) if error else None}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        shown = []
        for it in value["tiles"]:
            png = it.pop("png")
            # Older audits recorded names relative to views/ rather than to the audit folder.
            it["src"] = page.src(png) or (page.src(f"views/{png}") if isinstance(png, str) else None)
            if it["src"]:
                shown.append(it)
        value["missing"] = len(value["tiles"]) - len(shown)
        value["tiles"] = shown
        return value
