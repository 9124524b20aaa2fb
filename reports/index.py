"""index.html over the report store: every audit newest first, with its verdict, settings,
review state and key numbers; filters and sortable columns; per-model trends.

The page is rebuilt from the audits on disk each time (never appended to), so it
always agrees with the store. A newer audit of the same model version supersedes
older ones for review, so a release shows one "pending review". Trends only join
audits whose settings make a number comparable (reports/history.py), and they are
inline SVG so the index stays one file.
"""

from __future__ import annotations

import base64
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

from imaudit.audits.result import AuditResult
from imaudit.audits.verdict import LABELS, REVIEW_LABELS, headline_split, review_state, verdict
from imaudit.errors import BadInputError, ImauditError
from imaudit.io import atomic_write_text
from imaudit.reports import figures as figs
from imaudit.reports.db import DatabaseProblem, open_existing
from imaudit.reports.decisions import Decision, DecisionLog
from imaudit.reports.history import comparable, samples_text, settings_of
from imaudit.reports.identity import is_release_audit, model_identity, release_of
from imaudit.reports.failures import list_failures
from imaudit.reports.store import AuditEntry, list_audits
from imaudit.reports.templating import render

log = logging.getLogger(__name__)

TREND_METRICS = ("accuracy", "ece", "gap", "faithfulness")
TREND_TITLES = {"accuracy": "accuracy", "ece": "ECE", "gap": "train/val gap", "faithfulness": "faithfulness"}
TREND_LIMITS = {"accuracy": (0.0, 1.0), "ECE": (0.0, 1.0)}  # by title: the bounds a metric cannot leave

__all__ = ["IndexRefresher", "build_index", "faithfulness", "headline_split", "index_html", "index_rows", "key_metrics",
           "logged_decisions", "model_identity"]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def faithfulness(r: AuditResult) -> float | None:
    """Mean over methods of insertion AUC minus deletion AUC (higher = explanations track the model).

    A method's own ``faithfulness`` score is used when its producer stored one.
    """
    scores = []
    for method in set(r.explanations) | {k for k in r.quality if k not in ("agreement", "faithfulness", "sanity", "localisation")}:
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


def key_metrics(r: AuditResult) -> dict[str, Any]:
    """Accuracy, n and ECE of the headline split, train/val accuracy gap, faithfulness."""
    split = headline_split(r)
    m = r.metrics.get(split) if split else None
    gap = r.fit.gap.get("accuracy")
    if not _num(gap):
        gap = next((v for v in r.fit.gap.values() if _num(v)), None)
    return {"accuracy": m.accuracy if m else None, "n": m.n if m else None, "ece": m.ece if m else None, "gap": gap,
            "faithfulness": faithfulness(r), "split": split}


def settings_text(r: AuditResult) -> str:
    """The audit's explanation settings in a few words: each method with the images it explained
    (what the defaults chose when no --samples was given), or the methods and samples asked for."""
    s = settings_of(r)
    methods = s.get("methods") or []
    if not methods:
        return "no explanations"
    per = (r.sample or {}).get("per_method") if isinstance(r.sample, Mapping) else None
    if isinstance(per, Mapping) and per:
        asked = "default samples" if s.get("samples") is None else f"samples {s['samples']}"
        return ", ".join(f"{m} {n}" for m, n in per.items()) + f" images ({asked})"
    return f"{', '.join(methods)} · samples {samples_text(r)}"


@dataclass
class IndexRow:
    id: str
    broken: bool
    error: str | None = None
    model: str = "—"
    version: str | None = None
    dataset: str = "—"
    created: str = ""
    status: str = "broken"
    verdict: str = "broken"
    headline: str = "Broken"
    reasons: list[str] = field(default_factory=list)
    fit: str = "—"
    gates_passed: bool | None = None
    settings: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, int] = field(default_factory=dict)
    caveats: int = 0
    review: dict[str, Any] | None = None
    review_state: str = "none"
    review_label: str = ""
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


def _failure(r: AuditResult) -> str | None:
    """The first error of an audit that did not complete, in one line."""
    if r.status == "complete" and not r.errors:
        return None
    e = r.errors[0] if r.errors else {}
    return f"{e.get('stage', 'stage')} failed: {e.get('error', '')}".strip() if e else f"status {r.status}"


def index_rows(entries: list[AuditEntry], decisions: Mapping[str, Decision], *, app: bool) -> list[IndexRow]:
    """One row per audit folder (newest first), broken folders included."""
    rows: list[IndexRow] = []
    newest_of_release: set[tuple[str, str | None]] = set()
    for e in entries:
        if e.result is None:
            rows.append(IndexRow(id=e.id, broken=True, error=e.error, created=e.sort_key, headline=LABELS.get("broken", "Broken")))
            continue
        r = e.result
        name, version = model_identity(r)
        v = verdict(r)
        review = _review_of(e, decisions)
        release = is_release_audit(r)
        # Entries are newest first: the first audit of a release seen is the one to review.
        superseded = release and (name, version) in newest_of_release
        if release:
            newest_of_release.add((name, version))
        state = review_state(review["decision"] if review else None, release=release, superseded=superseded)
        if app:
            href = f"/audits/{quote(e.id, safe='')}"
        else:
            href = f"{quote(e.id, safe='')}/report.html" if (e.folder / "report.html").is_file() else None
        rows.append(IndexRow(
            id=e.id, broken=False, error=_failure(r), model=name, version=version, dataset=r.dataset.ref,
            created=r.created, status=str(r.status), verdict=v.state, headline=v.label, reasons=v.reasons,
            fit=r.fit.verdict, gates_passed=r.gates.passed, settings=settings_text(r), metrics=key_metrics(r),
            findings=v.counts, caveats=v.caveats, review=review, review_state=state,
            review_label=REVIEW_LABELS.get(state, state), pending=state == "pending", href=href,
            release=release_of(r)))
    _earlier_reviews(rows)
    # "vs previous": the next older audit of the same model (rows are newest first; one pass from the oldest).
    results = {e.id: e.result for e in entries if e.result is not None}
    older: dict[str, IndexRow] = {}
    for row in reversed(rows):
        if row.broken:
            continue
        prev = older.get(row.model)
        if prev is not None:
            row.previous = prev.id
            if app:
                row.compare = "/compare?" + urlencode({"a": prev.id, "b": row.id})
            if not comparable(results[prev.id], results[row.id], "faithfulness"):
                row.settings += " (settings differ from the previous audit)"
        older[row.model] = row
    return rows


@functools.lru_cache(maxsize=512)
def _trend_src(labels: tuple[str, ...], series: tuple[tuple[str, tuple[Any, ...]], ...]) -> str:
    """The trend figure as a data: URL, memoised by the numbers it draws (a decision changes no trend)."""
    png = figs.trend_png(list(labels), {name: list(values) for name, values in series}, TREND_LIMITS)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def trends(rows: list[IndexRow], results: Mapping[str, AuditResult]) -> list[dict[str, Any]]:
    """Per model with two or more audits: key metrics across audits, oldest first, as inline SVG.

    A metric's point is drawn only for audits whose settings make it comparable with the
    model's newest audit; the others are left out of that metric's line and counted.
    """
    by_model: dict[str, list[IndexRow]] = {}
    for row in rows:
        if not row.broken and row.status == "complete":
            by_model.setdefault(row.model, []).append(row)
    out = []
    for model in sorted(by_model):
        series_rows = sorted(by_model[model], key=lambda r: r.created)
        if len(series_rows) < 2:
            continue
        newest = results[series_rows[-1].id]
        labels = [r.version or r.created[:10] for r in series_rows]
        if len(set(labels)) < len(labels):  # several audits of one version: tell them apart by when
            one_day = len({r.created[:10] for r in series_rows}) == 1
            labels = [f"{lbl} {r.created[11:16] if one_day else r.created[5:10]}" for lbl, r in zip(labels, series_rows)]
        series: dict[str, list[float | None]] = {}
        left_out: dict[str, int] = {}
        for k in TREND_METRICS:
            ok = [comparable(results[r.id], newest, k) for r in series_rows]
            series[k] = [r.metrics.get(k) if c else None for r, c in zip(series_rows, ok)]
            left_out[k] = ok.count(False)
        drawn = {k: ys for k, ys in series.items() if sum(y is not None for y in ys) >= 2}
        if not drawn:
            continue
        src = _trend_src(tuple(labels), tuple((TREND_TITLES[k], tuple(ys)) for k, ys in drawn.items()))
        out.append({"model": model, "src": src,
                    "left_out": {TREND_TITLES[k]: n for k, n in left_out.items() if n},
                    "points": [(lbl, r.id, [series[k][i] for k in TREND_METRICS])
                               for i, (lbl, r) in enumerate(zip(labels, series_rows))]})
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
    results = {e.id: e.result for e in entries if e.result is not None}
    models = sorted({r.model for r in rows if not r.broken})
    verdicts = [(v, LABELS.get(v, "Broken")) for v in ("pass", "attention", "fail", "incomplete", "broken")
                if any(r.verdict == v for r in rows)]
    reviews = [(s, REVIEW_LABELS[s]) for s in REVIEW_LABELS if any(r.review_state == s for r in rows)]
    return render("index.html", rows=rows, models=models, verdicts=verdicts, reviews=reviews,
                  trends=trends(rows, results), app=app, store=str(store), n_broken=sum(r.broken for r in rows),
                  n_failed=sum(1 for r in rows if not r.broken and r.error), db_problem=db_problem, failures=list_failures(store),
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
