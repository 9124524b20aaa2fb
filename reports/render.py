"""AuditResult -> report.html: the sections of reports/sections/ composed into one page.

The page opens offline: CSS and the one small script are inline, images are
files beside the report referenced by relative URL (figures/ is drawn here), and
nothing heavy (maps, predictions) is inlined, so a 1,000-image audit's report
stays a few MB. What each section shows is decided in its own module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imaudit.audits.result import AuditResult
from imaudit.audits.verdict import verdict
from imaudit.io import atomic_write_text
from imaudit.reports.history import model_identity
from imaudit.reports.identity import short_name
from imaudit.reports.page import Page
from imaudit.reports.store import AuditEntry
from imaudit.reports.sections import compose
from imaudit.reports.templating import render


def render_report(result: AuditResult, folder: Path, *, store: Path | None = None) -> Path:
    """Write ``folder/report.html`` (and its figures) for ``result``; returns the report path.

    ``store`` is where earlier audits of the same model are looked up (default: the folder's parent).
    """
    folder = Path(folder)
    html = report_html(result, folder, store=store)
    return atomic_write_text(folder / "report.html", html)


def report_html(result: AuditResult, folder: Path, *, base: str = "", redraw: bool = True,
                store: Path | None = None, review: Mapping[str, Any] | None = None,
                decisions: Mapping[str, Any] | None = None, entries: list[AuditEntry] | None = None,
                app: Mapping[str, Any] | None = None, template: str = "report.html", **extra: Any) -> str:
    """The report as HTML text.

    ``base`` prefixes every file URL (the app serves files under /audits/<id>/files/);
    ``redraw=False`` reuses figures already on disk and draws only missing ones;
    ``app`` (the review app) carries the review history, form state and messages;
    ``decisions`` maps audit ids to their latest review decision (default: the store's database);
    ``entries`` are the store's audits when the caller has them cached (default: read the store);
    ``extra`` goes to the page template (the app's CSP nonce, user and form token).
    """
    page = Page(result, Path(folder), base=base, redraw=redraw, store=store, review=review,
                decisions=decisions, entries=entries, app=app)
    sections = compose(page)
    name, version = model_identity(result)
    v = verdict(result)
    return render(template, r=result, sections=sections, model_name=name, model_version=version,
                  title=f"{short_name(name)}{' ' + version if version else ''} · audit {result.id}", verdict=v,
                  app=app is not None, **extra)
