"""Persistence with SQLAlchemy 2: a SQLite file by default, PostgreSQL by URL; schema kept by migrations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine, event, select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from roleplay.errors import NotFoundError, RoleplayError, StoreError

Role = Literal["learner", "facilitator", "designer"]
ROLES: tuple[str, ...] = ("learner", "facilitator", "designer")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A fresh random identifier for sessions and grades."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Person(Base):
    """Someone who uses roleplay: a learner, facilitator or designer."""

    __tablename__ = "people"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CalibrationRating(Base):
    """A facilitator's blind level for one criterion of one anchor transcript."""

    __tablename__ = "calibration_ratings"
    __table_args__ = (UniqueConstraint("person_id", "anchor_id", "criterion_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    anchor_id: Mapped[str] = mapped_column(String(100), index=True)
    criterion_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PracticeSession(Base):
    """One conversation of a learner with a persona."""

    __tablename__ = "practice_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    scenario_id: Mapped[str] = mapped_column(String(64), index=True)
    level: Mapped[str] = mapped_column(String(20))
    engine: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="active")
    end_reason: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    turns: Mapped[list[TurnRow]] = relationship(order_by="TurnRow.idx", back_populates="session")


class TurnRow(Base):
    """One stored turn of a practice session."""

    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("session_id", "idx"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    speaker: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int | None]
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    session: Mapped[PracticeSession] = relationship(back_populates="turns")


class GradeRow(Base):
    """A grade produced by a judge; never updated after it is written."""

    __tablename__ = "grades"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id"), index=True)
    judge: Mapped[str] = mapped_column(String(40))
    rubric_id: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]]
    overall: Mapped[float] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
    prompt: Mapped[str | None] = mapped_column(Text)
    raw_reply: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewRow(Base):
    """The facilitator review of one grade; `version` guards concurrent decisions."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(primary_key=True)
    grade_id: Mapped[str] = mapped_column(ForeignKey("grades.id"), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    version: Mapped[int] = mapped_column(Integer, default=0)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    decided_at: Mapped[datetime | None]
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewEvent(Base):
    """Append-only history of a review: who did what, when and why."""

    __tablename__ = "review_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    action: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CertificationRow(Base):
    """A learner's certification in one sprint."""

    __tablename__ = "certifications"
    __table_args__ = (UniqueConstraint("person_id", "sprint"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    sprint: Mapped[str] = mapped_column(String(40))
    level: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="in_progress")
    signed_off_by: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    comment: Mapped[str | None] = mapped_column(Text)
    credential: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    issued_at: Mapped[datetime | None]


def _describe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used for an error message
        return "<unparseable URL>"


class Store:
    """The database: people, sessions, turns, grades, reviews and certifications.

    Args:
        url: SQLAlchemy URL, e.g. `sqlite:///path/roleplay.db` or `postgresql+psycopg://host/db`.
        migrate: Bring the schema up to date on open (creates it on first start).
    """

    def __init__(self, url: str, migrate: bool = True) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except Exception:  # noqa: BLE001
            raise StoreError(f"ROLEPLAY_DATABASE_URL {url!r} is not a database URL; use sqlite:///file.db or postgresql+psycopg://host/db") from None
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs: dict[str, Any] = {}
        if parsed.drivername.startswith("sqlite"):
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"cannot open database {_describe_url(url)}: {exc}") from None
        if parsed.drivername.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise StoreError(
                f"cannot reach database {_describe_url(self.url)}: {exc.orig}; check ROLEPLAY_DATABASE_URL and that the server is running"
            ) from None

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error."""
        with self._sessions() as db:
            try:
                yield db
                db.commit()
            except RoleplayError:
                db.rollback()
                raise
            except IntegrityError as exc:
                db.rollback()
                raise StoreError(f"the database refused the change: {exc.orig}") from None
            except BaseException:
                db.rollback()
                raise

    # people -------------------------------------------------------------
    def add_person(self, username: str, role: Role, display_name: str | None = None) -> Person:
        """Create a person; the username must be new and the role one of learner, facilitator, designer."""
        if role not in ROLES:
            raise RoleplayError(f"role {role!r} is not valid; use one of: {', '.join(ROLES)}")
        username = username.strip()
        if not username:
            raise RoleplayError("a username cannot be empty")
        with self.session() as db:
            if db.scalar(select(Person).where(Person.username == username)) is not None:
                raise RoleplayError(f"username '{username}' is taken; pick another")
            person = Person(username=username, role=role, display_name=display_name or username)
            db.add(person)
        return person

    def person(self, username: str) -> Person:
        """Look a person up by username."""
        with self.session() as db:
            person = db.scalar(select(Person).where(Person.username == username))
        if person is None:
            raise NotFoundError(f"no person '{username}'; create them with `roleplay people add`")
        return person

    def ensure_person(self, username: str, role: Role, display_name: str | None = None) -> Person:
        """Return the person with this username, creating them with `role` if needed."""
        try:
            return self.person(username)
        except NotFoundError:
            return self.add_person(username, role, display_name)

    def set_password(self, username: str, password: str) -> None:
        """Set a person's sign-in password (stored as a salted PBKDF2 hash)."""
        if len(password) < 4:
            raise RoleplayError("a password needs at least 4 characters")
        with self.session() as db:
            person = db.scalar(select(Person).where(Person.username == username))
            if person is None:
                raise NotFoundError(f"no person '{username}'; create them with `roleplay people add`")
            person.password_hash = hash_password(password)

    def authenticate(self, username: str, password: str) -> Person | None:
        """The person if the password matches, else None (also for unknown users)."""
        with self.session() as db:
            person = db.scalar(select(Person).where(Person.username == username.strip()))
        if person is None or not person.password_hash:
            return None
        return person if check_password(password, person.password_hash) else None

    def seed_demo_people(self) -> list[str]:
        """On an empty database, create learner / facilitator / designer accounts (password = username)."""
        with self.session() as db:
            if db.scalar(select(Person.id).limit(1)) is not None:
                return []
            for role in ROLES:
                db.add(Person(username=role, display_name=f"Demo {role}", role=role, password_hash=hash_password(role)))
        return list(ROLES)

    def people(self) -> list[Person]:
        """Everyone, by username."""
        with self.session() as db:
            return list(db.scalars(select(Person).order_by(Person.username)))

    # practice sessions ----------------------------------------------------
    def start_session(self, person_id: int, scenario_id: str, level: str, engine: str,
                      state: dict[str, Any] | None = None) -> PracticeSession:
        """Record the start of a practice session."""
        with self.session() as db:
            if db.get(Person, person_id) is None:
                raise NotFoundError(f"no person with id {person_id}")
            row = PracticeSession(person_id=person_id, scenario_id=scenario_id, level=level,
                                  engine=engine, state=state or {})
            db.add(row)
        return row

    def add_turn(self, session_id: str, speaker: str, text: str, tokens: int | None = None,
                 meta: dict[str, Any] | None = None, state: dict[str, Any] | None = None) -> TurnRow:
        """Append a turn (committed at once, so nothing is lost if the process dies) and optionally the new state."""
        with self.session() as db:
            sess = db.get(PracticeSession, session_id)
            if sess is None:
                raise NotFoundError(f"no practice session '{session_id}'")
            if sess.status != "active":
                raise RoleplayError(f"session '{session_id}' has ended; start a new one to keep practising")
            last = db.scalar(select(TurnRow.idx).where(TurnRow.session_id == session_id).order_by(TurnRow.idx.desc()).limit(1))
            row = TurnRow(session_id=session_id, idx=(last + 1) if last is not None else 0, speaker=speaker,
                          text=text, tokens=tokens, meta=meta or {})
            db.add(row)
            if state is not None:
                sess.state = state
        return row

    def end_session(self, session_id: str, reason: str, state: dict[str, Any] | None = None) -> PracticeSession:
        """Mark a session ended with a reason (success, walkout, timeout, learner)."""
        with self.session() as db:
            sess = db.get(PracticeSession, session_id)
            if sess is None:
                raise NotFoundError(f"no practice session '{session_id}'")
            sess.status = "ended"
            sess.end_reason = reason
            sess.ended_at = utcnow()
            if state is not None:
                sess.state = state
        return sess

    def get_session(self, session_id: str) -> PracticeSession:
        """A session with its turns loaded."""
        with self.session() as db:
            sess = db.get(PracticeSession, session_id)
            if sess is None:
                raise NotFoundError(f"no practice session '{session_id}'")
            _ = list(sess.turns)
        return sess

    def sessions_for(self, person_id: int) -> list[PracticeSession]:
        """A person's sessions, newest first."""
        with self.session() as db:
            rows = list(db.scalars(select(PracticeSession).where(PracticeSession.person_id == person_id)
                                   .order_by(PracticeSession.started_at.desc())))
        return rows

    # grades -------------------------------------------------------------
    def add_grade(self, session_id: str, judge: str, rubric_id: str, result: dict[str, Any], overall: float,
                  passed: bool, prompt: str | None = None, raw_reply: str | None = None) -> GradeRow:
        """Store a grade and open its review in the same transaction."""
        with self.session() as db:
            if db.get(PracticeSession, session_id) is None:
                raise NotFoundError(f"no practice session '{session_id}'")
            grade = GradeRow(session_id=session_id, judge=judge, rubric_id=rubric_id, result=result,
                             overall=overall, passed=passed, prompt=prompt, raw_reply=raw_reply)
            db.add(grade)
            db.flush()
            db.add(ReviewRow(grade_id=grade.id))
        return grade

    def grades_for(self, session_id: str) -> list[GradeRow]:
        """Grades of a session, oldest first."""
        with self.session() as db:
            return list(db.scalars(select(GradeRow).where(GradeRow.session_id == session_id)
                                   .order_by(GradeRow.created_at)))


def hash_password(password: str, iterations: int = 200_000) -> str:
    """A salted PBKDF2-SHA256 hash in `pbkdf2_sha256$iterations$salt$hash` form."""
    import hashlib
    import secrets

    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def check_password(password: str, stored: str) -> bool:
    """Whether `password` matches a hash made by hash_password (constant-time comparison)."""
    import hashlib
    import hmac

    try:
        _, iterations, salt, digest = stored.split("$")
        candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations)).hex()
    except ValueError:
        return False
    return hmac.compare_digest(candidate, digest)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


_default_store: Store | None = None


def default_store() -> Store:
    """The store named by the settings (created and migrated on first use)."""
    global _default_store
    from roleplay.config import settings

    if _default_store is None:
        _default_store = Store(settings().database_url)
    return _default_store


# --- certification programme: enrolments, reinforcement drills, learning buddies --------------------

from datetime import date

from sqlalchemy import Date


class Enrolment(Base):
    """A learner's place in the certification programme: pre-assessment result and starting level.

    The sprints the learner chose are their `certifications` rows.
    """

    __tablename__ = "enrolments"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), unique=True)
    programme_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(20))
    score: Mapped[int] = mapped_column(Integer)
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    assessed_at: Mapped[datetime] = mapped_column(default=utcnow)
    sprints_chosen_at: Mapped[datetime | None]


class ReinforcementDrill(Base):
    """A practice drill scheduled after a certification, to keep the skill fresh."""

    __tablename__ = "reinforcement_drills"
    __table_args__ = (UniqueConstraint("certification_id", "after_days"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    certification_id: Mapped[int] = mapped_column(ForeignKey("certifications.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    sprint: Mapped[str] = mapped_column(String(40))
    scenario_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(20))
    after_days: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="scheduled")


class BuddyLink(Base):
    """The learning buddy a learner has named (at most one at a time)."""

    __tablename__ = "learning_buddies"
    id: Mapped[int] = mapped_column(primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("people.id"), unique=True)
    buddy_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    named_at: Mapped[datetime] = mapped_column(default=utcnow)


class SharedSessionRow(Base):
    """A practice session a learner shared with their buddy."""

    __tablename__ = "shared_sessions"
    __table_args__ = (UniqueConstraint("session_id", "buddy_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id"), index=True)
    buddy_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    shared_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReflectionRow(Base):
    """A reflection note on a shared practice session, by the buddy (or the learner)."""

    __tablename__ = "buddy_reflections"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
