"""Counterfactuals: what each image would have to look like for the model to call it another class (a GAN).

Honest counts first (searched, reached, and the images left out before any
search with why), then every searched item's original, reconstruction,
counterfactual, change and colour-change images at one size on the fixed
scales of the legend, the change maps per target class with their boxes, and
the in-fill comparison with what it can and cannot show (audits/generative).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.reports.evidence import flatten
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register

KINDS = ("original", "reconstruction", "counterfactual", "change", "colour")
SEARCHED = ("success", "not-reached")
ITEM_KEYS = ("id", "outcome", "reason", "selected_as", "margin", "recon_error", "prediction_survives",
             "counterfactual_confidence", "distance", "steps", "realism", "pred_confidence")
INFILL_KEYS = ("deletion_auc", "random_deletion_auc", "deletion_gain", "start", "all_replaced")
SAMPLE_ROWS = 20
PATH_SHOWN = 5  # points of a search path shown: the first, the last (the counterfactual kept) and evenly between


def _path_points(steps: Any, confidences: Any) -> list[tuple[int, str]]:
    """(step, target confidence) at up to PATH_SHOWN points of a search path, its first and last included."""
    pts = [(int(s), float(c)) for s, c in zip(steps or [], confidences or [])
           if isinstance(s, (int, float)) and isinstance(c, (int, float))]
    if len(pts) > PATH_SHOWN:
        last = len(pts) - 1
        pts = [pts[round(k * last / (PATH_SHOWN - 1))] for k in range(PATH_SHOWN)]
    return [(s, f"{c:.2f}") for s, c in pts]


@register
class Counterfactuals(Section):
    name = "generative"
    title = "Counterfactuals"
    nav = "Counterfactuals"
    order = 140
    intro = ("What each image would have to look like for the model to call it another class: a class-conditional "
             "GAN drawn in the model's input space reconstructs the image, then a search changes the reconstruction "
             "until the model gives the target class the stated confidence.")
    template = """{% import "_macros.html" as m %}
{% if v.skipped %}<p class="muted">Not run: {{ v.skipped }}</p>{% else %}
{% set c = v.counts %}
<p class="small">Target confidence <strong>{{ v.confidence|num(2) }}</strong>.
Searched <strong>{{ v.searched|num }}</strong>: <strong>{{ c.get("success", 0) }}</strong> reached the target
(success rate {{ v.success_rate|num(2) }}), {{ c.get("not-reached", 0) }} did not.
Left out before any search, never counted as successes: {{ c.get("reconstruction-flipped", 0) }} whose reconstruction
the model classifies differently, {{ c.get("zero-step", 0) }} whose reconstruction already is the target,
{{ c.get("unchanged-target", 0) }} whose target is already the prediction.
Mean RMS change of the successes {{ v.mean_distance|num(3) }}; mean reconstruction error
{{ v.mean_recon_error|num(3) }} (pixels 0–1).</p>
{% if v.legend %}<figure class="cf-legend"><img src="{{ v.legend }}" alt="scales of the change and colour-change images"><figcaption class="small muted">Change = |counterfactual − reconstruction| per pixel on a fixed scale (the same for every image); colour = the signed change per channel, grey where nothing changed. Realism = the GAN discriminator's probability that the counterfactual is a real image of the target class.</figcaption></figure>{% endif %}
{% if v.searched_items %}
<div class="scroll"><table class="cf">
<thead><tr><th>image</th><th>from &rarr; to</th><th>original</th><th>reconstruction</th><th>counterfactual</th><th>change</th><th>colour</th><th>target confidence by search step</th></tr></thead>
<tbody>
{% for it in v.searched_items %}<tr>
<td class="small">{{ it.id }}<br><span class="muted">{{ it.selected_as or "" }}{% if it.margin is not none %}, margin {{ it.margin|num(2) }}{% endif %}</span></td>
<td class="small">{{ it.pred }} &rarr; {{ it.target }}<br>{{ m.badge(it.outcome, "pass" if it.outcome == "success" else "fail") }}<br>
<span class="muted">p {{ it.counterfactual_confidence|num(2) }}, {{ it.steps }} steps, RMS {{ it.distance|num(3) }}{% if it.realism is not none %}, realism {{ it.realism|num(2) }}{% endif %}</span></td>
{% for kind, src in it.images %}<td>{% if src %}<img class="cf-img" src="{{ src }}" alt="{{ kind }} of {{ it.id }}" width="96" height="96">{% if kind == "reconstruction" %}<br><span class="muted small">error {{ it.recon_error|num(3) }}</span>{% endif %}{% endif %}</td>{% endfor %}
<td class="small">{% for step, p in it.path %}<span class="nowrap">{{ step }}: {{ p }}</span>{% if not loop.last %} → {% endif %}{% endfor %}</td>
</tr>{% endfor %}
</tbody></table></div>
{% endif %}
{% if v.left_out %}
<h3>Left out before the search</h3>
<div class="scroll"><table class="cf">
<thead><tr><th>image</th><th>outcome</th><th>original</th><th>reconstruction</th><th>why</th></tr></thead>
<tbody>
{% for it in v.left_out %}<tr><td class="small">{{ it.id }}<br><span class="muted">{{ it.selected_as or "" }}</span></td><td>{{ m.badge(it.outcome, "unknown") }}</td>
{% for kind, src in it.images[:2] %}<td>{% if src %}<img class="cf-img" src="{{ src }}" alt="{{ kind }} of {{ it.id }}" width="96" height="96">{% endif %}</td>{% endfor %}
<td class="small">{{ it.reason }}</td></tr>{% endfor %}
</tbody></table></div>
{% endif %}
{% if v.maps %}
<h3>Where the changes concentrate</h3>
<p class="small muted">Mean of each success's change (normalised per image) per target class, in model-input pixels;
1 on the colour bar is an even spread. Boxes: regions above {{ ((v.rule.threshold or 0) * 100)|round|int }}% of the
map's maximum; "hot in" counts the images that alone put {{ v.rule.hot_lift }}&times; the box's area share there;
"on the object" counts the object masks grown by the stated pixels (a new shape reaches past the old outline).
The white box holds the most change, orange boxes the others; captions list them in that order.</p>
<div class="cf-maps">
{% for g in v.maps %}<figure>{% if g.png %}<img src="{{ g.png }}" alt="change map {{ g.title }}">{% endif %}
<figcaption class="small">{{ g.title }} ({{ g.images }} image{{ "" if g.images == 1 else "s" }}){% if g.object_share is not none %}; {{ (g.object_share * 100)|round|int }}% on the object grown by {{ g.object_grow }} px ({{ (g.object_area * 100)|round|int }}% of the image){% endif %}
{% for b in g.boxes %}<br>box {{ b.box }}: {{ (b.mass * 100)|round|int }}% of the change on {{ (b.area * 100)|round(1) }}% of the image ({{ b.lift }}&times;), hot in {{ ((b.consistency or 0) * 100)|round|int }}%{% endfor %}</figcaption></figure>
{% endfor %}</div>
{% endif %}
{% if v.infill %}
<h3>Deletion with generative in-fill</h3>
<p class="muted small">{{ v.infill_note or "" }} Maps: {{ v.infill_maps or "n/a" }}.</p>
<div class="scroll"><table><thead><tr><th>fill</th><th class="n">deletion AUC (map order)</th><th class="n">deletion AUC (random order)</th><th class="n">gain over random</th><th class="n">p at start</th><th class="n">p with all replaced</th></tr></thead>
<tbody>{% for row in v.infill %}<tr><td>{{ row.name }}</td>{% for x in row.vals %}<td class="n">{{ x|num(3) }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>
{% elif v.infill_error %}<p class="muted small">In-fill comparison: {{ v.infill_error }}</p>{% endif %}
{% if v.failures %}<p class="small">Failed: {% for f in v.failures %}{{ f.id }} ({{ f.error }}){% if not loop.last %}; {% endif %}{% endfor %}</p>{% endif %}
{% if v.samples %}<h3>Generator samples</h3><figure class="cf-samples-fig"><img src="{{ v.samples }}" alt="generator samples, one row per class" class="cf-samples">
<figcaption class="small muted">One row per class, top to bottom: {{ v.sample_rows|join(", ") }}{% if v.sample_rows_more %} (the first {{ v.sample_rows|length }} of {{ v.sample_rows_more }}){% endif %}; fixed latent seeds.</figcaption></figure>{% endif %}
<details><summary class="small">Generator and settings</summary>{{ m.kv(v.generator) }}{{ m.kv(v.settings) }}</details>
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
            path = _path_points(it.get("path_steps"), it.get("path_confidence"))
            items.append({
                **{k: it.get(k) for k in ITEM_KEYS},
                "pred": it.get("pred_name") or page.class_name(it.get("pred")),
                "target": it.get("target_name") or page.class_name(it.get("target")),
                "pngs": it.get("pngs") or {},
                "path": path,
            })
        conc = g.get("concentration") or {}
        groups = [(f"towards {c}", v) for c, v in (conc.get("per_class") or {}).items()]
        if conc.get("overall"):
            groups.append(("all targets", conc["overall"]))
        maps = [{"title": t, "png": v.get("png"), "images": v.get("images"), "boxes": v.get("boxes") or [],
                 "object_share": v.get("object_share"), "object_area": v.get("object_area"),
                 "object_grow": v.get("object_grow")} for t, v in groups if isinstance(v, Mapping)]
        infill = g.get("infill") or {}
        rows = [{"name": name, "vals": [v.get(k) for k in INFILL_KEYS]}
                for name, v in (infill.get("fills") or {}).items() if isinstance(v, Mapping)]
        gen, settings = g.get("generator") or {}, g.get("settings") or {}
        classes = [str(c) for c in gen.get("classes") or []]
        return {
            "skipped": None,
            "counts": g.get("counts") or {}, "searched": g.get("searched"), "success_rate": g.get("success_rate"),
            "mean_distance": g.get("mean_distance"), "mean_recon_error": g.get("mean_recon_error"),
            "confidence": settings.get("confidence"),
            "searched_items": [it for it in items if it["outcome"] in SEARCHED],
            "left_out": [it for it in items if it["outcome"] not in SEARCHED],
            "maps": maps, "rule": conc.get("rule") or {},
            "infill": rows, "infill_maps": infill.get("maps"), "infill_note": infill.get("note"),
            "infill_error": infill.get("error") or infill.get("skipped"),
            "failures": g.get("failures") or [],
            "legend_png": g.get("legend_png"), "samples_png": g.get("samples_png"),
            # generator-samples.png draws one row per class for the first SAMPLE_ROWS classes (store._save_samples)
            "sample_rows": classes[:SAMPLE_ROWS], "sample_rows_more": len(classes) if len(classes) > SAMPLE_ROWS else None,
            "generator": flatten({k: gen.get(k) for k in ("path", "dataset_digest", "version", "image_size", "z_dim",
                                                          "space", "epochs", "training", "train_seconds",
                                                          "losses_final")
                                  if k in gen}),
            "settings": flatten(settings),
        }

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        if value.get("skipped"):
            return value
        for it in [*value["searched_items"], *value["left_out"]]:
            pngs = it.pop("pngs")
            it["images"] = [(k, page.src(pngs.get(k))) for k in KINDS]
        for g in value["maps"]:
            g["png"] = page.src(g["png"])
        value["legend"] = page.src(value.pop("legend_png"))
        value["samples"] = page.src(value.pop("samples_png"))
        return value
