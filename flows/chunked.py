"""Running a stage's chunk tasks: in turn, or all at once on Dask.

Sequential runs call chunk tasks one after another in the flow's process
(in-process threads would share one nn.Module whose hooks would collide).
On Dask every chunk is submitted at once and each worker, with its own copy
of the model, takes chunks as it frees up. Each chunk's result says whether
its content-addressed file was computed or found (the files are the cache;
Prefect caches nothing), so reuse counts need no bookkeeping here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import Task

from imaudit.audits.chunks import Chunk
from imaudit.audits.stages.records import ChunkResult


@dataclass
class PendingChunks:
    """Chunk tasks started (Dask futures) or already run (their results, in turn)."""

    futures: list[Any] = field(default_factory=list)
    results: list[ChunkResult] = field(default_factory=list)


def start_chunks(task: Task, chunks: Sequence[Chunk], args: Callable[[Chunk], tuple], parallel: bool) -> PendingChunks:
    """Submit every chunk (parallel) or run them in turn; ``finish_chunks`` collects them."""
    if parallel:
        return PendingChunks(futures=[task.submit(*args(c)) for c in chunks])
    return PendingChunks(results=[task(*args(c)) for c in chunks])


def finish_chunks(pending: PendingChunks) -> list[ChunkResult]:
    """Chunk results in chunk order; a failed chunk re-raises its error (the stage then fails)."""
    return pending.results + [f.result() for f in pending.futures]


def run_chunks(task: Task, chunks: Sequence[Chunk], args: Callable[[Chunk], tuple], parallel: bool) -> list[ChunkResult]:
    """Run ``task(*args(chunk))`` for every chunk; return their results in chunk order."""
    return finish_chunks(start_chunks(task, chunks, args, parallel))
