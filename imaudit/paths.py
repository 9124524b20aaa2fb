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
