"""The persona engine: one conversation state machine (trust, reveals, endings) decided on the turn's `Reading`.

Voices (the scripted `OfflineVoice` here, the model-voiced `LLMVoice` in `roleplay.voices`) only word what
the state machine decided.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from roleplay import scene
from roleplay.errors import RoleplayError
from roleplay.reader import ReadContext, Reading, TurnReader, check_turn
from roleplay.scenario import TRUST_MAX, CastMember, HiddenFact, Scenario
from roleplay.scene import MeetingFacts
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
    by: str | None = Field(default=None, description="Cast id of the person who revealed it (None: the one persona).")


class CharacterBreak(BaseModel):
    """A reply that broke character, and how it was repaired."""

    model_config = ConfigDict(extra="forbid")
    turn: int = Field(description="Learner turn the reply answered.")
    reason: str = Field(description="What gave it away.")
    text: str = Field(description="The rejected reply.")
    repair: str = Field(description="'regenerated' or 'scripted' (fell back to the scenario's line).")


class Mind(BaseModel):
    """What one persona feels about the learner: trust, rapport and the lines it has used."""

    model_config = ConfigDict(extra="forbid")
    trust: float = Field(description="0-5; moves by what the learner's turns mean.")
    blames: int = Field(default=0, description="Learner turns that blamed.")
    threats: int = Field(default=0, description="Learner turns that threatened.")
    cold_turns: int = Field(default=0, description="Consecutive learner turns with trust at 0.")
    rapport: int = Field(default=0, description="Relevant learner turns that asked or listened since the last blame, threat "
                         "or dismissal, with nothing in them that counts or may count against the persona.")
    listened: int = Field(default=0, description="Of those, the turns that listened (reflection, summary, empathy).")
    last_negative_turn: int = Field(default=0, description="Last learner turn that blamed, threatened or dismissed (0: none).")
    trust_history: list[float] = Field(default_factory=list, description="Trust after each learner turn.")
    cursors: dict[str, int] = Field(default_factory=dict, description="Offline line rotation per move and mood.")
    said: list[str] = Field(default_factory=list, description="Scripted lines already said (not repeated while others remain).")

    @property
    def mood(self) -> str:
        """guarded (trust 0-1), warming (2-3) or open (4-5)."""
        t = int(self.trust)
        return "guarded" if t <= 1 else "warming" if t <= 3 else "open"


class PersonaState(Mind):
    """Everything the engine knows about a conversation; stored with the session and shown to facilitators.

    The fields of `Mind` are the (first) persona's; in a scene, the other cast members' minds are in `cast`. How each
    learner turn was read is kept with the turn (`Turn.reading`), not here, so the state stays small however long the
    conversation grows.
    """

    @model_validator(mode="before")
    @classmethod
    def _readings_moved_to_turns(cls, data: Any) -> Any:
        """A state stored before the readings moved onto the turns still loads (its list of readings is dropped)."""
        if isinstance(data, dict) and "readings" in data:
            data = {k: v for k, v in data.items() if k != "readings"}
        return data

    scenario_id: str = Field(description="Scenario id.")
    level: str = Field(description="Difficulty level.")
    engine: str = Field(description="'offline' or 'llm'.")
    seed: int = Field(default=0, description="Seed for the offline engine's line choice (stored, so a session replays).")
    learner_turns: int = Field(default=0, description="Learner turns so far.")
    off_topic_turns: int = Field(default=0, description="Learner turns that were off topic.")
    foreign_turns: int = Field(default=0, description="Consecutive learner turns in another language than the scenario's.")
    revealed: list[Reveal] = Field(default_factory=list, description="Hidden facts revealed so far.")
    last_moves: list[str] = Field(default_factory=list, description="Moves of the last learner turn.")
    reader_fallbacks: int = Field(default=0, description="Turns the LLM reader failed and the offline reader read instead.")
    breaks: list[CharacterBreak] = Field(default_factory=list, description="Character breaks detected and repaired.")
    trimmed_turns: int = Field(default=0, description="Turns dropped from the model context to fit the budget.")
    prompt_tokens: int = Field(default=0, description="Prompt tokens used so far.")
    completion_tokens: int = Field(default=0, description="Completion tokens used so far.")
    tokens_estimated: bool = Field(default=True, description="Whether token counts are estimates.")
    ended: bool = Field(default=False, description="Whether the conversation is over.")
    end_reason: str | None = Field(default=None, description="success, walkout, timeout or learner.")
    cast: dict[str, Mind] = Field(default_factory=dict, description="In a scene: the other cast members' minds, by cast id.")
    meeting: MeetingFacts | None = Field(default=None, description="In a scene: airtime, who was asked what, sides, "
                                         "interruptions and decisions.")

    @property
    def revealed_ids(self) -> list[str]:
        """Ids of the revealed facts, in order."""
        return [r.fact_id for r in self.revealed]


class Directive(BaseModel):
    """What the next persona reply must do, decided in code before any voice speaks."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description="'reply', 'reveal', 'named', 'language', 'success', 'walkout', 'timeout', 'interject' "
                      "(speaks without being addressed) or 'join' (a late joiner arrives).")
    who: str = Field(default="", description="Cast id of the persona who speaks.")
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


TurnSink = Callable[[Turn, dict[str, Any]], None]


@dataclass(frozen=True)
class Spoken:
    """A persona turn as it grows: which turn of the reply it is, who speaks and the text so far."""

    index: int
    who: str
    text: str


class Conversation:
    """A practice conversation: the learner talks, the reader reads, the engine decides and the voice answers.

    With a cast (a scene), every persona has its own mind (trust, reveals); the scene decides who answers and who
    speaks up (`roleplay.scene`), and each speaker's voice hears only what that persona heard and knows.

    Args:
        scenario: The scenario practised.
        level: novice, intermediate or expert.
        voice: OfflineVoice or an LLM voice.
        seed: Seed for the offline line rotation (same seed and turns, same conversation).
        on_turn: Called with (turn, state) after each turn, e.g. to store it.
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
        self.lead = scenario.members[0]
        self.state = PersonaState(scenario_id=scenario.id, level=level, engine=self.voice.name, seed=seed,
                                  trust=self._starting_trust(self.lead), tokens_estimated=self.counter.estimated)
        if scenario.is_scene:
            self.state.cast = {m.id: Mind(trust=self._starting_trust(m)) for m in scenario.members[1:]}
            self.state.meeting = scene.start(scenario)
        self.transcript = Transcript(scenario_id=scenario.id, level=level)
        self.last_reading: Reading | None = None
        self._rng = random.Random(seed)

    def _starting_trust(self, member: CastMember) -> float:
        return float(max(0, min(TRUST_MAX, self.level.starting_trust + member.trust_offset)))

    # --- public API -------------------------------------------------------------------------
    def mind(self, who: str) -> Mind:
        """The mind of the cast member `who` (the state itself for the first, or only, persona)."""
        return self.state if who == self.lead.id or not who else self.state.cast[who]

    def open(self) -> str:
        """The opening lines (recorded as the first turns); in a scene, each present member's that has one."""
        said = []
        for m in scene.present(self.scenario, 0) if self.scenario.is_scene else [self.lead]:
            line = m.opening_line if self.scenario.is_scene else self.scenario.opening_line
            if line:
                self._record("persona", line.strip(), m.id)
                said.append(line.strip())
                if self.state.meeting is not None:
                    scene.spoke(self.state.meeting, m.id, line, 0, "opening")
        return "\n\n".join(said)

    @property
    def readings(self) -> list[dict[str, Any]]:
        """How each learner turn so far was read (compact), in order."""
        return [t.reading for t in self.transcript.turns if t.speaker == "learner" and t.reading is not None]

    def opening_turns(self) -> list[Turn]:
        """The persona turns said before the learner's first turn."""
        out = []
        for t in self.transcript.turns:
            if t.speaker == "learner":
                break
            out.append(t)
        return out

    def respond_scene(self, text: str) -> Iterator[Spoken]:
        """Take a learner turn and yield each persona turn of the reply as it grows, in order.

        Raises:
            RoleplayError: the conversation has ended, or the turn is empty, too long or not text.
        """
        if self.state.ended:
            raise RoleplayError("this conversation has ended; start a new session to practise again")
        text = check_turn(text)
        directives = self._advance(text)
        self._record("learner", text, reading=self.last_reading.compact() if self.last_reading else None)
        turn = self.state.learner_turns
        for index, (directive, role, cut_off) in enumerate(directives):
            reply = ""
            for reply in self.voice.speak(self, directive):
                yield Spoken(index, directive.who, reply)
            if directive.kind in ("success", "walkout", "timeout"):
                self.state.ended = True
                self.state.end_reason = directive.kind
            if self.state.meeting is not None:
                scene.spoke(self.state.meeting, directive.who, reply, turn, role, cut_off)
            self._record("persona", reply, directive.who)
        if self.state.meeting is not None and not self.state.ended:
            for m in self.scenario.members:
                if m.joins_at_turn == turn and m.join_line:
                    directive = Directive(kind="join", move="other", who=m.id, line=m.join_line.strip())
                    reply = ""
                    for reply in self.voice.speak(self, directive):
                        yield Spoken(len(directives), m.id, reply)
                    scene.spoke(self.state.meeting, m.id, reply, turn, "join")
                    self._record("persona", reply, m.id)
                    directives.append((directive, "join", None))

    def respond(self, text: str) -> Iterator[str]:
        """Take a learner turn and yield the reply as it grows (each item is the whole reply so far).

        In a scene the reply is every persona turn so far, each on its own paragraph as "Name: text".

        Raises:
            RoleplayError: the conversation has ended, or the turn is empty, too long or not text.
        """
        done: list[str] = []
        current = -1
        for spoken in self.respond_scene(text):
            if not self.scenario.is_scene:
                yield spoken.text
                continue
            line = f"{self.scenario.member(spoken.who).persona.name}: {spoken.text}"
            if spoken.index != current:
                current = spoken.index
                done.append(line)
            else:
                done[-1] = line
            yield "\n\n".join(done)

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
        present = ([m.persona.name for m in scene.present(self.scenario, self.state.learner_turns + 1)]
                   if self.scenario.is_scene else None)
        return ReadContext(scenario=self.scenario,
                           persona_lines=[t.text for t in turns if t.speaker == "persona"],
                           learner_lines=[t.text for t in turns if t.speaker == "learner"],
                           revealed=set(self.state.revealed_ids), present=present)

    # --- the state machine ---------------------------------------------------------------------
    def _advance(self, text: str) -> list[tuple[Directive, str, str | None]]:
        """Read the turn, update every mind, and decide who says what: (directive, scene role, who was cut off)."""
        st, scn = self.state, self.scenario
        reading = self.reader.read(text, self.context())
        self.last_reading = reading
        if reading.reader.startswith("offline (llm failed"):
            st.reader_fallbacks += 1
        moves, move = list(reading.moves), reading.main_move
        st.learner_turns += 1
        turn = st.learner_turns
        self._rng.seed(st.seed * 1009 + turn)  # per turn, so a resumed session replays exactly
        st.last_moves = moves
        st.off_topic_turns += move == "off_topic"
        facts = st.meeting
        members = scene.present(scn, turn) if facts is not None else [self.lead]
        target = scene.addressed(scn, reading, members) if facts is not None else self.lead
        if facts is not None:
            scene.hear(scn, facts, reading, turn)
        for m in members:
            self._count(self.mind(m.id), reading, target is None or target.id == m.id)
        if reading.language != scn.language:
            # nobody can follow: nothing the turn says moves trust or earns anything, and after a few such turns
            # in a row the meeting ends
            for m in members:
                self.mind(m.id).trust_history.append(self.mind(m.id).trust)
            st.foreign_turns += 1
            who = (target or members[0]).id
            if st.foreign_turns > len(scn.script.other_language):
                line = (scn.member(who).timeout_line or scn.end.timeout_line).strip()
                return [(Directive(kind="timeout", move=move, who=who, line=line), "answer", None)]
            return [(self._or_timeout(Directive(kind="language", move=move, who=who,
                                                line=self._rotate("language", scn.member(who).script.other_language))),
                     "answer", None)]
        st.foreign_turns = 0
        for m in members:
            self._move_trust(m, reading, target is None or target.id == m.id)

        end = scn.end
        for m in members:
            mind = self.mind(m.id)
            if mind.blames >= end.walkout_after_blames or mind.threats >= end.walkout_after_threats \
                    or mind.cold_turns >= end.walkout_after_cold_turns:
                return [(Directive(kind="walkout", move=move, who=m.id, line=(m.walkout_line or end.walkout_line).strip()),
                         "answer", None)]
        named_owner = scn.owner_of(reading.named_facts[0]).id if reading.named_facts else None
        plan = (scene.plan_speakers(scn, facts, reading, turn, first=named_owner) if facts is not None
                else [scene.Speaker(self.lead.id, "answer")])
        out: list[tuple[Directive, str, str | None]] = []
        for speaker in plan:
            member = scn.member(speaker.who)
            if speaker.role == "answer":
                directive = self._answer(member, reading, target is None or target.id == member.id)
                out.append((directive, "answer", None))
                if directive.kind in ("success", "walkout", "timeout"):
                    break
            elif speaker.role == "also":
                out.append((Directive(kind="reply", move=move, who=member.id, line=self._scripted_line(member, move)),
                            speaker.role, None))
            else:
                cut_off = target.id if speaker.role == "cut_across" and target is not None else None
                out.append((Directive(kind="interject", move=move, who=member.id,
                                      line=self._interjection(member, move)), speaker.role, cut_off))
        return out

    def _answer(self, member: CastMember, reading: Reading, to_them: bool) -> Directive:
        """The main reply of `member`: a fact named or earned, the scene's end, or a line for the move."""
        st, scn = self.state, self.scenario
        moves, move = list(reading.moves), reading.main_move
        mind = self.mind(member.id)
        if reading.named_facts and move not in ("blame", "threat", "dismissive"):
            fact = scn.fact(reading.named_facts[0])
            if fact in member.hidden_facts and fact.id not in st.revealed_ids:
                st.revealed.append(Reveal(fact_id=fact.id, turn=st.learner_turns, moves=moves, trust=mind.trust,
                                          needed_trust=self._needed(fact), how="named", by=self._by(member)))
                return Directive(kind="named", move=move, who=member.id, fact_id=fact.id, line=fact.when_named.strip())
        fact_out = self._fact_to_reveal(member, reading) if to_them or not scn.is_scene else None
        if fact_out is not None:
            st.revealed.append(Reveal(fact_id=fact_out.id, turn=st.learner_turns, moves=moves, trust=mind.trust,
                                      needed_trust=self._needed(fact_out), by=self._by(member)))
            return Directive(kind="reveal", move=move, who=member.id, fact_id=fact_out.id,
                             line=fact_out.reveal_line.strip())
        succ = scn.end.success
        trust = min(self.mind(m.id).trust for m in scene.present(scn, st.learner_turns)) if scn.is_scene else mind.trust
        if (reading.relevant and set(moves) & set(succ.moves_any) and trust >= succ.min_trust
                and set(succ.facts_revealed) <= set(st.revealed_ids)):
            return Directive(kind="success", move=move, who=member.id,
                             line=(member.success_line or scn.end.success_line).strip())
        return self._or_timeout(Directive(kind="reply", move=move, who=member.id, line=self._scripted_line(member, move)))

    def _by(self, member: CastMember) -> str | None:
        return member.id if self.scenario.is_scene else None

    def _interjection(self, member: CastMember, move: str) -> str:
        """What a cast member says when they speak without being the one addressed."""
        if member.interjections and self.mind(member.id).mood != "open":
            fresh = [x for x in member.interjections if x not in self.mind(member.id).said]
            if fresh:
                return self._say(self.mind(member.id), fresh[0])
        return self._scripted_line(member, move)

    def _or_timeout(self, directive: Directive) -> Directive:
        if self.state.learner_turns >= self.level.max_turns:
            member = self.scenario.member(directive.who or self.lead.id)
            return Directive(kind="timeout", move=directive.move, who=directive.who,
                             line=(member.timeout_line or self.scenario.end.timeout_line).strip())
        return directive

    def _count(self, mind: Mind, reading: Reading, to_them: bool) -> None:
        """Blames, threats and rapport: only a turn that speaks to this person (or to everyone) counts for them."""
        if not to_them:
            return
        mind.blames += "blame" in reading.moves
        mind.threats += "threat" in reading.moves
        if reading.has(*_NEGATIVE):
            # goodwill built so far is lost: the persona needs to feel listened to again before it opens up
            mind.last_negative_turn = self.state.learner_turns
            mind.rapport = mind.listened = 0
        elif self._builds_rapport(mind, reading):
            mind.rapport += 1
            mind.listened += reading.has(*_LISTENING)

    def _move_trust(self, member: CastMember, reading: Reading, to_them: bool) -> None:
        mind, lvl = self.mind(member.id), self.level
        effects = {**DEFAULT_TRUST_EFFECTS, **member.script.trust_effects}
        repeated = _repeats(reading.text, [t.text for t in self.transcript.turns if t.speaker == "learner"])
        own_out = any(r.fact_id in {f.id for f in member.hidden_facts} for r in self.state.revealed)
        side = self._side_effect(member, reading)
        delta = 0.0
        for m in reading.moves:
            effect = float(effects.get(m, 0))
            if not to_them and (effect > 0 or m not in _NEGATIVE):
                continue  # a turn to someone else: only how the chair treats people in front of them counts
            if side < 0 and effect > 0:
                continue  # warm words that take the other side's part win nothing here
            if effect > 0:
                if not reading.relevant or repeated:
                    effect = 0.0  # nonsense and parroting earn nothing
                elif m in _LISTENING and not (reading.engages or reading.on_topic >= 0.5):
                    effect *= 0.5  # a generic acknowledgement is worth less than one that takes up what was said
            elif m in ("advice", "directive") and (mind.trust >= 3 or own_out):
                effect = max(effect, 0.0)  # suggestions are welcome once the real issue is out
            elif not to_them:
                effect *= 0.5
            delta += effect * (_GAIN[lvl.resistance] if effect > 0 else _LOSS[lvl.resistance])
        delta += side
        delta = max(-2.0, min(1.0, delta))
        mind.trust = round(max(0.0, min(float(TRUST_MAX), mind.trust + delta)), 3)
        mind.trust_history.append(mind.trust)
        if mind.trust > 0:
            mind.cold_turns = 0
        elif to_them:  # a cold turn is one that spoke to them; someone left out speaks up instead of walking out
            mind.cold_turns += 1

    def _side_effect(self, member: CastMember, reading: Reading) -> float:
        """Taking a side in a scene: against this person, or with someone they oppose, costs trust; with them, a little gain."""
        if not self.scenario.is_scene or not reading.sides:
            return 0.0
        loss = _LOSS[self.level.resistance]
        own = reading.sides.get(member.persona.name, 0)
        opposed = [self.scenario.member(o).persona.name for o in member.opposes]
        if own < 0 or any(reading.sides.get(n, 0) > 0 for n in opposed):
            return -1.0 * max(loss, 0.75)
        if own > 0:
            return 0.5 * _GAIN[self.level.resistance]
        return 0.0

    def _builds_rapport(self, mind: Mind, reading: Reading) -> bool:
        """Whether the turn asked or listened about this conversation with nothing against the persona in it.

        A turn the reader only gave the benefit of the doubt (it may judge the person: "So what you're saying is
        you can't manage your own diary") earns no rapport, and neither does listening with advice or orders
        in the same breath before the persona trusts the learner ("So mornings are hard. Set an earlier alarm.").
        """
        if not (reading.relevant and (reading.engages or reading.on_topic >= 0.5)
                and reading.has(*_ASKING, *_LISTENING, "affirmation")):
            return False  # asked or listened about this conversation, not just anything
        if reading.doubtful:
            return False
        return not (reading.has(*_PUSHING) and not (mind.trust >= 3 or self.state.revealed))

    def _needed(self, fact: HiddenFact) -> int:
        return max(0, min(TRUST_MAX, fact.reveal_when.min_trust + self.level.reveal_trust_offset))

    def _fact_to_reveal(self, member: CastMember, reading: Reading) -> HiddenFact | None:
        """A fact comes out only for a relevant question, or a reflection that takes up what was said, once the
        learner has asked and listened for a few turns since they last blamed, threatened or dismissed, and has
        listened at least once, not only asked. A turn that may judge the person brings nothing out."""
        st, mind = self.state, self.mind(member.id)
        if not reading.relevant or reading.has(*_NEGATIVE, "off_topic") or reading.doubtful:
            return None
        if mind.rapport < _RAPPORT[self.level.resistance] or not mind.listened:
            return None
        if mind.last_negative_turn and st.learner_turns - mind.last_negative_turn < 2:
            return None
        for fact in member.hidden_facts:
            cond = fact.reveal_when
            if fact.id in st.revealed_ids or st.learner_turns < cond.min_turn or mind.trust < self._needed(fact):
                continue
            earned = set(reading.moves) & set(cond.moves_any)
            listening = earned & set(_LISTENING)
            if earned - set(_LISTENING) or (listening and (reading.engages or reading.on_topic >= 0.5)):
                return fact
        return None

    def _scripted_line(self, member: CastMember, move: str) -> str:
        """The next line for this move and mood that fits what has been revealed and has not been said yet.

        When the move's lines are used up, the persona falls back to its general lines, then (when guarded) to
        its pushback, before it repeats itself.
        """
        script, st = member.script, self.mind(member.id)
        mood = st.mood
        revealed = set(self.state.revealed_ids)
        if (mood == "guarded" and move in _ASKING + _LISTENING
                and self._rng.random() < _PUSHBACK[self.level.resistance]):
            fresh = [p for p in member.persona.pushback if p not in st.said]
            if fresh:
                return self._say(st, self._rng.choice(fresh))
        lines_for = script.reactions.get(move)  # type: ignore[call-overload]
        sources = [(f"{move}:{mood}", lines_for.for_mood(mood, revealed) if lines_for else []),
                   (f"fallback:{mood}", script.fallback.for_mood(mood, revealed))]
        if mood == "guarded" or move in ("blame", "threat", "dismissive", "off_topic"):
            sources.append(("pushback", list(member.persona.pushback)))
        for key, lines in sources:
            if not lines:
                continue
            if key not in st.cursors:
                st.cursors[key] = self._rng.randrange(len(lines))
            for step in range(len(lines)):
                candidate = lines[(st.cursors[key] + step) % len(lines)]
                if candidate not in st.said:
                    st.cursors[key] += step + 1
                    return self._say(st, candidate)
        # everything fitting has been said: repeat the one said longest ago
        key, lines = next((k, v) for k, v in sources if v)
        return self._say(st, min(lines, key=lambda x: max((i for i, said in enumerate(st.said) if said == x), default=-1)))

    def _rotate(self, key: str, lines: list[str]) -> str:
        i = self.state.cursors.get(key, 0)
        self.state.cursors[key] = i + 1
        return self._say(self.state, lines[i % len(lines)])

    def _say(self, mind: Mind, line: str) -> str:
        mind.said.append(line)
        return line

    def _record(self, speaker: str, text: str, who: str | None = None, reading: dict[str, Any] | None = None) -> None:
        tokens = self.counter.count(text)
        turn = Turn(speaker=speaker, text=text, tokens=tokens,  # type: ignore[arg-type]
                    who=who if self.scenario.is_scene and speaker == "persona" else None, reading=reading)
        self.transcript.turns.append(turn)
        if self.on_turn is not None:
            self.on_turn(turn, self.state.model_dump(mode="json"))

    # --- helpers for LLM voices --------------------------------------------------------------
    def history_messages(self, who: str | None = None) -> list[dict[str, str]]:
        """The conversation so far as chat messages from one persona's side (its own turns = assistant).

        In a scene, what the others said reaches `who` as what they heard in the meeting ("[Name]: text" in a user
        turn), and a late joiner hears nothing said before they arrived.
        """
        who = who or self.lead.id
        member = self.scenario.member(who)
        out: list[dict[str, str]] = []
        learner_turns = 0
        for t in self.transcript.turns:
            if t.speaker == "learner":
                learner_turns += 1
            if member.joins_at_turn and learner_turns <= member.joins_at_turn and t.who != who:
                continue
            if t.speaker == "persona" and (t.who or self.lead.id) == who:
                out.append({"role": "assistant", "content": t.text})
            elif t.speaker == "persona":
                out.append({"role": "user", "content": f"[{self.scenario.member(t.who or self.lead.id).persona.name}]: {t.text}"})
            else:
                out.append({"role": "user", "content": f"[Manager]: {t.text}" if self.scenario.is_scene else t.text})
        return out


def _repeats(text: str, earlier: list[str]) -> bool:
    """Whether the turn says again what the learner already said (the same words, give or take case)."""
    norm = " ".join(text.lower().split()).strip(" .!?")
    return any(" ".join(e.lower().split()).strip(" .!?") == norm for e in earlier)
