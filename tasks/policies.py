"""What the audit's tasks share: no Prefect caching, and retries only for I/O.

The engine's content-addressed files are the audit's one cache (chunk files
under ``cache_dir()/chunks``, whole-stage entries such as insights): a chunk
task finds its file and returns at once, on any worker, across audits and
after a kill. Prefect adds no second cache on top (NO_CACHE: no input hashing,
no persisted results to reconcile with the files).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from prefect import Task, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.settings import PREFECT_API_URL
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from imaudit.errors import ImauditError


def retry_on_io(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry only I/O failures (files, network, timeouts); never bad input or compute errors."""
    try:
        state.result()
    except ImauditError:
        return False
    except (OSError, TimeoutError):  # ConnectionError is an OSError
        return True
    except Exception:  # noqa: BLE001 - anything else is not worth retrying; the task fails with it
        return False
    return False


# Options of every audit task; ``IO`` adds retries with backoff for the stages that read inputs or write files.
COMPUTE: dict[str, Any] = {"cache_policy": NO_CACHE}
IO: dict[str, Any] = {**COMPUTE, "retries": 2, "retry_delay_seconds": [1, 5], "retry_condition_fn": retry_on_io}


DEVICE_LIMIT_ENV = "IMAUDIT_DEVICE_LIMIT"
DEVICE_LIMIT = "gpu"


@contextlib.contextmanager
def device_slot() -> Iterator[None]:
    """Hold one slot of the device's global concurrency limit while a task runs the model.

    The limit is named by IMAUDIT_DEVICE_LIMIT (default ``gpu``; '' turns it
    off) and is created once per Prefect server with one slot per device
    (README, production set-up), so audits running at once on a worker queue
    for the device instead of sharing it. A worker per GPU sets its own name
    (``gpu-0``, ``gpu-1``...). Only against a Prefect server (PREFECT_API_URL):
    no limit exists on a temporary one; a limit that does not exist holds nothing.
    """
    name = os.environ.get(DEVICE_LIMIT_ENV, DEVICE_LIMIT).strip()
    if not name or not PREFECT_API_URL.value():
        yield
        return
    log = get_run_logger()
    with concurrency(name, occupy=1, strict=False):
        t0 = time.monotonic()
        log.info("holding device slot %r", name)
        try:
            yield
        finally:
            log.info("released device slot %r after %.1f s", name, time.monotonic() - t0)
