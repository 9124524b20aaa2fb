"""Performance: metrics per split with intervals, the per-class table and the confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.audits.verdict import headline_split, wilson_interval
from imaudit.reports import figures as figs
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register

SPLIT_ORDER = ("train", "val", "valid", "validation", "test")


def split_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


@register
class Performance(Section):
    name = "performance"
    title = "Performance"
    nav = "Performance"
    order = 30
    intro = ("Accuracy per split with its 95 % Wilson interval (the range the true accuracy lies in, given "
             "this many images), then each class on the headline split, worst first. In the confusion "
             "matrix rows are the true class and columns the predicted one; off-diagonal cells are mistakes.")
    template = """{% import "_macros.html" as m %}
<div class="scroll"><table id="metrics-table"><thead><tr><th>split</th><th class="n">images</th><th class="n">accuracy</th><th class="n">95% interval</th>{% if v.has_top5 %}<th class="n">top-5</th>{% endif %}<th class="n">loss</th><th class="n"><dfn title="expected calibration error: mean gap between confidence and accuracy">ECE</dfn></th>{% if v.has_nonfinite %}<th class="n">non-finite</th>{% endif %}</tr></thead><tbody>
{% for s in v.splits %}<tr><td>{{ s.split }}</td><td class="n">{{ "{:,}".format(s.n) }}</td><td class="n">{{ s.accuracy|pct }}</td><td class="n">{% if s.ci %}{{ s.ci[0]|pct }}–{{ s.ci[1]|pct }}{% else %}—{% endif %}</td>{% if v.has_top5 %}<td class="n">{{ s.top5|pct }}</td>{% endif %}<td class="n">{{ s.loss|num(3) }}</td><td class="n">{{ s.ece|num(3) }}</td>{% if v.has_nonfinite %}<td class="n">{{ s.nonfinite }}</td>{% endif %}</tr>{% endfor %}
</tbody></table></div>
<div class="grid2">
  {% if v.classes %}<div>
    <h3>Per class ({{ v.split }}) <span class="muted small">click a column to sort</span></h3>
    <div class="scroll"><table class="sortable" id="per-class-table"><thead><tr><th>class</th><th class="n">recall</th><th class="n">precision</th><th class="n">F1</th><th class="n">images</th></tr></thead><tbody>
    {% for c in v.classes %}<tr{% if c.weak %} class="weak"{% endif %}><td>{{ c.cls }}</td><td class="n" data-sort="{{ c.recall if c.recall is number else '' }}">{{ c.recall|pct }}</td><td class="n" data-sort="{{ c.precision if c.precision is number else '' }}">{{ c.precision|pct }}</td><td class="n" data-sort="{{ c.f1 if c.f1 is number else '' }}">{{ c.f1|num(3) }}</td><td class="n" data-sort="{{ c.support or 0 }}">{{ c.support|num }}</td></tr>{% endfor %}
    </tbody></table></div>
    <p class="muted small">Shaded rows: recall under half the overall accuracy (a weak class).</p>
  </div>{% endif %}
  {% if v.confusion_src is defined and v.confusion_src %}<div>{{ m.fig(v.confusion_src, "confusion matrix " ~ v.split, v.split ~ ": rows true class, columns predicted; colour = share of the true class, numbers = images") }}</div>{% endif %}
</div>
{% if v.other_splits %}<details><summary>confusion matrices of the other splits</summary><div class="figs">{% for s, src in v.other_src %}{{ m.fig(src, "confusion matrix " ~ s, s) }}{% endfor %}</div></details>{% endif %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        r = page.r
        if not r.metrics:
            return None
        split = headline_split(r)
        splits = []
        for s in sorted(r.metrics, key=split_key):
            m = r.metrics[s]
            ci = wilson_interval(round(m.accuracy * m.n), m.n) if m.accuracy is not None and m.n else None
            splits.append({"split": s, "n": m.n, "accuracy": m.accuracy, "ci": ci, "top5": m.top5, "loss": m.loss,
                           "ece": m.ece, "nonfinite": m.nonfinite})
        rows = [x for x in r.per_class.get(split, []) if isinstance(x, Mapping)] if split else []
        acc = r.metrics[split].accuracy if split in r.metrics else None
        classes = [{"cls": page.class_name(x.get("class")), "recall": x.get("recall"), "precision": x.get("precision"),
                    "f1": x.get("f1"), "support": x.get("support"),
                    "weak": isinstance(x.get("recall"), (int, float)) and acc is not None and x["recall"] < acc / 2}
                   for x in rows]
        classes.sort(key=lambda c: (c["recall"] if isinstance(c["recall"], (int, float)) else 2.0))
        return {"split": split, "splits": splits, "classes": classes,
                "has_top5": any(s["top5"] is not None for s in splits),
                "has_nonfinite": any(s["nonfinite"] for s in splits),
                "confusion": r.confusion.get(split) if split else None,
                "other_splits": [s for s in sorted(r.confusion, key=split_key) if s != split and r.confusion[s]]}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        def draw(split: str) -> str | None:
            matrix = page.r.confusion[split]
            return page.figure(f"confusion-{split}", lambda: figs.confusion_png(matrix, page.classes, split),
                               key=(matrix, page.classes, split))

        value["confusion_src"] = draw(value["split"]) if value["confusion"] else None
        value["other_src"] = [(s, draw(s)) for s in value["other_splits"]]
        return value
