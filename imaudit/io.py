"""Small file helpers: digests and atomic writes (nothing half-written on failure)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def text_safe(text: str) -> str:
    """``text`` writable as UTF-8: bytes of a file name that were not UTF-8 become ``\\xNN``.

    Python keeps such bytes as lone surrogates (surrogateescape), which no
    UTF-8 writer (JSON, CSV, HTML, a hash) accepts; names shown or stored use
    this form, while the original string still opens the file.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def text_safe_tree(obj: Any) -> Any:
    """``text_safe`` on every string (keys too) in nested dicts, lists and tuples."""
    if isinstance(obj, str):
        return text_safe(obj)
    if isinstance(obj, dict):
        return {text_safe_tree(k): text_safe_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [text_safe_tree(v) for v in obj]
    return obj


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temp file beside ``path`` and rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes 0600 files; reports and manifests are meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


SUM_SUFFIX = ".sum"


def fingerprint(path: str | Path) -> dict[str, Any]:
    """A file's size and sha256: what a cache records to know the file later."""
    return {"size": Path(path).stat().st_size, "sha256": sha256_file(path)}


def check_fingerprint(path: str | Path, expected: dict[str, Any]) -> str | None:
    """Why the file is not the one ``expected`` records (missing, other size, other checksum), or None.

    The size is compared first, so a truncated file costs a stat, not a hash.
    """
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != expected.get("size"):
        return f"{size} bytes, recorded {expected.get('size')}"
    if sha256_file(path) != expected.get("sha256"):
        return "checksum differs from the recorded one"
    return None


def write_verified(path: str | Path, data: bytes) -> Path:
    """Write a cache file atomically, then its ``.sum`` (size + sha256) beside it.

    The sum is written last: a writer killed in between leaves a file without a
    sum, which ``read_verified`` does not trust.
    """
    path = atomic_write_bytes(path, data)
    atomic_write_text(Path(f"{path}{SUM_SUFFIX}"), json.dumps({"size": len(data), "sha256": sha256_bytes(data)}))
    return path


def read_verified(path: str | Path) -> tuple[bytes | None, str | None]:
    """``(data, None)`` when the cache file matches its ``.sum``; ``(None, None)`` when there is no such
    file; ``(None, reason)`` when one was there but did not verify, its sum included (it is removed, to
    be recomputed)."""
    path = Path(path)
    sum_path = Path(f"{path}{SUM_SUFFIX}")
    if not path.exists():  # no entry (a sum left without its file is dropped)
        with contextlib.suppress(OSError):
            sum_path.unlink()
        return None, None
    try:
        expected = json.loads(sum_path.read_text(encoding="utf-8"))
        data = path.read_bytes()
    except (OSError, ValueError) as e:
        problem = f"unreadable ({type(e).__name__})"
    else:
        if not isinstance(expected, dict) or len(data) != expected.get("size"):
            problem = f"{len(data)} bytes, recorded {expected.get('size') if isinstance(expected, dict) else '?'}"
        elif sha256_bytes(data) != expected.get("sha256"):
            problem = "checksum differs from the recorded one"
        else:
            return data, None
    for p in (path, sum_path):
        with contextlib.suppress(OSError):
            p.unlink()
    return None, problem


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | Path, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``final``; rename it to ``final`` on success.

    On any exception the temp folder is removed, so a failed audit never leaves
    half a report behind. ``replace=False`` is for content-addressed folders that
    several processes may build at once with the same content: the first one
    finished wins and the others' temp folders are dropped.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(mode=0o755)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not replace:
        try:
            os.rename(tmp, final)  # fails when another process put ``final`` in place first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.exists():
                raise
        return
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def sweep_stale_tmp(parent: str | Path, older_than_s: float) -> list[Path]:
    """Remove ``atomic_dir`` temp folders in ``parent`` untouched for ``older_than_s`` seconds.

    A killed process (SIGKILL, power loss) cannot clean up after itself; its
    temp folder is only removed once it is older than any live run could be.
    """
    import time

    parent = Path(parent)
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    now = time.time()
    for p in parent.glob(".tmp-*"):
        try:
            if p.is_dir() and now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        except FileNotFoundError:
            continue
    return removed
