"""Explanation quality: are the maps faithful to the model, and do they depend on its weights at all?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from imaudit.reports import figures as figs
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register


def _interval(q: Mapping[str, Any], key: str) -> list[float] | None:
    """A [lo, hi] interval stored as key_ci / key_interval / key_lo + key_hi."""
    for name in (f"{key}_ci", f"{key}_interval"):
        v = q.get(name)
        if isinstance(v, Sequence) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            return [float(v[0]), float(v[1])]
    lo, hi = q.get(f"{key}_lo"), q.get(f"{key}_hi")
    return [float(lo), float(hi)] if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else None


def _better(q: Mapping[str, Any], curve: str, *, lower: bool, margin: float) -> bool | None:
    """Whether the map's order beats random orders on ``curve``: the check's own verdict over its
    interval when it recorded one ("better" / "not different" / "worse"), else beyond a stored
    interval of the random AUC, else by the audit's faithfulness margin."""
    stated = q.get(f"{curve}_vs_random")
    if isinstance(stated, str):
        return stated == "better"
    own, rnd = q.get(f"{curve}_auc"), q.get(f"random_{curve}_auc")
    if not isinstance(own, (int, float)) or not isinstance(rnd, (int, float)):
        return None
    ci = _interval(q, f"random_{curve}_auc")
    bound = (ci[0] if lower else ci[1]) if ci else (rnd - margin if lower else rnd + margin)
    return own < bound if lower else own > bound


def _gain(q: Mapping[str, Any], curve: str) -> dict[str, Any] | None:
    """The map's gain over random orders on ``curve`` with its interval, when the check recorded it."""
    g = q.get(f"{curve}_gain")
    if not isinstance(g, (int, float)) or f"{curve}_gain_ci" not in q:
        return None  # older audits stored an absolute AUC difference under the same name
    ci = q.get(f"{curve}_gain_ci")
    return {"value": g, "ci": ci if isinstance(ci, Sequence) and len(ci) == 2 else None}


def _native(settings: Mapping[str, Any]) -> str | None:
    """A method's own map resolution when it is coarser than the image (Grad-CAM on a small feature map)."""
    size = settings.get("native_size") or settings.get("layer_size") or settings.get("map_size")
    if isinstance(size, Sequence) and len(size) == 2 and all(isinstance(x, int) for x in size):
        return f"{size[0]}×{size[1]} map"
    return None


def sanity_curve(body: Any) -> dict[str, list] | None:
    """A cascading-randomisation curve {layers, rank_corr, ssim} from the shapes the sanity check records."""
    if not isinstance(body, Mapping):
        return None
    curve = body.get("curve") or body.get("cascade")
    if isinstance(curve, Mapping) and isinstance(curve.get("rank_corr"), list):
        return {"layers": list(curve.get("layers") or curve.get("blocks") or []), "rank_corr": curve["rank_corr"],
                "ssim": list(curve.get("ssim") or [])}
    if isinstance(curve, list) and curve and all(isinstance(x, Mapping) for x in curve):
        return {"layers": [str(x.get("layer") or x.get("block") or x.get("name") or i) for i, x in enumerate(curve)],
                "rank_corr": [x.get("rank_corr") for x in curve], "ssim": [x.get("ssim") for x in curve]}
    return None


def _flagged(page: Page, code: str) -> set[str]:
    out = set()
    for f in page.r.findings:
        if f.code == code:
            m = f.evidence.get("method") or f.evidence.get("methods")
            out.update(m if isinstance(m, list) else [m] if m else [])
    return {str(x) for x in out}


@register
class Quality(Section):
    name = "quality"
    title = "Explanation quality"
    nav = "Quality"
    order = 100
    intro = ("Faithfulness: pixels are removed (deletion) or revealed (insertion) in the order a map ranks them "
             "and the model's probability for the explained class is tracked; a faithful map makes it fall faster "
             "(lower deletion AUC, the area under the curve) and rise faster (higher insertion AUC) than random "
             "orders do. Sanity (Adebayo et al.): the model's top layers are re-initialised; a map that stays "
             "similar (Spearman rank correlation, SSIM structural similarity) shows the image, not the model.")
    template = """{% import "_macros.html" as m %}
{% if v.faith %}
<h3>Faithfulness</h3>
<div class="scroll"><table class="sortable"><thead><tr><th>method</th><th class="n">images</th><th class="n">deletion AUC ↓</th><th class="n">random ↓</th><th class="n">insertion AUC ↑</th><th class="n">random ↑</th>{% if v.has_gain %}<th class="n">deletion gain</th><th class="n">insertion gain</th>{% endif %}{% if v.prior %}<th>vs {{ v.prior }} prior</th>{% endif %}<th>fill</th><th>result</th></tr></thead><tbody>
{% for f in v.faith %}<tr><td>{{ f.method }}{% if f.native %} <span class="muted small">({{ f.native }})</span>{% endif %}</td><td class="n">{{ f.count|num }}</td><td class="n" data-sort="{{ f.deletion if f.deletion is number else '' }}">{{ f.deletion|num(3) }}</td><td class="n">{{ f.random_deletion|num(3) }}{% if f.del_ci %} <span class="muted small">[{{ f.del_ci[0]|num(3) }}, {{ f.del_ci[1]|num(3) }}]</span>{% endif %}</td><td class="n" data-sort="{{ f.insertion if f.insertion is number else '' }}">{{ f.insertion|num(3) }}</td><td class="n">{{ f.random_insertion|num(3) }}{% if f.ins_ci %} <span class="muted small">[{{ f.ins_ci[0]|num(3) }}, {{ f.ins_ci[1]|num(3) }}]</span>{% endif %}</td>{% if v.has_gain %}{% for g in (f.del_gain, f.ins_gain) %}<td class="n" data-sort="{{ g.value if g and g.value is number else '' }}">{% if g %}{{ g.value|pct(0) }}{% if g.ci %} <span class="muted small">[{{ g.ci[0]|pct(0) }}, {{ g.ci[1]|pct(0) }}]</span>{% endif %}{% else %}—{% endif %}</td>{% endfor %}{% endif %}{% if v.prior %}<td class="small">{{ f.vs_prior or "—" }}</td>{% endif %}<td class="small">{{ f.fill or "—" }}</td><td>{% if f.unfaithful %}{{ m.badge("no better than random", "fail") }}{% elif f.del_better and f.ins_better %}{{ m.badge("better than random", "pass") }}{% elif f.del_better or f.ins_better %}{{ m.badge(("deletion" if f.del_better else "insertion") ~ " only", "warn") }}{% elif f.del_better is sameas false %}{{ m.badge("no better than random", "warn") }}{% else %}—{% endif %}</td></tr>{% endfor %}
</tbody></table></div>
<p class="muted small">"Better" means better than random orders beyond the 95 % interval{% if v.has_gain %} of the gain (the map's improvement over random, relative to random){% endif %}, or by the audit's faithfulness margin ({{ v.margin|num(2) }}) when no interval was recorded.{% if v.prior %} The {{ v.prior }} prior is a model-independent order (it ignores the model): a map should beat it too.{% endif %}</p>
{% if v.curves_src is defined and v.curves_src %}{{ m.fig(v.curves_src, "deletion and insertion curves per method", "Probability of the explained class as cells are deleted (red) or inserted (blue): in the map's order (solid) and in random orders (dashed" ~ ("; shaded: from the lowest to the highest random order" if v.has_band else "") ~ ").") }}{% endif %}
{% endif %}
{% if v.sanity %}
<h3>Sanity check: randomised weights</h3>
<div class="scroll"><table><thead><tr><th>method</th><th class="n">images</th><th class="n">layers randomised</th><th class="n">rank correlation</th><th class="n">SSIM</th><th class="n">limits</th><th>result</th></tr></thead><tbody>
{% for s in v.sanity %}<tr><td>{{ s.method }}</td><td class="n">{{ s.count|num }}</td><td class="n">{{ s.n_layers|num }}</td><td class="n">{{ s.rank_corr|num(3) }}</td><td class="n">{{ s.ssim|num(3) }}</td><td class="n small">{{ s.limits }}</td><td>{{ m.passfail(s.passed) }}{% if s.note %} <span class="small muted">{{ s.note }}</span>{% endif %}</td></tr>{% endfor %}
</tbody></table></div>
<p class="muted small">A method passes when its maps change after randomisation: correlation and SSIM below the limits. Methods not listed were not re-explained (the check costs a second explanation run).</p>
{% if v.sanity_src is defined and v.sanity_src %}{{ m.fig(v.sanity_src, "cascading randomisation curves", "Rank correlation with the original maps as layers are randomised from the top; a method that passes falls towards 0.") }}{% endif %}
{% endif %}
{% if v.localisation %}
<h3>Localisation (object masks)</h3>
<div class="scroll"><table><thead><tr><th>method</th>{% for c in v.loc_cols %}<th class="n">{{ c|human }}</th>{% endfor %}</tr></thead><tbody>
{% for method, vals in v.localisation %}<tr><td>{{ method }}</td>{% for x in vals %}<td class="n">{{ x|num(3) }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table></div>
<p class="muted small">Pointing game: share of images whose map peak is on the object. Mass inside: share of attribution on the object (compare with the object's share of the image).</p>
{% endif %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        r = page.r
        qual = r.quality if isinstance(r.quality, Mapping) else {}
        faith_detail = qual.get("faithfulness") if isinstance(qual.get("faithfulness"), Mapping) else {}
        unfaithful = _flagged(page, "unfaithful-explanation")
        prior = None
        margin = (((r.spec or {}).get("thresholds") or {}).get("explanations") or {}).get("faithfulness_margin", 0.05)
        faith, curves = [], {}
        for method, rec in r.explanations.items():
            q = {**(faith_detail.get(method) or {}), **(rec.quality or {})}
            if not isinstance(q.get("deletion_auc"), (int, float)):
                continue
            detail = faith_detail.get(method) or {}
            fill = detail.get("fill") or detail.get("baseline") or q.get("fill")
            priors = q.get("priors") if isinstance(q.get("priors"), Mapping) else {}
            prior_name = next(iter(priors), None)
            if prior_name:
                prior = prior_name
            faith.append({"method": method, "count": detail.get("count", rec.count), "deletion": q.get("deletion_auc"),
                          "insertion": q.get("insertion_auc"), "random_deletion": q.get("random_deletion_auc"),
                          "random_insertion": q.get("random_insertion_auc"),
                          "del_ci": _interval(q, "random_deletion_auc"), "ins_ci": _interval(q, "random_insertion_auc"),
                          "fill": str(fill) if fill else None, "unfaithful": method in unfaithful,
                          "del_gain": _gain(q, "deletion"), "ins_gain": _gain(q, "insertion"),
                          "vs_prior": (priors.get(prior_name) or {}).get("map_vs_prior") if prior_name else None,
                          "native": _native(rec.settings),
                          "del_better": _better(q, "deletion", lower=True, margin=margin),
                          "ins_better": _better(q, "insertion", lower=False, margin=margin)})
            if isinstance(detail.get("curves"), Mapping):
                curves[method] = detail["curves"]
        sanity_detail = qual.get("sanity") if isinstance(qual.get("sanity"), Mapping) else {}
        failed = _flagged(page, "failed-sanity-check")
        sanity, sanity_curves = [], {}
        for method, body in sanity_detail.items():
            if not isinstance(body, Mapping):
                continue
            th = body.get("thresholds") if isinstance(body.get("thresholds"), Mapping) else {}
            limits = " · ".join(f"{k.replace('max_', '')} < {x:g}" for k, x in th.items() if isinstance(x, (int, float)))
            passed = body.get("passed")
            if method in failed:
                passed = False
            inconclusive = [j.get("inconclusive") for j in body.get("judged") or [] if isinstance(j, Mapping) and j.get("inconclusive")]
            note = body.get("reason") or body.get("note") or (inconclusive[0] if inconclusive else None)
            sanity.append({"method": method, "count": body.get("count"), "n_layers": body.get("n_layers"),
                           "rank_corr": body.get("rank_corr"), "ssim": body.get("ssim"), "passed": passed,
                           "limits": limits or "—", "note": note})
            curve = sanity_curve(body)
            if curve:
                sanity_curves[method] = curve
        loc = qual.get("localisation") if isinstance(qual.get("localisation"), Mapping) else {}
        loc_rows = {m: b for m, b in loc.items() if isinstance(b, Mapping)}
        loc_cols = []
        for b in loc_rows.values():
            loc_cols += [k for k, x in b.items() if isinstance(x, (int, float)) and not isinstance(x, bool) and k not in loc_cols]
        if not faith and not sanity and not loc_rows:
            return None
        return {"faith": faith, "margin": margin, "prior": prior, "curves": curves,
                "has_gain": any(f["del_gain"] or f["ins_gain"] for f in faith), "sanity": sanity, "sanity_curves": sanity_curves,
                "loc_cols": loc_cols[:8], "localisation": [(m, [b.get(c) for c in loc_cols[:8]]) for m, b in loc_rows.items()]}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        curves, sc = value["curves"], value["sanity_curves"]
        value["has_band"] = any(isinstance(c, Mapping) and c.get("random_deletion_band") for c in curves.values()) if curves else False
        value["curves_src"] = page.figure("faithfulness-curves", lambda: figs.faithfulness_band_png(curves), key=curves) if curves else None
        value["sanity_src"] = page.figure("sanity-curves", lambda: figs.sanity_png(sc), key=sc) if sc else None
        return value
