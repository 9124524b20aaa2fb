"""`imaudit release`: register a checkpoint as NAME@VERSION and announce it to Prefect.

The announcement is the Prefect event ``imaudit.model.released`` about the
resource ``imaudit.model.<name>``; its payload carries the release ref and
the dataset to audit against. The ``audit-on-release`` deployment in
prefect.yaml has a trigger on it, so each release gets an audit whose report
shows "pending review" until a reviewer decides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from imaudit.errors import BadInputError
from imaudit.models import Registry, load_history, watch

EVENT = "imaudit.model.released"
RESOURCE_PREFIX = "imaudit.model."


class ReleaseRequest(BaseModel):
    """What `imaudit release` needs, from options or a manifest file (YAML/JSON, same field names)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    arch: str
    checkpoint: Path
    dataset: str
    history: Path | None = None
    input_size: int | None = None
    classes: list[str] | None = None
    notes: str | None = None


@dataclass
class Emission:
    """Whether the release event reached a Prefect server, and why not when it did not."""

    sent: bool
    detail: str
    ids: tuple[str, ...] = ()


def read_request(manifest: Path | None, given: dict[str, Any]) -> ReleaseRequest:
    """Merge a manifest file's fields with the options given (options win).

    Relative checkpoint/history paths in the file are relative to the file.
    """
    fields: dict[str, Any] = {}
    if manifest is not None:
        fields = _read_mapping(manifest)
        for key in ("checkpoint", "history"):
            if fields.get(key) is not None and not Path(fields[key]).is_absolute():
                fields[key] = str(manifest.parent / fields[key])
    fields.update({k: v for k, v in given.items() if v is not None})
    if isinstance(fields.get("classes"), str):
        fields["classes"] = [c.strip() for c in fields["classes"].split(",") if c.strip()]
    try:
        return ReleaseRequest.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).replace("_", "-")
        source = f" (in {manifest})" if manifest is not None else ""
        raise BadInputError(f"--{where}: {first['msg']}{source}") from None


def _read_mapping(path: Path) -> dict[str, Any]:
    import json

    import yaml

    if not path.is_file():
        raise BadInputError(f"--manifest {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        raise BadInputError(f"--manifest {path}: cannot parse ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"--manifest {path}: expected a mapping of release fields")
    return data


def release_model(req: ReleaseRequest) -> tuple[Any, bool]:
    """Register the release (the registry checks the checkpoint loads into ``arch``).

    Returns (manifest, new): ``new`` is False when NAME@VERSION already held
    this very checkpoint. Another checkpoint under an existing NAME@VERSION
    is refused with BadInputError.
    """
    reg = Registry()
    existed = req.version in reg.versions(req.name)
    manifest = reg.release(
        req.name,
        req.version,
        arch=req.arch,
        checkpoint=req.checkpoint,
        dataset=req.dataset,
        classes=req.classes,
        input_size=req.input_size,
        history=load_history(req.history) if req.history is not None else None,
        notes=req.notes,
    )
    return manifest, not existed


def release_and_announce(req: ReleaseRequest, emit: bool = True) -> tuple[Any, bool, Emission | None]:
    """Register the release and, with ``emit``, announce it; (manifest, new, emission or None).

    The registry watcher must not announce it a second time: the watcher's
    marker is claimed before the release exists (so no poll sees the release
    without it), kept when the event went out, and dropped when it did not, so
    the watcher announces the release on its next poll instead. Without ``emit``
    nothing is claimed: a running watcher announces the release.
    """
    claimed = emit and watch.claim(req.name, req.version)
    try:
        manifest, new = release_model(req)
    except BaseException:
        if claimed:
            watch.unclaim(req.name, req.version)
        raise
    if not emit:
        return manifest, new, None
    sent = emit_release_event(manifest)
    if sent.sent:
        watch.mark_sent(manifest.name, manifest.version, ", ".join(sent.ids))
    elif claimed:
        watch.unclaim(manifest.name, manifest.version)
    return manifest, new, sent


def release_event(manifest: Any) -> dict[str, Any]:
    """The event announcing ``manifest`` (keyword arguments of prefect.events.emit_event)."""
    return {
        "event": EVENT,
        "resource": {
            "prefect.resource.id": f"{RESOURCE_PREFIX}{manifest.name}",
            "prefect.resource.name": manifest.name,
            "imaudit.version": manifest.version,
        },
        "payload": {
            "ref": manifest.ref,
            "dataset": manifest.dataset,
            "name": manifest.name,
            "version": manifest.version,
            "sha256": manifest.sha256,
            "arch": manifest.arch,
        },
    }


def announcement_event(a: Any) -> dict[str, Any]:
    """The event for a watcher's announcement (imaudit.models.watch.Announcement) of a concrete version.

    An imaudit release is announced as `imaudit release` announces it; an MLflow
    version names its concrete ref (mlflow:models:/NAME/VERSION), never an alias.
    The id is the announcement's own, so a repeated poll sends the same event.
    """
    if a.source == "imaudit":
        event = release_event(Registry().get(a.name, a.version))
    else:
        event = {
            "event": EVENT,
            "resource": {"prefect.resource.id": f"{RESOURCE_PREFIX}mlflow/{a.name}",
                         "prefect.resource.name": a.name, "imaudit.version": a.version},
            "payload": {"ref": a.ref, "dataset": a.dataset, "name": a.name, "version": a.version,
                        "registry": "mlflow", "tracking_uri": a.registry},
        }
    event["payload"]["reason"] = a.reason
    event["id"] = a.event_id
    return event


def emit_release_event(manifest: Any, timeout_s: float = 30.0) -> Emission:
    """Send the release event to the Prefect server named by PREFECT_API_URL.

    Without a configured server there is nobody to trigger, so nothing is
    sent (Prefect would otherwise start a throw-away local server).
    """
    return send_events([release_event(manifest)], timeout_s)


def send_events(events: list[dict[str, Any]], timeout_s: float = 30.0) -> Emission:
    """Emit events (keyword arguments of emit_event) to PREFECT_API_URL and wait until they were delivered."""
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL

    if not events:
        return Emission(True, "nothing to announce")
    url = PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")
    if not url:
        return Emission(False, "PREFECT_API_URL is not set, so no Prefect server was told")
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        return Emission(False, f"Prefect API at {url} is unreachable ({type(problem).__name__}: {problem})")
    sent = [emit_event(**event) for event in events]
    if any(event is None for event in sent):
        return Emission(False, f"Prefect refused to emit {EVENT} (see its log)")
    # Events go out from a background worker: wait until it has delivered them.
    EventsWorker.drain_all(timeout=timeout_s, at_exit=False)
    ids = tuple(str(event.id) for event in sent)
    return Emission(True, f"event {EVENT} {', '.join(ids)} sent to {url}", ids)
