"""Failure records: a small JSON file per audit that did not finish, kept in the report store.

A failed audit leaves no report folder (nothing half-written), so without a
record it would show only in a worker's log. The deployment flows write one
record per failed run into ``<store>/_failures/<flow-run-id>.json`` (and the
shared store's, when there is one); the index lists them with the error and a
link to the flow run in Prefect's UI.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from imaudit.io import atomic_write_text
from imaudit.reports.store import is_valid_id

FOLDER = "_failures"
log = logging.getLogger(__name__)


class FailureRecord(BaseModel):
    """What failed, why, and where to look: the record the index shows for an audit that did not finish."""

    id: str  # the flow run's id: one record per failed run
    model: str
    dataset: str | None = None
    trigger: str = "manual"
    state: str = "Failed"  # Prefect's state name: Failed, Crashed, TimedOut...
    # What the CLI's exit code would have said (imaudit.exits): 2 "bad input", 3 "could not complete".
    exit_code: int = 3
    outcome: str = "could not complete"
    error: str
    flow_run: str | None = None  # flow run name
    flow_run_url: str | None = None  # link into Prefect's UI
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def record_path(store: Path, run_id: str) -> Path:
    return Path(store) / FOLDER / f"{run_id}.json"


def write_failure(store: Path, record: FailureRecord) -> Path:
    """Write ``record`` atomically under ``store/_failures/``."""
    if not is_valid_id(record.id):
        raise ValueError(f"failure record id {record.id!r} is not a safe file name")
    return atomic_write_text(record_path(store, record.id), record.model_dump_json(indent=2) + "\n")


def list_failures(store: Path) -> list[FailureRecord]:
    """Every readable failure record in ``store``, newest first; unreadable ones are logged and left out."""
    folder = Path(store) / FOLDER
    records: list[FailureRecord] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records.append(FailureRecord.model_validate_json(path.read_text(encoding="utf-8")))
        except (OSError, ValidationError, json.JSONDecodeError) as exc:
            log.warning("failure record %s is unreadable: %s", path, str(exc).splitlines()[0])
    return sorted(records, key=lambda r: (r.created, r.id), reverse=True)
