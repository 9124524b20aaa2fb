"""Prefect @task wrapper of the registry watcher's look at the registries (imaudit.models.watch). No logic here."""

from __future__ import annotations

from prefect import task

from imaudit.models import watch
from imaudit.tasks.policies import IO


@task(name="look-at-registries", **IO)
def look_at_registries(uris: list[str], imaudit_registry: bool, previous: dict[str, watch.RegistryView]
                       ) -> tuple[dict[str, watch.RegistryView], dict[str, str]]:
    """Every watched registry now, and those that could not be read."""
    return watch.look(uris, imaudit_registry, previous)
