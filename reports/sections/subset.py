"""Subset audits: both metric views (restricted to the dataset's classes, and over every model output) and the class map.

A model with more outputs than the dataset has classes (a 1000-class ImageNet
model on five labelled ImageNet classes) is audited in two views
(imaudit.audits.classmap): ``restricted`` (top-1 among the dataset's classes,
which every other section uses) and ``full`` (top-1 over all outputs, as the
model answers in use, where a prediction outside the dataset's classes is wrong).
A reviewer has to see both, and which model output stands for which class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import pandas as pd

from imaudit.audits.result import AuditResult, SplitMetrics
from imaudit.audits.verdict import headline_split, wilson_interval
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register
from imaudit.reports.sections.performance import split_key
from imaudit.reports.store import safe_file

TOP_OUTSIDE = 5
CLASS_ROWS_OPEN = 12  # a longer class map is folded away


def view_numbers(m: SplitMetrics | None) -> dict[str, Any] | None:
    """Accuracy with its 95 % Wilson interval, top-5, ECE and the share predicted outside the classes."""
    if m is None:
        return None
    ci = wilson_interval(round(m.accuracy * m.n), m.n) if m.accuracy is not None and m.n else None
    return {"accuracy": m.accuracy, "ci": ci, "top5": m.top5, "ece": m.ece, "outside": m.outside}


def is_subset(r: AuditResult) -> bool:
    """The audit has the two views: a subset class map, or full-view metrics."""
    cmap = r.class_map if isinstance(r.class_map, Mapping) else {}
    return bool(cmap.get("subset")) or bool(r.metrics_full)


def full_view_table(page: Page) -> pd.DataFrame | None:
    """predictions.csv's full-view columns (None when the file or the columns are missing)."""
    rel = page.r.artifacts.get("predictions")
    path = safe_file(page.folder, rel) if isinstance(rel, str) else None
    if path is None:
        return None
    try:
        t = pd.read_csv(path, dtype={"label": str, "pred_full_label": str})
    except (OSError, ValueError) as exc:
        page.problems.append({"stage": "predictions.csv", "error": f"{type(exc).__name__}: {exc}"})
        return None
    return t if {"split", "label", "correct", "correct_full", "in_classes"} <= set(t.columns) else None


def _as_bool(col: pd.Series) -> pd.Series:
    return col.astype(str).str.lower().isin(("true", "1"))


def outside_predictions(t: pd.DataFrame, split: str, n: int = TOP_OUTSIDE) -> list[dict[str, Any]]:
    """The model outputs outside the dataset's classes that the full view predicts most on ``split``."""
    rows = t[(t["split"] == split) & ~_as_bool(t["in_classes"])]
    if not len(rows) or "pred_full_label" not in rows.columns:
        return []
    total = int((t["split"] == split).sum())
    counts = Counter(rows["pred_full_label"].fillna("?").astype(str))
    return [{"label": label, "count": c, "share": c / max(total, 1)} for label, c in counts.most_common(n)]


def recall_by_view(t: pd.DataFrame, split: str) -> dict[str, tuple[float, float]]:
    """Class -> (restricted recall, full recall) on ``split``, from predictions.csv."""
    s = t[t["split"] == split]
    out = {}
    for label, g in s.groupby(s["label"].astype(str)):
        out[str(label)] = (float(_as_bool(g["correct"]).mean()), float(_as_bool(g["correct_full"]).mean()))
    return out


@register
class Subset(Section):
    name = "subset"
    title = "Two metric views"
    nav = "Views"
    order = 25  # right after the findings: it says what the headline accuracy measures
    intro = ("The model has more outputs than the dataset has classes, so every number is given in two views. "
             "Restricted: the model picks among the dataset's classes only; every other section of this report, "
             "and the headline accuracy, use this view. Full: the model picks among all its outputs, as it will "
             "in use; a prediction of any other output counts as wrong. A large gap means the model often "
             "answers with a class this dataset does not have.")
    template = """{% import "_macros.html" as m %}
<p>{{ v.n_classes }} dataset classes matched to {{ "{:,}".format(v.outputs) if v.outputs is number else "?" }} model outputs{% if v.label_source %} (output names from {{ v.label_source }}){% endif %}.</p>
<div class="scroll"><table id="views-table"><thead><tr><th>split</th><th class="n">images</th><th class="n">restricted accuracy</th><th class="n">95% interval</th><th class="n">full accuracy</th><th class="n">95% interval</th><th class="n">predicted outside the classes</th><th class="n">ECE restricted</th><th class="n">ECE full</th></tr></thead><tbody>
{% for s in v.splits %}<tr><td>{{ s.split }}</td><td class="n">{{ "{:,}".format(s.n) }}</td>
<td class="n">{{ s.restricted.accuracy|pct if s.restricted else "—" }}</td><td class="n">{% if s.restricted and s.restricted.ci %}{{ s.restricted.ci[0]|pct }}–{{ s.restricted.ci[1]|pct }}{% else %}—{% endif %}</td>
<td class="n">{{ s.full.accuracy|pct if s.full else "—" }}</td><td class="n">{% if s.full and s.full.ci %}{{ s.full.ci[0]|pct }}–{{ s.full.ci[1]|pct }}{% else %}—{% endif %}</td>
<td class="n">{{ s.full.outside|pct if s.full else "—" }}</td><td class="n">{{ s.restricted.ece|num(3) if s.restricted else "—" }}</td><td class="n">{{ s.full.ece|num(3) if s.full else "—" }}</td></tr>{% endfor %}
</tbody></table></div>
{% if v.outside %}<p>Most frequent answers outside the dataset's classes ({{ v.split }}): {% for o in v.outside %}<b>{{ o.label }}</b> ×{{ o.count }} ({{ o.share|pct(0) }}){{ ", " if not loop.last }}{% endfor %}.</p>{% endif %}
{% if v.classes %}
<details{% if v.classes|length <= v.open_rows %} open{% endif %}><summary>which model output is which class ({{ v.classes|length }} classes)</summary>
<div class="scroll"><table class="sortable" id="class-map-table"><thead><tr><th>dataset class</th><th class="n">model output</th><th>model label</th><th>WordNet id</th><th>matched by</th>{% if v.has_recall %}<th class="n">recall restricted</th><th class="n">recall full</th>{% endif %}</tr></thead><tbody>
{% for c in v.classes %}<tr><td>{{ c.cls }}</td><td class="n">{{ c.output }}</td><td>{{ c.model_label or "—" }}</td><td><code>{{ c.wordnet_id or "—" }}</code></td><td>{{ c.matched_by or "—" }}</td>{% if v.has_recall %}<td class="n" data-sort="{{ c.recall if c.recall is number else '' }}">{{ c.recall|pct }}</td><td class="n" data-sort="{{ c.recall_full if c.recall_full is number else '' }}">{{ c.recall_full|pct }}</td>{% endif %}</tr>{% endfor %}
</tbody></table></div>
{% if v.has_recall %}<p class="muted small">Recall per class on {{ v.split }} in each view: a class whose full recall falls far below its restricted recall is often answered with another output.</p>{% endif %}
</details>
{% endif %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        r = page.r
        if not is_subset(r):
            return None
        cmap = r.class_map if isinstance(r.class_map, Mapping) else {}
        split = headline_split(r)
        splits = [{"split": s, "n": (r.metrics.get(s) or r.metrics_full[s]).n,
                   "restricted": view_numbers(r.metrics.get(s)), "full": view_numbers(r.metrics_full.get(s))}
                  for s in sorted(set(r.metrics) | set(r.metrics_full), key=split_key)]
        table = full_view_table(page)
        recall = recall_by_view(table, split) if table is not None and split else {}
        classes = []
        for c in cmap.get("classes") or []:
            if not isinstance(c, Mapping):
                continue
            rr = recall.get(str(c.get("class")))
            classes.append({"cls": str(c.get("class")), "output": c.get("output"), "model_label": c.get("model_label"),
                            "wordnet_id": c.get("wordnet_id"), "matched_by": c.get("matched_by"),
                            "recall": rr[0] if rr else None, "recall_full": rr[1] if rr else None})
        return {"outputs": cmap.get("model_outputs"), "n_classes": len(classes) or len(page.classes),
                "label_source": cmap.get("label_source"), "split": split, "splits": splits,
                "outside": outside_predictions(table, split) if table is not None and split else [],
                "classes": classes, "has_recall": bool(recall), "open_rows": CLASS_ROWS_OPEN}
