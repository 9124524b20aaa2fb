"""The run log: one file per command under ``IMAUDIT_HOME/logs``, named by every exit-3 line.

The console gets stage lines and one-line outcomes; the log file gets those
plus library warnings, Prefect's own records and the full traceback of
whatever stopped the run. The file is opened on the first record only, so
``--help`` and instant answers leave nothing behind; the newest
``KEEP_LOGS`` files are kept.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from imaudit import paths

KEEP_LOGS = 100
# Loggers that do not propagate to the root logger but belong in the log.
_LOGGERS = ("", "imaudit.progress")
_state: dict[str, logging.Handler | Path | None] = {"handler": None, "path": None}


def log_dir() -> Path:
    """``IMAUDIT_HOME/logs``, or a folder under the temp dir when the home cannot be written."""
    folder = paths.home() / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    folder = Path(tempfile.gettempdir()) / "imaudit-logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start(command: str) -> Path:
    """Send this run's records to a new log file (opened lazily); return its path."""
    finish()
    folder = log_dir()
    _prune(folder)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}-{command or 'imaudit'}-{os.getpid()}.log"
    # backslashreplace: a non-UTF-8 file name in a message must never make logging fail.
    handler = logging.FileHandler(path, encoding="utf-8", errors="backslashreplace", delay=True)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(handler)
    logging.captureWarnings(True)  # library warnings into the log instead of onto the console
    _state.update(handler=handler, path=path)
    return path


def current() -> Path | None:
    """This run's log file (it may not exist yet if nothing was logged)."""
    path = _state["path"]
    return path if isinstance(path, Path) else None


def record_exception(what: str, exc: BaseException) -> Path | None:
    """Write ``what`` and the full traceback of ``exc`` into the log; return the log's path."""
    logging.getLogger("imaudit").error("%s", what, exc_info=(type(exc), exc, exc.__traceback__))
    return current()


def finish() -> None:
    """Detach and close this run's log handler."""
    handler = _state["handler"]
    if isinstance(handler, logging.Handler):
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        handler.close()
        logging.captureWarnings(False)
    _state.update(handler=None, path=None)


def _prune(folder: Path) -> None:
    """Keep the newest KEEP_LOGS log files."""
    logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)
    for old in logs[KEEP_LOGS:]:
        old.unlink(missing_ok=True)
