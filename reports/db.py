"""Review decisions in a real database through SQLAlchemy 2.x (SQLite file by default).

The URL comes from the argument, else IMAUDIT_DB_URL, else ``sqlite:///<store>/reviews.db``;
any SQLAlchemy URL works (e.g. ``postgresql+psycopg://...``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import CheckConstraint, DateTime, Integer, String, Text, create_engine, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from imaudit.errors import BadInputError

DECISIONS = ("approve", "reject", "needs-work")
MAX_REVIEWER = 100
MAX_COMMENT = 5000


class Base(DeclarativeBase):
    pass


class Review(Base):
    """One review decision on one audit; an audit's history is all its rows, oldest first."""

    __tablename__ = "imaudit_reviews"
    __table_args__ = (CheckConstraint("decision IN ('approve', 'reject', 'needs-work')", name="ck_review_decision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audit_id: Mapped[str] = mapped_column(String(200), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(MAX_REVIEWER))
    comment: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class Decision:
    """A review row detached from the session (safe to hand to templates and JSON)."""

    id: int
    audit_id: str
    decision: str
    reviewer: str
    comment: str
    created: str

    @classmethod
    def of(cls, row: Review) -> "Decision":
        created = row.created if row.created.tzinfo else row.created.replace(tzinfo=timezone.utc)
        return cls(row.id, row.audit_id, row.decision, row.reviewer, row.comment or "",
                   created.isoformat(timespec="seconds"))


def db_url_for(store: Path, db_url: str | None = None) -> str:
    """The database URL: argument, else IMAUDIT_DB_URL, else a SQLite file in the store."""
    return db_url or os.environ.get("IMAUDIT_DB_URL") or f"sqlite:///{Path(store).resolve() / 'reviews.db'}"


def validate_review(decision: str, reviewer: str, comment: str) -> tuple[str, str, str]:
    """Normalised (decision, reviewer, comment); BadInputError naming the bad form field."""
    decision = (decision or "").strip()
    reviewer = (reviewer or "").strip()
    comment = (comment or "").strip()
    # Shown to the reviewer above the form: say what to do, naming the field as the form labels it.
    if decision not in DECISIONS:
        raise BadInputError(f"Decision: choose one of {', '.join(DECISIONS)}" + (f" ('{decision}' is not one)." if decision else "."))
    if not reviewer:
        raise BadInputError("Your name: enter the name to record as the reviewer.")
    if len(reviewer) > MAX_REVIEWER:
        raise BadInputError(f"Your name: use at most {MAX_REVIEWER} characters (this one has {len(reviewer)}).")
    if len(comment) > MAX_COMMENT:
        raise BadInputError(f"Comment: use at most {MAX_COMMENT} characters (this one has {len(comment)}).")
    return decision, reviewer, comment


class ReviewStore:
    """Add and read review decisions. Creates the table on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict = {}
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise BadInputError(f"database URL (IMAUDIT_DB_URL or --db): cannot parse {url!r}") from exc
        if parsed.get_backend_name() == "sqlite":
            # FastAPI runs sync handlers in a thread pool; each Session is used by one thread.
            kwargs["connect_args"] = {"check_same_thread": False}
            if parsed.database and parsed.database != ":memory:":
                try:
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise BadInputError(f"database URL {url}: cannot create its folder ({exc})") from exc
        shown = parsed.render_as_string(hide_password=True)
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
            Base.metadata.create_all(self.engine)
        except (NoSuchModuleError, ModuleNotFoundError) as exc:
            raise BadInputError(f"database URL {shown}: driver not installed ({exc})") from exc
        except OperationalError as exc:
            raise BadInputError(f"database URL {shown}: cannot connect ({str(exc.orig).splitlines()[0]})") from exc

    def add(self, audit_id: str, decision: str, reviewer: str, comment: str = "") -> Decision:
        """Validate and store one decision."""
        decision, reviewer, comment = validate_review(decision, reviewer, comment)
        with Session(self.engine) as session, session.begin():
            row = Review(audit_id=audit_id, decision=decision, reviewer=reviewer, comment=comment,
                         created=datetime.now(timezone.utc))
            session.add(row)
            session.flush()
            return Decision.of(row)

    def history(self, audit_id: str) -> list[Decision]:
        """All decisions on one audit, oldest first."""
        with Session(self.engine) as session:
            rows = session.scalars(select(Review).where(Review.audit_id == audit_id).order_by(Review.id))
            return [Decision.of(r) for r in rows]

    def latest(self) -> dict[str, Decision]:
        """The newest decision per audit id."""
        with Session(self.engine) as session:
            rows = session.scalars(select(Review).order_by(Review.id))
            return {r.audit_id: Decision.of(r) for r in rows}

    def dispose(self) -> None:
        self.engine.dispose()


def open_existing(store: Path, db_url: str | None = None) -> ReviewStore | None:
    """The review store when one is configured or the default SQLite file exists; never creates a file."""
    url = db_url_for(store, db_url)
    if db_url is None and not os.environ.get("IMAUDIT_DB_URL") and not (Path(store) / "reviews.db").exists():
        return None
    return ReviewStore(url)
