"""The persona engine: one conversation state machine (trust, reveals, endings) decided on the turn's `Reading`.

Voices (the scripted `OfflineVoice` here, the model-voiced `LLMVoice` in `roleplay.voices`) only word what
the state machine decided.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from roleplay.errors import RoleplayError
from roleplay.reader import ReadContext, Reading, TurnReader, check_turn
from roleplay.scenario import TRUST_MAX, HiddenFact, Scenario
from roleplay.tokens import TokenCounter, counter_for
from roleplay.transcript import Transcript, Turn

DEFAULT_TRUST_EFFECTS: dict[str, int] = {
    "greeting": 0, "open_question": 1, "closed_question": 0, "reflection": 1, "summary": 1, "empathy": 1,
    "affirmation": 1, "candid_feedback": 0, "advice": -1, "directive": -1, "blame": -2, "threat": -2,
    "dismissive": -1, "next_step": 0, "off_topic": -1, "names_hidden_fact": 0, "other": 0,
}
# Resistance scales gains and losses: a resistant persona warms slowly and cools fast.
_GAIN = {"low": 1.0, "medium": 0.75, "high": 0.5}
_LOSS = {"low": 0.5, "medium": 1.0, "high": 1.0}
# How often a guarded persona pushes back instead of answering, by resistance.
_PUSHBACK = {"low": 0.0, "medium": 0.2, "high": 0.4}
_LISTENING = ("reflection", "summary", "empathy")
_ASKING = ("open_question",)
_NEGATIVE = ("blame", "threat", "dismissive")
# Turns of asking and listening a persona needs before a secret comes out, by resistance (counted since the
# learner last blamed, threatened or dismissed; at least one of them must be a listening turn).
_RAPPORT = {"low": 2, "medium": 2, "high": 3}
_PUSHING = ("advice", "directive")


class Reveal(BaseModel):
    """A hidden fact that came out, and why it was allowed to."""

    model_config = ConfigDict(extra="forbid")
    fact_id: str = Field(description="Id of the revealed hidden fact.")
    turn: int = Field(description="Learner turn (1-based) that earned it.")
    moves: list[str] = Field(description="The learner's moves on that turn.")
    trust: float = Field(description="Trust at that moment.")
    needed_trust: int = Field(description="Trust the condition asked for (after the level's offset).")
    how: str = Field(default="earned", description="'earned' (the condition was met) or 'named' (the learner said it first).")


class CharacterBreak(BaseModel):
    """A reply that broke character, and how it was repaired."""

    model_config = ConfigDict(extra="forbid")
    turn: int = Field(description="Learner turn the reply answered.")
    reason: str = Field(description="What gave it away.")
    text: str = Field(description="The rejected reply.")
    repair: str = Field(description="'regenerated' or 'scripted' (fell back to the scenario's line).")


class PersonaState(BaseModel):
    """Everything the engine knows about a conversation; stored with the session and shown to facilitators."""

    model_config = ConfigDict(extra="forbid")
    scenario_id: str = Field(description="Scenario id.")
    level: str = Field(description="Difficulty level.")
    engine: str = Field(description="'offline' or 'llm'.")
    seed: int = Field(default=0, description="Seed for the offline engine's line choice (stored, so a session replays).")
    trust: float = Field(description="0-5; moves by what the learner's turns mean.")
    learner_turns: int = Field(default=0, description="Learner turns so far.")
    blames: int = Field(default=0, description="Learner turns that blamed.")
    threats: int = Field(default=0, description="Learner turns that threatened.")
    off_topic_turns: int = Field(default=0, description="Learner turns that were off topic.")
    cold_turns: int = Field(default=0, description="Consecutive learner turns with trust at 0.")
    rapport: int = Field(default=0, description="Relevant learner turns that asked or listened since the last blame, threat "
                         "or dismissal, with nothing in them that counts or may count against the persona.")
    listened: int = Field(default=0, description="Of those, the turns that listened (reflection, summary, empathy).")
    last_negative_turn: int = Field(default=0, description="Last learner turn that blamed, threatened or dismissed (0: none).")
    foreign_turns: int = Field(default=0, description="Consecutive learner turns in another language than the scenario's.")
    revealed: list[Reveal] = Field(default_factory=list, description="Hidden facts revealed so far.")
    last_moves: list[str] = Field(default_factory=list, description="Moves of the last learner turn.")
    readings: list[dict[str, Any]] = Field(default_factory=list, description="The reading of each learner turn (compact).")
    reader_fallbacks: int = Field(default=0, description="Turns the LLM reader failed and the offline reader read instead.")
    trust_history: list[float] = Field(default_factory=list, description="Trust after each learner turn.")
    cursors: dict[str, int] = Field(default_factory=dict, description="Offline line rotation per move and mood.")
    said: list[str] = Field(default_factory=list, description="Scripted lines already said (not repeated while others remain).")
    breaks: list[CharacterBreak] = Field(default_factory=list, description="Character breaks detected and repaired.")
    trimmed_turns: int = Field(default=0, description="Turns dropped from the model context to fit the budget.")
    prompt_tokens: int = Field(default=0, description="Prompt tokens used so far.")
    completion_tokens: int = Field(default=0, description="Completion tokens used so far.")
    tokens_estimated: bool = Field(default=True, description="Whether token counts are estimates.")
    ended: bool = Field(default=False, description="Whether the conversation is over.")
    end_reason: str | None = Field(default=None, description="success, walkout, timeout or learner.")

    @property
    def mood(self) -> str:
        """guarded (trust 0-1), warming (2-3) or open (4-5)."""
        t = int(self.trust)
        return "guarded" if t <= 1 else "warming" if t <= 3 else "open"

    @property
    def revealed_ids(self) -> list[str]:
        """Ids of the revealed facts, in order."""
        return [r.fact_id for r in self.revealed]


class Directive(BaseModel):
    """What the next persona reply must do, decided in code before any voice speaks."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description="'reply', 'reveal', 'named', 'language', 'success', 'walkout' or 'timeout'.")
    move: str = Field(description="The learner move the reply answers.")
    fact_id: str | None = Field(default=None, description="Fact revealed now, for 'reveal' and 'named'.")
    line: str = Field(description="The scripted line for this moment (used verbatim offline, as a hint by the LLM).")


class Voice(Protocol):
    """Turns a directive into the persona's words; yields the reply text so far as it grows."""

    name: str

    def speak(self, conv: Conversation, directive: Directive) -> Iterator[str]:
        """Yield the reply text so far (each item replaces the previous)."""
        ...


class OfflineVoice:
    """The scripted persona: says the scenario's line for the moment. Needs no model."""

    name = "offline"

    def speak(self, conv: Conversation, directive: Directive) -> Iterator[str]:
        """Yield the scripted line."""
        yield directive.line


TurnSink = Callable[[str, str, int | None, dict[str, Any]], None]


class Conversation:
    """A practice conversation: the learner talks, the reader reads, the engine decides and the voice answers.

    Args:
        scenario: The scenario practised.
        level: novice, intermediate or expert.
        voice: OfflineVoice or an LLM voice.
        seed: Seed for the offline line rotation (same seed and turns, same conversation).
        on_turn: Called with (speaker, text, tokens, state) after each turn, e.g. to store it.
        counter: Token counter (defaults to the configured model's).
        reader: The turn reader (default: the offline reader).
    """

    def __init__(self, scenario: Scenario, level: str = "intermediate", voice: Voice | None = None, seed: int = 0,
                 on_turn: TurnSink | None = None, counter: TokenCounter | None = None, model: str = "gpt-4o-mini",
                 reader: TurnReader | None = None) -> None:
        self.scenario = scenario
        self.level_name = level
        self.level = scenario.levels.get(level)
        self.voice: Voice = voice or OfflineVoice()
        if reader is None:
            from roleplay.reader import offline_reader

            reader = offline_reader()
        self.reader: TurnReader = reader
        self.counter = counter or counter_for(model)
        self.on_turn = on_turn
        self.state = PersonaState(scenario_id=scenario.id, level=level, engine=self.voice.name, seed=seed,
                                  trust=float(self.level.starting_trust), tokens_estimated=self.counter.estimated)
        self.transcript = Transcript(scenario_id=scenario.id, level=level)
        self.last_reading: Reading | None = None
        self._rng = random.Random(seed)

    # --- public API -------------------------------------------------------------------------
    def open(self) -> str:
        """The persona's opening line (recorded as the first turn)."""
        self._record("persona", self.scenario.opening_line)
        return self.scenario.opening_line

    def respond(self, text: str) -> Iterator[str]:
        """Take a learner turn and yield the persona's reply as it grows (each item is the whole reply so far).

        Raises:
            RoleplayError: the conversation has ended, or the turn is empty, too long or not text.
        """
        if self.state.ended:
            raise RoleplayError("this conversation has ended; start a new session to practise again")
        text = check_turn(text)
        directive = self._advance(text)
        self._record("learner", text)
        reply = ""
        for reply in self.voice.speak(self, directive):
            yield reply
        if directive.kind in ("success", "walkout", "timeout"):
            self.state.ended = True
            self.state.end_reason = directive.kind
        self._record("persona", reply)

    def say(self, text: str) -> str:
        """Take a learner turn and return the whole reply (no streaming)."""
        reply = ""
        for reply in self.respond(text):
            pass
        return reply

    def end(self, reason: str = "learner") -> None:
        """End the conversation (the learner chose to stop)."""
        if not self.state.ended:
            self.state.ended = True
            self.state.end_reason = reason

    def context(self) -> ReadContext:
        """What the reader may know before the next learner turn."""
        turns = self.transcript.turns
        return ReadContext(scenario=self.scenario,
                           persona_lines=[t.text for t in turns if t.speaker == "persona"],
                           learner_lines=[t.text for t in turns if t.speaker == "learner"],
                           revealed=set(self.state.revealed_ids))

    # --- the state machine ---------------------------------------------------------------------
    def _advance(self, text: str) -> Directive:
        st, scn = self.state, self.scenario
        reading = self.reader.read(text, self.context())
        self.last_reading = reading
        st.readings.append(reading.compact())
        if reading.reader.startswith("offline (llm failed"):
            st.reader_fallbacks += 1
        moves, move = list(reading.moves), reading.main_move
        st.learner_turns += 1
        self._rng.seed(st.seed * 1009 + st.learner_turns)  # per turn, so a resumed session replays exactly
        st.last_moves = moves
        st.blames += "blame" in moves
        st.threats += "threat" in moves
        st.off_topic_turns += move == "off_topic"
        if reading.has(*_NEGATIVE):
            # goodwill built so far is lost: the persona needs to feel listened to again before it opens up
            st.last_negative_turn = st.learner_turns
            st.rapport = st.listened = 0
        elif self._builds_rapport(reading):
            st.rapport += 1
            st.listened += reading.has(*_LISTENING)
        if reading.language != scn.language:
            # the persona cannot follow: nothing the turn says moves trust or earns anything, and after a few
            # such turns in a row the meeting ends
            st.trust_history.append(st.trust)
            st.foreign_turns += 1
            if st.foreign_turns > len(scn.script.other_language):
                return Directive(kind="timeout", move=move, line=scn.end.timeout_line)
            return self._or_timeout(Directive(kind="language", move=move,
                                              line=self._rotate("language", scn.script.other_language)))
        st.foreign_turns = 0
        self._move_trust(reading)

        end = scn.end
        if st.blames >= end.walkout_after_blames or st.threats >= end.walkout_after_threats \
                or st.cold_turns >= end.walkout_after_cold_turns:
            return Directive(kind="walkout", move=move, line=end.walkout_line)
        if reading.named_facts and move not in ("blame", "threat", "dismissive"):
            fact = scn.fact(reading.named_facts[0])
            st.revealed.append(Reveal(fact_id=fact.id, turn=st.learner_turns, moves=moves, trust=st.trust,
                                      needed_trust=self._needed(fact), how="named"))
            return Directive(kind="named", move=move, fact_id=fact.id, line=fact.when_named.strip())
        fact = self._fact_to_reveal(reading)
        if fact is not None:
            st.revealed.append(Reveal(fact_id=fact.id, turn=st.learner_turns, moves=moves, trust=st.trust,
                                      needed_trust=self._needed(fact)))
            return Directive(kind="reveal", move=move, fact_id=fact.id, line=fact.reveal_line.strip())
        succ = end.success
        if (reading.relevant and set(moves) & set(succ.moves_any) and st.trust >= succ.min_trust
                and set(succ.facts_revealed) <= set(st.revealed_ids)):
            return Directive(kind="success", move=move, line=end.success_line)
        return self._or_timeout(Directive(kind="reply", move=move, line=self._scripted_line(move)))

    def _or_timeout(self, directive: Directive) -> Directive:
        if self.state.learner_turns >= self.level.max_turns:
            return Directive(kind="timeout", move=directive.move, line=self.scenario.end.timeout_line)
        return directive

    def _move_trust(self, reading: Reading) -> None:
        st, lvl = self.state, self.level
        effects = {**DEFAULT_TRUST_EFFECTS, **self.scenario.script.trust_effects}
        repeated = _repeats(reading.text, [t.text for t in self.transcript.turns if t.speaker == "learner"])
        delta = 0.0
        for m in reading.moves:
            effect = float(effects.get(m, 0))
            if effect > 0:
                if not reading.relevant or repeated:
                    effect = 0.0  # nonsense and parroting earn nothing
                elif m in _LISTENING and not (reading.engages or reading.on_topic >= 0.5):
                    effect *= 0.5  # a generic acknowledgement is worth less than one that takes up what was said
            elif m in ("advice", "directive") and (st.trust >= 3 or st.revealed):
                effect = max(effect, 0.0)  # suggestions are welcome once the real issue is out
            delta += effect * (_GAIN[lvl.resistance] if effect > 0 else _LOSS[lvl.resistance])
        delta = max(-2.0, min(1.0, delta))
        st.trust = round(max(0.0, min(float(TRUST_MAX), st.trust + delta)), 3)
        st.trust_history.append(st.trust)
        st.cold_turns = st.cold_turns + 1 if st.trust <= 0 else 0

    def _builds_rapport(self, reading: Reading) -> bool:
        """Whether the turn asked or listened about this conversation with nothing against the persona in it.

        A turn the reader only gave the benefit of the doubt (it may judge the person: "So what you're saying is
        you can't manage your own diary") earns no rapport, and neither does listening with advice or orders
        in the same breath before the persona trusts the learner ("So mornings are hard. Set an earlier alarm.").
        """
        st = self.state
        if not (reading.relevant and (reading.engages or reading.on_topic >= 0.5)
                and reading.has(*_ASKING, *_LISTENING, "affirmation")):
            return False  # asked or listened about this conversation, not just anything
        if reading.doubtful:
            return False
        return not (reading.has(*_PUSHING) and not (st.trust >= 3 or st.revealed))

    def _needed(self, fact: HiddenFact) -> int:
        return max(0, min(TRUST_MAX, fact.reveal_when.min_trust + self.level.reveal_trust_offset))

    def _fact_to_reveal(self, reading: Reading) -> HiddenFact | None:
        """A fact comes out only for a relevant question, or a reflection that takes up what was said, once the
        learner has asked and listened for a few turns since they last blamed, threatened or dismissed, and has
        listened at least once, not only asked. A turn that may judge the person brings nothing out."""
        st = self.state
        if not reading.relevant or reading.has(*_NEGATIVE, "off_topic") or reading.doubtful:
            return None
        if st.rapport < _RAPPORT[self.level.resistance] or not st.listened:
            return None
        if st.last_negative_turn and st.learner_turns - st.last_negative_turn < 2:
            return None
        for fact in self.scenario.hidden_facts:
            cond = fact.reveal_when
            if fact.id in st.revealed_ids or st.learner_turns < cond.min_turn or st.trust < self._needed(fact):
                continue
            earned = set(reading.moves) & set(cond.moves_any)
            listening = earned & set(_LISTENING)
            if earned - set(_LISTENING) or (listening and (reading.engages or reading.on_topic >= 0.5)):
                return fact
        return None

    def _scripted_line(self, move: str) -> str:
        """The next line for this move and mood that fits what has been revealed and has not been said yet.

        When the move's lines are used up, the persona falls back to its general lines, then (when guarded) to
        its pushback, before it repeats itself.
        """
        script, st = self.scenario.script, self.state
        mood = st.mood
        revealed = set(st.revealed_ids)
        if (mood == "guarded" and move in _ASKING + _LISTENING
                and self._rng.random() < _PUSHBACK[self.level.resistance]):
            fresh = [p for p in self.scenario.persona.pushback if p not in st.said]
            if fresh:
                return self._say(self._rng.choice(fresh))
        lines_for = script.reactions.get(move)  # type: ignore[call-overload]
        sources = [(f"{move}:{mood}", lines_for.for_mood(mood, revealed) if lines_for else []),
                   (f"fallback:{mood}", script.fallback.for_mood(mood, revealed))]
        if mood == "guarded" or move in ("blame", "threat", "dismissive", "off_topic"):
            sources.append(("pushback", list(self.scenario.persona.pushback)))
        for key, lines in sources:
            if not lines:
                continue
            if key not in st.cursors:
                st.cursors[key] = self._rng.randrange(len(lines))
            for step in range(len(lines)):
                candidate = lines[(st.cursors[key] + step) % len(lines)]
                if candidate not in st.said:
                    st.cursors[key] += step + 1
                    return self._say(candidate)
        # everything fitting has been said: repeat the one said longest ago
        key, lines = next((k, v) for k, v in sources if v)
        return self._say(min(lines, key=lambda x: max(i for i, said in enumerate(st.said) if said == x)))

    def _rotate(self, key: str, lines: list[str]) -> str:
        i = self.state.cursors.get(key, 0)
        self.state.cursors[key] = i + 1
        return self._say(lines[i % len(lines)])

    def _say(self, line: str) -> str:
        self.state.said.append(line)
        return line

    def _record(self, speaker: str, text: str) -> None:
        tokens = self.counter.count(text)
        self.transcript.turns.append(Turn(speaker=speaker, text=text, tokens=tokens))  # type: ignore[arg-type]
        if self.on_turn is not None:
            self.on_turn(speaker, text, tokens, self.state.model_dump(mode="json"))

    # --- helpers for LLM voices --------------------------------------------------------------
    def history_messages(self) -> list[dict[str, str]]:
        """The conversation so far as chat messages (persona = assistant, learner = user)."""
        return [{"role": "assistant" if t.speaker == "persona" else "user", "content": t.text}
                for t in self.transcript.turns]


def _repeats(text: str, earlier: list[str]) -> bool:
    """Whether the turn says again what the learner already said (the same words, give or take case)."""
    norm = " ".join(text.lower().split()).strip(" .!?")
    return any(" ".join(e.lower().split()).strip(" .!?") == norm for e in earlier)
