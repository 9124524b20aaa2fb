"""The review database through SQLAlchemy 2.x (a SQLite file in the store by default).

Three tables: reviewer accounts, login sessions, and the append-only decision log.
The URL comes from the argument, else IMAUDIT_DB_URL, else ``sqlite:///<store>/reviews.db``;
any SQLAlchemy URL works (e.g. ``postgresql+psycopg://...``). Every database failure
(a corrupt file, a lock held too long, a server that went away) surfaces as one
``DatabaseProblem`` with a one-line message: the CLI prints it and exits 3, the app
shows it as a page, and an audit's index refresh notes it and carries on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import (Boolean, CheckConstraint, Integer, String, Text, create_engine, event, text)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from imaudit.errors import BadInputError, ImauditError

ROLES = ("viewer", "reviewer", "admin")
DECISIONS = ("approve", "reject", "needs-work")
AUTH_KINDS = ("password", "proxy", "none")
LOCK_WAIT_S = 15  # how long a writer waits for SQLite's lock before the request fails


class DatabaseProblem(ImauditError):
    """The review database exists but cannot be used (corrupt, locked, unreachable). CLI exit 3."""


class Base(DeclarativeBase):
    pass


class Reviewer(Base):
    """An account. ``password_hash`` is an argon2id PHC string; NULL for proxy-only (single sign-on) accounts."""

    __tablename__ = "imaudit_reviewers"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'reviewer', 'admin')", name="ck_reviewer_role"),)

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[str] = mapped_column(String(40))


class LoginSession(Base):
    """A signed-in browser. Only the token's sha256 is stored, so a copy of the database opens no session."""

    __tablename__ = "imaudit_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reviewer: Mapped[str] = mapped_column(String(100), index=True)
    auth: Mapped[str] = mapped_column(String(16))
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[str] = mapped_column(String(40))
    expires: Mapped[str] = mapped_column(String(40))


class DecisionRow(Base):
    """One review decision. Rows are only ever inserted (SQLite triggers refuse UPDATE and DELETE).

    ``hash`` chains each row to the one before (``prev_hash``, unique, so two writers
    cannot both extend the same row): an edited or removed row breaks the chain.
    """

    __tablename__ = "imaudit_decisions"
    __table_args__ = (
        CheckConstraint("decision IN ('approve', 'reject', 'needs-work')", name="ck_decision_value"),
        CheckConstraint("auth IN ('password', 'proxy', 'none')", name="ck_decision_auth"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audit_id: Mapped[str] = mapped_column(String(200), index=True)
    release: Mapped[str | None] = mapped_column(String(300), index=True, nullable=True)
    model_digest: Mapped[str] = mapped_column(String(100))
    audit_digest: Mapped[str] = mapped_column(String(100))
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    acknowledged: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of finding codes
    reviewer: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    auth: Mapped[str] = mapped_column(String(16))
    created: Mapped[str] = mapped_column(String(40))
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


# SQLite: the log refuses rewriting at the database level, not only in the app.
# (Other databases: grant the app's user INSERT and SELECT only on imaudit_decisions.)
_SQLITE_APPEND_ONLY = [
    f"CREATE TRIGGER IF NOT EXISTS imaudit_decisions_no_{op.lower()} BEFORE {op} ON imaudit_decisions "
    "BEGIN SELECT RAISE(ABORT, 'imaudit_decisions is append-only'); END"
    for op in ("UPDATE", "DELETE")
]


def db_url_for(store: Path, db_url: str | None = None) -> str:
    """The database URL: argument, else IMAUDIT_DB_URL, else a SQLite file in the store."""
    return db_url or os.environ.get("IMAUDIT_DB_URL") or f"sqlite:///{Path(store).resolve() / 'reviews.db'}"


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def problem_text(shown: str, exc: BaseException) -> str:
    """One line that says what is wrong with the database and what to do about it."""
    why = _first_line(exc)
    low = why.lower()
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return (f"review database {shown} is unreadable ({why}); audits and reports are unaffected: "
                "move the file aside and restore a backup, or start a new one")
    if "locked" in low or "busy" in low:
        return f"review database {shown} is locked by another process ({why}); try again when it is released"
    return f"review database {shown} cannot be used ({why})"


class ReviewDB:
    """An engine over the review database with the tables created; every failure is a DatabaseProblem."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise BadInputError(f"database URL (IMAUDIT_DB_URL or --db): cannot parse {url!r}") from exc
        self.shown = parsed.render_as_string(hide_password=True)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict = {}
        if self.sqlite:
            # FastAPI runs sync handlers in a thread pool; each connection is used by one thread at a time.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": LOCK_WAIT_S}
            if parsed.database and parsed.database != ":memory:":
                self.shown = parsed.database
                try:
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise BadInputError(f"database URL {url}: cannot create its folder ({exc})") from exc
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (NoSuchModuleError, ModuleNotFoundError) as exc:
            raise BadInputError(f"database URL {self.shown}: driver not installed ({exc})") from exc
        if self.sqlite:
            _sqlite_transactions(self.engine)
        with self.errors():
            Base.metadata.create_all(self.engine)
            if self.sqlite:
                with self.engine.begin() as conn:
                    for ddl in _SQLITE_APPEND_ONLY:
                        conn.exec_driver_sql(ddl)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn any SQLAlchemy failure inside the block into a one-line DatabaseProblem."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise DatabaseProblem(problem_text(self.shown, exc)) from exc

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A read/write session in one transaction (committed at the end, rolled back on error)."""
        with self.errors(), Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    @contextlib.contextmanager
    def writer(self) -> Iterator[Session]:
        """A session whose transaction takes the write lock first (SQLite BEGIN IMMEDIATE).

        A reader that later writes can dead-lock with another such reader under SQLite
        (both hold SHARED, neither may upgrade); taking the lock up front makes
        concurrent appends queue instead of failing.
        """
        with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
            with Session(bind=conn, expire_on_commit=False) as s, s.begin():
                yield s

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_transactions(engine: Engine) -> None:
    """pysqlite's own transaction handling cannot BEGIN IMMEDIATE; let SQLAlchemy emit BEGIN itself.

    This is SQLAlchemy's documented recipe for pysqlite; WAL lets page loads read
    while a decision is being written.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI types
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def open_review_db(store: Path, db_url: str | None = None) -> ReviewDB:
    """The review database of ``store`` (created when missing)."""
    return ReviewDB(db_url_for(store, db_url))


def open_existing(store: Path, db_url: str | None = None) -> ReviewDB | None:
    """The review database when one is configured or the default SQLite file exists; never creates a file."""
    if db_url is None and not os.environ.get("IMAUDIT_DB_URL") and not (Path(store) / "reviews.db").exists():
        return None
    return open_review_db(store, db_url)


def ping(db: ReviewDB) -> None:
    """Read something from every table, so a corrupt file fails here rather than mid-request."""
    with db.errors(), db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            conn.execute(text(f"SELECT count(*) FROM {table.name}")).scalar()
