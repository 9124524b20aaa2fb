"""Running a stage's chunk tasks: in turn, or all at once on Dask; reused chunks counted.

Sequential runs call chunk tasks one after another in the flow's process
(in-process threads would share one nn.Module whose hooks would collide).
On Dask every chunk is submitted at once and each worker, with its own copy
of the model, takes chunks as it frees up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.states import State

from imaudit.audits.chunks import Chunk
from imaudit.tasks.chunk_cache import with_result_storage


@dataclass
class ChunkRun:
    """What a stage's chunks produced: result files in chunk order and how many were reused."""

    paths: list[str] = field(default_factory=list)
    reused: int = 0

    @property
    def total(self) -> int:
        return len(self.paths)

    def stats(self) -> dict[str, int]:
        return {"total": self.total, "reused": self.reused, "computed": self.total - self.reused}


@dataclass
class PendingChunks:
    """Chunk tasks started (Dask futures) or already run (sequential states)."""

    task: Task
    calls: list[tuple]
    futures: list[Any] = field(default_factory=list)
    states: list[State] = field(default_factory=list)


def start_chunks(task: Task, chunks: Sequence[Chunk], args: Callable[[Chunk], tuple], parallel: bool) -> PendingChunks:
    """Submit every chunk (parallel) or run them in turn; ``finish_chunks`` collects them."""
    task = with_result_storage(task)
    pending = PendingChunks(task, [args(c) for c in chunks])
    if parallel:
        pending.futures = [task.submit(*call) for call in pending.calls]
    else:
        pending.states = [task(*call, return_state=True) for call in pending.calls]
    return pending


def finish_chunks(pending: PendingChunks) -> ChunkRun:
    """Result paths in chunk order; a failed chunk re-raises its error (the stage then fails).

    A chunk counts as reused when Prefect answered from its cache (state
    "Cached") or the engine found the chunk's file already written (a run
    killed after writing it, before Prefect recorded the result). A cache
    entry whose file has since been deleted is recomputed.
    """
    states = pending.states
    if pending.futures:
        for f in pending.futures:
            f.wait()
        states = [f.state for f in pending.futures]
    run = ChunkRun()
    for call, state in zip(pending.calls, states):
        out = state.result()
        reused = state.name == "Cached" or not out.get("computed", True)
        if not Path(out["path"]).is_file():
            out = pending.task.with_options(refresh_cache=True)(*call, return_state=True).result()
            reused = False
        run.paths.append(out["path"])
        run.reused += int(reused)
    return run


def run_chunks(task: Task, chunks: Sequence[Chunk], args: Callable[[Chunk], tuple], parallel: bool) -> ChunkRun:
    """Run ``task(*args(chunk))`` for every chunk; return their result paths in chunk order."""
    return finish_chunks(start_chunks(task, chunks, args, parallel))
