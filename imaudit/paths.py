"""Where imaudit keeps things on disk: one home folder with the report store,
the release registry and caches. IMAUDIT_HOME moves it (default ./imaudit-store)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The imaudit home folder (IMAUDIT_HOME or ./imaudit-store)."""
    return Path(os.environ.get("IMAUDIT_HOME", "imaudit-store")).expanduser().resolve()


def report_store() -> Path:
    """Default report store: one sub-folder per audit plus index.html."""
    return Path(os.environ.get("IMAUDIT_REPORTS", home() / "reports")).expanduser().resolve()


def registry_dir() -> Path:
    """Release registry: manifests and checkpoints of released models."""
    return Path(os.environ.get("IMAUDIT_REGISTRY", home() / "registry")).expanduser().resolve()


def cache_dir() -> Path:
    """Cache for generated builtin datasets and task results."""
    return Path(os.environ.get("IMAUDIT_CACHE", home() / "cache")).expanduser().resolve()


def check_folder(path: str | Path, option: str) -> Path:
    """``path`` as a folder imaudit may create and write into; BadInputError naming ``option`` otherwise.

    Refuses a file in its place or anywhere on its way (``--out report.html``),
    and a folder that exists but cannot be written.
    """
    from imaudit.errors import BadInputError

    path = Path(path).expanduser()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise BadInputError(f"{option} {path} {where}; expected a folder")
    if probe.is_dir() and not os.access(probe, os.W_OK | os.X_OK):
        raise BadInputError(f"{option} {path}: {probe} is not writable")
    return path
