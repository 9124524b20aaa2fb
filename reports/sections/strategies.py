"""Strategies (SpRAy): per class, groups of images the model explains in different ways."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.reports import figures as figs
from imaudit.reports.page import Page, array_key, image_anchor
from imaudit.reports.sections import Section, register

CLUSTER_LIMIT = 6
EXEMPLARS = 6
CLASS_LIMIT = 20


def meaningful(entry: Mapping[str, Any], min_size: int) -> list[Mapping[str, Any]]:
    """A class's clusters when it has two or more, each with at least ``min_size`` images; else none."""
    clusters = [c for c in entry.get("clusters") or [] if isinstance(c, Mapping)]
    big = [c for c in clusters if (c.get("size") or len(c.get("ids") or [])) >= min_size]
    return clusters if len(clusters) >= 2 and len(big) >= 2 else []


@register
class Strategies(Section):
    name = "strategies"
    title = "Strategies"
    nav = "Strategies"
    order = 120
    intro = ("SpRAy (spectral relevance analysis, Lapuschkin et al. 2019) clusters a class's explanation maps: "
             "each cluster is one way the model decides that class. Each is drawn as its mean map over the class "
             "average image, with example images; a small cluster looking at a corner or the background is a "
             "Clever-Hans candidate.")
    template = """{% import "_macros.html" as m %}
{% if not v.methods %}<p class="muted">{{ v.why_not }}</p>{% else %}
{% if v.methods|length > 1 %}{{ m.tabs("strategies", v.methods|map(attribute="method")|list) }}{% endif %}
{% for s in v.methods %}
<div class="panel" id="strategies-{{ loop.index }}" data-panel-of="strategies">
  {% for c in s.classes %}
  <h3>class {{ c.cls }} <span class="muted small">{{ c.count }} images, {{ c.clusters|length }} strategies</span></h3>
  <div class="figs">{{ m.fig(c.src, "strategy mean maps of class " ~ c.cls) }}
    <div class="exemplars">{% for cl in c.clusters %}<div><span class="small">strategy {{ loop.index }} ({{ cl.size }} images)</span><div class="thumbs">{% for e in cl.exemplars if e.src %}<a href="#{{ e.anchor }}" class="thumb"><img src="{{ e.src }}" alt="{{ s.method }} map of {{ e.id }}" title="{{ e.id }}" width="48" height="48"></a>{% else %}<span class="muted small">none of its images is in the gallery</span>{% endfor %}</div></div>{% endfor %}</div>
  </div>
  {% endfor %}
  {% if s.skipped %}<p class="muted small">Single strategy or too few images: {{ s.skipped }}.</p>{% endif %}
</div>
{% endfor %}{% endif %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        r = page.r
        if not r.strategies:
            return None
        min_size = (((r.spec or {}).get("thresholds") or {}).get("explanations") or {}).get("spray_min_cluster_size", 3)
        methods, most = [], 0
        for method, body in r.strategies.items():
            per = body.get("classes") if isinstance(body, Mapping) and isinstance(body.get("classes"), Mapping) else body
            if not isinstance(per, Mapping):
                continue
            classes, skipped = [], []
            for cls, entry in per.items():
                if isinstance(entry, list):
                    entry = {"clusters": entry, "count": sum(c.get("size", 0) for c in entry if isinstance(c, Mapping))}
                if not isinstance(entry, Mapping):
                    continue
                count = entry.get("count") or sum((c.get("size") or 0) for c in entry.get("clusters") or [] if isinstance(c, Mapping))
                most = max(most, count or 0)
                clusters = meaningful(entry, min_size)
                if not clusters:
                    skipped.append(page.class_name(cls))
                    continue
                shown = clusters[:CLUSTER_LIMIT]
                classes.append({"cls": page.class_name(cls), "count": count, "clusters": [
                    {"size": c.get("size") or len(c.get("ids") or []), "mean_map": c.get("mean_map"),
                     # exemplars first, then the cluster's other images: display() shows those the gallery has
                     "exemplars": list(dict.fromkeys(str(x) for x in [*(c.get("exemplar_ids") or c.get("exemplars") or []),
                                                                      *(c.get("ids") or [])]))}
                    for c in shown]})
            if classes:
                methods.append({"method": method, "classes": classes[:CLASS_LIMIT],
                                "skipped": ", ".join(skipped[:12]) + (" …" if len(skipped) > 12 else "")})
        why = (f"No class shows two or more distinct strategies of at least {min_size} images. Clustering needs "
               f"many explained images per class; this audit explained at most {most} image{'s' if most != 1 else ''} "
               f"of a class (raise --samples to see strategies).")
        return {"methods": methods, "why_not": why}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        anchors = {row["id"]: (image_anchor(row["id"]), row) for row in page.gallery_rows}
        for s in value["methods"]:
            for c in s["classes"]:
                grids = {f"strategy {i + 1} (n={cl['size']})": cl["mean_map"] for i, cl in enumerate(c["clusters"]) if cl["mean_map"]}
                image = page.class_means.get(c["cls"])
                images = {t: image for t in grids}
                c["src"] = page.figure(f"strategy-{s['method']}-{c['cls']}", lambda g=grids, im=images: figs.importance_png(g, im),
                                       key=(grids, array_key(image))) if grids else None
                for cl in c["clusters"]:
                    # Thumbnails are the gallery's files: only images the gallery holds can be shown and linked.
                    cl["exemplars"] = [{"id": e, "anchor": anchors[e][0],
                                        "src": page.src((anchors[e][1].get("overlays") or {}).get(s["method"]) or anchors[e][1].get("image"))}
                                       for e in cl["exemplars"] if e in anchors][:EXEMPLARS]
        return value
