"""What an audit shows in Prefect: run names, tags, artifacts, events and failure records.

- Flow runs are named after what they audit (``audit-digits-net@3``) and tagged
  ``imaudit``, ``model:<name>`` and ``trigger:<release|schedule|manual>``.
- Each audit leaves three artifacts under keys of its own model, so Prefect's
  artifact page keeps one history per model: a markdown summary
  (``imaudit-<model>``), a link to the report (``imaudit-<model>-report``; the
  review app's page when ``IMAUDIT_REVIEW_URL`` is set, else the report's URL in
  the store) and a table of key metrics (``imaudit-<model>-metrics``).
- Each audit ends with a Prefect event, ``imaudit.audit.completed`` (verdict,
  gates, report link) or ``imaudit.audit.failed`` (error, flow-run link), about
  the resource ``imaudit.audit.<model>``: automations (notifications) hang on it.
- A failed deployment run writes a failure record into the report store
  (imaudit.reports.failures), which the index lists, with what the CLI's exit
  code would say: "bad input" (2) or "could not complete" (3). An audit whose
  required stage failed fails its run (AuditFailed), so it is recorded too and
  never announced as ``imaudit.audit.completed``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.events import emit_event
from prefect.logging.loggers import flow_run_logger
from prefect.settings import PREFECT_UI_URL
from prefect.states import State

from imaudit import paths
from imaudit.exits import OUTCOME, code_of_error
from imaudit.io import text_safe
from imaudit.audits.result import AuditResult
from imaudit.audits.verdict import gate_line, verdict
from imaudit.reports.failures import FailureRecord, record_path
from imaudit.reports.index import key_metrics, model_identity
from imaudit.reports.published import publish_failure

EVENT_COMPLETED = "imaudit.audit.completed"
EVENT_FAILED = "imaudit.audit.failed"
RESOURCE_PREFIX = "imaudit.audit."
REVIEW_URL_ENV = "IMAUDIT_REVIEW_URL"
TRIGGERS = ("release", "schedule", "manual")


# --- names ---------------------------------------------------------------------------------

def model_name_version(ref: str) -> tuple[str, str | None]:
    """(name, version) of a model ref: a release's NAME and VERSION, else the ref's last path part."""
    scheme, _, value = ref.partition(":")
    if scheme == "release":
        name, _, version = value.partition("@")
        return name, (version or "latest")
    tail = re.split(r"[/\\]", value.split("?", 1)[0].rstrip("/"))[-1] or ref
    return tail, None


def model_label(ref: str) -> str:
    """``digits-net@3`` for ``release:digits-net@3``; the model's file or architecture name otherwise."""
    name, version = model_name_version(ref)
    label = f"{name}@{version}" if version else name
    return re.sub(r"[^A-Za-z0-9._@+-]+", "-", label).strip("-") or "model"


def run_name(ref: str) -> str:
    return f"audit-{model_label(ref)}"


def run_tags(ref: str, trigger: str) -> list[str]:
    return ["imaudit", f"model:{model_name_version(ref)[0]}", f"trigger:{trigger}"]


def tag_this_run(ref: str, trigger: str) -> None:
    """Add the model and trigger tags to the running flow run (runs made by a trigger carry only the deployment's)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        client.update_flow_run(run.id, tags=sorted(set(run.tags) | set(run_tags(ref, trigger))))


def artifact_key(ref: str, suffix: str = "") -> str:
    """Prefect artifact keys hold lowercase letters, digits and dashes; one key family per model."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_name_version(ref)[0].lower()).strip("-") or "model"
    return f"imaudit-{slug}{'-' + suffix if suffix else ''}"


def flow_run_url(flow_run_id: Any) -> str | None:
    """The flow run's page in Prefect's UI, when the UI's URL is known."""
    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui and flow_run_id else None


def report_link(audit_id: str, folder: Path, published: str | None) -> str:
    """Where a person opens the report: the review app, else the shared store, else the local file."""
    base = os.environ.get(REVIEW_URL_ENV, "").strip().rstrip("/")
    if base:
        return f"{base}/audits/{audit_id}"
    return published or (Path(folder) / "report.html").resolve().as_uri()


# --- artifacts and events ------------------------------------------------------------------

def _verdict_payload(result: AuditResult) -> dict[str, Any]:
    v = verdict(result)  # the same word the report's banner, the index and the CLI print
    return {"verdict": v.state, "headline": v.line(), "status": result.status, "fit": result.fit.verdict,
            "gates_passed": result.gates.passed, "findings": v.counts, "caveats": v.caveats}


def publish_artifacts(result: AuditResult, link: str) -> None:
    """The per-model summary, report link and metrics table of a finished audit."""
    ref = result.model.ref
    v = _verdict_payload(result)
    counts = ", ".join(f"{n} {sev}" for sev, n in v["findings"].items()) or "none"
    lines = [
        f"# {run_name(ref)}: {v['headline']}",
        f"- model `{ref}`, dataset `{result.dataset.ref}`",
        f"- status **{result.status}**, fit **{result.fit.verdict}**, {gate_line(result)}",
        f"- findings: {counts}",
    ]
    lines += [f"- [{f.severity}] `{f.code}`: {f.message}" for f in result.findings[:10]]
    lines.append(f"\n[Open the report]({link})")
    create_markdown_artifact(markdown="\n".join(lines), key=artifact_key(ref),
                             description=f"imaudit audit summary of {model_label(ref)}")
    create_link_artifact(link=link, link_text=f"report of {model_label(ref)}", key=artifact_key(ref, "report"),
                         description="the audit's report")
    create_table_artifact(table=metrics_table(result), key=artifact_key(ref, "metrics"),
                          description=f"key metrics of {model_label(ref)}")


def metrics_table(result: AuditResult) -> list[dict[str, Any]]:
    """Rows of (metric, value) a person reads at a glance: the headline split's numbers and the verdict."""
    km = key_metrics(result)
    v = _verdict_payload(result)
    rows: list[dict[str, Any]] = [
        {"metric": "verdict", "value": v["verdict"]},
        {"metric": "status", "value": result.status},
        # In words (gate_line): a bare true would read as "passed" for a Fail verdict when no gate was set.
        {"metric": "gate", "value": gate_line(result)},
        {"metric": "fit", "value": result.fit.verdict},
    ]
    for name in ("accuracy", "ece", "gap", "faithfulness"):
        value = km.get(name)
        rows.append({"metric": f"{name} ({km['split']})" if name in ("accuracy", "ece") else name,
                     "value": None if value is None else round(float(value), 4)})
    rows += [{"metric": f"{sev} findings", "value": n} for sev, n in v["findings"].items()]
    return rows


def _resource(ref: str, trigger: str) -> dict[str, str]:
    name, version = model_name_version(ref)
    return {"prefect.resource.id": f"{RESOURCE_PREFIX}{name}", "prefect.resource.name": model_label(ref),
            "imaudit.model": name, "imaudit.version": version or "", "imaudit.trigger": trigger}


def emit_completed(result: AuditResult, link: str, trigger: str) -> None:
    """``imaudit.audit.completed`` with the verdict, for automations."""
    emit_event(event=EVENT_COMPLETED, resource=_resource(result.model.ref, trigger),
               payload={"audit_id": result.id, "ref": result.model.ref, "dataset": result.dataset.ref,
                        "report": link, **_verdict_payload(result)})


def emit_failed(record: FailureRecord) -> None:
    """``imaudit.audit.failed`` with the error and the flow run's link."""
    emit_event(event=EVENT_FAILED, resource=_resource(record.model, record.trigger),
               payload=record.model_dump(mode="json"))


# --- failure hook of the deployment flows --------------------------------------------------

def _error_of(state: State) -> tuple[str, BaseException | None]:
    """The failed state's error as one text, and the exception itself when there is one."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - a result that cannot be read is itself the error to report
        exc = e
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}", exc
    return state.message or state.name or "failed", None


def record_failure(flow: Any, flow_run: FlowRun, state: State) -> None:
    """on_failure / on_crashed hook: a failure record in the report store and an ``imaudit.audit.failed`` event.

    Used by the flows that deployments run (one record per failed run); the
    parameters name the model (``ref``), dataset and trigger.
    """
    params = flow_run.parameters or {}
    store = paths.report_store()
    if record_path(store, str(flow_run.id)).is_file():
        return  # already recorded (on_failure and on_crashed for one run)
    error, exc = _error_of(state)
    code = code_of_error(exc)  # bad input (2) or could not complete (3), as the CLI would exit
    record = FailureRecord(
        id=str(flow_run.id), model=str(params.get("ref") or "unknown"), dataset=params.get("dataset") or None,
        trigger=str(params.get("trigger") or "manual"), state=state.name or state.type.value.title(),
        exit_code=int(code), outcome=OUTCOME[code],
        error=text_safe(" ".join(error.split()))[:2000], flow_run=flow_run.name, flow_run_url=flow_run_url(flow_run.id),
    )
    log = flow_run_logger(flow_run)
    try:
        publish_failure(store, record)
    except OSError as exc:  # the event below still tells; the record's absence is said in the log
        log.error("could not write the failure record of %s: %s", flow_run.name, exc)
    emit_failed(record)
    log.error("audit of %s %s: %s", record.model, record.state.lower(), record.error)
