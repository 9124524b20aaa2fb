"""index.html over the report store: every audit newest first, review decisions,
filters by model and verdict, and per-model trends across releases.

The page is rebuilt from the audits on disk each time (never appended to), so
it always agrees with the store; trends are inline SVG so the index is one file.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from filelock import FileLock, Timeout
from markupsafe import Markup

from imaudit.audits.result import AuditResult
from imaudit.errors import BadInputError, ImauditError
from imaudit.io import atomic_write_text
from imaudit.reports import figures as figs
from imaudit.reports.db import DatabaseProblem, open_existing
from imaudit.reports.decisions import Decision, DecisionLog
from imaudit.reports.identity import is_release_audit, model_identity, release_of
from imaudit.reports.failures import list_failures
from imaudit.reports.render import overall_verdict
from imaudit.reports.store import AuditEntry, list_audits
from imaudit.reports.templating import render

log = logging.getLogger(__name__)

TREND_METRICS = ("accuracy", "ece", "gap", "faithfulness")
PREFERRED_SPLITS = ("val", "valid", "validation", "test")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
    release: str | None = None
    # The newest decision on an OLDER audit of the same release: it applies to that audit, not this one.
    earlier_review: dict[str, Any] | None = None


def _review_of(entry: AuditEntry, decisions: Mapping[str, Decision]) -> dict[str, Any] | None:
    """The newest logged decision on this audit (a "review" claimed inside audit.json is never trusted)."""
    d = decisions.get(entry.id)
    if d is None:
        return None
    return {"decision": d.decision, "reviewer": d.reviewer, "comment": d.comment, "created": d.created,
            "audit_id": d.audit_id}


def _earlier_reviews(rows: list[IndexRow]) -> None:
    """Point each release audit at the newest decided older audit of the same release (rows newest first)."""
    decided: dict[str, dict[str, Any]] = {}  # release -> newest decision among the rows passed so far
    for row in reversed(rows):
        if row.release is None:
            continue
        row.earlier_review = decided.get(row.release)
        if row.review is not None:
            decided[row.release] = row.review


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
            pending=review is None and is_release_audit(r), href=href, release=release_of(r)))
    _earlier_reviews(rows)
    # "vs previous": the next older audit of the same model (rows are newest first; one pass from the oldest).
    older: dict[str, IndexRow] = {}
    for row in reversed(rows):
        if row.broken:
            continue
        prev = older.get(row.model)
        if prev is not None:
            row.previous = prev.id
            if app:
                row.compare = "/compare?" + urlencode({"a": prev.id, "b": row.id})
        older[row.model] = row
    return rows


@functools.lru_cache(maxsize=512)
def _trend_svg(labels: tuple[str, ...], series: tuple[tuple[str, tuple[Any, ...]], ...]) -> str:
    """figures.trend_svg memoised by the numbers it draws: a decision changes no trend, so pages reuse them."""
    return figs.trend_svg(list(labels), {name: list(values) for name, values in series})


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
        svg = _trend_svg(tuple(labels), (("accuracy", tuple(series["accuracy"])), ("ECE", tuple(series["ece"])),
                                         ("train/val gap", tuple(series["gap"])),
                                         ("faithfulness", tuple(series["faithfulness"]))))
        out.append({"model": model, "svg": Markup(svg),  # SVG from matplotlib: it escapes the text it writes
                    "points": [(lbl, r.id, [r.metrics.get(k) for k in TREND_METRICS])
                               for lbl, r in zip(labels, series_rows)]})
    return out


def index_html(store: Path, decisions: Mapping[str, Decision] | None = None, *, app: bool = False,
               entries: list[AuditEntry] | None = None, db_problem: str | None = None, **page: Any) -> str:
    """The index page as HTML text (``app=True`` links into the review app instead of files).

    ``entries`` (default: read the store) lets the app pass its cached catalog;
    ``db_problem`` says on the page why decisions are missing; ``page`` holds the app's
    per-request template values (CSP nonce, user, CSRF token).
    """
    entries = list_audits(store) if entries is None else entries
    rows = index_rows(entries, decisions or {}, app=app)
    models = sorted({r.model for r in rows if not r.broken})
    verdicts = [v for v in ("pass", "warn", "fail", "broken") if any(r.verdict == v for r in rows)]
    return render("index.html", rows=rows, models=models, verdicts=verdicts, trends=trends(rows), app=app,
                  store=str(store), n_broken=sum(r.broken for r in rows), db_problem=db_problem, failures=list_failures(store),
                  n_pending=sum(r.pending for r in rows), metric_names=TREND_METRICS, **page)


def logged_decisions(store: Path, db_url: str | None = None) -> tuple[dict[str, Decision], str | None]:
    """(newest decision per audit, None), or ({}, why) when the review database cannot be read.

    An audit never fails because of the review database: its index is written
    without decisions and says why.
    """
    try:
        db = open_existing(store, db_url)
        if db is None:
            return {}, None
        try:
            return DecisionLog(db).latest(), None
        finally:
            db.dispose()
    except (DatabaseProblem, BadInputError) as exc:
        log.warning("index of %s without review decisions: %s", store, exc)
        return {}, str(exc)


def build_index(store: Path, db_url: str | None = None) -> Path:
    """Write ``store/index.html`` atomically from the audits on disk, with review decisions when a DB exists."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    decisions, problem = logged_decisions(store, db_url)
    return atomic_write_text(store / "index.html", index_html(store, decisions, db_problem=problem))


class IndexRefresher:
    """Rebuilds ``store/index.html`` in a background thread, off the request path.

    ``request()`` only marks the index stale; the thread rebuilds once per burst of
    decisions (under the same file lock as the audit flow's refresh), from the app's
    cached catalog and decision log.
    """

    def __init__(self, store: Path, write: Callable[[], str]) -> None:
        self.store = Path(store)
        self._write = write
        self._wake = threading.Event()
        self._dirty = False
        self._stop = False
        self.rebuilds = 0
        self._thread = threading.Thread(target=self._run, name="imaudit-index", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Mark the static index stale (returns at once)."""
        self._dirty = True
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._dirty:
                self._dirty = False
                self._rebuild()
            if self._stop:
                return

    def _rebuild(self) -> None:
        try:
            with FileLock(str(self.store / ".index.lock"), timeout=60):
                atomic_write_text(self.store / "index.html", self._write())
            self.rebuilds += 1
        except (OSError, Timeout, ImauditError) as exc:  # a read-only store still records decisions
            log.warning("could not refresh %s: %s", self.store / "index.html", exc)

    def close(self, timeout: float = 60.0) -> None:
        """Finish a pending rebuild, then stop the thread."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
