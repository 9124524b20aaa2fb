"""The gallery: every explained image with each method's map, filterable and enlargeable, offline."""

from __future__ import annotations

from typing import Any

from imaudit.reports.page import Page, image_anchor
from imaudit.reports.sections import Section, register

LIMIT = 600  # tiles in the page; predictions.csv holds every image
FIRST = 24  # tiles shown before "show all" (the page script; without script all show)
# Those first tiles load eagerly (small PNGs; a lazy image off screen stays blank in a printout or a
# screenshot of the whole page); the hidden rest and the other methods' maps load when shown.


@register
class Gallery(Section):
    name = "gallery"
    title = "Gallery"
    nav = "Gallery"
    order = 90
    intro = ("Every explained image next to one method's map (choose the method; click an image to see all "
             "methods large). Bright = high |attribution|, each map scaled to its own 99th percentile, so compare "
             "where maps are bright, not how bright. Misclassified images come first. Each tile links to the "
             "image's row in predictions.csv.")
    template = """{% import "_macros.html" as m %}
<div class="filters" data-gallery-filters>
  <label>class <select data-filter="class"><option value="">all</option>{% for c in v.classes %}<option value="{{ c }}">{{ c }}</option>{% endfor %}</select></label>
  <label>result <select data-filter="correct"><option value="">all</option><option value="0">misclassified ({{ v.n_wrong }})</option><option value="1">correct ({{ v.n_right }})</option></select></label>
  {% if v.methods %}<label>map <select data-filter="method">{% for meth in v.methods %}<option value="{{ meth }}">{{ meth }}</option>{% endfor %}</select></label>{% endif %}
  <span class="muted small" data-gallery-count>{{ v.tiles|length }} images</span>
</div>
<div class="scale"><span class="small">low</span><span class="bar"></span><span class="small">high |attribution|</span>{% if v.predictions %}<span class="small"> · every prediction: <a href="{{ v.predictions }}">predictions.csv</a></span>{% endif %}</div>
<div class="gallery" data-gallery data-first="{{ v.first }}">
{% for it in v.tiles %}{% set load = "eager" if loop.index <= v.first else "lazy" %}
  <figure class="tile {{ 'right' if it.correct else 'wrong' }}" id="{{ it.anchor }}" data-label="{{ it.label }}" data-pred="{{ it.pred }}" data-correct="{{ 1 if it.correct else 0 }}" tabindex="0" aria-label="enlarge image {{ it.id }}">
    <div class="pair">
      {% if it.src %}<img class="orig" src="{{ it.src }}" alt="image {{ it.id }}" loading="{{ load }}" width="80" height="80">{% else %}<span class="noimg small">no image file</span>{% endif %}
      {% for meth, src in it.overlays %}{% if src %}<img class="ov" data-method="{{ meth }}" src="{{ src }}" alt="{{ meth }} map of {{ it.id }}" loading="{{ load if loop.first else 'lazy' }}" width="80" height="80"{% if not loop.first %} hidden{% endif %}>{% else %}<span class="ov noimg small" data-method="{{ meth }}"{% if not loop.first %} hidden{% endif %}>not explained by {{ meth }}</span>{% endif %}{% endfor %}
    </div>
    <figcaption>{% if it.correct %}<b>{{ it.label }}</b> ✓{% else %}true <b>{{ it.label }}</b> → <b class="bad">{{ it.pred }}</b>{% endif %}{% if it.confidence is not none %} · {{ it.confidence|pct(0) }}{% endif %}<br><span class="muted">explains {{ it.explained }}{% if it.row %} · <a href="{{ v.predictions }}#row={{ it.row }}" title="{{ it.id }}">row {{ it.row }}</a>{% endif %}</span></figcaption>
  </figure>
{% endfor %}
</div>
{% if v.more %}<p class="muted small">{{ v.more }} more explained images are not shown here; they are in predictions.csv.</p>{% endif %}
<p class="show-all" hidden><button type="button" data-gallery-more>Show all matching images</button></p>
<dialog id="lightbox" aria-label="enlarged image"><form method="dialog"><button class="close" aria-label="close">×</button></form><div class="lb-body"></div></dialog>"""

    def value(self, page: Page) -> dict[str, Any] | None:
        rows = page.gallery_rows
        if not rows:
            return None
        methods = list(page.r.explanations)
        for row in rows:
            methods += [m for m in (row.get("overlays") or {}) if m not in methods]
        methods = [m for m in methods if any((row.get("overlays") or {}).get(m) for row in rows)]
        rows = sorted(rows, key=lambda x: (x["correct"], x["explained"], -(x.get("confidence") or 0)))
        items = [{"id": x["id"], "anchor": image_anchor(x["id"]), "label": x["label"], "pred": x["pred"],
                  "correct": x["correct"], "explained": x["explained"], "image": x.get("image"),
                  "confidence": x.get("confidence") if isinstance(x.get("confidence"), (int, float)) else None,
                  "overlays": [(m, (x.get("overlays") or {}).get(m)) for m in methods]}
                 for x in rows[:LIMIT]]
        classes = [c for c in page.classes if any(c in (x["label"], x["pred"]) for x in items)]
        classes += sorted({x["label"] for x in items} - set(classes))
        return {"tiles": items, "methods": methods, "classes": classes, "more": max(0, len(rows) - LIMIT),
                "n_wrong": sum(not x["correct"] for x in rows), "n_right": sum(x["correct"] for x in rows),
                "first": FIRST}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        value["predictions"] = page.src(page.r.artifacts.get("predictions"))
        rownum = page.prediction_rows
        for it in value["tiles"]:
            it["src"] = page.src(it.pop("image"))
            it["overlays"] = [(m, page.src(rel)) for m, rel in it["overlays"]]
            it["row"] = rownum.get(it["id"]) if value["predictions"] else None
        return value
