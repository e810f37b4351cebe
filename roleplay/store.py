"""Persistence with SQLAlchemy 2: a SQLite file by default, PostgreSQL by URL; schema kept by migrations."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import create_engine, delete, event, func, or_, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DatabaseError, DataError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased, sessionmaker

from roleplay.errors import NotFoundError, ReviewError, RoleplayError, StoreError
from roleplay.files import private_file
from roleplay.models import (
    ROLES,
    BuddyLink,
    CalibrationRating,
    CertificationRow,
    Enrolment,
    GradeRow,
    Person,
    PracticeSession,
    ReflectionRow,
    ReinforcementDrill,
    ReviewEvent,
    ReviewRow,
    Role,
    SessionStatus,
    SharedSessionRow,
    TurnRow,
    utcnow,
)
from roleplay.passwords import check_new_password, check_password, hash_password, needs_rehash

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MAX_STORED_TURN_CHARS = 20_000  # a learner turn has at most 4,000; a persona reply at most ROLEPLAY_MAX_REPLY_TOKENS
MAX_STORED_GRADE_CHARS = 1_000_000  # the grade, the exact prompt and the raw reply together


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


class NewTurn(NamedTuple):
    """A turn to store (`Store.add_exchange`)."""

    speaker: str
    text: str
    tokens: int | None = None
    meta: dict[str, Any] | None = None


class SessionHead(NamedTuple):
    """What a turn needs to know of a stored session before it starts (`Store.session_head`)."""

    id: str
    owner: str
    status: str
    scenario_id: str
    level: str
    engine: str
    turns: int

    @property
    def active(self) -> bool:
        """Whether turns may still be added."""
        return self.status == SessionStatus.ACTIVE


class AlreadyGraded(ReviewError):
    """The session already has an open (pending or approved) review; nothing new was stored.

    Attributes:
        review_id: The open review.
    """

    def __init__(self, session_id: str, review_id: int, status: str) -> None:
        super().__init__(f"session {session_id} is already graded: review {review_id} is {status}; nothing new was "
                         f"stored (see `roleplay review show {review_id}`)")
        self.review_id = review_id


SESSION_CHANGED = ("this session changed in another tab or window at the same time, so this turn was not stored; "
                   "it has been reloaded: read the conversation and send again")


class DemoAccount(NamedTuple):
    """A demo account after seeding: its username, role, and what seeding did (created, password set, unchanged)."""

    username: str
    role: str
    action: str


def _raise_if_graded(db: Session, session_id: str) -> None:
    review = db.scalar(select(ReviewRow).where(ReviewRow.open_session_id == session_id))
    if review is not None:
        raise AlreadyGraded(session_id, review.id, review.status)


def _first_line(exc: BaseException) -> str:
    """The driver's own message, first line only (SQLAlchemy appends the SQL statement on later lines)."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]


def _database_problem(exc: DBAPIError) -> str:
    if isinstance(exc, DataError):
        return ("the database cannot store that text (it holds a character such as NUL, \\x00, that text fields do "
                "not allow); remove it and try again")
    if isinstance(exc, IntegrityError):
        return "the change conflicts with something stored at the same time, so nothing was saved; reload and try again"
    if isinstance(exc, OperationalError):
        if "locked" in str(exc.orig).lower():
            return "the database is busy with another writer; nothing was saved, so try again in a moment"
        return f"the database cannot be used right now ({_first_line(exc)}); check that it is running and reachable"
    return f"the database refused the request ({_first_line(exc)}); nothing was saved"


def _count(db: Session, stmt: Any) -> int:
    return int(db.scalar(stmt) or 0)


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
            if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
                private_file(Path(parsed.database).expanduser())
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
        """Create or upgrade the schema to the newest migration.

        Raises:
            StoreError: the server cannot be reached, the file is not a roleplay database (or is damaged), or it
                was made by a newer version of roleplay; one line each, saying what to do.
        """
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        sqlite = self.engine.dialect.name == "sqlite"
        where = f"file {self.engine.url.database}" if sqlite else _describe_url(self.url)
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            if sqlite:
                raise StoreError(f"cannot open the SQLite database {where}: {_first_line(exc)}; check "
                                 "ROLEPLAY_DATABASE_URL (or ROLEPLAY_DATA_DIR) and that the file is readable and "
                                 "writable by this user") from None
            raise StoreError(f"cannot reach database {where}: {_first_line(exc)}; check ROLEPLAY_DATABASE_URL and "
                             "that the server is running") from None
        except DatabaseError as exc:
            raise StoreError(f"the database {where} is not a roleplay database, or it is damaged ({_first_line(exc)}); restore it "
                             "from a backup, or move it away to start with an empty one") from None
        except CommandError as exc:
            raise StoreError(f"the database {where} was made by a newer version of roleplay ({exc}); upgrade "
                             "roleplay, or point ROLEPLAY_DATABASE_URL at another database") from None

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
            except DBAPIError as exc:  # never SQL text to a user: one line on what happened and what to do
                db.rollback()
                log.warning("database error on %s: %s", _describe_url(self.url), _first_line(exc))
                raise StoreError(_database_problem(exc)) from None
            except BaseException:
                db.rollback()
                raise

    # people -------------------------------------------------------------
    def add_person(self, username: str, role: Role, display_name: str | None = None,
                   password: str | None = None) -> Person:
        """Create a person; the username must be new and the role one of learner, facilitator, designer.

        Args:
            password: Their sign-in password for the web app (checked before anything is written), or None.
        """
        if role not in ROLES:
            raise RoleplayError(f"role {role!r} is not valid; use one of: {', '.join(ROLES)}")
        username = username.strip()
        if not username:
            raise RoleplayError("a username cannot be empty")
        hashed = hash_password(check_new_password(password)) if password is not None else None
        with self.session() as db:
            if find_person(db, username) is not None:
                raise RoleplayError(f"username '{username}' is taken; pick another")
            person = Person(username=username, role=role, display_name=display_name or username, password_hash=hashed)
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
        """Set a person's sign-in password (stored as an argon2id hash; at least `MIN_PASSWORD_LENGTH` characters)."""
        hashed = hash_password(check_new_password(password))
        with self.session() as db:
            person_in(db, username).password_hash = hashed

    def authenticate(self, username: str, password: str) -> Person | None:
        """The person if the password matches, else None (also for unknown users, after as long a check).

        A hash made with older parameters (or PBKDF2) is replaced by a fresh argon2id hash on a successful sign-in.
        """
        if "\x00" in username:  # no such username can exist; checked like an unknown one
            check_password(password, None)
            return None
        with self.session() as db:
            person = find_person(db, username.strip())
            stored = person.password_hash if person is not None else None
            if not check_password(password, stored) or person is None:
                return None
            if needs_rehash(stored or ""):
                person.password_hash = hash_password(password)
        return person

    def learner(self, username: str) -> Person:
        """A learner by username, for other learners: one answer for unknown people and people in other roles.

        Raises:
            NotFoundError: no learner has that username (the message does not say whether someone else does).
        """
        with self.session() as db:
            person = find_person(db, username.strip())
            if person is None or person.role != Role.LEARNER:
                raise NotFoundError(f"no learner '{username.strip()}' here; check the username with them")
            return person

    def seed_demo_people(self) -> list[DemoAccount]:
        """Make sure the demo accounts (`learner`, `facilitator`, `designer`, password = username) can sign in.

        Idempotent: each missing demo account is created, even when other people exist, and a demo person without a
        password (e.g. made by `roleplay practice --user learner`) gets theirs; a demo person who already has a
        password keeps it. Demo passwords are shorter than the minimum on purpose: they are for trials only.
        """
        out: list[DemoAccount] = []
        with self.session() as db:
            for role in ROLES:
                person = find_person(db, role)
                if person is None:
                    db.add(Person(username=role, display_name=f"Demo {role}", role=role,
                                  password_hash=hash_password(role)))
                    out.append(DemoAccount(role, role, "created"))
                elif not person.password_hash:
                    person.password_hash = hash_password(role)
                    out.append(DemoAccount(role, person.role, "password set"))
                else:
                    out.append(DemoAccount(role, person.role, "unchanged"))
        return out

    def sign_in_count(self) -> int:
        """How many people can sign in to the web app (have a password)."""
        with self.session() as db:
            return db.scalar(select(func.count()).select_from(Person).where(Person.password_hash.is_not(None))) or 0

    def remove_person(self, username: str) -> int:
        """Remove a person with everything that is theirs; returns how many of their practice sessions went too.

        Their sessions (turns, grades, reviews and review history), enrolment, certifications, drills, buddy links,
        shares, reflections and calibration ratings are deleted in one transaction.

        Raises:
            NotFoundError: nobody has that username.
            RoleplayError: they are the only facilitator, or they reviewed or signed off other people's work (that
                history is kept and names them).
        """
        with self.session() as db:
            person = find_person(db, username.strip())
            if person is None:
                raise NotFoundError(f"no person '{username}'; see `roleplay people list`")
            pid = person.id
            if person.role == Role.FACILITATOR and (db.scalar(select(func.count()).select_from(Person).where(
                    Person.role == Role.FACILITATOR)) or 0) <= 1:
                raise RoleplayError(f"'{username}' is the only facilitator, and only facilitators review grades and "
                                    "sign off certifications; add another first with `roleplay people add NAME "
                                    "--role facilitator --password`")
            sessions = select(PracticeSession.id).where(PracticeSession.person_id == pid)
            grades = select(GradeRow.id).where(GradeRow.session_id.in_(sessions))
            reviews = select(ReviewRow.id).where(ReviewRow.grade_id.in_(grades))
            decided = (_count(db, select(func.count()).select_from(ReviewEvent).where(
                           ReviewEvent.actor_id == pid, ReviewEvent.review_id.not_in(reviews)))
                       + _count(db, select(func.count()).select_from(ReviewRow).where(
                           ReviewRow.decided_by == pid, ReviewRow.id.not_in(reviews)))
                       + _count(db, select(func.count()).select_from(CertificationRow).where(
                           CertificationRow.signed_off_by == pid, CertificationRow.person_id != pid)))
            if decided:
                raise RoleplayError(f"'{username}' reviewed or signed off other people's work ({decided} recorded "
                                    "decisions); that history is kept and names them, so they cannot be removed. "
                                    f"Lock them out instead with `roleplay people password {username}`")
            count = _count(db, select(func.count()).select_from(PracticeSession).where(PracticeSession.person_id == pid))
            for stmt in (
                delete(ReviewEvent).where(ReviewEvent.review_id.in_(reviews)),
                delete(ReviewRow).where(ReviewRow.id.in_(reviews)),
                delete(GradeRow).where(GradeRow.id.in_(grades)),
                delete(SharedSessionRow).where(or_(SharedSessionRow.session_id.in_(sessions),
                                                   SharedSessionRow.buddy_id == pid)),
                delete(ReflectionRow).where(or_(ReflectionRow.session_id.in_(sessions), ReflectionRow.author_id == pid)),
                delete(TurnRow).where(TurnRow.session_id.in_(sessions)),
                delete(PracticeSession).where(PracticeSession.person_id == pid),
                delete(ReinforcementDrill).where(ReinforcementDrill.person_id == pid),
                delete(CertificationRow).where(CertificationRow.person_id == pid),
                delete(Enrolment).where(Enrolment.person_id == pid),
                delete(BuddyLink).where(or_(BuddyLink.learner_id == pid, BuddyLink.buddy_id == pid)),
                delete(CalibrationRating).where(CalibrationRating.person_id == pid),
                delete(Person).where(Person.id == pid),
            ):
                db.execute(stmt)
        return count

    def people(self) -> list[Person]:
        """Everyone, by username."""
        with self.session() as db:
            return list(db.scalars(select(Person).order_by(Person.username)))

    def set_role(self, username: str, role: Role) -> Person:
        """Change a person's role.

        Raises:
            NotFoundError: nobody has that username.
            RoleplayError: the role is not valid, or they are the only facilitator and would stop being one.
        """
        if role not in ROLES:
            raise RoleplayError(f"role {role!r} is not valid; use one of: {', '.join(ROLES)}")
        with self.session() as db:
            person = person_in(db, username.strip())
            if person.role == Role.FACILITATOR and role != Role.FACILITATOR and _count(
                    db, select(func.count()).select_from(Person).where(Person.role == Role.FACILITATOR)) <= 1:
                raise RoleplayError(f"'{person.username}' is the only facilitator, and only facilitators review grades "
                                    "and sign off certifications; make someone else a facilitator first")
            person.role = str(role)
        return person

    def buddy_links(self) -> dict[str, str]:
        """Every learner who has named a learning buddy, with the buddy's username."""
        with self.session() as db:
            learner, buddy = aliased(Person), aliased(Person)
            rows = db.execute(select(learner.username, buddy.username)
                              .join(BuddyLink, BuddyLink.learner_id == learner.id)
                              .join(buddy, buddy.id == BuddyLink.buddy_id))
            return {a: b for a, b in rows}

    def drop_buddy_links(self, username: str, *, as_buddy: bool = True) -> int:
        """Remove the learning-buddy link a person named, and (with `as_buddy`) the links naming them; returns how many.

        Sessions shared along a removed link stay stored but can no longer be opened by the former buddy.
        """
        with self.session() as db:
            pid = person_in(db, username.strip()).id
            where = or_(BuddyLink.learner_id == pid, BuddyLink.buddy_id == pid) if as_buddy else BuddyLink.learner_id == pid
            return db.execute(delete(BuddyLink).where(where)).rowcount or 0

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
                 meta: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
                 idx: int | None = None) -> TurnRow:
        """Append a turn (committed at once, so nothing is lost if the process dies) and optionally the new state.

        Args:
            idx: The position the writer expects the turn to take; when another writer (a second tab, another
                process) stored a turn first, the turn is refused instead of being stored out of step.

        Raises:
            StoreError: the text is longer than `MAX_STORED_TURN_CHARS`, or the session changed meanwhile (nothing
                is stored).
        """
        if len(text) > MAX_STORED_TURN_CHARS:
            raise StoreError(f"a {speaker} turn of {len(text):,} characters is longer than the "
                             f"{MAX_STORED_TURN_CHARS:,} a turn may have; nothing of it was stored")
        with self.session() as db:
            sess = session_in(db, session_id)
            if sess.status != SessionStatus.ACTIVE:
                raise RoleplayError(f"session '{session_id}' has ended; start a new one to keep practising")
            last = db.scalar(select(TurnRow.idx).where(TurnRow.session_id == session_id).order_by(TurnRow.idx.desc()).limit(1))
            position = (last + 1) if last is not None else 0
            if idx is not None and idx != position:
                raise StoreError(SESSION_CHANGED)
            row = TurnRow(session_id=session_id, idx=position, speaker=speaker, text=text, tokens=tokens,
                          meta=meta or {})
            db.add(row)
            if state is not None:
                sess.state = state
            try:
                db.flush()  # a second writer of the same position fails here (or waits for the database lock)
            except (IntegrityError, OperationalError):
                raise StoreError(SESSION_CHANGED) from None
        return row

    def add_exchange(self, session_id: str, turns: list[NewTurn], state: dict[str, Any], first_idx: int,
                     end_reason: str | None = None) -> None:
        """Store one exchange in one transaction: the turns (the learner's line and the replies to it), the
        conversation state after them and, when the conversation ended with them, the end.

        All or nothing: a reply that failed half-way stores none of the exchange, and the learner's line can be sent
        again.

        Args:
            first_idx: The position the writer expects the first turn to take; when another writer (a second tab,
                another process) stored a turn first, nothing is stored.

        Raises:
            StoreError: a turn is longer than `MAX_STORED_TURN_CHARS`, or the session changed meanwhile.
            RoleplayError: the session has ended.
        """
        for t in turns:
            if len(t.text) > MAX_STORED_TURN_CHARS:
                raise StoreError(f"a {t.speaker} turn of {len(t.text):,} characters is longer than the "
                                 f"{MAX_STORED_TURN_CHARS:,} a turn may have; nothing of it was stored")
        with self.session() as db:
            status, count = db.execute(
                select(PracticeSession.status,
                       select(func.count(TurnRow.id)).where(TurnRow.session_id == session_id).scalar_subquery())
                .where(PracticeSession.id == session_id)).one_or_none() or (None, 0)
            if status is None:
                raise NotFoundError(f"no practice session '{session_id}'")
            if status != SessionStatus.ACTIVE:
                raise RoleplayError(f"session '{session_id}' has ended; start a new one to keep practising")
            if count != first_idx:
                raise StoreError(SESSION_CHANGED)
            db.add_all(TurnRow(session_id=session_id, idx=first_idx + i, speaker=t.speaker, text=t.text,
                               tokens=t.tokens, meta=t.meta or {}) for i, t in enumerate(turns))
            values: dict[str, Any] = {"state": state}
            if end_reason is not None:
                values.update(status=SessionStatus.ENDED, end_reason=end_reason, ended_at=utcnow())
            db.execute(update(PracticeSession).where(PracticeSession.id == session_id,
                                                     PracticeSession.status == SessionStatus.ACTIVE).values(**values))
            try:
                db.flush()  # a second writer of the same positions fails here (or waits for the database lock)
            except (IntegrityError, OperationalError):
                raise StoreError(SESSION_CHANGED) from None

    def session_head(self, session_id: str) -> SessionHead:
        """Who a session belongs to, whether it is active and how many turns it has, in one query (no turns loaded).

        Raises:
            NotFoundError: there is no such session.
        """
        with self.session() as db:
            row = db.execute(
                select(PracticeSession.id, Person.username, PracticeSession.status, PracticeSession.scenario_id,
                       PracticeSession.level, PracticeSession.engine,
                       select(func.count(TurnRow.id)).where(TurnRow.session_id == PracticeSession.id)
                       .scalar_subquery())
                .join(Person, Person.id == PracticeSession.person_id)
                .where(PracticeSession.id == session_id)).one_or_none()
        if row is None:
            raise NotFoundError(f"no practice session '{session_id}'")
        return SessionHead(*row)

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
        """Store a grade and open its review in the same transaction; a session has one open review at most.

        Raises:
            AlreadyGraded: the session has a pending or approved review (also when another grader won a race).
            StoreError: the grade with its prompt and raw reply is larger than `MAX_STORED_GRADE_CHARS`.
        """
        size = len(json.dumps(result, default=str)) + len(prompt or "") + len(raw_reply or "")
        if size > MAX_STORED_GRADE_CHARS:
            raise StoreError(f"a grade of {size:,} characters (with its prompt and the model's raw reply) is larger "
                             f"than the {MAX_STORED_GRADE_CHARS:,} a grade may have; nothing was stored, so grade "
                             "the session again (check ROLEPLAY_MAX_GRADE_TOKENS and the endpoint)")
        raced = False
        with self.session() as db:
            session_in(db, session_id)
            _raise_if_graded(db, session_id)
            grade = GradeRow(session_id=session_id, judge=judge, rubric_id=rubric_id, result=result,
                             overall=overall, passed=passed, prompt=prompt, raw_reply=raw_reply)
            db.add(grade)
            db.flush()
            db.add(ReviewRow(grade_id=grade.id, open_session_id=session_id))
            try:
                db.flush()  # the unique open_session_id lets one of two racing graders through
            except (IntegrityError, OperationalError):
                db.rollback()
                raced = True
        if raced:
            with self.session() as db:
                _raise_if_graded(db, session_id)
            raise StoreError(f"session {session_id} was being graded elsewhere at the same time; try again")
        return grade

    def open_review_id(self, session_id: str) -> int | None:
        """The session's open (pending or approved) review, if it has one."""
        with self.session() as db:
            return db.scalar(select(ReviewRow.id).where(ReviewRow.open_session_id == session_id))

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
