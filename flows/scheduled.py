"""Flow `imaudit-scheduled`: re-audit the latest release of every registered model, one child run each.

Deployed as `scheduled-audit` (prefect.yaml) with a named cron schedule. For
each model it starts a run of the `audit-model` deployment (``run_deployment``)
with the release's ref and dataset, so every audit has its own flow run, state,
timeout, logs, artifacts and worker slot. The parent waits for all of them
(``child_timeout_s`` in all) and ends Failed, naming the failed models, when
any child did not complete; its result (model -> child run, state, error) is
persisted (on failure as ``AuditsFailed.outcome``); the children's reports are in the store. ``deployment=None`` audits
in this process instead, as subflows one after another (no workers needed).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.client.orchestration import get_client
from prefect.states import Completed, Failed, State

from imaudit.flows import presence, results
from imaudit.flows.audit import FLOW_TIMEOUT_S, audit_spec, run_audit
from imaudit.models import Registry

AUDIT_DEPLOYMENT = "imaudit-on-release/audit-model"
TRIGGER = "schedule"


@flow(name="imaudit-scheduled", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S + 600,
      persist_result=True, result_storage=results.storage_ref())
def scheduled_audit(overrides: dict[str, Any] | None = None, models: list[str] | None = None,
                    deployment: str | None = AUDIT_DEPLOYMENT, child_timeout_s: float = FLOW_TIMEOUT_S) -> State:
    """Audit the latest release of each model (all registered, or ``models``), one child run per model."""
    log = get_run_logger()
    reg = Registry()
    names = models or reg.models()
    log.info("auditing the latest release of %d model(s): %s", len(names), ", ".join(names) or "none")
    if deployment is None:
        outcome = {name: _audit_here(reg, name, overrides) for name in names}
    else:
        children = {name: _start_child(reg, name, overrides, deployment) for name in names}
        deadline = time.monotonic() + child_timeout_s
        outcome = {name: _finish_child(child, deadline) for name, child in children.items()}
    return _verdict(outcome)


def _start_child(reg: Registry, name: str, overrides: dict[str, Any] | None, deployment: str) -> FlowRun | str:
    """Start (not wait for) the audit of ``name``'s latest release; an error text when it cannot start."""
    try:
        manifest = reg.latest(name)
    except Exception as e:  # noqa: BLE001 - one model's bad registry entry is reported; the rest are audited
        return f"{type(e).__name__}: {e}"
    return run_deployment(
        deployment, timeout=0, as_subflow=True,
        parameters={"ref": manifest.ref, "dataset": manifest.dataset, "overrides": overrides or {}, "trigger": TRIGGER},
        flow_run_name=presence.run_name(manifest.ref), tags=presence.run_tags(manifest.ref, TRIGGER),
    )


def _finish_child(child: FlowRun | str, deadline: float) -> dict[str, Any]:
    """Wait for a child run (until ``deadline``); its ref, state, run name and id, and error."""
    if isinstance(child, str):
        return {"state": "Failed", "error": child}
    run = _wait(child, deadline)
    if run is None:
        return {"ref": child.parameters.get("ref"), "flow_run": child.name, "flow_run_id": str(child.id),
                "state": "TimedOut", "error": "still running when the parent's time for its children ran out"}
    out = {"ref": child.parameters.get("ref"), "flow_run": run.name, "flow_run_id": str(run.id),
           "state": run.state.name if run.state else "Unknown"}
    if run.state is None or not run.state.is_completed():
        out["error"] = (run.state.message if run.state else None) or "no final state"
    return out


def _wait(child: FlowRun, deadline: float, poll_s: float = 2.0) -> FlowRun | None:
    """The child run once it is final, or None at ``deadline`` (prefect.flow_runs.wait_for_flow_run is async-only)."""
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(child.id)
            if run.state is not None and run.state.is_final():
                return run
            if time.monotonic() > deadline:
                return None
            time.sleep(poll_s)


def _audit_here(reg: Registry, name: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Audit ``name``'s latest release in this process (a subflow); a failure is recorded, not raised."""
    try:
        manifest = reg.latest(name)
        folder = run_audit(audit_spec(manifest.ref, manifest.dataset, overrides), TRIGGER)
        return {"ref": manifest.ref, "state": "Completed", "report": str(folder)}
    except Exception as e:  # noqa: BLE001 - one model's failure is recorded; the rest are still audited
        return {"state": "Failed", "error": f"{type(e).__name__}: {e}"}


class AuditsFailed(Exception):
    """The scheduled run's failure: the message names the models that did not complete; ``outcome`` holds every model's.

    A Failed state's data must be an exception (Prefect raises it where the
    run's result is read, e.g. when a worker's run ends); it carries the outcome
    so the persisted result still says which child run did what.
    """

    def __init__(self, message: str, outcome: dict[str, dict[str, Any]]) -> None:
        super().__init__(message, outcome)  # both in args: the exception pickles (persisted result)
        self.message = message
        self.outcome = outcome

    def __str__(self) -> str:
        return self.message


def _verdict(outcome: dict[str, dict[str, Any]]) -> State:
    """Completed when every child completed; Failed naming the models that did not, with the outcome as data."""
    log = get_run_logger()
    failed = {name: o for name, o in outcome.items() if o["state"] != "Completed"}
    for name, o in failed.items():
        log.error("audit of %s: %s (%s)", name, o["state"], o.get("error"))
    if failed:
        names = ", ".join(f"{name} ({o['state']})" for name, o in failed.items())
        message = f"{len(failed)} of {len(outcome)} audits did not complete: {names}"
        return Failed(message=message, data=AuditsFailed(message, outcome))
    log.info("audited %d model(s)", len(outcome))
    return Completed(message=f"{len(outcome)} audits completed", data=outcome)
