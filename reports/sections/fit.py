"""Fit: train against validation, and the training history when the release has one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.reports import figures as figs
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register


def history_rows(history: Any) -> list[dict[str, Any]]:
    """Training history as rows, from rows ({'rows': [...]} or a list) or columns ({'train_loss': [...]})."""
    if not history:
        return []
    if isinstance(history, Mapping) and isinstance(history.get("rows"), list):
        history = history["rows"]
    if isinstance(history, list):
        return [r for r in history if isinstance(r, Mapping)]
    if isinstance(history, Mapping):
        cols = {k: v for k, v in history.items() if isinstance(v, list)}
        n = max((len(v) for v in cols.values()), default=0)
        return [{k: (v[i] if i < len(v) else None) for k, v in cols.items()} for i in range(n)]
    return []


@register
class Fit(Section):
    name = "fit"
    title = "Fit"
    nav = "Fit"
    order = 50
    intro = ("Whether the model learned its task without memorising the training set: train and validation "
             "accuracy and loss side by side, the gap the verdict is judged on, and the learning curves when "
             "the release recorded its training history (a validation loss that rises while training loss "
             "falls is overfitting).")
    template = """{% import "_macros.html" as m %}
<p>Verdict {{ m.badge(v.verdict) }}{% for reason in v.reasons %} · {{ reason }}{% endfor %}{% if not v.reasons and v.verdict == "ok" %} · train and validation agree within the limits{% endif %}</p>
<div class="grid2">
  {% if v.rows %}<div><table><thead><tr><th></th>{% for s in v.splits %}<th class="n">{{ s }}</th>{% endfor %}<th class="n">gap</th><th class="n">limit</th></tr></thead><tbody>
  {% for row in v.rows %}<tr><th>{{ row.name }}</th>{% if row.name == "accuracy" %}{% for x in row.vals %}<td class="n">{{ x|pct }}</td>{% endfor %}<td class="n">{{ row.gap|points }}</td>{% else %}{% for x in row.vals %}<td class="n">{{ x|num(3) }}</td>{% endfor %}<td class="n">{{ row.gap|num(3) }}</td>{% endif %}<td class="n">{{ row.limit }}</td></tr>{% endfor %}
  </tbody></table></div>{% endif %}
  {% if v.curves is defined and v.curves %}<div>{{ m.fig(v.curves, "learning curves", v.epochs ~ " epochs from the release's training history") }}</div>{% endif %}
</div>"""

    def value(self, page: Page) -> dict[str, Any] | None:
        r = page.r
        f = r.fit
        history = history_rows(f.history)
        if f.verdict == "unknown" and not f.reasons and not f.gap and not history:
            return None
        th = f.thresholds or {}
        splits = [s for s in ("train", "val") if s in r.metrics] or list(r.metrics)[:2]
        rows = []
        for name, attr, limit in (("accuracy", "accuracy", th.get("overfit_accuracy_gap")),
                                  ("loss", "loss", f"×{th['overfit_loss_ratio']}" if th.get("overfit_loss_ratio") else None)):
            vals = [getattr(r.metrics[s], attr) for s in splits]
            if any(x is not None for x in vals):
                rows.append({"name": name, "vals": vals, "gap": f.gap.get(attr),
                             "limit": limit if isinstance(limit, str) else (f"{100 * limit:g} pt" if limit is not None else "—")})
        return {"verdict": f.verdict, "reasons": list(f.reasons), "splits": splits, "rows": rows, "history": history,
                "epochs": len(history)}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        rows = value["history"]
        value["curves"] = page.figure("learning-curves", lambda: figs.learning_curves_png(rows), key=rows) if rows else None
        return value
