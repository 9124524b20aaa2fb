"""Data checks: the Great Expectations suites over the dataset and the model's outputs, as pass/fail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.reports.evidence import flatten, records
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register
from imaudit.reports.sections.performance import split_key
from imaudit.reports.templating import human

# What each check of audits/expect.py asks, in words (unknown checks show their own name).
CHECKS = {
    "ids": "every image id is unique", "labels": "every label is in the class list",
    "hashes": "every file was hashed", "leakage": "no file is in two splits",
    "duplicates": "no image appears twice in a split", "width": "image widths within limits",
    "height": "image heights within limits", "modes": "image modes are ones imaudit converts",
    "readable": "every file could be decoded", "empty": "no class is empty in any split",
    "imbalance": "class imbalance under the limit", "finite": "every logit is finite",
    "probs_finite": "every probability is finite", "prob_min": "probabilities are at least 0",
    "prob_max": "probabilities are at most 1", "prob_sum": "probabilities sum to 1",
    "y": "labels are valid class indices", "pred": "predictions are valid class indices",
}


def check_row(e: Mapping[str, Any]) -> dict[str, Any]:
    """One expectation as a table row; a failing one carries its details (counts, examples)."""
    check = str(e.get("check") or e.get("expectation") or "check")
    column = e.get("column")
    row = {"suite": str(e.get("suite") or e.get("table") or ""), "check": CHECKS.get(check, human(check)),
           "expectation": str(e.get("expectation") or ""),
           "column": ", ".join(map(str, column)) if isinstance(column, list) else (str(column) if column else ""),
           "success": e.get("success"), "unexpected": e.get("unexpected_count"), "detail": None, "examples": None}
    if e.get("success") is False:
        details = e.get("details") if isinstance(e.get("details"), Mapping) else {}
        examples = details.get("partial_unexpected")
        row["examples"] = ", ".join(map(str, examples[:10])) + (" …" if len(examples) > 10 else "") if isinstance(examples, list) and examples else None
        detail = {k: v for k, v in e.items() if k in ("observed", "severity", "message", "note") and v is not None}
        detail.update({k: v for k, v in details.items() if k != "partial_unexpected"})
        row["detail"] = flatten(detail) if detail else None
    return row


@register
class DataChecks(Section):
    name = "data"
    title = "Data checks"
    nav = "Data"
    order = 60
    intro = ("Checks run on every audit before anything is trusted: the dataset (unique ids, known labels, no file "
             "in two splits, readable files, no empty class, balance) and the model's outputs (finite, valid "
             "probabilities). Failing checks are open, with examples; the images per class are folded below.")
    template = """{% import "_macros.html" as m %}
<p>{{ v.passed }} of {{ v.total }} checks pass{% if v.failed %}; <b>{{ v.failed }} fail</b>{% endif %}.{% if v.summary %} {{ v.summary }}{% endif %}</p>
{% if v.failing %}<div class="scroll"><table class="checks"><thead><tr><th>suite</th><th>failing check</th><th>column</th><th class="n">failing rows</th></tr></thead><tbody>
{% for c in v.failing %}<tr class="failing"><td>{{ c.suite }}</td><td>{{ c.check }} <code class="muted small">{{ c.expectation }}</code></td><td>{{ c.column }}</td><td class="n">{{ c.unexpected|num }}</td></tr>
{% if c.detail or c.examples %}<tr class="failing-detail"><td colspan="4">{% if c.examples %}<p class="small">Examples: <code>{{ c.examples }}</code></p>{% endif %}{% if c.detail %}{{ m.kv(c.detail) }}{% endif %}</td></tr>{% endif %}
{% endfor %}</tbody></table></div>{% endif %}
{% if v.passing %}<details><summary>{{ v.passing|length }} passing check{{ "s" if v.passing|length != 1 }}</summary><div class="scroll"><table class="checks"><thead><tr><th>suite</th><th>check</th><th>column</th><th>result</th></tr></thead><tbody>
{% for c in v.passing %}<tr><td>{{ c.suite }}</td><td>{{ c.check }} <code class="muted small">{{ c.expectation }}</code></td><td>{{ c.column }}</td><td>{{ m.passfail(c.success) }}</td></tr>{% endfor %}
</tbody></table></div></details>{% endif %}
{% if v.excluded %}<details open><summary>{{ v.n_excluded }} file{{ "s" if v.n_excluded != 1 }} left out</summary><div class="scroll"><table><thead><tr>{% for c in v.excluded.cols %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>{% for row in v.excluded.rows %}<tr>{% for x in row %}<td>{{ x }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>{% if v.excluded.more %}<p class="muted small">… {{ v.excluded.more }} more in audit.json</p>{% endif %}</details>{% endif %}
{% if v.counts %}<details><summary>images per class and split</summary><div class="scroll"><table class="sortable"><thead><tr><th>class</th>{% for s in v.count_splits %}<th class="n">{{ s }}</th>{% endfor %}</tr></thead><tbody>
{% for row in v.counts %}<tr><td>{{ row.cls }}</td>{% for n in row.n %}<td class="n" data-sort="{{ n }}">{{ n }}</td>{% endfor %}</tr>{% endfor %}
</tbody><tfoot><tr><th>total</th>{% for n in v.count_totals %}<th class="n">{{ n }}</th>{% endfor %}</tr></tfoot></table></div></details>{% endif %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        r = page.r
        exps = []
        for suite, body in r.data_checks.items():
            for e in (body.get("expectations") or []) if isinstance(body, Mapping) else []:
                if isinstance(e, Mapping):
                    exps.append({"suite": suite, **e})
        d = r.dataset
        if not exps and not d.counts:
            return None
        rows = [check_row(e) for e in exps]
        splits = sorted(d.counts, key=split_key)
        classes = list(d.classes) + sorted({c for s in splits for c in d.counts[s]} - set(d.classes))
        summary = (r.data_checks.get("manifest") or {}).get("summary") if isinstance(r.data_checks.get("manifest"), Mapping) else None
        sizes = (summary or {}).get("sizes") if isinstance(summary, Mapping) else None
        size_text = None
        if isinstance(sizes, Mapping) and isinstance(sizes.get("width"), Mapping):
            w, h = sizes["width"], sizes.get("height") or {}
            size_text = f"Images are {w.get('min', 0):g}–{w.get('max', 0):g} px wide and {h.get('min', 0):g}–{h.get('max', 0):g} px high."
        return {
            "failing": [c for c in rows if c["success"] is False], "passing": [c for c in rows if c["success"] is not False],
            "total": len(rows), "passed": sum(c["success"] is True for c in rows),
            "failed": sum(c["success"] is False for c in rows), "summary": size_text,
            "excluded": records(d.excluded, limit=20), "n_excluded": len(d.excluded),
            "count_splits": splits,
            "counts": [{"cls": c, "n": [d.counts[s].get(c, 0) for s in splits]} for c in classes] if splits else [],
            "count_totals": [sum(d.counts[s].values()) for s in splits],
        }
