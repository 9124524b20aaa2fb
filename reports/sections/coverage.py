"""Coverage: every check, what it saw (images, classes) and, for one that could not run, why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.audits.result import AuditResult
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register
from imaudit.reports.sections.summary import coverage_entries
from imaudit.reports.templating import human


def derived(r: AuditResult) -> list[dict[str, Any]]:
    """Coverage rows read off an audit that has no coverage section (audits before the contract)."""
    rows = []
    n_classes = len(r.dataset.classes)
    for suite, body in r.data_checks.items():
        exps = body.get("expectations") if isinstance(body, Mapping) else None
        rows.append({"check": f"data checks: {suite}", "ran": bool(exps), "images": (body.get("summary") or {}).get("n_images") or (body.get("summary") or {}).get("n"),
                     "classes": n_classes, "reason": None if exps else "no expectations recorded"})
    for split, m in r.metrics.items():
        rows.append({"check": f"predict {split}", "ran": True, "images": m.n, "classes": n_classes, "reason": None})
    for method, rec in r.explanations.items():
        rows.append({"check": f"explain: {method}", "ran": bool(rec.applicable and rec.count), "images": rec.count,
                     "classes": len((r.global_importance.get(method) or {}).get("per_class") or {}) or None,
                     "reason": rec.reason if not rec.applicable else (f"{len(rec.failures)} images failed" if rec.failures else None)})
    q = r.quality if isinstance(r.quality, Mapping) else {}
    for check in ("faithfulness", "sanity", "localisation"):
        body = q.get(check)
        if isinstance(body, Mapping):
            counts = [b.get("count") for b in body.values() if isinstance(b, Mapping) and isinstance(b.get("count"), int)]
            reason = None if body else ("the dataset has no object masks" if check == "localisation" and not r.dataset.has_masks else "no method was checked")
            rows.append({"check": check, "ran": bool(body), "images": max(counts, default=None),
                         "classes": None, "reason": reason, "methods": ", ".join(body)})
    if r.strategies:
        rows.append({"check": "strategies (SpRAy)", "ran": True, "images": None, "classes": None, "reason": None,
                     "methods": ", ".join(r.strategies)})
    return rows


@register
class Coverage(Section):
    name = "coverage"
    title = "Coverage"
    nav = "Coverage"
    order = 150
    intro = ("What each check of the audit looked at: how many images and classes, and for a check that could not "
             "run, why. A finding's absence only means something for checks that ran on enough images.")
    template = """{% import "_macros.html" as m %}
<div class="scroll"><table class="sortable"><thead><tr><th>check</th><th>ran</th><th class="n">images</th><th class="n">classes</th><th>note</th></tr></thead><tbody>
{% for c in v.rows %}<tr class="{{ 'failing' if c.ran is sameas false }}"><td>{{ c.check }}</td><td>{% if c.ran is sameas false %}{{ m.badge("no", "fail") }}{% else %}{{ m.badge("yes", "pass") }}{% endif %}</td><td class="n" data-sort="{{ c.images if c.images is number else '' }}">{{ c.images|num }}</td><td class="n">{{ c.classes if c.classes is not none else "—" }}</td><td class="small">{{ c.note or "" }}</td></tr>{% endfor %}
</tbody></table></div>
{% if v.derived %}<p class="muted small">This audit has no coverage record; the rows are read off its results.</p>{% endif %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        cov = coverage_entries(page.r)
        rows = []
        if cov:
            for name, c in cov.items():
                classes = c.get("classes")
                extra = {k: x for k, x in c.items() if k not in ("ran", "images", "classes", "reason")
                         and isinstance(x, (str, int, float)) and not isinstance(x, bool)}
                note = c.get("reason") or "; ".join(f"{human(k)} {x}" for k, x in list(extra.items())[:3]) or None
                rows.append({"check": human(name), "ran": c.get("ran"), "images": c.get("images"),
                             "classes": len(classes) if isinstance(classes, list) else classes, "note": note})
        else:
            for row in derived(page.r):
                row["note"] = row.pop("reason") or (f"methods: {row['methods']}" if row.get("methods") else None)
                rows.append(row)
        return {"rows": rows, "derived": not cov} if rows else None
