"""Which model, and which release, an audit is of (shared by the index, the decision log and the gate)."""

from __future__ import annotations

from collections.abc import Mapping

from imaudit.audits.result import AuditResult


def model_identity(r: AuditResult) -> tuple[str, str | None]:
    """(model name, version): the release's name and version, else the model ref."""
    rel = r.model.release if isinstance(r.model.release, Mapping) else {}
    name, version = rel.get("name"), rel.get("version")
    ref = r.model.ref
    if ref.startswith("release:") and (not name or not version):
        body = ref[len("release:"):]
        n, _, v = body.partition("@")
        name, version = name or n, version or (v or None)
    return (str(name) if name else ref), (str(version) if version else None)


def short_name(name: str) -> str:
    """A model name for headings: a checkpoint file by its file name (the full ref stays beside it),
    anything else as is. Grouping and lookups keep the full name."""
    if name.startswith("file:"):
        tail = name[len("file:"):].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return tail or name
    return name


def is_release_audit(r: AuditResult) -> bool:
    return bool(r.model.release) or r.model.ref.startswith("release:")


def release_of(r: AuditResult) -> str | None:
    """``NAME@VERSION`` of a release audit, else None."""
    if not is_release_audit(r):
        return None
    name, version = model_identity(r)
    return f"{name}@{version}" if version else None
