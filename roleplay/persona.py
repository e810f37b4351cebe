"""The persona engine: one conversation state machine (trust, reveals, endings) voiced by an LLM or a script."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from roleplay.moves import classify, main_move
from roleplay.scenario import TRUST_MAX, Scenario
from roleplay.tokens import TokenCounter, counter_for, trim_to_budget
from roleplay.transcript import Transcript, Turn

DEFAULT_TRUST_EFFECTS: dict[str, int] = {
    "greeting": 0, "open_question": 1, "closed_question": 0, "reflection": 1, "summary": 1, "empathy": 1,
    "affirmation": 1, "candid_feedback": 0, "advice": -1, "blame": -2, "dismissive": -1, "next_step": 0, "other": 0,
}
# Resistance scales gains and losses: a resistant persona warms slowly and cools fast.
_GAIN = {"low": 1.0, "medium": 0.75, "high": 0.5}
_LOSS = {"low": 0.5, "medium": 1.0, "high": 1.0}


class Reveal(BaseModel):
    """A hidden fact that came out, and why it was allowed to."""

    model_config = ConfigDict(extra="forbid")
    fact_id: str = Field(description="Id of the revealed hidden fact.")
    turn: int = Field(description="Learner turn (1-based) that earned it.")
    moves: list[str] = Field(description="The learner's moves on that turn.")
    trust: float = Field(description="Trust at that moment.")
    needed_trust: int = Field(description="Trust the condition asked for (after the level's offset).")


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
    seed: int = Field(default=0, description="Seed for the offline engine's line choice.")
    trust: float = Field(description="0-5; moves by the learner's moves.")
    learner_turns: int = Field(default=0, description="Learner turns so far.")
    blames: int = Field(default=0, description="Learner turns that blamed.")
    revealed: list[Reveal] = Field(default_factory=list, description="Hidden facts revealed so far.")
    last_moves: list[str] = Field(default_factory=list, description="Moves of the last learner turn.")
    trust_history: list[float] = Field(default_factory=list, description="Trust after each learner turn.")
    cursors: dict[str, int] = Field(default_factory=dict, description="Offline line rotation per move and mood.")
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
    kind: str = Field(description="'reply', 'reveal', 'success', 'walkout' or 'timeout'.")
    move: str = Field(description="The learner move the reply answers.")
    fact_id: str | None = Field(default=None, description="Fact to reveal now, for 'reveal'.")
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
    """A practice conversation: the learner talks, the engine updates state and the voice answers.

    Args:
        scenario: The scenario practised.
        level: novice, intermediate or expert.
        voice: OfflineVoice or an LLM voice.
        seed: Seed for the offline line rotation (same seed, same conversation).
        on_turn: Called with (speaker, text, tokens, state) after each turn, e.g. to store it.
        counter: Token counter (defaults to the configured model's).
    """

    def __init__(self, scenario: Scenario, level: str = "intermediate", voice: Voice | None = None, seed: int = 0,
                 on_turn: TurnSink | None = None, counter: TokenCounter | None = None, model: str = "gpt-4o-mini") -> None:
        self.scenario = scenario
        self.level_name = level
        self.level = scenario.levels.get(level)
        self.voice: Voice = voice or OfflineVoice()
        self.counter = counter or counter_for(model)
        self.on_turn = on_turn
        self.state = PersonaState(scenario_id=scenario.id, level=level, engine=self.voice.name, seed=seed,
                                  trust=float(self.level.starting_trust), tokens_estimated=self.counter.estimated)
        self.transcript = Transcript(scenario_id=scenario.id, level=level)
        self._rng = random.Random(seed)

    # --- public API -------------------------------------------------------------------------
    def open(self) -> str:
        """The persona's opening line (recorded as the first turn)."""
        self._record("persona", self.scenario.opening_line)
        return self.scenario.opening_line

    def respond(self, text: str) -> Iterator[str]:
        """Take a learner turn and yield the persona's reply as it grows (each item is the whole reply so far).

        Raises:
            RoleplayError: the conversation has ended or the turn is empty.
        """
        from roleplay.errors import RoleplayError

        if self.state.ended:
            raise RoleplayError("this conversation has ended; start a new session to practise again")
        text = text.strip()
        if not text:
            raise RoleplayError("say something to the persona first")
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

    # --- the state machine ---------------------------------------------------------------------
    def _advance(self, text: str) -> Directive:
        st, scn, lvl = self.state, self.scenario, self.level
        moves = list(classify(text))
        move = main_move(text)
        st.learner_turns += 1
        st.last_moves = moves
        if "blame" in moves:
            st.blames += 1
        effects = {**DEFAULT_TRUST_EFFECTS, **scn.script.trust_effects}
        delta = 0.0
        for m in moves:
            effect = effects.get(m, 0)
            if m == "advice" and (st.trust >= 3 or st.revealed):
                effect = max(effect, 0)  # suggestions are welcome once the real issue is out
            delta += effect * (_GAIN[lvl.resistance] if effect > 0 else _LOSS[lvl.resistance])
        delta = max(-2.0, min(1.0, delta))
        st.trust = round(max(0.0, min(float(TRUST_MAX), st.trust + delta)), 3)
        st.trust_history.append(st.trust)

        if st.blames >= scn.end.walkout_after_blames:
            return Directive(kind="walkout", move=move, line=scn.end.walkout_line)
        fact = self._fact_to_reveal(moves)
        if fact is not None:
            needed = max(0, min(TRUST_MAX, fact.reveal_when.min_trust + lvl.reveal_trust_offset))
            st.revealed.append(Reveal(fact_id=fact.id, turn=st.learner_turns, moves=moves, trust=st.trust,
                                      needed_trust=needed))
            return Directive(kind="reveal", move=move, fact_id=fact.id, line=fact.reveal_line.strip())
        succ = scn.end.success
        if (set(moves) & set(succ.moves_any) and st.trust >= succ.min_trust
                and set(succ.facts_revealed) <= set(st.revealed_ids)):
            return Directive(kind="success", move=move, line=scn.end.success_line)
        if st.learner_turns >= lvl.max_turns:
            return Directive(kind="timeout", move=move, line=scn.end.timeout_line)
        return Directive(kind="reply", move=move, line=self._scripted_line(move))

    def _fact_to_reveal(self, moves: list[str]):  # type: ignore[no-untyped-def]
        st = self.state
        if "blame" in moves or "dismissive" in moves:
            return None
        for fact in self.scenario.hidden_facts:
            cond = fact.reveal_when
            needed = max(0, min(TRUST_MAX, cond.min_trust + self.level.reveal_trust_offset))
            if (fact.id not in st.revealed_ids and st.learner_turns >= cond.min_turn and st.trust >= needed
                    and set(moves) & set(cond.moves_any)):
                return fact
        return None

    def _scripted_line(self, move: str) -> str:
        script = self.scenario.script
        mood = self.state.mood
        lines_for = script.reactions.get(move)  # type: ignore[call-overload]
        lines = lines_for.for_mood(mood) if lines_for else []
        key = f"{move}:{mood}"
        if not lines:
            lines, key = script.fallback.for_mood(mood), f"fallback:{mood}"
        if key not in self.state.cursors:
            self.state.cursors[key] = self._rng.randrange(len(lines))
        i = self.state.cursors[key]
        self.state.cursors[key] = i + 1
        if i >= len(lines) and (move in ("open_question", "reflection", "empathy", "summary")):
            # after the scripted lines for this mood are used up, answer with a pushback rather than repeat
            pushes = self.scenario.persona.pushback
            return pushes[(i - len(lines)) % len(pushes)] if mood == "guarded" else lines[i % len(lines)]
        return lines[i % len(lines)]

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


def persona_instructions(scenario: Scenario, level: str) -> str:
    """The system prompt that puts a model in the persona's shoes."""
    p, lvl = scenario.persona, scenario.levels.get(level)
    others = "".join(f"\n- {o.name} ({o.role}): {o.stance}" for o in scenario.others)
    return (
        f"You are {p.name}, {p.role}. This is a role-play for a manager practising a hard conversation; "
        f"you are the other person in it, never a coach or an assistant.\n\n"
        f"Personality: {p.personality}\nHow you speak: {p.speaking_style}\n"
        f"What you know and may say openly: {p.background or '(only what the situation implies)'}\n"
        f"What you want: {p.wants}\nWhat you resist: {'; '.join(p.resists)}\n"
        f"Lines you use to push back: {' / '.join(p.pushback)}\n"
        f"Resistance at this level: {lvl.resistance}.\n"
        + (f"Others present:{others}\n" if others else "")
        + f"\nThe situation (as the manager was briefed): {scenario.briefing.strip()}\n\n"
        "Rules: stay in character in every reply; speak only as yourself, in the first person, in one to four "
        "sentences of plain speech (no lists, no headings, no stage directions beyond a short bracket); never "
        "say you are an AI, a model or an assistant; never offer help, tips or apologies for confusion; do not "
        "make the manager's job easy: answer only what you are asked and reveal private matters only when told "
        "to below."
    )


def turn_instruction(conv: Conversation, directive: Directive) -> str:
    """The instruction placed after the history, where models follow it best."""
    scn, st = conv.scenario, conv.state
    name = scn.persona.name
    hidden = [f for f in scn.hidden_facts if f.id not in st.revealed_ids and f.id != directive.fact_id]
    secrets = "".join(f"\n- {f.fact}" for f in hidden)
    mood = {"guarded": "guarded and short", "warming": "cautious but starting to engage",
            "open": "open and cooperative"}[st.mood]
    if directive.kind == "reveal":
        fact = scn.fact(directive.fact_id or "")
        act = (f"The manager has earned your trust: now tell them, in your own words, this private fact: "
               f"{fact.fact} For example: \"{directive.line}\"")
    elif directive.kind in ("success", "walkout", "timeout"):
        act = f"End the conversation now, in your own words, along these lines: \"{directive.line}\""
    else:
        act = (f"Reply to the manager's last message (it reads as: {directive.move.replace('_', ' ')}). "
               f"Something in this spirit: \"{directive.line}\"")
    return (
        f"Stay in character as {name}. Your mood now: {mood} (trust {st.trust:.1f}/5). {act}\n"
        + (f"Do NOT reveal or hint at these yet:{secrets}\n" if secrets else "")
        + "Reply with your spoken words only, at most four sentences."
    )


_BREAKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(?:as an? (?:ai|artificial intelligence|language model|assistant|chatbot)|i(?:'m| am) (?:just |only )?an? "
                r"(?:ai|language model|assistant|chatbot|virtual assistant)|language model|openai|large language)\b", re.I),
     "talks about being an AI or a language model"),
    (re.compile(r"\b(?:how (?:can|may) i (?:help|assist) you|i(?:'d| would) be (?:happy|glad) to help|is there anything else|"
                r"i hope (?:this|that) helps|feel free to (?:ask|reach out)|great question|certainly!|absolutely!|"
                r"here are (?:some|a few) (?:tips|steps|ways|suggestions))", re.I),
     "talks like a helpful assistant"),
    (re.compile(r"\b(?:i apologi[sz]e for (?:any|the) confusion|sorry for (?:any|the) confusion|"
                r"i (?:can(?:no|')t|am unable to|won'?t) (?:role-?play|pretend|continue (?:this|the) (?:role|scenario)))", re.I),
     "steps out of the role-play"),
    (re.compile(r"(?:^|\n)\s*(?:[-*•]|\d+\.)\s+\S.*\n\s*(?:[-*•]|\d+\.)\s+\S", re.M), "answers with a list"),
    (re.compile(r"^\s*(?:#{1,6}\s|\*\*[^*]+\*\*:)", re.M), "uses document formatting"),
]
GUARD_PREFIX_CHARS = 80


def detect_break(conv: Conversation, text: str, directive: Directive) -> str | None:
    """Why `text` breaks character, or None when it stays in role."""
    for pattern, reason in _BREAKS:
        if pattern.search(text):
            return reason
    names = re.findall(r"\b(?:my name is|i am|i'm)\s+([A-Z][a-z]+)\b", text)
    own = {part.lower() for part in conv.scenario.persona.name.split()}
    for n in names:
        if n.lower() not in own and n.lower() not in {"not", "sorry", "fine", "just", "here", "sure", "okay", "worried"}:
            return f"claims to be {n}, not {conv.scenario.persona.name}"
    if directive.kind != "reveal" and _leaks(conv, text):
        return "reveals a hidden fact before it was earned"
    return None


def _distinctive(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{6,}", text.lower())}


def _known_words(conv: Conversation) -> set[str]:
    """Distinctive words the learner already knows (briefing, background, the conversation), grown per turn."""
    cache = conv.__dict__.setdefault("_known", {"turns": 0, "words": _distinctive(
        conv.scenario.briefing + " " + conv.scenario.persona.background)})
    turns = conv.transcript.turns
    for turn in turns[cache["turns"]:]:
        cache["words"] |= _distinctive(turn.text)
    cache["turns"] = len(turns)
    return cache["words"]


def _leaks(conv: Conversation, text: str) -> bool:
    known = _known_words(conv)
    said = _distinctive(text)
    for fact in conv.scenario.hidden_facts:
        if fact.id in conv.state.revealed_ids:
            continue
        secret = _distinctive(fact.fact + " " + fact.reveal_line) - known
        if len(secret & said) >= 2:
            return True
    return False


class LLMVoice:
    """The persona voiced by a chat model, streamed through the in-character guard.

    Args:
        model: Any object with `stream(messages, gen) -> Iterator[str]` (see roleplay.llm.ChatModel).
        gen: Generation settings passed to every call.
        max_repairs: Regenerations allowed for a reply that breaks character before the scripted line is used.
    """

    name = "llm"

    def __init__(self, model: Any, gen: Any = None, max_repairs: int = 2) -> None:
        self.model = model
        self.gen = gen
        self.max_repairs = max_repairs

    def messages(self, conv: Conversation, directive: Directive, repair: str | None = None) -> list[dict[str, str]]:
        """The request: instructions, the (trimmed) history, then the turn instruction after it."""
        final = turn_instruction(conv, directive)
        if repair:
            final += (f"\nIMPORTANT: your previous attempt was rejected because it {repair}. You are "
                      f"{conv.scenario.persona.name}, a person in this conversation, not an assistant. Answer again "
                      "in character, plainly, in your own voice.")
        msgs = [{"role": "system", "content": persona_instructions(conv.scenario, conv.level_name)},
                *conv.history_messages(), {"role": "system", "content": final}]
        trimmed, dropped = trim_to_budget(msgs, conv.scenario.token_budget, conv.counter)
        conv.state.trimmed_turns = max(conv.state.trimmed_turns, dropped)
        return trimmed

    def speak(self, conv: Conversation, directive: Directive) -> Iterator[str]:
        """Stream the model's reply, holding back the first characters until the guard has seen them."""
        repair: str | None = None
        for _attempt in range(self.max_repairs + 1):
            msgs = self.messages(conv, directive, repair)
            conv.state.prompt_tokens += conv.counter.count_messages(msgs)
            text, shown, broken = "", False, None
            for delta in self.model.stream(msgs, self.gen):
                text += delta
                if shown:
                    yield text
                elif len(text) >= GUARD_PREFIX_CHARS:
                    broken = detect_break(conv, text, directive)
                    if broken:
                        break
                    shown = True
                    yield text
            conv.state.completion_tokens += conv.counter.count(text)
            text = text.strip()
            broken = broken or detect_break(conv, text, directive) or (None if text else "gave an empty reply")
            if broken is None:
                if not shown:
                    yield text
                return
            conv.state.breaks.append(CharacterBreak(turn=conv.state.learner_turns, reason=broken, text=text,
                                                    repair="regenerated"))
            repair = broken
        conv.state.breaks[-1] = conv.state.breaks[-1].model_copy(update={"repair": "scripted"})
        yield directive.line
