"""Persistence with SQLAlchemy 2: a SQLite file by default, PostgreSQL by URL; schema kept by migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from roleplay.errors import NotFoundError, RoleplayError, StoreError
from roleplay.models import (
    ROLES, GradeRow, Person, PracticeSession, ReviewRow, Role, SessionStatus, TurnRow, utcnow,
)
from roleplay.passwords import check_password, hash_password, needs_rehash

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def find_person(db: Session, username: str) -> Person | None:
    """The person with this username in an open unit of work, or None."""
    return db.scalar(select(Person).where(Person.username == username))


def person_in(db: Session, username: str) -> Person:
    """The person with this username in an open unit of work.

    Raises:
        NotFoundError: nobody has that username.
    """
    person = find_person(db, username)
    if person is None:
        raise NotFoundError(f"no person '{username}'; create them with `roleplay people add {username}`")
    return person


def session_in(db: Session, session_id: str) -> PracticeSession:
    """The practice session with this id in an open unit of work.

    Raises:
        NotFoundError: there is no such session.
    """
    sess = db.get(PracticeSession, session_id)
    if sess is None:
        raise NotFoundError(f"no practice session '{session_id}'")
    return sess


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
            if find_person(db, username) is not None:
                raise RoleplayError(f"username '{username}' is taken; pick another")
            person = Person(username=username, role=role, display_name=display_name or username)
            db.add(person)
        return person

    def person(self, username: str) -> Person:
        """Look a person up by username."""
        with self.session() as db:
            return person_in(db, username)

    def ensure_person(self, username: str, role: Role, display_name: str | None = None) -> Person:
        """Return the person with this username, creating them with `role` if needed."""
        try:
            return self.person(username)
        except NotFoundError:
            return self.add_person(username, role, display_name)

    def set_password(self, username: str, password: str) -> None:
        """Set a person's sign-in password (stored as an argon2id hash)."""
        if len(password) < 4:
            raise RoleplayError("a password needs at least 4 characters")
        with self.session() as db:
            person_in(db, username).password_hash = hash_password(password)

    def authenticate(self, username: str, password: str) -> Person | None:
        """The person if the password matches, else None (also for unknown users).

        A hash made with older parameters (or PBKDF2) is replaced by a fresh argon2id hash on a successful sign-in.
        """
        with self.session() as db:
            person = find_person(db, username.strip())
            if person is None or not check_password(password, person.password_hash):
                return None
            if needs_rehash(person.password_hash or ""):
                person.password_hash = hash_password(password)
        return person

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
            sess = session_in(db, session_id)
            if sess.status != SessionStatus.ACTIVE:
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
            sess = session_in(db, session_id)
            sess.status = SessionStatus.ENDED
            sess.end_reason = reason
            sess.ended_at = utcnow()
            if state is not None:
                sess.state = state
        return sess

    def get_session(self, session_id: str) -> PracticeSession:
        """A session with its turns loaded."""
        with self.session() as db:
            sess = session_in(db, session_id)
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
            session_in(db, session_id)
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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
