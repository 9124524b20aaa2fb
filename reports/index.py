"""index.html over the report store: every audit newest first, review decisions,
filters by model and verdict, and per-model trends across releases.

The page is rebuilt from the audits on disk each time (never appended to), so
it always agrees with the store; trends are inline SVG so the index is one file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup

from imaudit.audits.result import AuditResult
from imaudit.io import atomic_write_text
from imaudit.reports import figures as figs
from imaudit.reports.db import Decision, open_existing
from imaudit.reports.failures import list_failures
from imaudit.reports.render import overall_verdict
from imaudit.reports.store import AuditEntry, list_audits
from imaudit.reports.templating import render

TREND_METRICS = ("accuracy", "ece", "gap", "faithfulness")
PREFERRED_SPLITS = ("val", "valid", "validation", "test")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def model_identity(r: AuditResult) -> tuple[str, str | None]:
    """(model name, version): the release's name and version, else the model ref."""
    rel = r.model.release if isinstance(r.model.release, Mapping) else {}
    name, version = rel.get("name"), rel.get("version")
    ref = r.model.ref
    if ref.startswith("release:") and (not name or not version):
        body = ref[len("release:"):]
        n, _, v = body.partition("@")
        name, version = name or n, version or (v or None)
    return (str(name) if name else ref), (str(version) if version else None)


def is_release_audit(r: AuditResult) -> bool:
    return bool(r.model.release) or r.model.ref.startswith("release:")


def headline_split(r: AuditResult) -> str | None:
    """The split whose metrics stand for the audit: val (or test), else the first one."""
    for s in PREFERRED_SPLITS:
        if s in r.metrics:
            return s
    return next(iter(r.metrics), None)


def faithfulness(r: AuditResult) -> float | None:
    """Mean over methods of insertion AUC minus deletion AUC (higher = explanations track the model).

    A method's own ``faithfulness`` score is used when its producer stored one.
    """
    scores = []
    for method in set(r.explanations) | {k for k in r.quality if k != "agreement"}:
        q: dict[str, Any] = {}
        if method in r.explanations:
            q.update(r.explanations[method].quality)
        if isinstance(r.quality.get(method), Mapping):
            q.update(r.quality[method])
        if _num(q.get("faithfulness")):
            scores.append(float(q["faithfulness"]))
        elif _num(q.get("insertion_auc")) and _num(q.get("deletion_auc")):
            scores.append(float(q["insertion_auc"]) - float(q["deletion_auc"]))
    return sum(scores) / len(scores) if scores else None


def key_metrics(r: AuditResult) -> dict[str, float | None]:
    """Accuracy and ECE of the headline split, train/val accuracy gap, faithfulness."""
    split = headline_split(r)
    m = r.metrics.get(split) if split else None
    gap = r.fit.gap.get("accuracy")
    if not _num(gap):
        gap = next((v for v in r.fit.gap.values() if _num(v)), None)
    return {"accuracy": m.accuracy if m else None, "ece": m.ece if m else None, "gap": gap,
            "faithfulness": faithfulness(r), "split": split}


@dataclass
class IndexRow:
    id: str
    broken: bool
    error: str | None = None
    model: str = "—"
    version: str | None = None
    dataset: str = "—"
    created: str = ""
    verdict: str = "broken"
    headline: str = "broken"
    fit: str = "—"
    gates_passed: bool | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, int] = field(default_factory=dict)
    review: dict[str, Any] | None = None
    pending: bool = False
    href: str | None = None
    previous: str | None = None
    compare: str | None = None


def _review_of(entry: AuditEntry, decisions: Mapping[str, Decision]) -> dict[str, Any] | None:
    if entry.id in decisions:
        d = decisions[entry.id]
        return {"decision": d.decision, "reviewer": d.reviewer, "comment": d.comment, "created": d.created}
    extra = (entry.result.model_extra or {}).get("review") if entry.result else None
    if isinstance(extra, Mapping) and extra.get("decision"):
        return {"decision": str(extra.get("decision")), "reviewer": str(extra.get("reviewer") or ""),
                "comment": str(extra.get("comment") or ""), "created": str(extra.get("created") or "")}
    return None


def index_rows(entries: list[AuditEntry], decisions: Mapping[str, Decision], *, app: bool) -> list[IndexRow]:
    """One row per audit folder (newest first), broken folders included."""
    rows = []
    for e in entries:
        if e.result is None:
            rows.append(IndexRow(id=e.id, broken=True, error=e.error, created=e.sort_key))
            continue
        r = e.result
        name, version = model_identity(r)
        v = overall_verdict(r)
        review = _review_of(e, decisions)
        if app:
            href = f"/audits/{quote(e.id, safe='')}"
        else:
            href = f"{quote(e.id, safe='')}/report.html" if (e.folder / "report.html").is_file() else None
        rows.append(IndexRow(
            id=e.id, broken=False, model=name, version=version, dataset=r.dataset.ref, created=r.created,
            verdict=v["state"], headline=v["headline"], fit=r.fit.verdict, gates_passed=r.gates.passed,
            metrics=key_metrics(r), findings=v["counts"], review=review,
            pending=review is None and is_release_audit(r), href=href))
    # "vs previous": the next older audit of the same model (rows are newest first).
    for i, row in enumerate(rows):
        if row.broken:
            continue
        prev = next((o for o in rows[i + 1:] if not o.broken and o.model == row.model), None)
        if prev is not None:
            row.previous = prev.id
            if app:
                row.compare = "/compare?" + urlencode({"a": prev.id, "b": row.id})
    return rows


def trends(rows: list[IndexRow]) -> list[dict[str, Any]]:
    """Per model with two or more audits: key metrics across its releases, oldest first, as inline SVG."""
    by_model: dict[str, list[IndexRow]] = {}
    for row in rows:
        if not row.broken:
            by_model.setdefault(row.model, []).append(row)
    out = []
    for model in sorted(by_model):
        series_rows = sorted(by_model[model], key=lambda r: r.created)
        if len(series_rows) < 2:
            continue
        labels = [r.version or r.created[:10] for r in series_rows]
        series = {k: [r.metrics.get(k) for r in series_rows] for k in TREND_METRICS}
        svg = figs.trend_svg(labels, {"accuracy": series["accuracy"], "ECE": series["ece"],
                                      "train/val gap": series["gap"], "faithfulness": series["faithfulness"]})
        out.append({"model": model, "svg": Markup(svg),  # SVG from matplotlib: it escapes the text it writes
                    "points": [(lbl, r.id, [r.metrics.get(k) for k in TREND_METRICS])
                               for lbl, r in zip(labels, series_rows)]})
    return out


def index_html(store: Path, decisions: Mapping[str, Decision] | None = None, *, app: bool = False) -> str:
    """The index page as HTML text (``app=True`` links into the review app instead of files)."""
    entries = list_audits(store)
    rows = index_rows(entries, decisions or {}, app=app)
    models = sorted({r.model for r in rows if not r.broken})
    verdicts = [v for v in ("pass", "warn", "fail", "broken") if any(r.verdict == v for r in rows)]
    return render("index.html", rows=rows, models=models, verdicts=verdicts, trends=trends(rows), app=app,
                  store=str(store), n_broken=sum(r.broken for r in rows), failures=list_failures(store),
                  n_pending=sum(r.pending for r in rows), metric_names=TREND_METRICS)


def build_index(store: Path, db_url: str | None = None) -> Path:
    """Write ``store/index.html`` atomically from the audits on disk, with review decisions when a DB exists."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    decisions: dict[str, Decision] = {}
    reviews = open_existing(store, db_url)
    if reviews is not None:
        try:
            decisions = reviews.latest()
        finally:
            reviews.dispose()
    return atomic_write_text(store / "index.html", index_html(store, decisions))
