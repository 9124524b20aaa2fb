"""Reviewer accounts and login sessions in the review database.

Passwords are hashed with argon2id (argon2-cffi's PasswordHasher, RFC 9106 low-memory
profile: 64 MiB, 3 passes); hashing is memory-hard on purpose, so at most
``HASH_SLOTS`` run at once and a burst of sign-ins cannot exhaust memory.

Sessions live in the database rather than in a signed cookie (Starlette's
SessionMiddleware) so that signing out, disabling an account or changing its role
takes effect at once: the cookie holds a random token, the table its sha256, the
session's CSRF token and its expiry.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select

from imaudit.errors import BadInputError
from imaudit.reports.db import ROLES, LoginSession, Reviewer, ReviewDB

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
SESSION_HOURS = 12.0
HASH_SLOTS = threading.BoundedSemaphore(2)
RANK = {role: i for i, role in enumerate(ROLES)}

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the name is unknown, so a wrong name costs as long as a wrong password."""
    return _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class Identity:
    """Who is asking: the account name, its role and how it was established (password, proxy or none)."""

    name: str
    role: str
    auth: str

    def can(self, role: str) -> bool:
        """True when this identity's role is at least ``role`` (viewer < reviewer < admin)."""
        return RANK[self.role] >= RANK[role]


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    has_password: bool
    disabled: bool
    created: str


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def check_name(name: str) -> str:
    """A valid account name, or BadInputError naming the rule."""
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        raise BadInputError(f"reviewer name {name!r}: use 1-100 letters, digits and . _ @ + - "
                            "(starting with a letter or digit)")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise BadInputError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadInputError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadInputError(f"password: at most {MAX_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    with HASH_SLOTS:
        return _hasher.hash(check_password(password))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Create, change and check reviewer accounts; start, look up and end sessions."""

    def __init__(self, db: ReviewDB) -> None:
        self.db = db

    # --- accounts ------------------------------------------------------------------------
    def add(self, name: str, role: str = "reviewer", password: str | None = None) -> Account:
        """A new account; ``password=None`` makes a proxy-only account (it cannot sign in with a password)."""
        name, role = check_name(name), check_role(role)
        hashed = hash_password(password) if password is not None else None
        with self.db.session() as s:
            if s.get(Reviewer, name) is not None:
                raise BadInputError(f"reviewer {name!r} already exists (use 'imaudit reviewers password' or 'role')")
            row = Reviewer(name=name, role=role, password_hash=hashed, disabled=False, created=now_iso())
            s.add(row)
            return _account(row)

    def _change(self, name: str, **values: object) -> Account:
        with self.db.session() as s:
            row = s.get(Reviewer, check_name(name))
            if row is None:
                raise BadInputError(f"reviewer {name!r}: no such account (see 'imaudit reviewers list')")
            for key, value in values.items():
                setattr(row, key, value)
            if values.get("disabled") or "password_hash" in values:
                s.execute(delete(LoginSession).where(LoginSession.reviewer == row.name))
            return _account(row)

    def set_password(self, name: str, password: str) -> Account:
        """New password; the account's open sessions end."""
        return self._change(name, password_hash=hash_password(password))

    def set_role(self, name: str, role: str) -> Account:
        return self._change(name, role=check_role(role))

    def set_disabled(self, name: str, disabled: bool) -> Account:
        """Disable (sessions end, sign-in refused) or enable an account."""
        return self._change(name, disabled=disabled)

    def get(self, name: str) -> Account | None:
        with self.db.session() as s:
            row = s.get(Reviewer, name)
            return None if row is None else _account(row)

    def all(self) -> list[Account]:
        with self.db.session() as s:
            return [_account(r) for r in s.scalars(select(Reviewer).order_by(Reviewer.name))]

    def any_password(self) -> bool:
        """True when at least one enabled account can sign in with a password (authentication is configured)."""
        with self.db.session() as s:
            q = select(Reviewer.name).where(Reviewer.password_hash.is_not(None), Reviewer.disabled.is_(False))
            return s.scalars(q.limit(1)).first() is not None

    def verify(self, name: str, password: str) -> Identity | None:
        """The identity when ``password`` is right for an enabled account, else None (same cost either way)."""
        with self.db.session() as s:
            row = s.get(Reviewer, name) if NAME.fullmatch(name or "") else None
            stored = row.password_hash if row is not None and not row.disabled else None
        try:
            with HASH_SLOTS:
                _hasher.verify(stored or _dummy_hash(), password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            return None
        if stored is None or row is None:
            return None
        if _hasher.check_needs_rehash(stored):  # parameters were raised since this hash was made
            self._change(row.name, password_hash=hash_password(password))
        return Identity(row.name, row.role, "password")

    # --- sessions ------------------------------------------------------------------------
    def start_session(self, name: str, auth: str, hours: float = SESSION_HOURS) -> tuple[str, str]:
        """A new session for ``name``: (cookie token, CSRF token). Expired sessions are swept here."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = datetime.now(timezone.utc)
        with self.db.session() as s:
            s.execute(delete(LoginSession).where(LoginSession.expires < now.isoformat(timespec="microseconds")))
            s.add(LoginSession(token_hash=_token_hash(token), reviewer=name, auth=auth, csrf=csrf,
                               created=now.isoformat(timespec="microseconds"),
                               expires=(now + timedelta(hours=hours)).isoformat(timespec="microseconds")))
        return token, csrf

    def session(self, token: str, proxy_role: str | None = None) -> tuple[Identity, str] | None:
        """(identity, CSRF token) of a live session, with the account's current role; None when expired or unknown.

        A proxy session of a name without an account gets ``proxy_role`` (None: refused).
        """
        if not token or len(token) > 200:
            return None
        with self.db.session() as s:
            row = s.get(LoginSession, _token_hash(token))
            if row is None or row.expires < now_iso():
                return None
            account = s.get(Reviewer, row.reviewer)
            if account is not None:
                if account.disabled or (row.auth == "password" and account.password_hash is None):
                    return None
                role = account.role
            elif row.auth == "proxy" and proxy_role is not None:
                role = proxy_role
            else:
                return None
            return Identity(row.reviewer, role, row.auth), row.csrf

    def end_session(self, token: str) -> None:
        with self.db.session() as s:
            s.execute(delete(LoginSession).where(LoginSession.token_hash == _token_hash(token)))


def _account(row: Reviewer) -> Account:
    return Account(row.name, row.role, row.password_hash is not None, bool(row.disabled), row.created)
