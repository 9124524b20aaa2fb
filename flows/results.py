"""Where Prefect persists the imaudit flows' results: beside everything else in the shared store.

The deployment flows persist their results (report paths, the scheduled run's
outcome per model) so that a run's result can be read after the worker that ran
it is gone. With ``IMAUDIT_STORAGE`` they go to ``<storage>/prefect-results/``
through Prefect's fsspec-backed ``RemoteFileSystem`` block, with the same
storage options as the rest of the store; without it, to Prefect's default
local result storage. Read once, when the flows are imported (a worker's flow
run process imports them with its deployment's environment).
"""

from __future__ import annotations

from prefect.filesystems import RemoteFileSystem

from imaudit import storage

RESULTS = "prefect-results"


def storage_block() -> RemoteFileSystem | None:
    """The result storage of the imaudit flows: the shared store's ``prefect-results/``, or None (Prefect's default)."""
    url = storage.shared_url()
    if url is None:
        return None
    return RemoteFileSystem(basepath=f"{url}/{RESULTS}", settings=storage.storage_options(storage.protocol(url)))
