"""Agreement between explanation methods: do they rank the same pixels as important?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from imaudit.reports import figures as figs
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register


@register
class Agreement(Section):
    name = "agreement"
    title = "Method agreement"
    nav = "Agreement"
    order = 110
    intro = ("Mean Spearman rank correlation between two methods' maps of the same image: 1 = they rank pixels "
             "the same, 0 = unrelated, negative = opposite. Disagreement is common between method families "
             "(gradients vs perturbations) and says more about the methods than about the model; trust the "
             "methods that pass the quality checks.")
    template = """{% import "_macros.html" as m %}
<p>Mean over {{ v.n_pairs }} pairs: <b>{{ v.mean|num(2) }}</b>.{% if v.best %} Most alike: {{ v.best.a }} ~ {{ v.best.b }} ({{ v.best.mean|num(2) }}).{% endif %}{% if v.worst %} Least: {{ v.worst.a }} ~ {{ v.worst.b }} ({{ v.worst.mean|num(2) }}).{% endif %}</p>
<div class="figs">
  {{ m.fig(v.src, "agreement matrix between methods", "mean rank correlation over " ~ (v.count|num) ~ " images") }}
  {% if v.per_class %}<div><h3>Per class</h3><div class="scroll"><table class="sortable"><thead><tr><th>class</th><th class="n">mean ρ over pairs</th></tr></thead><tbody>
  {% for cls, x in v.per_class %}<tr><td>{{ cls }}</td><td class="n" data-sort="{{ x }}">{{ x|num(2) }}</td></tr>{% endfor %}
  </tbody></table></div></div>{% endif %}
</div>"""

    def value(self, page: Page) -> dict[str, Any] | None:
        body = page.r.quality.get("agreement") if isinstance(page.r.quality, Mapping) else None
        if not isinstance(body, Mapping):
            return None
        matrix = body.get("matrix") if isinstance(body.get("matrix"), Mapping) else None
        pairs = [p for p in body.get("pairs") or [] if isinstance(p, Mapping) and isinstance(p.get("mean"), (int, float))]
        names = [str(n) for n in body.get("methods") or []] or list(matrix or {})
        if matrix is None and not pairs:
            return None
        grid = []
        for a in names:
            row = []
            for b in names:
                x = 1.0 if a == b else None
                if matrix is not None:
                    x = (matrix.get(a) or {}).get(b, (matrix.get(b) or {}).get(a, x))
                else:
                    x = next((p["mean"] for p in pairs if {p.get("a"), p.get("b")} == {a, b}), x)
                row.append(x if isinstance(x, (int, float)) else None)
            grid.append(row)
        per_class: dict[str, list[float]] = {}
        for p in pairs:
            for cls, x in (p.get("per_class") or {}).items():
                if isinstance(x, (int, float)):
                    per_class.setdefault(page.class_name(cls), []).append(float(x))
        ranked = sorted(pairs, key=lambda p: p["mean"])
        return {"names": names, "grid": grid, "n_pairs": len(pairs),
                "mean": float(np.mean([p["mean"] for p in pairs])) if pairs else None,
                "best": ranked[-1] if ranked else None, "worst": ranked[0] if len(ranked) > 1 else None,
                "count": max((p.get("count") or 0 for p in pairs), default=None),
                "per_class": sorted(((c, float(np.mean(x))) for c, x in per_class.items()), key=lambda t: t[1])}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        value["src"] = page.figure("agreement", lambda: figs.agreement_png(value["names"], value["grid"]),
                                   key=(value["names"], value["grid"]))
        return value
