"""Counterfactuals: what an image would have to look like for the model to decide otherwise (a GAN)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.reports.evidence import flatten
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register

INFILL_KEYS = ("deletion_auc", "insertion_auc", "deletion_gain", "insertion_gain")


@register
class Counterfactuals(Section):
    name = "generative"
    title = "Counterfactuals"
    nav = "Counterfactuals"
    order = 140
    intro = ("For each image: the original, the generator's reconstruction, the counterfactual (the smallest move "
             "in a class-conditional GAN's latent space that flips the model's decision) and the difference, with "
             "the model's confidence in the new class along the way. Red/blue in the difference = pixels made "
             "brighter/darker.")
    template = """{% import "_macros.html" as m %}
{% if v.skipped %}<p class="muted">{{ v.skipped }}</p>{% else %}
<p>Success rate <b>{{ "%.2f"|format(v.success_rate) if v.success_rate is number else "n/a" }}</b> (share of images whose decision flipped); mean RMS pixel change <b>{{ "%.3f"|format(v.mean_distance) if v.mean_distance is number else "n/a" }}</b>.</p>
<div class="scroll"><table class="cf"><thead><tr><th>image</th><th>from → to</th><th>original</th><th>reconstruction</th><th>counterfactual</th><th>difference</th><th>confidence along the path</th></tr></thead><tbody>
{% for it in v.examples %}<tr><td><code>{{ it.id }}</code><br><span class="muted small">{{ it.selected_as or "" }}</span></td><td>{{ it.source }} → {{ it.target }} {{ m.passfail(it.success) }}<br><span class="muted small">distance {{ "%.3f"|format(it.distance) if it.distance is number else "n/a" }}</span></td>
{% for kind, src in it.images %}<td>{% if src %}<img src="{{ src }}" alt="{{ kind }} of {{ it.id }}" width="64" height="64" loading="lazy">{% else %}—{% endif %}</td>{% endfor %}
<td class="small">{{ it.path|join(" → ") }}</td></tr>{% endfor %}
</tbody></table></div>
{% if v.infill %}<h3>Faithfulness with generative in-fill</h3>{% if v.infill_note %}<p class="muted small">{{ v.infill_note }}</p>{% endif %}
<div class="scroll"><table><thead><tr><th>replacement content</th><th class="n">deletion AUC</th><th class="n">insertion AUC</th><th class="n">deletion gain</th><th class="n">insertion gain</th></tr></thead><tbody>
{% for row in v.infill %}<tr><td>{{ row.name }}</td>{% for x in row.vals %}<td class="n">{{ "%.3f"|format(x) if x is number else "n/a" }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table></div>{% elif v.infill_error %}<p class="muted small">In-fill comparison failed: {{ v.infill_error }}</p>{% endif %}
{% if v.samples %}<details><summary>generator samples and identity</summary>{{ m.fig(v.samples, "generator samples") }}{{ m.kv(v.generator) }}</details>{% elif v.generator %}<details><summary>generator</summary>{{ m.kv(v.generator) }}</details>{% endif %}
{% endif %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        g = page.r.generative
        if not g:
            return None
        if g.get("skipped"):
            return {"skipped": str(g["skipped"])}
        items = []
        for it in g.get("items") or []:
            if not isinstance(it, Mapping):
                continue
            path = [c for c in (it.get("path_confidence") or []) if isinstance(c, (int, float))]
            items.append({"id": it.get("id"), "source": page.class_name(it.get("source")),
                          "target": page.class_name(it.get("target")), "success": it.get("success"),
                          "distance": it.get("distance"), "selected_as": it.get("selected_as"),
                          "pngs": it.get("pngs") or {},
                          "path": [f"{float(c):.2f}" for c in path[:: max(1, len(path) // 10)]]})
        infill = g.get("infill") or {}
        rows = [{"name": name, "vals": [v.get(k) for k in INFILL_KEYS]}
                for name, v in (infill.get("baselines") or {}).items() if isinstance(v, Mapping)]
        gen = g.get("generator") or {}
        return {"skipped": None, "examples": items, "success_rate": g.get("success_rate"),
                "mean_distance": g.get("mean_distance"), "infill": rows, "infill_note": infill.get("note"),
                "infill_error": infill.get("error"), "samples_png": g.get("samples_png"),
                "generator": flatten({k: gen.get(k) for k in ("dataset_digest", "version", "image_size", "losses_final") if k in gen})}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        if value.get("skipped"):
            return value
        for it in value["examples"]:
            pngs = it.pop("pngs")
            it["images"] = [(k, page.src(pngs.get(k))) for k in ("original", "reconstruction", "counterfactual", "difference")]
        value["samples"] = page.src(value.pop("samples_png"))
        return value
