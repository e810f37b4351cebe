"""Practice sessions: a conversation wired to the store, with the engine chosen from configuration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from roleplay.config import Settings, settings
from roleplay.errors import RoleplayError
from roleplay.persona import Conversation, LLMVoice, OfflineVoice, PersonaState, Voice
from roleplay.scenario import LEVELS, Scenario
from roleplay.store import Store
from roleplay.tokens import estimate_cost

OFFLINE_NOTICE = "Offline engine: a scripted persona driven by the scenario (no model configured)."


def make_voice(cfg: Settings | None = None, offline: bool = False) -> Voice:
    """The LLM voice when an endpoint is configured (and not `offline`), else the offline scripted voice."""
    cfg = cfg or settings()
    if offline or not cfg.use_llm:
        return OfflineVoice()
    from roleplay.llm import GenerationSettings, shared_model

    return LLMVoice(shared_model(cfg), GenerationSettings(temperature=0.8))


def engine_notice(voice: Voice, cfg: Settings | None = None) -> str:
    """One line telling the learner which engine plays the persona."""
    cfg = cfg or settings()
    if voice.name == "offline":
        return OFFLINE_NOTICE
    return f"AI persona: {cfg.model} at {cfg.base_url or 'the OpenAI API'}."


@dataclass
class PracticeRun:
    """A stored practice session in progress."""

    session_id: str
    conversation: Conversation
    store: Store

    def open(self) -> str:
        """The persona's first line."""
        return self.conversation.open()

    def respond(self, text: str) -> Iterator[str]:
        """The persona's reply as it grows; the learner's turn is stored before the reply starts."""
        yield from self.conversation.respond(text)
        if self.conversation.state.ended:
            self.store.end_session(self.session_id, self.conversation.state.end_reason or "ended",
                                   self.conversation.state.model_dump(mode="json"))

    def end(self) -> None:
        """End the session at the learner's request."""
        conv = self.conversation
        if conv.state.ended and conv.state.end_reason != "learner":
            return
        conv.end("learner")
        self.store.end_session(self.session_id, "learner", conv.state.model_dump(mode="json"))

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
            "estimated_cost": estimate_cost(st.prompt_tokens, st.completion_tokens),
        }


def start_practice(store: Store, username: str, scenario: Scenario, level: str = "intermediate",
                   voice: Voice | None = None, seed: int = 0) -> PracticeRun:
    """Start a stored practice session for `username` (created as a learner if new)."""
    if level not in LEVELS:
        raise RoleplayError(f"level '{level}' is not valid; use one of: {', '.join(LEVELS)}")
    voice = voice or make_voice()
    person = store.ensure_person(username, "learner")
    cfg = settings()
    sess = store.start_session(person.id, scenario.id, level, voice.name)

    def sink(speaker: str, text: str, tokens: int | None, state: dict[str, Any]) -> None:
        store.add_turn(sess.id, speaker, text, tokens=tokens, state=state)

    conv = Conversation(scenario, level, voice, seed=seed, on_turn=sink, model=cfg.model)
    return PracticeRun(sess.id, conv, store)


def resume_practice(store: Store, session_id: str, voice: Voice | None = None) -> PracticeRun:
    """Rebuild a stored session (on any app process) so the conversation continues where it stopped."""
    from roleplay.library import catalog
    from roleplay.transcript import Turn

    sess = store.get_session(session_id)
    scenario = catalog().scenario(sess.scenario_id)
    voice = voice or make_voice(offline=sess.engine == "offline")

    def sink(speaker: str, text: str, tokens: int | None, state: dict[str, Any]) -> None:
        store.add_turn(sess.id, speaker, text, tokens=tokens, state=state)

    conv = Conversation(scenario, sess.level, voice, on_turn=sink, model=settings().model)
    if sess.state:
        conv.state = PersonaState.model_validate(sess.state)
        conv._rng.seed(conv.state.seed + conv.state.learner_turns)
    conv.transcript.turns = [Turn(speaker=t.speaker, text=t.text, at=t.created_at, tokens=t.tokens)  # type: ignore[arg-type]
                             for t in sess.turns]
    return PracticeRun(sess.id, conv, store)


_RUNS: dict[str, PracticeRun] = {}
_RUNS_MAX = 500


def check_owner(store: Store, session_id: str, username: str) -> None:
    """Refuse anyone but the learner who started the session.

    Raises:
        NotFoundError: no such session.
        PermissionDenied: the session belongs to someone else.
    """
    from sqlalchemy import select

    from roleplay.errors import NotFoundError, PermissionDenied
    from roleplay.store import Person, PracticeSession

    with store.session() as db:
        owner = db.scalar(select(Person.username).join(PracticeSession, PracticeSession.person_id == Person.id)
                          .where(PracticeSession.id == session_id))
    if owner is None:
        raise NotFoundError(f"no practice session '{session_id}'")
    if owner != username:
        raise PermissionDenied("that session belongs to someone else")


def get_run(store: Store, session_id: str, username: str | None = None) -> PracticeRun:
    """The live run for a session id, resumed from the store if this process does not hold it.

    Args:
        username: When given, only that learner's own session is returned (else PermissionDenied).
    """
    if username is not None:
        check_owner(store, session_id, username)
    run = _RUNS.get(session_id)
    if run is None or run.store is not store:
        run = resume_practice(store, session_id)
        remember_run(run)
    return run


def remember_run(run: PracticeRun) -> None:
    """Keep a run in this process's cache (bounded; older runs are resumed from the store on demand)."""
    if len(_RUNS) >= _RUNS_MAX:
        _RUNS.pop(next(iter(_RUNS)))
    _RUNS[run.session_id] = run
