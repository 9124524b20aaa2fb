"""What changed in the model registries since the last look: the registry watcher's engine (no Prefect here).

The watcher (flows/watch.py) polls the MLflow registries it is given and
imaudit's own release registry. Each poll takes a ``Snapshot`` (every model's
versions with the dataset they name, and MLflow's aliases), compares it with
the snapshot saved by the previous poll and turns each difference into one
``Announcement`` of a concrete version (``mlflow:models:/NAME/VERSION``,
``release:NAME@VERSION``):

- a version that was not there before (one announcement, even when an alias
  moved onto it in the same poll);
- an alias that now points at another version (or is new).

A registry seen for the first time is recorded without announcing anything
(watching an existing registry does not audit its whole history). Only versions
that name a dataset are announced: an MLflow version (or its registered model)
opts in with the tag ``imaudit.dataset``, since MLflow registries hold models
imaudit cannot audit; the others are listed in ``Changes.skipped``.

Releases made with ``imaudit release`` are announced by that command; it leaves
a marker (``announced/NAME/VERSION.json`` beside the watcher's state, claimed
before the release is registered, so no poll can see the release without it),
and the watcher skips what is marked. A release whose announcement failed has
its claim removed, so the watcher announces it on its next poll.

State and markers live in the watch folder (``IMAUDIT_HOME/watch``, or ``watch/`` in the
shared store when IMAUDIT_STORAGE names one), written
whole and atomically; the caller saves the new snapshot only after its
announcements were sent, so a failed poll is repeated, never lost.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from imaudit import paths, storage
from imaudit.models import mlflow_registry
from imaudit.models.registry import Registry, check_part
from imaudit.storage import Location

STATE = "state.json"
IMAUDIT = "imaudit"
# Event ids are derived from what is announced, so a poll repeated after a failure sends the same ids
# and Prefect's triggers (which ignore an event id they have seen) audit each announcement once.
_ID_SPACE = uuid.UUID("5d0a7f2e-3c1b-4e8a-9f6d-2b7c1e0a4d93")


@dataclass
class RegistryView:
    """One registry at one moment: model -> version -> dataset it names (or None); MLflow's aliases."""

    versions: dict[str, dict[str, str | None]] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Announcement:
    """One version to announce as released, and why."""

    source: str  # "mlflow" or "imaudit"
    registry: str  # the tracking URI, or "imaudit"
    name: str
    version: str
    dataset: str | None
    reason: str  # "new version" or "alias champion: 3 -> 5"

    @property
    def ref(self) -> str:
        if self.source == "mlflow":
            return f"mlflow:models:/{self.name}/{self.version}"
        return f"release:{self.name}@{self.version}"

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.uuid5(_ID_SPACE, f"{self.registry}\n{self.name}\n{self.version}\n{self.reason}")


@dataclass
class Changes:
    """What one poll found: announcements to send, and new versions left out (no dataset, or announced already)."""

    announce: list[Announcement] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    first_look: list[str] = field(default_factory=list)  # registries recorded without announcing


def watch_location() -> Location:
    """Where the watcher keeps its state and the release command its markers.

    The shared store's ``watch/`` when there is one (IMAUDIT_STORAGE): `imaudit release`
    runs on a developer's machine and the watcher on a worker, which share nothing else.
    """
    return storage.shared("watch") or Location(paths.home() / "watch")


def load_state(where: Location | None = None) -> dict[str, RegistryView]:
    """The views saved by the last poll, by registry (the tracking URI, or "imaudit")."""
    where = where or watch_location()
    if not where.exists(STATE):
        return {}
    data = json.loads(where.read_bytes(STATE))
    return {key: RegistryView(**view) for key, view in data.get("registries", {}).items()}


def save_state(views: dict[str, RegistryView], where: Location | None = None) -> None:
    """Replace the saved views (whole-file write: a reader never sees half a state)."""
    where = where or watch_location()
    data = {"saved": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "registries": {key: asdict(view) for key, view in views.items()}}
    where.write_bytes(STATE, json.dumps(data, indent=2, sort_keys=True).encode())


def mlflow_view(uri: str) -> RegistryView:
    """An MLflow registry now (READY versions only, with the dataset their tags name)."""
    found = mlflow_registry.listing(uri)
    return RegistryView(versions=found.versions, aliases=found.aliases)


def imaudit_view(known: RegistryView | None = None, registry: Registry | None = None) -> RegistryView:
    """imaudit's release registry now; only manifests not in ``known`` are read (releases never change)."""
    registry = registry or Registry()
    known = known or RegistryView()
    versions: dict[str, dict[str, str | None]] = {}
    for name in registry.models():
        seen = known.versions.get(name, {})
        versions[name] = {v: seen[v] if v in seen else registry.get(name, v).dataset for v in registry.versions(name)}
    return RegistryView(versions=versions)


def watched_uris(given: list[str] | None) -> list[str]:
    """The MLflow registries to watch: those given, else MLFLOW_TRACKING_URI (if set)."""
    if given:
        return [u.strip() for u in given if u and u.strip()]
    uri = os.environ.get(mlflow_registry.URI_ENV, "").strip()
    return [uri] if uri else []


def look(uris: list[str], imaudit_registry: bool, previous: dict[str, RegistryView]
         ) -> tuple[dict[str, RegistryView], dict[str, str]]:
    """Every watched registry now (by key), and those that could not be read (key -> why).

    One registry that cannot be read does not stop the others; it keeps its
    previous view, so its changes are announced once it answers again.
    """
    views: dict[str, RegistryView] = {}
    failed: dict[str, str] = {}
    for uri in uris:
        if not mlflow_registry.reachable(uri):
            failed[uri] = "the tracking server is unreachable"
        else:
            try:
                views[uri] = mlflow_view(uri)
            except Exception as exc:  # noqa: BLE001 - reported per registry; the caller fails the poll with it
                failed[uri] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        if uri in failed and uri in previous:
            views[uri] = previous[uri]
    if imaudit_registry:
        views[IMAUDIT] = imaudit_view(previous.get(IMAUDIT))
    return views, failed


def changes(previous: dict[str, RegistryView], current: dict[str, RegistryView],
            where: Location | None = None) -> Changes:
    """The announcements that turn ``previous`` into ``current`` (see the module docstring)."""
    where = where or watch_location()
    out = Changes()
    for key, now in current.items():
        before = previous.get(key)
        if before is None:
            out.first_look.append(key)
            continue
        source = IMAUDIT if key == IMAUDIT else "mlflow"
        found: dict[tuple[str, str], str] = {}  # (name, version) -> reason, first reason wins
        for name, versions in now.versions.items():
            for version in versions:
                if version not in before.versions.get(name, {}):
                    found.setdefault((name, version), "new version")
        for name, aliases in now.aliases.items():
            for alias, version in aliases.items():
                old = before.aliases.get(name, {}).get(alias)
                if old != version:
                    found.setdefault((name, version), f"alias {alias}: {old or 'new'} -> {version}")
        for (name, version), reason in found.items():
            dataset = now.versions.get(name, {}).get(version)
            label = f"{key} {name}/{version}"
            if source == IMAUDIT and announced(name, version, where):
                out.skipped.append(f"{label}: announced by imaudit release")
            elif dataset is None:
                tag = "names no dataset" if source == IMAUDIT else f"has no {mlflow_registry.DATASET_TAG} tag"
                out.skipped.append(f"{label}: {tag}, not audited")
            else:
                out.announce.append(Announcement(source, key, name, version, dataset, reason))
    return out


# --- markers left by `imaudit release` ---------------------------------------------------------

def _marker(name: str, version: str) -> str:
    return f"announced/{check_part(name, 'name')}/{check_part(version, 'version')}.json"


def announced(name: str, version: str, where: Location | None = None) -> bool:
    """Whether ``imaudit release`` announced (or is announcing) NAME@VERSION itself."""
    return (where or watch_location()).exists(_marker(name, version))


def claim(name: str, version: str, where: Location | None = None) -> bool:
    """Mark NAME@VERSION as being announced by the caller; False when someone already did."""
    where = where or watch_location()
    key = _marker(name, version)
    if where.exists(key):
        return False
    _write(where, key, {"state": "claimed"})
    return True


def mark_sent(name: str, version: str, event: str, where: Location | None = None) -> None:
    """Record that the announcement went out (the event's id)."""
    _write(where or watch_location(), _marker(name, version), {"state": "sent", "event": event})


def unclaim(name: str, version: str, where: Location | None = None) -> None:
    """Drop a claim whose announcement did not go out: the watcher announces the release instead."""
    where = where or watch_location()
    key = _marker(name, version)
    if where.exists(key):
        where.delete(key)


def _write(where: Location, key: str, record: dict[str, Any]) -> None:
    record["at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    where.write_bytes(key, json.dumps(record).encode())
