"""What the audit's tasks share: no Prefect caching, and retries only for I/O.

The engine's content-addressed files are the audit's one cache (chunk files
under ``cache_dir()/chunks``, whole-stage entries such as insights): a chunk
task finds its file and returns at once, on any worker, across audits and
after a kill. Prefect adds no second cache on top (NO_CACHE: no input hashing,
no persisted results to reconcile with the files).
"""

from __future__ import annotations

from typing import Any

from prefect import Task
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
