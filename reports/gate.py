"""The release gate: may ``release:NAME@VERSION`` be promoted?

Yes only when the latest complete audit of that release is approved by a signed-in
reviewer (its latest decision is ``approve``, recorded with a password or proxy
identity, for the audit.json that is on disk now) and no newer audit of the release
is waiting for review. ``imaudit gate`` calls :func:`release_gate`, and so can a
Prefect flow. Decisions on other audits of the release are reported as applying to
those audits only: a re-audit of an approved release needs its own review.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imaudit.audits.result import AuditResult
from imaudit.audits.verdict import verdict as audit_verdict
from imaudit.errors import BadInputError
from imaudit.reports.catalog import StoreCatalog
from imaudit.reports.db import open_existing
from imaudit.reports.decisions import Decision, DecisionLog
from imaudit.reports.identity import release_of
from imaudit.reports.store import AuditEntry

_REF = re.compile(r"release:([A-Za-z0-9][A-Za-z0-9._+-]*)@([A-Za-z0-9][A-Za-z0-9._+-]*)")


@dataclass(frozen=True)
class GateVerdict:
    """The answer and the one line that says why."""

    release: str
    passed: bool
    reason: str
    audit_id: str | None = None
    decision: Decision | None = None

    def line(self) -> str:
        return f"release:{self.release}: {'passed' if self.passed else 'not approved'}: {self.reason}"


def parse_release(ref: str) -> str:
    """``NAME@VERSION`` from ``release:NAME@VERSION``; BadInputError otherwise."""
    m = _REF.fullmatch((ref or "").strip())
    if m is None:
        raise BadInputError(f"release ref {ref!r}: expected release:NAME@VERSION")
    return f"{m.group(1)}@{m.group(2)}"


def release_audits(entries: list[AuditEntry], release: str) -> list[AuditEntry]:
    """Readable audits of ``release``, oldest first."""
    mine = [e for e in entries if e.result is not None and release_of(e.result) == release]
    return sorted(mine, key=lambda e: (e.result.created, e.id))


def related_decisions(result: AuditResult, audit_id: str, entries: list[AuditEntry],
                      latest: Mapping[str, Decision]) -> list[dict[str, Any]]:
    """The newest decision on each OTHER audit of this audit's release, saying which audit it applies to.

    A re-audit of an approved release is not approved: the page shows the earlier
    approval as one that applies to an older audit (and whether the model was the same).
    """
    release = release_of(result)
    if release is None:
        return []
    out = []
    for e in release_audits(entries, release):
        d = latest.get(e.id)
        if e.id == audit_id or d is None:
            continue
        older = (e.result.created, e.id) < (result.created, audit_id)
        out.append({"audit_id": e.id, "older": older, "decision": d.decision, "reviewer": d.reviewer,
                    "created": d.created, "audit_created": e.result.created,
                    "same_model": e.result.model.digest == result.model.digest})
    return out


def verdict(release: str, entries: list[AuditEntry], latest: Mapping[str, Decision]) -> GateVerdict:
    """The gate's answer from the store's audits and the newest decision per audit."""
    audits = release_audits(entries, release)
    if not audits:
        return GateVerdict(release, False, "no audit of this release in the store")
    complete = [e for e in audits if e.result.status == "complete"]
    if not complete:
        return GateVerdict(release, False, f"no complete audit ({len(audits)} audit(s), none complete)")
    head = complete[-1]
    newer_pending = [e.id for e in audits[audits.index(head) + 1:] if e.id not in latest]
    d = latest.get(head.id)
    if d is None:
        return GateVerdict(release, False, f"latest complete audit {head.id} is pending review", head.id)
    who = f"{d.reviewer} at {d.created[:19].replace('T', ' ')}"
    if d.decision != "approve":
        return GateVerdict(release, False, f"latest complete audit {head.id}: {d.decision} by {who}", head.id, d)
    if d.auth == "none" or d.role not in ("reviewer", "admin"):
        return GateVerdict(release, False, f"latest complete audit {head.id} was approved without sign-in "
                           "(--insecure-no-auth); only a signed-in reviewer's approval counts", head.id, d)
    if d.audit_digest != head.digest:
        return GateVerdict(release, False, f"audit.json of {head.id} changed after {who} approved it", head.id, d)
    if newer_pending:
        return GateVerdict(release, False, f"audit {head.id} is approved but newer audit {newer_pending[-1]} "
                           "is pending review", head.id, d)
    acks = f" (acknowledged {', '.join(d.acknowledged)})" if d.acknowledged else ""
    # The audit's own verdict, in the words the report, the index and the CLI use.
    said = audit_verdict(head.result).label
    return GateVerdict(release, True, f"audit {head.id} approved by {who}{acks}; the audit's verdict: {said}", head.id, d)


def release_gate(ref: str, store: Path, db_url: str | None = None) -> GateVerdict:
    """The gate for ``release:NAME@VERSION`` over the report store and its review database.

    BadInputError for a malformed ref or database URL; DatabaseProblem (incl. a decision
    log that does not verify) when the database cannot be trusted or read.
    """
    release = parse_release(ref)
    db = open_existing(Path(store), db_url)
    latest: dict[str, Decision] = {}
    if db is not None:
        try:
            log = DecisionLog(db)
            log.verify()
            latest = log.latest()
        finally:
            db.dispose()
    return verdict(release, StoreCatalog(Path(store)).entries(), latest)
