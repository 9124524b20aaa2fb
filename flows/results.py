"""Where Prefect persists the deployment flows' results: beside everything else in the shared store.

The flows that deployments run (on_release, scheduled) persist their results
(the report's path; the scheduled run's outcome per model) so a run's result
can be read after the worker that ran it is gone. With ``IMAUDIT_STORAGE`` they
go to ``<storage>/prefect-results/`` through Prefect's fsspec-backed
``RemoteFileSystem`` block, which Prefect needs saved on the server: ``imaudit
store-init`` saves it once (named by IMAUDIT_RESULTS_BLOCK, default
``imaudit-results``). Without a shared store, Prefect's default result storage.
The reference is read when the flows are imported (a worker's run process
imports them with its deployment's environment).
"""

from __future__ import annotations

import os

from imaudit import storage

RESULTS = "prefect-results"
BLOCK_ENV = "IMAUDIT_RESULTS_BLOCK"
DEFAULT_BLOCK = "imaudit-results"
BLOCK_TYPE = "remote-file-system"


def block_name() -> str:
    return os.environ.get(BLOCK_ENV, "").strip() or DEFAULT_BLOCK


def storage_ref() -> str | None:
    """``remote-file-system/<name>`` when there is a shared store, else None (Prefect's default storage)."""
    return f"{BLOCK_TYPE}/{block_name()}" if storage.shared_url() is not None else None


def save_block() -> tuple[str, str]:
    """Save (or update) the result storage block for the shared store; returns (block reference, base URL).

    Its fsspec settings are IMAUDIT_STORAGE_OPTIONS' for the store's protocol,
    saved on the Prefect server: keep credentials in the workers' environment
    (AWS_*, ...) rather than in those options.
    """
    from prefect.filesystems import RemoteFileSystem

    url = storage.shared_url()
    if url is None:
        raise storage.BadInputError(f"{storage.STORE_ENV} is not set: there is no shared store to keep results in")
    base = f"{url}/{RESULTS}"
    RemoteFileSystem(basepath=base, settings=storage.storage_options(storage.protocol(url))).save(
        block_name(), overwrite=True)
    return f"{BLOCK_TYPE}/{block_name()}", base
