"""Shortcuts: image locations a class's predictions depend on instead of the object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.reports import figures as figs
from imaudit.reports.page import Page, array_key
from imaudit.reports.sections import Section, register
from imaudit.reports.sections.coverage import coverage_entries
from imaudit.reports.sections.summary import shortcut_state
from imaudit.reports.sections.findings import intervention_rows, shortcut_parts

EXAMPLES = 6
REGION_ORDER = ("centre", "border", "top-left", "top-right", "bottom-left", "bottom-right", "top", "bottom", "left", "right")


def region_lifts(body: Mapping[str, Any]) -> dict[str, float]:
    """Attribution share / area share per named region of one method's global importance (1 = as expected)."""
    regions, areas = body.get("regions"), body.get("region_area")
    if not isinstance(regions, Mapping) or not isinstance(areas, Mapping):
        return {}
    out: dict[str, float] = {}

    def walk(reg: Mapping, area: Mapping) -> None:
        for k, v in reg.items():
            a = area.get(k)
            if isinstance(v, Mapping) and isinstance(a, Mapping):
                walk(v, a)
            elif isinstance(v, (int, float)) and isinstance(a, (int, float)) and a > 0:
                out[str(k)] = float(v) / float(a)

    walk(regions, areas)
    return out


@register
class Shortcuts(Section):
    name = "shortcuts"
    title = "Shortcuts"
    nav = "Shortcuts"
    order = 70
    intro = ("A shortcut is a fixed image location (a corner patch, a watermark, the background) that a class's "
             "explanations keep pointing at. Each candidate is tested on the model: cover the box in that class's "
             "images and see accuracy drop; paste it into other images and see them flip. Only a candidate that "
             "passes that test is confirmed. The table shows how much attribution each region holds compared with "
             "its area (1.0 = its fair share).")
    template = """{% import "_macros.html" as m %}
<p>{{ m.badge(v.state.word, {"fail": "error", "attention": "warning", "pass": "pass"}.get(v.state.state, "unknown")) }} {{ v.state.detail }}{% if v.coverage %} · {% for c in v.coverage %}{{ c.name|human }}: {% if c.ran is sameas false %}not run ({{ c.reason or "no reason given" }}){% else %}{{ c.images }} images{% if c.classes %}, {{ c.classes }} classes{% endif %}{% endif %}{{ "; " if not loop.last }}{% endfor %}{% endif %}</p>
{% macro candidate(s) %}
<div class="shortcut" id="shortcut-{{ s.n }}">
  <h3>{{ m.badge(s.severity) }} Class {{ s.cls or "?" }}{% if s.box %}: box x {{ s.box[0]|num }}–{{ s.box[2]|num }}, y {{ s.box[1]|num }}–{{ s.box[3]|num }}{% endif %}{% if s.methods %} <span class="muted small">({{ s.methods }})</span>{% endif %}</h3>
  <p class="small">{{ s.message }}</p>
  <div class="figs">
    {% if s.src %}{{ m.fig(s.src, "shortcut box on images of class " ~ s.cls, "the box on explained images of class " ~ s.cls) }}{% endif %}
    {% if s.intervention %}<div class="scroll">{{ m.intervention(s.intervention) }}</div>{% elif s.box %}<p class="muted small">No intervention numbers: the candidate was not tested on the model.</p>{% endif %}
  </div>
</div>
{% endmacro %}
{% for s in v.shown %}{{ candidate(s) }}{% endfor %}
{% if v.unconfirmed %}
<h3>{{ v.unconfirmed|length }} candidate{{ "s" if v.unconfirmed|length != 1 }} the model does not depend on</h3>
<p class="small">The maps single these boxes out, but covering a box left its class's accuracy where it was and pasting it flipped few other images, so they are not shortcuts of the model.</p>
<div class="scroll"><table class="sortable" id="candidate-table"><thead><tr><th>class</th><th>box (x, y)</th><th>methods</th><th class="n">covered: accuracy before</th><th class="n">after</th><th class="n">control</th><th class="n">pasted: flipped</th><th class="n">control</th></tr></thead><tbody>
{% for s in v.unconfirmed %}<tr><td>{{ s.cls }}</td><td>{% if s.box %}{{ s.box[0]|num }}–{{ s.box[2]|num }}, {{ s.box[1]|num }}–{{ s.box[3]|num }}{% else %}—{% endif %}</td><td>{{ s.methods or "—" }}</td><td class="n" data-sort="{{ s.iv.cover_before if s.iv.cover_before is number else '' }}">{{ s.iv.cover_before|pct }}</td><td class="n" data-sort="{{ s.iv.cover_after if s.iv.cover_after is number else '' }}">{{ s.iv.cover_after|pct }}</td><td class="n">{{ s.iv.cover_control|pct }}</td><td class="n" data-sort="{{ s.iv.flip if s.iv.flip is number else '' }}">{{ s.iv.flip|pct }}</td><td class="n">{{ s.iv.flip_control|pct }}</td></tr>{% endfor %}
</tbody></table></div>
<details><summary>each candidate's box on its images</summary>{% for s in v.unconfirmed %}{{ candidate(s) }}{% endfor %}</details>
{% endif %}
{% if v.lifts %}
<h3>Attribution per region, as a multiple of the region's area</h3>
<div class="scroll"><table class="lifts"><thead><tr><th>method</th>{% for r in v.regions %}<th class="n">{{ r }}</th>{% endfor %}</tr></thead><tbody>
{% for method, row in v.lifts %}<tr><td>{{ method }}</td>{% for x in row %}<td class="n{{ ' hot' if x is number and x >= v.hot }}">{{ x|num(2) }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table></div>
<p class="muted small">Cells at or above {{ v.hot|num(2) }}× (the audit's shortcut lift) are marked. A high centre value is what a model looking at centred objects should show.</p>
{% endif %}"""

    def value(self, page: Page) -> dict[str, Any]:
        r = page.r
        found = []
        for n, f in enumerate(x for x in r.sorted_findings() if x.code == "shortcut"):
            ev, cover, paste, box, methods = shortcut_parts(f)
            found.append({"n": n, "severity": f.severity, "cls": str(ev.get("class") or ""), "box": box,
                          "confirmed": ev.get("confirmed"),
                          "iv": {"cover_before": cover.get("accuracy_before"), "cover_after": cover.get("accuracy_after"),
                                 "cover_control": cover.get("control_accuracy_after"), "flip": paste.get("flip_rate"),
                                 "flip_control": paste.get("control_flip_rate")},
                          "image_size": ev.get("image_size"), "message": f.message,
                          "methods": ", ".join(methods) if isinstance(methods, list) else methods,
                          "intervention": intervention_rows(ev.get("intervention"))})
        lifts = {m: region_lifts(b) for m, b in r.global_importance.items() if isinstance(b, Mapping)}
        lifts = {m: x for m, x in lifts.items() if x}
        regions = [k for k in REGION_ORDER if any(k in x for x in lifts.values())]
        regions += sorted({k for x in lifts.values() for k in x} - set(regions))
        hot = (((r.spec or {}).get("thresholds") or {}).get("explanations") or {}).get("shortcut_lift", 2.5)
        cov = [{"name": k, **v} for k, v in coverage_entries(r).items() if "shortcut" in k.lower()]
        for c in cov:
            if isinstance(c.get("classes"), list):
                c["classes"] = len(c["classes"])
        # Confirmed shortcuts (and any whose test is unknown) in full; tested-and-cleared candidates as table rows.
        unconfirmed = [x for x in found if x["confirmed"] is False]
        shown = [x for x in found if x["confirmed"] is not False]
        return {"state": shortcut_state(r), "found": found, "shown": shown, "unconfirmed": unconfirmed,
                "regions": regions, "hot": hot, "coverage": cov,
                "lifts": [(m, [x.get(k) for k in regions]) for m, x in lifts.items()]}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        for s in value["found"]:
            s["src"] = None
            if not s["box"]:
                continue
            rows = [row for row in page.gallery_rows if row["explained"] == s["cls"]][:EXAMPLES]
            images = [(row, page.image_array(row)) for row in rows]
            images = [(row, im) for row, im in images if im is not None]
            if not images:
                continue
            titles = [("✓ " if row["correct"] else "✗ ") + f"{row['label']}→{row['pred']}" for row, _ in images]
            s["src"] = page.figure(f"shortcut-examples-{s['cls']}", lambda s=s, ims=[im for _, im in images], t=titles:
                                   figs.box_montage_png(ims, s["box"], s["image_size"], t),
                                   key=(s["box"], s["image_size"], titles, [array_key(im) for _, im in images]))
        return value
