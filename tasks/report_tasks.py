"""Report writing steps of the flow: report.html, publishing to the shared store, the store index."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock
from prefect import task

from imaudit.audits.result import AuditResult
from imaudit.reports import index, published, render
from imaudit.tasks.policies import COMPUTE, IO


@task(name="write-report", **COMPUTE)
def write_report(result: AuditResult, work: Path) -> str:
    """audit.json and report.html into the (still temporary) audit folder."""
    result.write(work)
    return str(render.render_report(result, work))


@task(name="publish-audit", **IO)
def publish_audit(folder: Path) -> str | None:
    """Copy the finished audit folder to the shared store (audit.json last); its report's URL, or None."""
    return published.publish_audit(folder)


@task(name="refresh-index", **IO)
def refresh_index(store: Path | None = None) -> str:
    """Rebuild index.html of ``store`` (default: the report store, the shared one's mirror when there is one).

    build_index writes atomically; the lock makes concurrent audits finishing
    together rebuild one after another, so the last rebuild sees every audit.
    With a shared store the rebuilt page is uploaded (imaudit.reports.published).
    """
    shared = store is None and published.shared_reports() is not None
    store = Path(store) if store is not None else published.readable_store()
    store.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store / ".index.lock"), timeout=300):
        page = index.build_index(store)
    if shared:
        published.publish_index(page)
    return str(page)
