"""Flow `imaudit-scheduled`: re-audit the latest release of every registered model.

Deployed as `scheduled-audit` (prefect.yaml) with a named cron schedule. Each
model is audited against the dataset its release names; a model whose audit
fails is recorded with its error and the others still run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from imaudit.flows.audit import FLOW_TIMEOUT_S, audit_spec, run_audit
from imaudit.models import Registry


@flow(name="imaudit-scheduled", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S)
def scheduled_audit(overrides: dict[str, Any] | None = None, models: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Audit the latest release of each model (all registered, or ``models``); returns name -> report or error."""
    log = get_run_logger()
    reg = Registry()
    names = models or reg.models()
    outcome: dict[str, dict[str, str]] = {}
    for name in names:
        try:
            manifest = reg.latest(name)
            folder = run_audit(audit_spec(manifest.ref, manifest.dataset, overrides))
            outcome[name] = {"ref": manifest.ref, "report": str(folder)}
        except Exception as e:  # noqa: BLE001 - one model's failure is recorded; the rest are still audited
            log.error("scheduled audit of %s failed: %s: %s", name, type(e).__name__, e)
            outcome[name] = {"error": f"{type(e).__name__}: {e}"}
    log.info("audited %d of %d models", sum("report" in o for o in outcome.values()), len(names))
    return outcome
