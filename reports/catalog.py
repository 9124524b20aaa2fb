"""A cached index of the report store: one summary per audit folder, re-read only when its audit.json changes.

The review app lists every audit on every index page, and the release gate looks at
every audit of a release; parsing 1,000 audit.json files each time took seconds.
Entries are keyed by folder name and audit.json's (mtime, size, inode), so a rewritten
audit is read again and every other one comes from memory. Entries hold summaries:
the heavy sections are dropped (pages that show them read the audit itself).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from imaudit.audits.result import AuditResult
from imaudit.errors import BadInputError
from imaudit.reports.store import AuditEntry, audit_folder, read_audit

# Sections a listing never needs; together they are most of a real audit.json.
HEAVY = ("global_importance", "strategies", "per_class", "confusion", "calibration", "data_checks", "artifacts")

Key = tuple[int, int, int] | tuple[str, int]


def summary(result: AuditResult) -> AuditResult:
    """``result`` without its heavy sections (identity, metrics, findings, gates, quality scores stay)."""
    update: dict[str, object] = {name: {} for name in HEAVY}
    update["fit"] = result.fit.model_copy(update={"history": None})
    update["gates"] = result.gates.model_copy(update={"expectations": []})
    return result.model_copy(update=update)


def _key(folder: Path) -> Key:
    """What changes whenever audit.json is written (atomic writes replace the inode)."""
    try:
        st = os.stat(folder / "audit.json")
    except OSError:
        try:
            return ("missing", os.stat(folder).st_mtime_ns)
        except OSError:
            return ("gone", 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read(audit_id: str, folder: Path) -> AuditEntry:
    entry = AuditEntry(id=audit_id, folder=folder)
    try:
        result, entry.digest = read_audit(folder)
        entry.result = summary(result)
    except BadInputError as exc:
        entry.error = str(exc)
    return entry


class StoreCatalog:
    """Audit summaries of one store folder, refreshed by stat on each call; safe to share between threads."""

    def __init__(self, store: Path) -> None:
        self.store = Path(store).resolve()
        self._cache: dict[str, tuple[Key, AuditEntry]] = {}
        self._lock = threading.Lock()
        self.reads = 0  # audit.json files parsed so far (tests check the cache is used)
        self.generation = 0  # changes whenever an entry is read again, added or removed

    def _entry(self, audit_id: str, folder: Path) -> AuditEntry:
        key = _key(folder)
        hit = self._cache.get(audit_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        entry = _read(audit_id, folder)
        with self._lock:
            self._cache[audit_id] = (key, entry)
            self.reads += 1
            self.generation += 1
        return entry

    def entries(self) -> list[AuditEntry]:
        """Every audit folder, newest first; broken ones carry their error (as store.list_audits)."""
        try:
            scan = [d for d in os.scandir(self.store)
                    if not d.name.startswith((".", "_")) and d.is_dir(follow_symlinks=False)]
        except OSError:
            return []
        entries = [self._entry(d.name, Path(d.path)) for d in scan]
        names = {d.name for d in scan}
        with self._lock:
            for gone in [k for k in self._cache if k not in names]:
                del self._cache[gone]
                self.generation += 1
        entries.sort(key=lambda e: (e.sort_key, e.id), reverse=True)
        return entries

    def snapshot(self) -> tuple[int, list[AuditEntry]]:
        """(generation before the scan, entries): a cache keyed by that generation is never newer than its data."""
        generation = self.generation
        return generation, self.entries()

    def get(self, audit_id: str) -> AuditEntry | None:
        """The entry of one audit id, or None when the id is unsafe or names no folder of the store."""
        folder = audit_folder(self.store, audit_id)
        return None if folder is None else self._entry(audit_id, folder)
