"""Flow `imaudit-on-release`: audit a model release when it is announced.

Deployed as `audit-on-release` (prefect.yaml), triggered by the event
`imaudit.model.released`; the trigger fills ``ref`` and ``dataset`` from the
event's payload. ``overrides`` holds further AuditSpec fields (methods,
samples, thresholds, ...) set on the deployment.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from imaudit.flows.audit import FLOW_TIMEOUT_S, audit_spec, run_audit


@flow(name="imaudit-on-release", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S)
def on_release(ref: str, dataset: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    """Audit release ``ref`` (release:NAME@VERSION) against ``dataset`` (default: the release's own)."""
    # An event without a dataset renders the template as "" or "None": use the release's own.
    spec = audit_spec(ref, dataset if dataset not in (None, "", "None") else None, overrides)
    get_run_logger().info("release %s announced: auditing it on %s", ref, spec.dataset or "its dataset")
    return str(run_audit(spec))
