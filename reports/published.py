"""The report store in a shared-nothing set-up: audits published to, and read from, ``<store>/reports``.

Without ``IMAUDIT_STORAGE`` the report store is a local folder and nothing
here does anything. With it:

- an audit is written into the local report folder as before (temp folder +
  rename) and then published to ``<storage>/reports/<id>/``, audit.json last:
  readers take a folder as an audit only once its audit.json is there;
- failure records go to ``<storage>/reports/_failures/``;
- the index, the review app and ``imaudit compare`` read a local mirror of the
  shared reports (``$IMAUDIT_CACHE/store/<digest of the URL>/``), refreshed by
  copying only audits and records not mirrored yet (published folders never change);
- ``index.html`` is rebuilt from the mirror and uploaded.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from imaudit import paths, storage
from imaudit.reports.failures import FOLDER as FAILURES
from imaudit.reports.failures import FailureRecord, write_failure

MARK = "audit.json"
log = logging.getLogger(__name__)


def shared_reports() -> storage.Location | None:
    return storage.shared("reports")


def publish_audit(folder: Path) -> str | None:
    """Publish a finished audit folder to the shared store; returns its report's URL (None without a store)."""
    shared = shared_reports()
    if shared is None:
        return None
    folder = Path(folder)
    storage.publish_tree(folder, shared, folder.name, MARK)
    return shared.url_of(f"{folder.name}/report.html")


def publish_failure(store: Path, record: FailureRecord) -> Path:
    """Write a failure record into the local store and, when there is one, the shared store."""
    path = write_failure(store, record)
    shared = shared_reports()
    if shared is not None:
        shared.put_file(path, f"{FAILURES}/{path.name}")
    return path


def mirror_dir(url: str) -> Path:
    return paths.cache_dir() / "store" / hashlib.sha256(url.encode()).hexdigest()[:16]


def readable_store(local: Path | None = None) -> Path:
    """The folder to read audits from: the shared store's mirror (refreshed now), else ``local``."""
    shared = shared_reports()
    if shared is None:
        return Path(local) if local is not None else paths.report_store()
    mirror = mirror_dir(shared.url)
    keys = shared.list()
    ids = {k.split("/", 1)[0] for k in keys if k.endswith(f"/{MARK}") and k.count("/") == 1}
    for aid in sorted(ids - {FAILURES}):
        storage.mirror_tree(shared, aid, mirror / aid, MARK, keys=keys)
    for key in keys:
        if key.startswith(f"{FAILURES}/") and key.endswith(".json") and not (mirror / key).is_file():
            shared.get_file(key, mirror / key)
    mirror.mkdir(parents=True, exist_ok=True)
    return mirror


def publish_index(index: Path) -> None:
    """Upload a rebuilt index.html to the shared store (no-op without one)."""
    shared = shared_reports()
    if shared is not None:
        shared.put_file(index, "index.html")


def keep_mirrored(every_s: float = 10.0, stop: threading.Event | None = None) -> threading.Thread:
    """Refresh the shared store's mirror every ``every_s`` seconds in a daemon thread (the review app's).

    The app's catalog rescans its folder on each request, so audits published
    meanwhile appear; a failed refresh is logged and tried again next time.
    Setting ``stop`` ends the thread.
    """
    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                readable_store()
            except (OSError, storage.BadInputError) as exc:
                log.warning("could not refresh the mirror of the shared store: %s", exc)

    thread = threading.Thread(target=loop, name="imaudit-store-mirror", daemon=True)
    thread.start()
    return thread
