"""How chunk tasks are cached, where their results persist, and which failures are retried.

A chunk task's cache key is the chunk's own content key (model digest,
content digest, stage and settings, code version; imaudit.audits.chunks), so
Prefect finds the result of any earlier audit of the same model and data.
The persisted result is tiny: the path of the content-addressed file holding
the logits or maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State

from imaudit import paths
from imaudit.audits.chunks import Chunk
from imaudit.errors import ImauditError


def chunk_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """The chunk's content key (prefixed by its stage, for people reading the result folder)."""
    chunk = Chunk.model_validate(parameters["chunk"])
    return f"{chunk.stage.replace(':', '-')}-{chunk.key}"


CHUNK_CACHE: dict[str, Any] = {
    "cache_key_fn": chunk_cache_key,
    "persist_result": True,
    "result_serializer": "json",
}


def results_dir() -> Path:
    """Where Prefect persists chunk task results: ``cache_dir()/prefect-results``.

    Resolved when a flow runs (not at import), so IMAUDIT_HOME/IMAUDIT_CACHE
    set by the caller or the worker's environment apply.
    """
    return paths.cache_dir() / "prefect-results"


def with_result_storage(task: Task) -> Task:
    """``task`` persisting its results under results_dir()."""
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return task.with_options(result_storage=folder)


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
