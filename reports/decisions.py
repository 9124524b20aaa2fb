"""The decision log: review decisions, appended and never changed, each chained to the one before by hash.

A decision records who (the signed-in identity, never a form field), when, which
audit, the model digest and the audit.json digest the reviewer saw, the decision,
the comment, and the finding codes acknowledged. Approving requires acknowledging
every error and warning finding of the audit by its code. A later decision on the
same audit supersedes an earlier one for the gate, but both stay in the log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from imaudit.audits.findings import kind_of
from imaudit.audits.result import AuditResult
from imaudit.errors import BadInputError
from imaudit.reports.accounts import Identity, now_iso
from imaudit.reports.db import DECISIONS, DatabaseProblem, DecisionRow, ReviewDB, problem_text
from imaudit.reports.identity import release_of

MAX_COMMENT = 5000
GENESIS = "0" * 64  # prev_hash of the first decision
APPEND_ATTEMPTS = 50  # another writer may extend the chain first; each attempt re-reads its end


class LogTampered(DatabaseProblem):
    """A decision row no longer matches its hash or its place in the chain."""


@dataclass(frozen=True)
class Decision:
    """One row of the log, detached from the database (safe to hand to templates and JSON)."""

    id: int
    audit_id: str
    decision: str
    reviewer: str
    comment: str
    created: str
    role: str
    auth: str
    release: str | None
    model_digest: str
    audit_digest: str
    acknowledged: tuple[str, ...]
    hash: str

    @classmethod
    def of(cls, row: DecisionRow) -> "Decision":
        return cls(row.id, row.audit_id, row.decision, row.reviewer, row.comment or "", row.created, row.role,
                   row.auth, row.release, row.model_digest, row.audit_digest, tuple(json.loads(row.acknowledged)),
                   row.hash)


@dataclass(frozen=True)
class Seen:
    """The audit a decision is about, as read from disk when the decision is recorded."""

    audit_id: str
    audit_digest: str
    model_digest: str
    release: str | None
    required: tuple[str, ...]  # error and warning finding codes: an approval acknowledges each
    codes: tuple[str, ...]  # every finding code of the audit

    @classmethod
    def of(cls, audit_id: str, result: AuditResult, digest: str) -> "Seen":
        return cls(audit_id, digest, result.model.digest, release_of(result), required_acks(result),
                   tuple(sorted({f.code for f in result.findings})))


def required_acks(result: AuditResult) -> tuple[str, ...]:
    """Codes of the audit's error and warning findings, sorted, each once."""
    return tuple(sorted({f.code for f in result.findings if f.severity in ("error", "warning")}))


def validate(seen: Seen, decision: str, comment: str, acknowledged: Iterable[str]) -> tuple[str, str, tuple[str, ...]]:
    """Normalised (decision, comment, acknowledged codes); BadInputError naming the form field as the form
    labels it and saying what to do (the message is shown to the reviewer above the form)."""
    decision = (decision or "").strip()
    comment = (comment or "").strip()
    if decision not in DECISIONS:
        raise BadInputError(f"Decision: choose one of {', '.join(DECISIONS)}"
                            + (f" ('{decision[:40]}' is not one)." if decision else "."))
    if len(comment) > MAX_COMMENT:
        raise BadInputError(f"Comment: use at most {MAX_COMMENT} characters (this one has {len(comment)}).")
    acks = tuple(sorted({(a or "").strip() for a in acknowledged} - {""}))
    unknown = [a for a in acks if a not in seen.codes]
    if unknown:
        raise BadInputError(f"Acknowledgements: {', '.join(unknown)[:200]} is not a finding of this audit; "
                            "reload the page and tick only the findings it lists.")
    missing = [c for c in seen.required if c not in acks]
    if decision == "approve" and missing:
        named = ", ".join(f"{kind_of(c).title} ({c})" for c in missing)
        raise BadInputError("To approve, tick the box of each error and warning finding in the list above the "
                            f"decision to say you have read it; not acknowledged: {named}.")
    return decision, comment, acks


def chain_hash(prev: str, fields: dict[str, object]) -> str:
    """sha256 over the previous row's hash and this row's fields (canonical JSON)."""
    body = json.dumps([prev, fields], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _fields(row: DecisionRow) -> dict[str, object]:
    return {"audit_id": row.audit_id, "release": row.release, "model_digest": row.model_digest,
            "audit_digest": row.audit_digest, "decision": row.decision, "comment": row.comment,
            "acknowledged": row.acknowledged, "reviewer": row.reviewer, "role": row.role, "auth": row.auth,
            "created": row.created}


class DecisionLog:
    """Append decisions and read them back; nothing here updates or deletes a row."""

    def __init__(self, db: ReviewDB) -> None:
        self.db = db

    def append(self, seen: Seen, who: Identity, decision: str, comment: str = "",
               acknowledged: Iterable[str] = ()) -> Decision:
        """Validate and append one decision by ``who`` (a reviewer or admin) about the audit ``seen``."""
        if not who.can("reviewer"):
            raise PermissionError(f"{who.name} is a {who.role}: only reviewers and admins record decisions")
        decision, comment, acks = validate(seen, decision, comment, acknowledged)
        for _ in range(APPEND_ATTEMPTS):
            try:
                with self.db.writer() as s:
                    last = s.scalars(select(DecisionRow.hash).order_by(DecisionRow.id.desc()).limit(1)).first()
                    row = DecisionRow(audit_id=seen.audit_id, release=seen.release, model_digest=seen.model_digest,
                                      audit_digest=seen.audit_digest, decision=decision, comment=comment,
                                      acknowledged=json.dumps(list(acks)), reviewer=who.name, role=who.role,
                                      auth=who.auth, created=now_iso(), prev_hash=last or GENESIS)
                    row.hash = chain_hash(row.prev_hash, _fields(row))
                    s.add(row)
                    s.flush()
                    done = Decision.of(row)
                return done
            except IntegrityError:
                continue  # another writer appended after the same row first: read the new end and retry
            except SQLAlchemyError as exc:
                raise DatabaseProblem(problem_text(self.db.shown, exc)) from exc
        raise DatabaseProblem(f"review database {self.db.shown}: could not append a decision after "
                              f"{APPEND_ATTEMPTS} attempts (too many concurrent writers)")

    def history(self, audit_id: str) -> list[Decision]:
        """Every decision on one audit, oldest first."""
        with self.db.session() as s:
            q = select(DecisionRow).where(DecisionRow.audit_id == audit_id).order_by(DecisionRow.id)
            return [Decision.of(r) for r in s.scalars(q)]

    def for_release(self, release: str) -> list[Decision]:
        """Every decision on any audit of the release ``NAME@VERSION``, oldest first."""
        with self.db.session() as s:
            q = select(DecisionRow).where(DecisionRow.release == release).order_by(DecisionRow.id)
            return [Decision.of(r) for r in s.scalars(q)]

    def latest(self) -> dict[str, Decision]:
        """The newest decision per audit id."""
        with self.db.session() as s:
            newest = select(func.max(DecisionRow.id)).group_by(DecisionRow.audit_id)
            q = select(DecisionRow).where(DecisionRow.id.in_(newest))
            return {r.audit_id: Decision.of(r) for r in s.scalars(q)}

    def last_id(self) -> int:
        """Id of the newest decision (0 when none): it changes exactly when a decision is appended."""
        with self.db.session() as s:
            return int(s.scalar(select(func.max(DecisionRow.id))) or 0)

    def count(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count(DecisionRow.id))) or 0)

    def verify(self) -> int:
        """Check every row's hash and link; the number of rows, or LogTampered naming the first bad row."""
        prev, n = GENESIS, 0
        with self.db.session() as s:
            for row in s.scalars(select(DecisionRow).order_by(DecisionRow.id)):
                if row.prev_hash != prev or chain_hash(row.prev_hash, _fields(row)) != row.hash:
                    raise LogTampered(f"decision log in {self.db.shown} does not verify at decision {row.id}: "
                                      "a row was edited or removed outside imaudit")
                prev, n = row.hash, n + 1
        return n
