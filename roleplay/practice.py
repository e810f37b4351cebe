"""Practice sessions: a conversation wired to the store, with the engine chosen from configuration."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from roleplay.catalog import Catalog
from roleplay.config import Settings
from roleplay.errors import NotFoundError, PermissionDenied, RoleplayError
from roleplay.models import Person, PracticeSession, Role
from roleplay.persona import Conversation, OfflineVoice, PersonaState, Voice
from roleplay.reader import TurnReader
from roleplay.scenario import LEVELS, Scenario
from roleplay.store import Store
from roleplay.tokens import estimate_cost
from roleplay.transcript import Turn

OFFLINE_NOTICE = "Offline engine: a scripted persona driven by the scenario (no model configured)."


def engine_notice(voice: Voice, cfg: Settings) -> str:
    """One line telling the learner which engine plays the persona."""
    if voice.name == "offline":
        return OFFLINE_NOTICE
    return f"AI persona: {cfg.model} at {cfg.base_url or 'the OpenAI API'}."


@dataclass
class PracticeRun:
    """A stored practice session in progress."""

    session_id: str
    conversation: Conversation
    store: Store
    prices: tuple[float | None, float | None] = (None, None)

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

    def sink(speaker: str, text: str, tokens: int | None, state: dict[str, Any]) -> None:
        store.add_turn(sess.id, speaker, text, tokens=tokens, state=state)

    if seed is None:
        seed = secrets.randbelow(2**31)
    conv = Conversation(scenario, level, voice, seed=seed, on_turn=sink, model=model_name, reader=reader)
    return PracticeRun(sess.id, conv, store, prices)


def resume_practice(store: Store, session_id: str, catalog: Catalog, voice: Voice | None = None, *,
                    model_name: str = "gpt-4o-mini",
                    prices: tuple[float | None, float | None] = (None, None),
                    reader: TurnReader | None = None) -> PracticeRun:
    """Rebuild a stored session (on any app process) so the conversation continues where it stopped."""
    sess = store.get_session(session_id)
    scenario = catalog.scenario(sess.scenario_id)
    voice = voice or OfflineVoice()

    def sink(speaker: str, text: str, tokens: int | None, state: dict[str, Any]) -> None:
        store.add_turn(sess.id, speaker, text, tokens=tokens, state=state)

    conv = Conversation(scenario, sess.level, voice, on_turn=sink, model=model_name, reader=reader)
    if sess.state:
        conv.state = PersonaState.model_validate(sess.state)
    conv.transcript.turns = [Turn(speaker=t.speaker, text=t.text, at=t.created_at, tokens=t.tokens)  # type: ignore[arg-type]
                             for t in sess.turns]
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
