"""Flow `imaudit-on-release`: audit a model release when it is announced.

Deployed as `audit-on-release` (prefect.yaml), triggered by the event
`imaudit.model.released`; the trigger fills ``ref`` and ``dataset`` from the
event's payload. Whoever can send an event chooses them, so the model must be a
registered release and the dataset a builtin set, the release's own, or a path
under the deployment's ``dataset_roots`` (or IMAUDIT_DATASET_ROOTS);
anything else fails the run as bad input (imaudit.audits.confine).
``overrides`` holds further AuditSpec fields (methods, samples, thresholds,
...) set on the deployment.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from imaudit.audits.confine import event_refs, roots_from
from imaudit.flows.audit import FLOW_TIMEOUT_S, audit_spec, run_audit


@flow(name="imaudit-on-release", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S)
def on_release(
    ref: str, dataset: str | None = None, overrides: dict[str, Any] | None = None,
    dataset_roots: list[str] | None = None,
) -> str:
    """Audit release ``ref`` (release:NAME@VERSION) against ``dataset`` (default: the release's own)."""
    ref, dataset = event_refs(ref, dataset, roots_from(dataset_roots))
    spec = audit_spec(ref, dataset, overrides)
    get_run_logger().info("release %s announced: auditing it on %s", ref, spec.dataset or "its dataset")
    return str(run_audit(spec))
