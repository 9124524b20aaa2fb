"""The manifest cache: what probing found per file of a dataset root, trusted while the file is unchanged.

Building a manifest hashes and fully decodes every file (that is what catches
truncated images and gives the dataset its content digest). On a 50k-image
folder that is minutes, and every audit did it again. This cache keeps, per
dataset root, each file's probe result (sha256, size in pixels, mode, or why
it was left out) with the file's size and modification time; the next audit
stats every file and probes again only those whose size or mtime changed (or
that are new), so an unchanged folder costs a directory listing and a stat per
file. ``--rehash`` (AuditSpec ``rehash``) ignores the cache and probes every
file again, for file systems or tools that change content without moving
mtime.

Like git's index, an entry whose mtime is not safely older than the moment
the cache was written is not trusted (a file rewritten within the same clock
tick would keep its mtime). The cache file is one CSV per root (and probe
settings) under ``cache_dir()/manifests/``, written atomically with its size
and sha256 beside it (``.sum``); one that is unreadable or does not verify is
ignored and rewritten.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from imaudit.audits import chunks
from imaudit.io import read_verified, write_verified

log = logging.getLogger(__name__)
COLUMNS = ["path", "size", "mtime_ns", "sha256", "width", "height", "mode", "error"]
# An mtime within this much of the cache's own writing time may hide a same-tick rewrite: probe it again.
RACY_NS = 2_000_000_000
_CODE = ("imaudit.audits.images", "imaudit.audits.manifest_cache")


class ManifestCache:
    """Probe results of one dataset root, keyed by file path; see the module docstring."""

    def __init__(self, path: Path, rehash: bool = False) -> None:
        self.path = Path(path)
        self.rehash = rehash
        self.written_ns = 0
        self._entries: dict[str, tuple] = {}
        self._seen: dict[str, dict[str, Any]] = {}
        self.reused = 0
        self.damaged = False  # the cache file was there but did not verify or could not be read
        if not rehash:
            self._load()

    @classmethod
    def for_root(cls, cache_dir: Path, root: Path, rehash: bool = False,
                 settings: Mapping[str, Any] | None = None) -> "ManifestCache":
        """The cache of dataset ``root`` under ``cache_dir``; ``settings`` are what else a probe result
        depends on (e.g. size limits), so other settings get another file."""
        key = chunks.digest("manifest", str(Path(root).resolve()), dict(settings or {}), chunks.source_digest(_CODE))
        return cls(Path(cache_dir) / "manifests" / f"{key[:32]}.csv", rehash)

    def _load(self) -> None:
        data, problem = read_verified(self.path)  # size + sha256 in its .sum: a damaged cache is not trusted
        if data is None:
            if problem:
                self.damaged = True
                log.warning("manifest cache %s did not verify (%s); probing every file", self.path, problem)
            return
        try:
            table = pd.read_csv(io.BytesIO(data), dtype={"path": str, "sha256": str, "mode": str, "error": str},
                                keep_default_na=False, encoding_errors="surrogateescape")
            self.written_ns = self.path.stat().st_mtime_ns  # when the cache was written (see RACY_NS)
        except (OSError, ValueError, pd.errors.ParserError) as e:
            self.damaged = True
            log.warning("manifest cache %s unreadable (%s); probing every file", self.path, e)
            return
        if list(table.columns) != COLUMNS:
            log.warning("manifest cache %s has other columns; probing every file", self.path)
            return
        self._entries = {row[0]: row[1:] for row in table.itertuples(index=False, name=None)}

    def lookup(self, path: str) -> tuple[dict[str, Any] | None, os.stat_result]:
        """(cached probe result or None, the file's stat now). Raises OSError when the file cannot be stat'ed."""
        st = os.stat(path)
        entry = self._entries.get(path)
        if entry is None:
            return None, st
        size, mtime_ns, sha, width, height, mode, error = entry
        if int(size) != st.st_size or int(mtime_ns) != st.st_mtime_ns:
            return None, st
        if st.st_mtime_ns >= self.written_ns - RACY_NS:
            return None, st  # too close to when the cache was written to trust the mtime
        if error:
            return {"error": error}, st
        return {"sha256": sha, "width": int(width), "height": int(height), "mode": mode}, st

    def remember(self, path: str, st: os.stat_result, result: dict[str, Any], reused: bool) -> None:
        """Record this listing's result for ``path`` (stat taken before it was probed)."""
        self._seen[path] = {
            "path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": result.get("sha256", ""), "width": result.get("width", 0), "height": result.get("height", 0),
            "mode": result.get("mode", ""), "error": result.get("error", ""),
        }
        self.reused += int(reused)

    def save(self) -> None:
        """Write the results of this listing (files gone since are dropped), atomically."""
        # object dtype: a path that is not UTF-8 (surrogate-escaped) fits no arrow string column (pandas 3)
        table = pd.DataFrame(list(self._seen.values()), columns=COLUMNS, dtype=object)
        buf = io.StringIO()
        table.to_csv(buf, index=False)
        try:
            write_verified(self.path, buf.getvalue().encode("utf-8", "surrogateescape"))
        except OSError as e:  # a read-only cache folder costs the next audit a re-probe, nothing else
            log.warning("manifest cache %s not written: %s", self.path, e)
            return
        # The cache's own time: its file's mtime, taken after the write (see RACY_NS).
        self.written_ns = self.path.stat().st_mtime_ns

    @property
    def stats(self) -> dict[str, int]:
        """Files seen in this listing and how many were taken from the cache (audit.json ``cache.manifest``).

        ``rejected``: files probed again because the cache file was there but did not verify (every one
        of them: a damaged cache is not trusted for any file), as for the chunk cache's counts.
        """
        computed = len(self._seen) - self.reused
        return {"total": len(self._seen), "reused": self.reused, "computed": computed,
                "rejected": computed if self.damaged else 0}
