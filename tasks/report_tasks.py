"""Report writing steps of the flow: report.html, the store index, a Prefect artifact."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock
from prefect import task
from prefect.artifacts import create_markdown_artifact

from imaudit.audits.result import AuditResult
from imaudit.reports import index, render
from imaudit.tasks.policies import COMPUTE, IO


@task(name="write-report", **COMPUTE)
def write_report(result: AuditResult, work: Path) -> str:
    """audit.json and report.html into the (still temporary) audit folder."""
    result.write(work)
    return str(render.render_report(result, work))


@task(name="refresh-index", **IO)
def refresh_index(store: Path) -> str:
    """Rebuild the store's index.html from the audits on disk.

    build_index writes atomically; the lock makes concurrent audits finishing
    together rebuild one after another, so the last rebuild sees every audit.
    """
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store / ".index.lock"), timeout=300):
        return str(index.build_index(store))


@task(name="publish-artifact", **COMPUTE)
def publish_artifact(result: AuditResult, folder: Path) -> None:
    """A markdown artifact in Prefect's UI with the verdict, gates and the report's path."""
    lines = [
        f"# imaudit: {result.model.ref}",
        f"- dataset: `{result.dataset.ref}`",
        f"- fit verdict: **{result.fit.verdict}**",
        f"- gates: **{'passed' if result.gates.passed else 'FAILED'}** ({result.gates.counts})",
    ]
    for split, m in result.metrics.items():
        acc = "n/a" if m.accuracy is None else f"{m.accuracy:.3f}"
        ece = "n/a" if m.ece is None else f"{m.ece:.3f}"
        lines.append(f"- {split}: accuracy {acc}, ECE {ece}, n={m.n}")
    for f in result.findings[:10]:
        lines.append(f"- [{f.severity}] `{f.code}`: {f.message}")
    lines.append(f"\nReport: `{Path(folder) / 'report.html'}`")
    create_markdown_artifact(markdown="\n".join(lines), key="imaudit-report", description="imaudit audit summary")
