"""Learning buddies: a learner names a colleague, shares practice sessions with them, and both leave reflections."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from roleplay.errors import BuddyError, PermissionDenied
from roleplay.models import BuddyLink, Person, PracticeSession, ReflectionRow, SharedSessionRow, utcnow
from roleplay.store import Store, person_in, session_in

MAX_NOTE = 4000


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SharedSession(_Out):
    """A practice session shared with a buddy."""

    session_id: str = Field(description="Practice session.")
    learner: str = Field(description="Whose session it is.")
    scenario_id: str = Field(description="Scenario practised.")
    level: str = Field(description="Difficulty practised.")
    started_at: datetime = Field(description="When the session started.")
    shared_at: datetime = Field(description="When it was shared.")


class SharedTurn(_Out):
    """One turn of a shared session."""

    speaker: str = Field(description="learner or persona.")
    text: str = Field(description="What was said.")


class Reflection(_Out):
    """A reflection note on a session."""

    session_id: str = Field(description="Practice session.")
    author: str = Field(description="Who wrote it.")
    note: str = Field(description="The note.")
    created_at: datetime = Field(description="When.")


class SharedSessionView(_Out):
    """A shared session with its transcript and reflections, for the learner or their buddy."""

    session: SharedSession = Field(description="The session.")
    turns: list[SharedTurn] = Field(description="The transcript, in order.")
    reflections: list[Reflection] = Field(description="Reflections so far, oldest first.")


def _link(db: Session, learner: Person) -> BuddyLink | None:
    return db.scalar(select(BuddyLink).where(BuddyLink.learner_id == learner.id))


def _shared(sess: PracticeSession, learner: str, shared_at: datetime) -> SharedSession:
    return SharedSession(session_id=sess.id, learner=learner, scenario_id=sess.scenario_id, level=sess.level,
                         started_at=sess.started_at, shared_at=shared_at)


class BuddyService:
    """Who may read whose shared sessions, and their reflections; every check is made here, not in the UI.

    Args:
        store: The database.
        clock: Returns the current UTC time.
    """

    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.clock = clock

    def name_buddy(self, learner: str, buddy_username: str) -> None:
        """Name (or change) the learner's learning buddy.

        A buddy sees shared sessions only while they are the named buddy, so naming someone else withdraws the
        previous buddy's access (sessions must be shared again with the new one).

        Raises:
            BuddyError: naming oneself.
            NotFoundError: no such person.
        """
        if learner == buddy_username:
            raise BuddyError("you cannot be your own learning buddy; name a colleague on the programme")
        with self.store.session() as db:
            me, buddy = person_in(db, learner), person_in(db, buddy_username)
            link = _link(db, me)
            if link is None:
                db.add(BuddyLink(learner_id=me.id, buddy_id=buddy.id, named_at=self.clock()))
            elif link.buddy_id != buddy.id:
                link.buddy_id, link.named_at = buddy.id, self.clock()

    def buddy_of(self, learner: str) -> str | None:
        """The learner's current buddy, if any."""
        with self.store.session() as db:
            me = person_in(db, learner)
            link = _link(db, me)
            return db.get(Person, link.buddy_id).username if link else None

    def share_session(self, learner: str, session_id: str) -> SharedSession:
        """Share one of the learner's own sessions with their buddy.

        Raises:
            PermissionDenied: the session is someone else's.
            BuddyError: no buddy named yet.
            NotFoundError: no such session.
        """
        with self.store.session() as db:
            me = person_in(db, learner)
            sess = session_in(db, session_id)
            if sess.person_id != me.id:
                raise PermissionDenied("you can only share your own practice sessions")
            link = _link(db, me)
            if link is None:
                raise BuddyError("name a learning buddy first, then share sessions with them")
            share = db.scalar(select(SharedSessionRow).where(SharedSessionRow.session_id == session_id,
                                                             SharedSessionRow.buddy_id == link.buddy_id))
            if share is None:
                share = SharedSessionRow(session_id=session_id, buddy_id=link.buddy_id, shared_at=self.clock())
                db.add(share)
                db.flush()
            return _shared(sess, learner, share.shared_at)

    def buddy_sessions(self, buddy: str) -> list[SharedSession]:
        """Sessions shared with `buddy` by learners who currently name them as buddy, newest share first."""
        with self.store.session() as db:
            me = person_in(db, buddy)
            rows = list(db.execute(
                select(SharedSessionRow, PracticeSession, Person)
                .join(PracticeSession, PracticeSession.id == SharedSessionRow.session_id)
                .join(Person, Person.id == PracticeSession.person_id)
                .join(BuddyLink, (BuddyLink.learner_id == PracticeSession.person_id) & (BuddyLink.buddy_id == me.id))
                .where(SharedSessionRow.buddy_id == me.id)
                .order_by(SharedSessionRow.shared_at.desc(), SharedSessionRow.id.desc())))
        return [_shared(s, p.username, share.shared_at) for share, s, p in rows]

    def _visible(self, db: Session, viewer: str, session_id: str) -> tuple[Person, PracticeSession, Person, datetime | None]:
        me = person_in(db, viewer)
        sess = session_in(db, session_id)
        owner = db.get(Person, sess.person_id)
        if owner.id == me.id:
            share = db.scalar(select(func.min(SharedSessionRow.shared_at)).where(SharedSessionRow.session_id == session_id))
            return me, sess, owner, share
        shared_at = db.scalar(
            select(SharedSessionRow.shared_at)
            .join(BuddyLink, (BuddyLink.learner_id == sess.person_id) & (BuddyLink.buddy_id == me.id))
            .where(SharedSessionRow.session_id == session_id, SharedSessionRow.buddy_id == me.id))
        if shared_at is None:
            raise PermissionDenied(f"session '{session_id}' has not been shared with {viewer}; "
                                   "only the learner and the buddy they shared it with can see it")
        return me, sess, owner, shared_at

    def shared_session(self, viewer: str, session_id: str) -> SharedSessionView:
        """A session's transcript and reflections, for its learner or the buddy it was shared with.

        Raises:
            PermissionDenied: anyone else.
        """
        with self.store.session() as db:
            _, sess, owner, shared_at = self._visible(db, viewer, session_id)
            turns = [SharedTurn(speaker=t.speaker, text=t.text) for t in sess.turns]
            info = _shared(sess, owner.username, shared_at or sess.started_at)
        return SharedSessionView(session=info, turns=turns, reflections=self.reflections(session_id))

    def add_reflection(self, buddy: str, session_id: str, note: str) -> Reflection:
        """Add a reflection note to a session shared with `buddy` (the learner may reflect on their own too).

        Raises:
            PermissionDenied: the session is not shared with `buddy`.
            BuddyError: the note is empty or too long.
        """
        text = (note or "").strip()
        if not text:
            raise BuddyError("a reflection cannot be empty; write what went well and what to try next")
        if len(text) > MAX_NOTE:
            raise BuddyError(f"a reflection is limited to {MAX_NOTE} characters (got {len(text)}); shorten it")
        with self.store.session() as db:
            me, sess, _, _ = self._visible(db, buddy, session_id)
            row = ReflectionRow(session_id=sess.id, author_id=me.id, note=text, created_at=self.clock())
            db.add(row)
        return Reflection(session_id=session_id, author=buddy, note=text, created_at=row.created_at)

    def reflections(self, session_id: str, viewer: str | None = None) -> list[Reflection]:
        """Reflections on a session, oldest first.

        Args:
            session_id: The session.
            viewer: If given, who is asking: must be the learner or the buddy it was shared with.

        Raises:
            PermissionDenied: `viewer` may not see the session.
        """
        with self.store.session() as db:
            if viewer is not None:
                self._visible(db, viewer, session_id)
            else:
                session_in(db, session_id)
            rows = list(db.execute(select(ReflectionRow, Person.username)
                                   .join(Person, Person.id == ReflectionRow.author_id)
                                   .where(ReflectionRow.session_id == session_id)
                                   .order_by(ReflectionRow.created_at, ReflectionRow.id)))
        return [Reflection(session_id=r.session_id, author=name, note=r.note, created_at=r.created_at) for r, name in rows]
