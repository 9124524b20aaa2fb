"""Coverage: every check, what it saw (images, classes) and, for one that could not run, why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.audits.coverage_groups import by_check, not_run
from imaudit.audits.result import AuditResult
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register
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


def coverage_entries(r: AuditResult) -> dict[str, Mapping[str, Any]]:
    """audit.json's coverage section (check -> {ran, images, classes, reason}), when the audit has one."""
    cov = r.coverage
    return {str(k): v for k, v in cov.items() if isinstance(v, Mapping)} if isinstance(cov, Mapping) else {}


NOISE = {"failures", "skipped", "excluded", "nonfinite"}  # counts of what went wrong: worth a note only when not 0


def _n_classes(c: Mapping[str, Any]) -> int | None:
    classes = c.get("classes")
    return len(classes) if isinstance(classes, list) else classes if isinstance(classes, int) else None


def _note(c: Mapping[str, Any]) -> str | None:
    extra = [(k, x) for k, x in c.items() if k not in ("ran", "images", "classes", "reason")
             and isinstance(x, (str, int, float)) and not isinstance(x, bool) and not (k in NOISE and x == 0)]
    return "; ".join(f"{human(k)} {x}" for k, x in extra[:3]) or None


def grouped(cov: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per check (``faithfulness:saliency`` and ``faithfulness:ig`` are one row, images per method),
    with the parts that did not run grouped by their reason, as the CLI's coverage lines are
    (audits/coverage.py). A check is red (failed) by its entries' ``failed`` field, never by a reason's wording."""
    rows = []
    for check, parts in by_check(cov).items():
        ran = [(p, c) for p, c in parts if c.get("ran")]
        skipped = not_run(parts)
        remarks: dict[str, list[str]] = {}  # parts that ran but say something (e.g. nothing to cluster)
        for p, c in ran:
            if c.get("reason"):
                remarks.setdefault(str(c["reason"]), []).append(p)
        failed = any(row.failed for row in skipped)
        state = "failed" if failed else ("pass" if not skipped else "partial" if ran else "unknown")
        word = {"failed": "failed", "pass": "yes", "partial": "partly", "unknown": "not run"}[state]
        single = len(parts) == 1 and not parts[0][0]
        rows.append({
            "check": human(check), "state": state, "word": word,
            "images": max((int(c.get("images") or 0) for _, c in ran), default=None),
            "parts": [] if single else [(p, c.get("images")) for p, c in ran],
            "classes": max((n for n in (_n_classes(c) for _, c in ran) if n is not None), default=None),
            "not_run": [(row.reason, [p for p in row.parts if p] if len(row.parts) < len(parts) else []) for row in skipped],
            "note": _note(parts[0][1]) if single and ran else None,
            "remarks": [(reason, [p for p in which if p]) for reason, which in remarks.items()],
        })
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
<div class="scroll"><table class="sortable" id="coverage-table"><thead><tr><th>check</th><th>ran</th><th class="n">images</th><th class="n">classes</th><th>note</th></tr></thead><tbody>
{% for c in v.rows %}<tr class="{{ 'failing' if c.state == 'failed' }}"><td>{{ c.check }}</td><td>{{ m.badge(c.word, c.state) }}</td><td class="{{ 'small' if c.parts else 'n' }}" data-sort="{{ c.images if c.images is number else '' }}">{% if c.parts %}{% for p, n in c.parts %}<span class="nowrap">{{ p }} {{ n|num }}</span>{{ " · " if not loop.last }}{% endfor %}{% else %}{{ c.images|num }}{% endif %}</td><td class="n">{{ c.classes if c.classes is not none else "—" }}</td><td class="small">{% for reason, which in c.not_run %}<span class="block">{% if which %}not {{ which|join(", ") }}: {% endif %}{{ reason }}</span>{% endfor %}{% for reason, which in c.remarks %}<span class="block">{% if which %}{{ which|join(", ") }}: {% endif %}{{ reason }}</span>{% endfor %}{{ c.note or "" }}</td></tr>{% endfor %}
</tbody></table></div>
{% if v.derived %}<p class="muted small">This audit has no coverage record; the rows are read off its results.</p>{% endif %}"""

    def value(self, page: Page) -> dict[str, Any] | None:
        cov = coverage_entries(page.r)
        rows = grouped(cov) if cov else []
        if not cov:
            for row in derived(page.r):
                ran = row.pop("ran")
                reason = row.pop("reason")
                rows.append({**row, "state": "pass" if ran else "unknown", "word": "yes" if ran else "no", "parts": [], "remarks": [],
                             "not_run": [(reason, [])] if reason and not ran else [],
                             "note": (reason if ran else None) or (f"methods: {row['methods']}" if row.get("methods") else None)})
        return {"rows": rows, "derived": not cov} if rows else None
