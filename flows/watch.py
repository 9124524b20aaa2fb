"""Flow `imaudit-watch-registries`: announce new model versions and alias moves as releases.

Deployed as `watch-registries` (prefect.yaml, polled on an interval). Each run
looks at the MLflow registries it is given (default: the worker's
``MLFLOW_TRACKING_URI``) and at imaudit's own release registry, and sends one
``imaudit.model.released`` event per new version or moved alias, about the
concrete version (imaudit.models.watch says which). The `audit-on-release`
trigger then audits it, exactly as for `imaudit release`, so a release made in
MLflow needs no extra step. The state is saved only after the events went out:
a failed run is repeated by the next poll, with the same event ids, which
Prefect's triggers do not act on twice.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from imaudit.flows.release import announcement_event, send_events
from imaudit.models import watch
from imaudit.tasks.watch_tasks import look_at_registries

POLL_TIMEOUT_S = 900


@flow(name="imaudit-watch-registries", timeout_seconds=POLL_TIMEOUT_S)
def watch_registries(mlflow_uris: list[str] | None = None, imaudit_registry: bool = True) -> list[str]:
    """Announce what was released since the last poll; returns the announced refs.

    ``mlflow_uris``: the MLflow tracking servers to watch (default: MLFLOW_TRACKING_URI);
    ``imaudit_registry``: also watch imaudit's own release registry.
    """
    log = get_run_logger()
    previous = watch.load_state()
    current, failed = look_at_registries(watch.watched_uris(mlflow_uris), imaudit_registry, previous)
    found = watch.changes(previous, current)
    for key in found.first_look:
        log.info("first look at %s: its current versions are recorded, none announced", key)
    for line in found.skipped:
        log.info("not announced: %s", line)
    sent = send_events([announcement_event(a) for a in found.announce])
    if not sent.sent:
        raise RuntimeError(f"{len(found.announce)} release(s) not announced: {sent.detail}")
    for a in found.announce:
        log.info("announced %s (%s) for an audit on %s", a.ref, a.reason, a.dataset)
        if a.source == watch.IMAUDIT:
            watch.mark_sent(a.name, a.version, str(a.event_id))
    watch.save_state(current)
    if failed:
        raise RuntimeError("registries not read: " + "; ".join(f"{key} ({why})" for key, why in failed.items()))
    return [a.ref for a in found.announce]
