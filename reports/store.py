"""The report store on disk: one folder per audit (audit.json + report.html).

Scanning never crashes on a bad folder: an audit whose audit.json is missing
or corrupt becomes an entry with an ``error`` so the index can list it as broken.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from imaudit.audits.result import AuditResult
from imaudit.errors import BadInputError
from imaudit.io import sha256_bytes

# An audit id is one path segment: no separators and no leading dot (so never '.' or '..'),
# so joined to the store it can only name a folder directly inside it.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]{0,199}")


@dataclass
class AuditEntry:
    """One folder of the store: the parsed result, or why it could not be read."""

    id: str
    folder: Path
    result: AuditResult | None = None
    error: str | None = None
    digest: str | None = None  # "sha256:<hex>" of the audit.json bytes the result was parsed from

    @property
    def broken(self) -> bool:
        return self.result is None

    @property
    def sort_key(self) -> str:
        """ISO timestamp used for newest-first ordering (folder mtime for broken audits)."""
        if self.result is not None:
            return self.result.created
        try:
            mtime = self.folder.stat().st_mtime
        except OSError:
            return ""
        return datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds")


def is_valid_id(audit_id: str) -> bool:
    """True when ``audit_id`` is a single safe path segment (no '..', slashes or absolute paths)."""
    return bool(_ID.fullmatch(audit_id))


def load_audit(folder: Path) -> AuditResult:
    """Read ``folder/audit.json``; BadInputError with a one-line reason naming the file."""
    return read_audit(folder)[0]


def read_audit(folder: Path) -> tuple[AuditResult, str]:
    """``folder/audit.json`` parsed, and the ``sha256:`` digest of the very bytes parsed.

    One read for both, so a decision's recorded digest always names the content that was shown.
    """
    path = Path(folder) / "audit.json"
    if not path.is_file():
        raise BadInputError(f"{path}: missing (not an audit folder)")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: unreadable ({exc})") from exc
    try:
        return AuditResult.model_validate_json(text), "sha256:" + sha256_bytes(data)
    except ValidationError as exc:
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": str(exc)}
        loc = ".".join(str(p) for p in first.get("loc", ())) or "<root>"
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        msg = str(first.get("msg", "")).splitlines()[0] if first.get("msg") else "invalid"
        raise BadInputError(f"{path}: field '{loc}': {msg}{more}") from exc
    except json.JSONDecodeError as exc:  # pydantic reports JSON errors as ValidationError; kept for safety
        raise BadInputError(f"{path}: not valid JSON ({exc})") from exc


def _skip(path: Path) -> bool:
    # '.tmp-*' folders are audits being written (io.atomic_dir); '_' and '.' are ours/hidden.
    return not path.is_dir() or path.name.startswith((".", "_"))


def list_audits(store: Path) -> list[AuditEntry]:
    """Every audit folder in ``store``, newest first; broken folders included with their error."""
    store = Path(store)
    if not store.is_dir():
        return []
    entries: list[AuditEntry] = []
    for folder in store.iterdir():
        if _skip(folder):
            continue
        entry = AuditEntry(id=folder.name, folder=folder)
        try:
            entry.result, entry.digest = read_audit(folder)
        except BadInputError as exc:
            entry.error = str(exc)
        entries.append(entry)
    entries.sort(key=lambda e: (e.sort_key, e.id), reverse=True)
    return entries


def audit_folder(store: Path, audit_id: str) -> Path | None:
    """The folder of ``audit_id`` inside ``store``, or None when the id is unsafe or unknown."""
    if not is_valid_id(audit_id):
        return None
    store = Path(store).resolve()
    folder = (store / audit_id).resolve()
    if folder.parent != store or not folder.is_dir() or _skip(folder):
        return None
    return folder


def resolve_audit(ref: str, store: Path) -> Path:
    """An audit folder from ``ref``: a folder path, or an audit id in ``store``."""
    if not ref or not ref.strip():
        raise BadInputError("unknown audit '': give an audit folder or an audit id")
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    folder = audit_folder(store, ref)
    if folder is None:
        raise BadInputError(f"unknown audit '{ref}': not a folder and not an audit id in {store}")
    return folder


def safe_file(folder: Path, rel: str) -> Path | None:
    """``folder/rel`` when it is an existing file inside ``folder`` (no traversal, no absolute paths)."""
    if not rel or rel.startswith(("/", "\\")) or "\\" in rel or "\x00" in rel:
        return None
    parts = Path(rel).parts
    if any(p in ("..", "") for p in parts) or Path(rel).is_absolute():
        return None
    folder = Path(folder).resolve()
    target = (folder / rel).resolve()
    if not target.is_relative_to(folder) or not target.is_file():
        return None
    return target
