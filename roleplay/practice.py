"""Practice sessions: a conversation wired to the store, with the engine chosen from configuration."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select

from roleplay.catalog import Catalog
from roleplay.config import Settings
from roleplay.errors import NotFoundError, PermissionDenied, RoleplayError
from roleplay.models import Person, PracticeSession, Role
from roleplay.persona import Conversation, OfflineVoice, PersonaState, Spoken, Voice
from roleplay.reader import MAX_TURN_CHARS, TurnReader
from roleplay.scenario import LEVELS, Scenario
from roleplay.store import AlreadyGraded, NewTurn, Store
from roleplay.tokens import estimate_cost
from roleplay.transcript import Turn

if TYPE_CHECKING:
    from roleplay.grader import Judge
    from roleplay.jobs import GradingJobs, JobView

T = TypeVar("T")
OFFLINE_NOTICE = "Offline engine: a scripted persona driven by the scenario (no model configured)."


def engine_notice(voice: Voice, cfg: Settings) -> str:
    """One line telling the learner which engine plays the persona."""
    if voice.name == "offline":
        return OFFLINE_NOTICE
    from roleplay.llm_langchain import endpoint_label

    return f"AI persona: {endpoint_label(cfg.model, cfg.base_url)}."


def check_message(text: str | None) -> str:
    """A learner's message if its size can be a turn; refused at once (before any other work) when it is too long.

    The full checks (empty, binary, no words) are made when the turn is read (`reader.check_turn`).

    Raises:
        RoleplayError: longer than `MAX_TURN_CHARS`, in one line.
    """
    text = text or ""
    if len(text) > MAX_TURN_CHARS:
        raise RoleplayError(f"that message is {len(text):,} characters; keep a turn under {MAX_TURN_CHARS:,} "
                            "characters, as you would in a real conversation")
    return text


BUSY = ("this session is still answering a message sent from another tab or window; wait for that reply, "
        "then send again")


@dataclass
class PracticeRun:
    """A stored practice session in progress.

    One writer at a time: a second `respond` while one is running is refused (`BUSY`), and `end` waits for it.
    A run whose turn failed half-way (a model error, a second writer in another process) is `stale`: the app
    context drops it and resumes the session from the store, so what the learner sees and what is stored agree.
    """

    session_id: str
    conversation: Conversation
    store: Store
    prices: tuple[float | None, float | None] = (None, None)
    stale: bool = False
    pending: list[NewTurn] = field(default_factory=list, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.conversation.on_turn = self._take

    def _take(self, turn: Turn, _state: dict[str, Any]) -> None:
        """Keep a turn until its exchange is complete (stored together by `_store`)."""
        self.pending.append(NewTurn(turn.speaker, turn.text, turn.tokens, turn.meta()))

    def _store(self) -> None:
        """Store the turns taken since the last exchange, with the state after them, in one transaction."""
        turns, self.pending = self.pending, []
        if not turns:
            return
        st = self.conversation.state
        self.store.add_exchange(self.session_id, turns, st.model_dump(mode="json"),
                                first_idx=len(self.conversation.transcript.turns) - len(turns),
                                end_reason=(st.end_reason or "ended") if st.ended else None)

    def open(self) -> str:
        """The persona's first line (stored at once)."""
        with self._lock:
            try:
                line = self.conversation.open()
                self._store()
            except BaseException:
                self.stale = True
                raise
        return line

    def respond(self, text: str) -> Iterator[str]:
        """The persona's reply as it grows; the learner's turn is stored before the reply starts.

        Raises:
            RoleplayError: the message is too long, another reply of this session is being written (`BUSY`), or
                the turn cannot be taken (then the run is stale).
        """
        yield from self._locked(self.conversation.respond, text)

    def respond_scene(self, text: str) -> Iterator[Spoken]:
        """Each persona turn of the reply as it grows (who speaks, and the text so far), stored as it ends.

        Raises:
            RoleplayError: as `respond`.
        """
        yield from self._locked(self.conversation.respond_scene, text)

    def say(self, text: str) -> str:
        """Take a learner turn and return the whole reply (stored with the turn)."""
        reply = ""
        for reply in self.respond(text):
            pass
        return reply

    def _locked(self, replies: Callable[[str], Iterator[T]], text: str) -> Iterator[T]:
        """The reply as it grows; the learner's line, the reply and the state after them are stored together when
        the reply is complete (one transaction per exchange)."""
        check_message(text)
        if not self._lock.acquire(blocking=False):
            raise RoleplayError(BUSY)
        try:
            yield from replies(text)
            self._store()
        except BaseException:  # includes a closed stream: the stored session is the truth from here on
            self.pending.clear()
            self.stale = True
            raise
        finally:
            self._lock.release()

    def end(self) -> None:
        """End the session at the learner's request (after a reply being written, if any)."""
        with self._lock:
            self._end()

    def _end(self) -> None:
        conv = self.conversation
        if conv.state.ended and conv.state.end_reason != "learner":
            return
        conv.end("learner")
        self.store.end_session(self.session_id, "learner", conv.state.model_dump(mode="json"))

    def end_and_grade(self, judge: Judge, catalog: Catalog) -> bool:
        """End the session and grade it, once: True when this call graded it, False when it already had a grade.

        Two tabs of one process pressing End at once: the second waits for the first and finds its grade. Across
        processes the store lets one grade through (`AlreadyGraded` for the other, answered here with False).

        Raises:
            RoleplayError: the learner has not said anything yet, or grading failed (nothing was stored).
        """
        from roleplay.grader import grade_session

        with self._lock:
            if self.store.grades_for(self.session_id):
                return False
            self._end()
            if not self.conversation.transcript.learner_turns:
                raise RoleplayError("you have not said anything yet, so there is nothing to grade")
            try:
                grade_session(self.store, self.session_id, judge, catalog)
            except AlreadyGraded:
                return False
            return True

    def end_and_queue(self, jobs: GradingJobs) -> JobView:
        """End the session and send it for grading in the background, once: however many tabs or processes press End,
        one job is queued (a job queued, running or done is left as it is; a failed one is queued again).

        Raises:
            RoleplayError: the learner has not said anything yet, or the grading queue cannot be reached.
        """
        with self._lock:
            self._end()
            if not self.conversation.transcript.learner_turns:
                raise RoleplayError("you have not said anything yet, so there is nothing to grade")
        return jobs.submit(self.session_id)

    @property
    def busy(self) -> bool:
        """Whether a reply (or the end) of this session is being written right now."""
        return self._lock.locked()

    @property
    def state(self) -> PersonaState:
        """The conversation state."""
        return self.conversation.state

    def usage(self) -> dict[str, Any]:
        """Tokens and estimated cost so far, with whether the counts are estimates."""
        st = self.conversation.state
        turn_tokens = sum(t.tokens or 0 for t in self.conversation.transcript.turns)
        return {
            "transcript_tokens": turn_tokens,
            "prompt_tokens": st.prompt_tokens,
            "completion_tokens": st.completion_tokens,
            "counting": self.conversation.counter.label(),
            "estimated_cost": estimate_cost(st.prompt_tokens, st.completion_tokens, *self.prices),
        }


def start_practice(store: Store, username: str, scenario: Scenario, level: str = "intermediate",
                   voice: Voice | None = None, seed: int | None = None, *, model_name: str = "gpt-4o-mini",
                   prices: tuple[float | None, float | None] = (None, None),
                   reader: TurnReader | None = None) -> PracticeRun:
    """Start a stored practice session for `username` (created as a learner if new).

    Args:
        voice: Who speaks for the persona; the offline voice when None.
        seed: The offline engine's line choice; a fresh random seed when None (stored, so the session replays).
        reader: The turn reader; the offline reader when None.
        model_name: The model whose tokenizer counts tokens.
        prices: Input and output price per million tokens, for the cost estimate.
    """
    if level not in LEVELS:
        raise RoleplayError(f"level '{level}' is not valid; use one of: {', '.join(LEVELS)}")
    voice = voice or OfflineVoice()
    person = store.ensure_person(username, Role.LEARNER)
    sess = store.start_session(person.id, scenario.id, level, voice.name)
    if seed is None:
        seed = secrets.randbelow(2**31)
    conv = Conversation(scenario, level, voice, seed=seed, model=model_name, reader=reader)
    return PracticeRun(sess.id, conv, store, prices)


def resume_practice(store: Store, session_id: str, catalog: Catalog, voice: Voice | None = None, *,
                    model_name: str = "gpt-4o-mini",
                    prices: tuple[float | None, float | None] = (None, None),
                    reader: TurnReader | None = None) -> PracticeRun:
    """Rebuild a stored session (on any app process) so the conversation continues where it stopped."""
    sess = store.get_session(session_id)
    scenario = catalog.scenario(sess.scenario_id)
    voice = voice or OfflineVoice()
    conv = Conversation(scenario, sess.level, voice, model=model_name, reader=reader)
    if sess.state:
        conv.state = PersonaState.model_validate(sess.state)
    conv.transcript.turns = [Turn.from_row(t) for t in sess.turns]
    return PracticeRun(sess.id, conv, store, prices)


def check_owner(store: Store, session_id: str, username: str) -> None:
    """Refuse anyone but the learner who started the session.

    Raises:
        NotFoundError: no such session.
        PermissionDenied: the session belongs to someone else.
    """
    with store.session() as db:
        owner = db.scalar(select(Person.username).join(PracticeSession, PracticeSession.person_id == Person.id)
                          .where(PracticeSession.id == session_id))
    if owner is None:
        raise NotFoundError(f"no practice session '{session_id}'")
    if owner != username:
        raise PermissionDenied("that session belongs to someone else")
