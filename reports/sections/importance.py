"""Global importance: where in the image each method's attribution sits, overall and per class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.reports import figures as figs
from imaudit.reports.page import Page, array_key
from imaudit.reports.sections import Section, register

CLASS_LIMIT = 30


@register
class Importance(Section):
    name = "importance"
    title = "Global importance"
    nav = "Importance"
    order = 80
    intro = ("Each method's attribution maps, scaled to sum 1 per image and averaged, on a coarse grid drawn over "
             "the average of the explained images. Colour is a cell's share of the attribution divided by its "
             "share of the area: 1 is an ordinary cell, 3 holds three times its share. Bright cells away from "
             "the object, the same in every class, are what a shortcut looks like.")
    template = """{% import "_macros.html" as m %}
{{ m.tabs("importance", v.methods|map(attribute="method")|list) }}
{% for g in v.methods %}
<div class="panel" id="importance-{{ loop.index }}" data-panel-of="importance">
  {{ m.fig(g.src, "global importance of " ~ g.method ~ " overall and per class", g.caption) }}
  {% if g.channels %}<p class="small">Colour channels: {% for c, x in g.channels %}{{ c }} {{ x|pct(0) }}{{ " · " if not loop.last }}{% endfor %}</p>{% endif %}
  {% if g.off_object is not none %}<p class="small">Share of attribution off the object (masks): <b>{{ g.off_object|pct }}</b></p>{% endif %}
</div>
{% endfor %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        out = []
        for method, body in page.r.global_importance.items():
            if not isinstance(body, Mapping) or not body.get("grid"):
                continue
            per = body.get("per_class") if isinstance(body.get("per_class"), Mapping) else {}
            counts = body.get("per_class_count") if isinstance(body.get("per_class_count"), Mapping) else {}
            grid = body["grid"]
            rows = len(grid)
            cols = len(grid[0]) if rows and isinstance(grid[0], list) else 0
            channels = body.get("channels")
            channels = [(str(k), float(x)) for k, x in channels.items() if isinstance(x, (int, float))] \
                if isinstance(channels, Mapping) else []
            off = body.get("off_object")
            off = off.get("share", off.get("mean")) if isinstance(off, Mapping) else off
            native = body.get("native_size") or (page.r.explanations.get(method).model_extra or {}).get("native_size") \
                if method in page.r.explanations else body.get("native_size")
            caption = (f"{body.get('count', '?')} images · {rows}×{cols} grid"
                       + (f" · the method's own resolution is {native[0]}×{native[1]}" if isinstance(native, list) and len(native) == 2 else "")
                       + (f" · first {CLASS_LIMIT} of {len(per)} classes" if len(per) > CLASS_LIMIT else ""))
            classes = {page.class_name(k): (g, counts.get(k)) for k, g in list(per.items())[:CLASS_LIMIT]}
            out.append({"method": method, "grid": grid, "classes": classes, "caption": caption,
                        "channels": channels, "off_object": off if isinstance(off, (int, float)) else None})
        return {"methods": out} if out else None

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        means = page.class_means
        for g in value["methods"]:
            grids = {"all classes": g["grid"]}
            images = {"all classes": means.get("")}
            for cls, (grid, n) in g["classes"].items():
                title = f"{cls} (n={n})" if n is not None else cls
                grids[title] = grid
                images[title] = means.get(cls)
            g["src"] = page.figure(f"importance-{g['method']}", lambda gr=grids, im=images: figs.importance_png(gr, im),
                                   key=(grids, {k: array_key(v) for k, v in images.items()}))
        return value
