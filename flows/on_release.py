"""Flow `imaudit-on-release`: audit a model release when it is announced.

Deployed as `audit-on-release` (prefect.yaml), triggered by the event
`imaudit.model.released`; the trigger fills ``ref`` and ``dataset`` from the
event's payload. Whoever can send an event chooses them, so the model must be a
registered release and the dataset a builtin set, the release's own, or a path
under the deployment's ``dataset_roots`` (or IMAUDIT_DATASET_ROOTS);
anything else fails the run as bad input (imaudit.audits.confine).
``overrides`` holds further AuditSpec fields (methods, samples, thresholds,
...) set on the deployment. The run is named after the release
(``audit-digits-net@3``); when it fails, a failure record goes to the report
store and ``imaudit.audit.failed`` is emitted (flows/presence.py).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed, State

from imaudit.audits.confine import event_refs, roots_from
from imaudit.flows import presence, results
from imaudit.flows.audit import FLOW_TIMEOUT_S, audit_spec, run_audit


def _run_name() -> str:
    from prefect.runtime import flow_run

    return presence.run_name(str(flow_run.parameters.get("ref", "model")))


@flow(name="imaudit-on-release", flow_run_name=_run_name, log_prints=True, timeout_seconds=FLOW_TIMEOUT_S,
      persist_result=True, result_storage=results.storage_ref(),
      on_failure=[presence.record_failure], on_crashed=[presence.record_failure])
def on_release(ref: str, dataset: str | None = None, overrides: dict[str, Any] | None = None,
               trigger: str = "release", dataset_roots: list[str] | None = None) -> str | State:
    """Audit release ``ref`` (release:NAME@VERSION) against ``dataset`` (default: the release's own).

    ``trigger`` says why (release, schedule, manual): the scheduled deployment's fan-out runs this flow too.
    The refs are checked before anything is read (imaudit.audits.confine.event_refs): a refused one
    fails the run as bad input, with its failure record and event. A failed audit fails this run with
    the audit's error (its hooks record it).
    """
    # First, before anything is read: an event without a dataset renders the template as "" or "None"
    # (the release's own, None); any other dataset must lie under the deployment's roots.
    ref, dataset = event_refs(ref, dataset, roots_from(dataset_roots))
    presence.tag_this_run(ref, trigger)
    spec = audit_spec(ref, dataset, overrides)
    get_run_logger().info("%s audit of %s on %s", trigger, ref, spec.dataset or "its dataset")
    try:
        return str(run_audit(spec, trigger))
    except TimeoutError:
        raise  # this run's own timeout: Prefect makes it TimedOut
    except Exception as exc:  # noqa: BLE001 - not swallowed: the run fails with it as its data
        # The audit subflow already logged the traceback; raising it again here would log it a
        # second time in this run's log (Prefect logs every flow's exception where it leaves the flow).
        return Failed(message=f"{type(exc).__name__}: {exc}", data=exc)
