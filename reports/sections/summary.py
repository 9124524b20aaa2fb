"""The summary (decision card): everything a reviewer needs on the first screen to know whether to look closer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from imaudit.audits.result import AuditResult
from imaudit.audits.verdict import REVIEW_LABELS, headline, review_state, verdict
from imaudit.reports.history import comparable, settings_diff
from imaudit.reports.identity import is_release_audit, model_identity
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register
from imaudit.reports.sections.coverage import coverage_entries, grouped

WELL_CALIBRATED = 0.05  # ECE at or below: well calibrated (the warning limit comes from the audit's thresholds)


def decision_of(page: Page, audit_id: str) -> str | None:
    """The latest review decision recorded for ``audit_id`` (app history, the database, or audit.json)."""
    if audit_id == page.r.id:
        if page.app and page.app.get("history"):
            return str(getattr(page.app["history"][-1], "decision", "") or "") or None
        if page.review:
            return page.review.get("decision") or None
    d = page.decisions.get(audit_id)
    if d is None:
        return None
    return str(d.get("decision") if isinstance(d, Mapping) else getattr(d, "decision", "")) or None


def accuracy_change(r: AuditResult, other: AuditResult | None, label: str) -> dict[str, Any] | None:
    """Change of headline accuracy from ``other`` to ``r``, or why it is not compared."""
    if other is None:
        return None
    name, version = model_identity(other)
    out: dict[str, Any] = {"label": label, "id": other.id, "version": version, "created": other.created[:10]}
    if not comparable(other, r, "accuracy"):
        diff = [d["name"] for d in settings_diff(other, r) if d["name"] in ("dataset_digest", "input_size", "splits", "train_cap")]
        out["why"] = "different " + ", ".join(d.replace("_", " ") for d in diff) if diff else "different settings"
        return out
    a, b = headline(other)["accuracy"], headline(r)["accuracy"]
    out["delta"] = (b - a) if a is not None and b is not None else None
    return out


def calibration_state(r: AuditResult, split: str | None) -> dict[str, Any] | None:
    """ECE of the headline split, a word for it, and whether the model is over- or under-confident."""
    cal = r.calibration.get(split) if split else None
    ece = (cal or {}).get("ece") if isinstance(cal, Mapping) else None
    if ece is None and split in r.metrics:
        ece = r.metrics[split].ece
    if ece is None:
        return None
    limit = (((r.spec or {}).get("thresholds") or {}).get("calibration") or {}).get("ece_warning", 0.10)
    bins = [b for b in ((cal or {}).get("bins") or []) if isinstance(b, Mapping) and b.get("count")]
    gap = sum(b["count"] * ((b.get("confidence") or 0) - (b.get("accuracy") or 0)) for b in bins)
    direction = None
    if bins and abs(gap) / max(sum(b["count"] for b in bins), 1) > 0.01:
        direction = "over-confident" if gap > 0 else "under-confident"
    word = "well calibrated" if ece <= WELL_CALIBRATED else ("acceptable" if ece <= limit else "miscalibrated")
    return {"ece": ece, "limit": limit, "word": word, "direction": direction, "bad": ece > limit}


def weakest_classes(r: AuditResult, split: str | None, page: Page, n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` classes with the lowest recall on ``split`` (only those below perfect)."""
    rows = [x for x in r.per_class.get(split, []) if isinstance(x, Mapping) and isinstance(x.get("recall"), (int, float))]
    rows = sorted(rows, key=lambda x: (x["recall"], -(x.get("support") or 0)))
    return [{"cls": page.class_name(x.get("class")), "recall": x["recall"], "support": x.get("support")}
            for x in rows[:n] if x["recall"] < 1.0]


def top_confusions(r: AuditResult, split: str | None, page: Page, n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` largest off-diagonal cells of the confusion matrix: true -> predicted, count."""
    m = np.asarray(r.confusion.get(split) or [], dtype=float) if split else np.zeros((0, 0))
    if m.ndim != 2 or m.shape[0] != m.shape[1] or not m.size:
        return []
    off = m.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:n]
    out = []
    for flat in order:
        i, j = np.unravel_index(flat, off.shape)
        if off[i, j] <= 0:
            break
        out.append({"true": page.class_name(int(i)), "pred": page.class_name(int(j)), "count": int(off[i, j]),
                    "share": float(off[i, j] / max(m[i].sum(), 1))})
    return out


def shortcut_state(r: AuditResult) -> dict[str, Any]:
    """Whether shortcuts were searched for, and what was found: confirmed, candidates or none."""
    found = [f for f in r.findings if f.code == "shortcut"]
    confirmed = [f for f in found if f.evidence.get("confirmed") is True
                 or (f.evidence.get("confirmed") is None and f.severity == "error")]
    candidates = [f for f in found if f not in confirmed]
    classes = sorted({str(f.evidence.get("class") or "") for f in confirmed} - {""})
    cov = {k: v for k, v in coverage_entries(r).items() if "shortcut" in k.lower()}
    not_run = [(k, v.get("reason")) for k, v in cov.items() if v.get("ran") is False]
    explained = max((rec.count for rec in r.explanations.values()), default=0)
    if confirmed:
        return {"state": "fail", "word": "Confirmed", "detail": (f"class {', '.join(classes)}" if classes else
                                                                  f"{len(confirmed)} confirmed"), "n": len(confirmed)}
    untested = [f for f in candidates if f.evidence.get("confirmed") is None]
    if untested:
        return {"state": "attention", "word": "Candidates only",
                "detail": f"{len(untested)} candidate{'s' if len(untested) != 1 else ''} not tested on the model"}
    if candidates:  # every candidate was tested and cleared: covering it did not change the predictions
        return {"state": "pass", "word": "Cleared",
                "detail": f"{len(candidates)} candidate{'s' if len(candidates) != 1 else ''} tested; "
                          "covering or pasting them barely changed predictions"}
    if not r.explanations or explained == 0:
        return {"state": "unknown", "word": "Not checked", "detail": "no explanation method ran"}
    if not_run and len(not_run) == len(cov):
        return {"state": "unknown", "word": "Not checked", "detail": str(not_run[0][1] or "the search could not run")}
    images = max((int(v.get("images") or 0) for v in cov.values()), default=explained)
    return {"state": "pass", "word": "None found", "detail": f"searched the maps of {images} images"}


def coverage_summary(r: AuditResult) -> list[str]:
    """Lines saying what was checked on how many images, and what could not run."""
    lines = []
    predicted = [(s, m.n) for s, m in r.metrics.items()]
    if predicted:
        total = sum(n for _, n in predicted)
        lines.append(f"Predicted {total:,} images (" + ", ".join(f"{s} {n:,}" for s, n in predicted) + ")")
    ran = {m: rec.count for m, rec in r.explanations.items() if rec.applicable and rec.count}
    if ran:
        counts = sorted(set(ran.values()), reverse=True)
        per = f"{counts[0]}" if len(counts) == 1 else f"{counts[-1]}–{counts[0]}"
        lines.append(f"Explained {per} images with each of {len(ran)} method{'s' if len(ran) != 1 else ''}")
    exp = [e for e in r.gates.expectations if isinstance(e, Mapping)]
    if exp:
        ok = sum(bool(e.get("success")) for e in exp)
        lines.append(f"Data checks: {ok} of {len(exp)} expectations met")
    cov = coverage_entries(r)
    # One entry per check and reason, as in the Coverage section; an audit without coverage names only its methods.
    skipped = ([f"{row['check']}{' (' + ', '.join(which) + ')' if which else ''}: {reason}"
                for row in grouped(cov) for reason, which in row["not_run"]] if cov else
               [f"{m}: {rec.reason or 'not applicable'}" for m, rec in r.explanations.items() if not rec.applicable])
    if skipped:
        lines.append("Not run: " + "; ".join(skipped[:3]) + (f"; +{len(skipped) - 3} more in Coverage" if len(skipped) > 3 else ""))
    return lines


@register
class Summary(Section):
    name = "summary"
    title = ""
    nav = "Summary"
    order = 10
    intro = ("The verdict and the numbers behind it. Each tile links to its evidence below; "
             "a reviewer who sees nothing surprising here need not read further.")
    template = """{% import "_macros.html" as m %}
<div class="verdict {{ v.verdict.state }}" id="verdict">
  <div class="vline"><span class="vlabel">{{ v.verdict.label }}</span><span class="vmeaning">{{ v.verdict.meaning }}</span></div>
  {% if v.verdict.reasons %}<ul class="reasons">{% for reason in v.verdict.reasons[:4] %}<li>{{ reason }}</li>{% endfor %}{% if v.verdict.reasons|length > 4 %}<li>… {{ v.verdict.reasons|length - 4 }} more in Findings</li>{% endif %}</ul>{% endif %}
  <div class="vreview">Review: {{ m.badge(v.review.label, v.review.state) }}{% if v.review.who %} <span class="small">by {{ v.review.who }}{% if v.review.when %}, {{ v.review.when }}{% endif %}</span>{% endif %}{% if page.app %} · <a href="#review">{{ "Change the decision" if v.review.state not in ("pending", "none") else "Record a decision" }}</a>{% endif %}</div>
</div>
<div class="stats">
  <a class="stat" href="#performance">
    <span class="k">{{ v.head.split or "" }} accuracy</span>
    {% if v.head.accuracy is not none %}<span class="big" id="headline-accuracy">{{ v.head.accuracy|pct }}</span>
    <span class="sub">{% if v.head.ci %}95% CI {{ v.head.ci[0]|pct }}–{{ v.head.ci[1]|pct }} · {% endif %}n = {{ "{:,}".format(v.head.n) }}</span>
    {% else %}<span class="big">—</span><span class="sub">no predictions</span>{% endif %}
    {% if v.full %}<span class="sub" id="full-view-accuracy">among the dataset's classes; over all {{ "{:,}".format(v.full.outputs) if v.full.outputs is number else "the model's" }} outputs {{ v.full.accuracy|pct }}</span>{% endif %}
    {% for c in v.changes %}<span class="sub">{% if c.delta is defined and c.delta is not none %}<b class="{{ 'up' if c.delta > 0 else 'down' if c.delta < 0 else '' }}">{{ c.delta|points }}</b>{% else %}not compared ({{ c.why|default("no accuracy") }}){% endif %} vs {{ c.label }}{% if c.version %} (v{{ c.version }}{% else %} ({{ c.created }}{% endif %})</span>{% endfor %}
    {% if not v.changes %}<span class="sub muted">first audit of this model</span>{% endif %}
  </a>
  <a class="stat" href="#fit">
    <span class="k">Fit</span><span class="big {{ 'bad' if v.fit.verdict in ('overfitting', 'underfitting') }}">{{ v.fit.verdict }}</span>
    <span class="sub">{% if v.fit.train is not none %}train {{ v.fit.train|pct }}{% endif %}{% if v.fit.gap is not none %} · gap {{ v.fit.gap|points }}{% endif %}</span>
  </a>
  <a class="stat" href="#calibration">
    <span class="k">Calibration</span>
    {% if v.calibration %}<span class="big {{ 'bad' if v.calibration.bad }}">{{ v.calibration.word }}</span>
    <span class="sub">ECE {{ v.calibration.ece|num(3) }} (limit {{ v.calibration.limit|num(3) }}){% if v.calibration.direction %} · {{ v.calibration.direction }}{% endif %}</span>
    {% else %}<span class="big">—</span>{% endif %}
  </a>
  <a class="stat" href="#shortcuts">
    <span class="k">Shortcuts</span><span class="big {{ 'bad' if v.shortcut.state == 'fail' else 'warn' if v.shortcut.state == 'attention' }}">{{ v.shortcut.word }}</span>
    <span class="sub">{{ v.shortcut.detail }}</span>
  </a>
  <a class="stat" href="#performance">
    <span class="k">Weakest classes</span>
    {% if v.weakest %}<span class="sub">{% for w in v.weakest %}<b>{{ w.cls }}</b> {{ w.recall|pct(0) }} recall{% if w.support %} ({{ w.support }} images){% endif %}{{ " · " if not loop.last }}{% endfor %}</span>
    {% else %}<span class="sub">every class recognised perfectly</span>{% endif %}
    <span class="k">Top confusions</span>
    {% if v.confusions %}<span class="sub">{% for c in v.confusions %}{{ c.true }} → {{ c.pred }} ×{{ c.count }}{{ " · " if not loop.last }}{% endfor %}</span>
    {% else %}<span class="sub">none</span>{% endif %}
  </a>
  <a class="stat wide" href="#coverage">
    <span class="k">What was checked</span>
    {% for line in v.coverage %}<span class="sub">{{ line }}</span>{% else %}<span class="sub">nothing ran</span>{% endfor %}
  </a>
  <a class="stat" href="#findings">
    <span class="k">Findings</span>
    <span class="sub">{{ m.badge(v.verdict.counts.error ~ " error" ~ ("s" if v.verdict.counts.error != 1 else ""), "error" if v.verdict.counts.error else "muted") }}
    {{ m.badge(v.verdict.counts.warning ~ " warning" ~ ("s" if v.verdict.counts.warning != 1 else ""), "warning" if v.verdict.counts.warning else "muted") }}
    {{ m.badge(v.verdict.counts.info ~ " info", "muted") }}</span>
    <span class="sub">{{ v.verdict.caveats }} explainer caveat{{ "s" if v.verdict.caveats != 1 }}</span>
  </a>
</div>"""

    def value(self, page: Page) -> dict[str, Any]:
        r = page.r
        v = verdict(r)
        head = headline(r)
        split = head["split"]
        earlier = [e.result for e in page.earlier if e.result is not None]
        approved = next((o for o in earlier if decision_of(page, o.id) == "approve"), None)
        changes = [c for c in (accuracy_change(r, earlier[0] if earlier else None, "previous audit"),
                               accuracy_change(r, approved, "last approved")) if c]
        if len(changes) == 2 and changes[0]["id"] == changes[1]["id"]:
            changes = [{**changes[0], "label": "previous audit, the last approved"}]
        decision = decision_of(page, r.id)
        state = review_state(decision, release=is_release_audit(r))
        who = when = None
        if page.app and page.app.get("history"):
            last = page.app["history"][-1]
            who, when = getattr(last, "reviewer", None), str(getattr(last, "created", ""))[:16].replace("T", " ")
        elif page.review:
            who, when = page.review.get("reviewer"), str(page.review.get("created") or "")[:16].replace("T", " ")
        train = r.metrics.get("train")
        gap = r.fit.gap.get("accuracy")
        return {
            "verdict": {"state": v.state, "label": v.label, "meaning": v.meaning, "reasons": v.reasons,
                        "counts": v.counts, "caveats": v.caveats},
            "head": head,
            "full": ({"accuracy": r.metrics_full[split].accuracy,
                      "outputs": (r.class_map or {}).get("model_outputs") if isinstance(r.class_map, Mapping) else None}
                     if split in r.metrics_full else None),
            "changes": changes,
            "fit": {"verdict": r.fit.verdict, "train": train.accuracy if train else None,
                    "gap": gap if isinstance(gap, (int, float)) else None},
            "calibration": calibration_state(r, split),
            "shortcut": shortcut_state(r),
            "weakest": weakest_classes(r, split, page),
            "confusions": top_confusions(r, split, page),
            "coverage": coverage_summary(r),
            "review": {"state": state, "label": REVIEW_LABELS.get(state, state), "who": who or None, "when": when or None},
        }
