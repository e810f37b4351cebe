"""Scenarios: the persona, hidden facts, briefing, difficulty levels and offline script, loaded from YAML."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationInfo, ValidatorFunctionWrapHandler, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from roleplay.moves import Move
from roleplay.yamlsource import PathKey, Problem, format_field, json_schema, load_checked

Sprint = Literal["remote-team-setup", "virtual-meetings", "remote-communication", "underperformance"]
"""The four sprints of the programme; every scenario belongs to one."""

SPRINTS: tuple[str, ...] = ("remote-team-setup", "virtual-meetings", "remote-communication", "underperformance")

LevelName = Literal["novice", "intermediate", "expert"]
LEVELS: tuple[str, ...] = ("novice", "intermediate", "expert")

FeedbackMode = Literal["immediate", "after_review"]
"""When a learner sees the AI feedback: at once, marked preliminary, or only after a facilitator approved it."""

Mood = Literal["guarded", "warming", "open"]
MOODS: tuple[str, ...] = ("guarded", "warming", "open")

TRUST_MAX = 5
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Persona(_Model):
    """Who the learner talks to and how they behave."""

    name: str = Field(min_length=1, description="Full name the persona goes by, e.g. 'Sam Okafor'.")
    role: str = Field(min_length=1, description="Job and context, e.g. 'account analyst, 4 years on the team'.")
    personality: str = Field(min_length=1, description="Temperament in a few words the persona must stay true to.")
    speaking_style: str = Field(min_length=1, description="How they talk: length of answers, tone, when they open up.")
    background: str = Field(default="", description="What the persona knows and may say openly from the start.")
    wants: str = Field(min_length=1, description="What the persona wants out of this conversation.")
    resists: list[str] = Field(min_length=1, description="What the persona pushes back on or avoids.")
    pushback: list[str] = Field(min_length=1, description="Typical lines the persona uses to resist or deflect.")


class OtherPerson(_Model):
    """Someone else present in the conversation, voiced by the persona engine when needed."""

    name: str = Field(min_length=1, description="Name of the other person.")
    role: str = Field(min_length=1, description="Their job and relation to the persona.")
    stance: str = Field(min_length=1, description="Their position in the situation, in one or two sentences.")


class RevealCondition(_Model):
    """When a hidden fact may come out: data both the LLM and offline engines evaluate."""

    moves_any: list[Move] = Field(
        min_length=1, description="The learner's turn must carry at least one of these moves."
    )
    min_trust: int = Field(ge=0, le=TRUST_MAX, description="Trust (0-5) the persona must have reached, before the level's offset.")
    min_turn: int = Field(default=3, ge=1, le=60, description="Earliest learner turn (1-based) at which it may be revealed.")


class HiddenFact(_Model):
    """Something the persona knows but only shares once the learner has earned it."""

    id: str = Field(pattern=ID_PATTERN, description="Short identifier, unique in the scenario, e.g. 'caring-for-parent'.")
    fact: str = Field(min_length=1, description="The fact itself, for the engine and the facilitator; never sent to a model before it is revealed.")
    hint: str = Field(
        default="something private you are not ready to talk about",
        description="What a model voicing the persona may know before the reveal: a vague hint, never the fact itself.",
    )
    reveal_line: str = Field(min_length=1, description="What the persona says when revealing it (offline engine; a style hint for the LLM).")
    reveal_when: RevealCondition = Field(description="The condition under which the persona reveals this fact.")
    when_named: str = Field(
        default="...Who told you that? I'd rather have told you myself.",
        description="The persona's reaction when the learner names this fact before it was revealed.",
    )


class DifficultyLevel(_Model):
    """How hard one level of the scenario is."""

    resistance: Literal["low", "medium", "high"] = Field(description="How strongly the persona resists; scales trust losses.")
    starting_trust: int = Field(ge=0, le=TRUST_MAX, description="Trust (0-5) the persona starts with.")
    reveal_trust_offset: int = Field(
        default=0, ge=-3, le=3, description="Added to every hidden fact's min_trust: positive hides more."
    )
    max_turns: int = Field(ge=4, le=60, description="Learner turns after which the persona ends the conversation.")


class Levels(_Model):
    """The three difficulty levels every scenario offers."""

    novice: DifficultyLevel = Field(description="Forgiving: lower resistance, facts come out sooner.")
    intermediate: DifficultyLevel = Field(description="Realistic default.")
    expert: DifficultyLevel = Field(description="Hard: high resistance, facts need more trust.")

    def get(self, name: str) -> DifficultyLevel:
        """Return the level called `name` (novice, intermediate or expert)."""
        return getattr(self, name)


class SuccessCondition(_Model):
    """What makes the persona close the conversation on good terms."""

    moves_any: list[Move] = Field(default_factory=lambda: ["next_step"], description="Moves of the learner's closing turn.")
    min_trust: int = Field(default=3, ge=0, le=TRUST_MAX, description="Trust the persona must have reached.")
    facts_revealed: list[str] = Field(default_factory=list, description="Hidden fact ids that must be out first.")


class EndConditions(_Model):
    """How a conversation ends besides reaching the level's max_turns."""

    success: SuccessCondition = Field(default_factory=SuccessCondition, description="Condition for a good close.")
    success_line: str = Field(min_length=1, description="The persona's closing line when the success condition is met.")
    walkout_after_blames: int = Field(default=3, ge=1, le=20, description="Blaming turns after which the persona ends the meeting.")
    walkout_after_threats: int = Field(default=2, ge=1, le=20, description="Threatening turns after which the persona ends the meeting.")
    walkout_after_cold_turns: int = Field(
        default=4, ge=2, le=30, description="Consecutive learner turns with trust at 0 after which the persona ends the meeting."
    )
    walkout_line: str = Field(min_length=1, description="The persona's line when they end the meeting.")
    timeout_line: str = Field(min_length=1, description="The persona's line when max_turns is reached.")


class ScriptLine(_Model):
    """A scripted line that only fits before or after some reveals, so the persona never contradicts itself."""

    text: str = Field(min_length=1, description="What the persona says.")
    after: list[str] = Field(default_factory=list, description="Hidden fact ids that must already be revealed.")
    before: list[str] = Field(default_factory=list, description="Hidden fact ids that must not be revealed yet.")

    def fits(self, revealed: set[str]) -> bool:
        """Whether the line may be said once `revealed` facts are out."""
        return set(self.after) <= revealed and not (set(self.before) & revealed)


Line = str | ScriptLine
"""A line: plain text (fits any time) or a ScriptLine with before/after conditions."""


def line_text(line: Line) -> str:
    """The words of a line."""
    return line if isinstance(line, str) else line.text


def line_fits(line: Line, revealed: set[str]) -> bool:
    """Whether a line may be said given the facts revealed so far."""
    return isinstance(line, str) or line.fits(revealed)


class MoodLines(_Model):
    """Lines for one learner move, by the persona's current mood; the engine rotates through them."""

    guarded: list[Line] = Field(default_factory=list, description="Trust 0-1: short, defensive.")
    warming: list[Line] = Field(default_factory=list, description="Trust 2-3: cautious but engaging.")
    open: list[Line] = Field(default_factory=list, description="Trust 4-5: candid and cooperative.")

    @model_validator(mode="after")
    def _some_line(self) -> MoodLines:
        if not (self.guarded or self.warming or self.open):
            raise ValueError("give at least one line under guarded, warming or open")
        return self

    def for_mood(self, mood: str, revealed: set[str] | None = None) -> list[str]:
        """Lines for `mood` that fit the facts revealed so far, falling back to the nearest mood that has some."""
        order = {"guarded": ("guarded", "warming", "open"), "warming": ("warming", "open", "guarded"),
                 "open": ("open", "warming", "guarded")}[mood]
        out = set(revealed or ())
        for m in order:
            lines = [line_text(x) for x in getattr(self, m) if line_fits(x, out)]
            if lines:
                return lines
        return []

    def all_lines(self) -> list[Line]:
        """Every line, whatever the mood."""
        return [*self.guarded, *self.warming, *self.open]


class OfflineScript(_Model):
    """The scripted persona's lines: reactions to learner moves by mood."""

    reactions: dict[Move, MoodLines] = Field(description="Lines per learner move (open_question, blame, ...).")
    fallback: MoodLines = Field(description="Lines when no reaction matches the learner's move.")
    other_language: list[str] = Field(
        default_factory=lambda: ["Sorry, could we keep this in English? I won't follow it properly otherwise.",
                                 "I'm not following, sorry. Could you say that in English?"],
        min_length=1,
        description="What the persona says (in rotation) when the learner writes in another language than the scenario's.",
    )
    trust_effects: dict[Move, int] = Field(
        default_factory=dict,
        description="Override how much a move changes trust (-2..2); defaults suit most personas.",
    )

    @field_validator("trust_effects")
    @classmethod
    def _bounded(cls, value: dict[str, int]) -> dict[str, int]:
        for move, delta in value.items():
            if not -2 <= delta <= 2:
                raise ValueError(f"trust effect of '{move}' is {delta}; use a number from -2 to 2")
        return value


class SpeaksUp(_Model):
    """When a cast member speaks without being addressed: rules of the scene, evaluated in code."""

    when_sided_against: bool = Field(
        default=True, description="Interject when the learner sides against this person, or with someone they oppose.")
    after_silent_turns: int | None = Field(
        default=None, ge=1, le=20,
        description="Speak up unprompted after this many learner turns not addressed to them (unset: never).")
    cuts_across_every: int | None = Field(
        default=None, ge=1, le=10,
        description="A dominant talker: cut across every Nth learner turn addressed to someone else, until the "
                    "learner has handed the floor back twice (unset: never).")
    only_when_addressed: bool = Field(
        default=False,
        description="A quiet member: answers only when addressed by name, never a question to everyone.")


class CastMember(_Model):
    """One person of a scene with several personas: their own card, secrets, trust and lines."""

    id: str = Field(pattern=ID_PATTERN, description="Short identifier, unique in the cast, e.g. 'priya'.")
    persona: Persona = Field(description="Who this person is and how they behave.")
    colour: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$",
                               description="Colour of their name in the chat, e.g. '#7c3aed' (a palette colour by default).")
    opening_line: str | None = Field(default=None, description="What they say when the scene opens (in cast order).")
    hidden_facts: list[HiddenFact] = Field(default_factory=list, description="Facts only this person knows and reveals when earned.")
    trust_offset: int = Field(default=0, ge=-3, le=3, description="Added to the level's starting trust for this person.")
    opposes: list[str] = Field(default_factory=list,
                               description="Cast ids whose side this person is against: siding with them costs trust here.")
    speaks_up: SpeaksUp = Field(default_factory=SpeaksUp, description="When they speak without being addressed.")
    joins_at_turn: int = Field(default=0, ge=0, le=30,
                               description="A late joiner: absent until after this learner turn (0: there from the start).")
    join_line: str | None = Field(default=None, description="What a late joiner says when they arrive.")
    interjections: list[str] = Field(
        default_factory=list,
        description="Lines for speaking up unprompted or cutting across (in rotation; the script's fallback otherwise).")
    success_line: str | None = Field(default=None, description="This person's closing line when the meeting ends well "
                                     "and they are the one answering (the scene's end.success_line otherwise).")
    walkout_line: str | None = Field(default=None, description="This person's line when they walk out (end.walkout_line otherwise).")
    timeout_line: str | None = Field(default=None, description="This person's line when time runs out (end.timeout_line otherwise).")
    script: OfflineScript = Field(description="This person's lines for the offline engine.")

    @property
    def first_name(self) -> str:
        """The name people call them by."""
        return self.persona.name.split()[0]


class MeetingRules(_Model):
    """How a scene with several personas runs."""

    max_replies: int = Field(default=2, ge=1, le=4, description="Persona turns at most after one learner turn.")


_ONE_PERSON = ("persona", "opening_line", "script")
_EMPTY = object()
"""Stands for a one-person field written with an empty value (not left out)."""


class Scenario(_Model):
    """A practice scenario authored by a learning designer: one persona, or a cast of 2 to 4 in one scene."""

    id: str = Field(pattern=ID_PATTERN, description="Unique identifier (lowercase, digits, hyphens), e.g. 'missed-deadlines'.")
    title: str = Field(min_length=1, description="Title shown to learners.")
    sprint: Sprint = Field(description="Sprint this scenario belongs to.")
    summary: str = Field(min_length=1, description="One sentence shown in the scenario picker.")
    rubric: str = Field(pattern=ID_PATTERN, description="Id of the rubric in rubrics/ that grades this scenario.")
    language: str = Field(default="en", pattern=r"^[a-z]{2}$", description="ISO 639-1 code of the language the conversation is held in.")
    briefing: str = Field(min_length=1, description="What the learner knows before starting.")
    objectives: list[str] = Field(min_length=1, description="What the learner should achieve in the conversation.")
    cast: list[CastMember] = Field(default_factory=list, description="A scene with 2 to 4 personas, each with their "
                                   "own card, hidden facts, trust and lines (instead of persona, hidden_facts, script and opening_line).")
    persona: Persona = Field(default=None, validate_default=True,  # type: ignore[assignment]
                             description="The AI persona the learner talks to (a one-person scenario; with a cast, the "
                                         "first member).")
    others: list[OtherPerson] = Field(default_factory=list, description="Other people mentioned but not voiced.")
    meeting: MeetingRules = Field(default_factory=MeetingRules, description="How a scene with a cast runs.")
    opening_line: str = Field(default=None, validate_default=True,  # type: ignore[assignment]
                              description="The persona's first line (with a cast: the first member's).")
    hidden_facts: list[HiddenFact] = Field(default_factory=list, description="Facts revealed only when earned "
                                           "(with a cast: every member's, filled in from the cast).")
    levels: Levels = Field(description="Difficulty levels: novice, intermediate and expert.")
    end: EndConditions = Field(description="How the conversation ends.")
    script: OfflineScript = Field(default=None, validate_default=True,  # type: ignore[assignment]
                                  description="Lines for the offline engine (with a cast: the first member's).")
    model_lines: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Better-alternative lines per rubric criterion id, specific to this scenario.",
    )
    token_budget: int = Field(default=6000, ge=1000, le=200000, description="Token budget of the persona's context.")
    feedback: FeedbackMode | None = Field(
        default=None,
        description="When the learner sees the AI feedback: 'immediate' (at once, marked preliminary until a "
                    "facilitator approves it) or 'after_review' (only once approved); the programme's setting when unset.",
    )

    @model_validator(mode="before")
    @classmethod
    def _mark_empty(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(data.get(k, ...) is None for k in _ONE_PERSON):
            data = {k: (_EMPTY if k in _ONE_PERSON and v is None else v) for k, v in data.items()}
        return data

    @field_validator("persona", "opening_line", "script", mode="wrap")
    @classmethod
    def _needed_without_cast(cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> object:
        if value is _EMPTY:
            return handler(None)  # written but empty: the usual "got nothing" message
        if value is not None:
            return handler(value)
        if info.data.get("cast") == []:
            raise PydanticCustomError("missing", "Field required")  # a one-person scenario needs it
        return None  # filled in from the cast

    @model_validator(mode="after")
    def _one_or_cast(self) -> Scenario:
        if self.cast:
            if len(self.cast) < 2:
                raise ValueError("a cast has 2 to 4 members; for one person use `persona` instead of `cast`")
            lead = self.cast[0]
            if "persona" not in self.model_fields_set:
                object.__setattr__(self, "persona", lead.persona)
            if "script" not in self.model_fields_set:
                object.__setattr__(self, "script", lead.script)
            if "opening_line" not in self.model_fields_set:
                opening = next((m.opening_line for m in self.cast if m.opening_line), None)
                if opening is None:
                    raise ValueError("give at least one cast member an opening_line")
                object.__setattr__(self, "opening_line", opening)
            if "hidden_facts" not in self.model_fields_set:
                object.__setattr__(self, "hidden_facts", [f for m in self.cast for f in m.hidden_facts])
            return self
        return self

    @cached_property
    def members(self) -> tuple[CastMember, ...]:
        """The people the learner talks to: the cast, or the one persona as a cast of one."""
        if self.cast:
            return tuple(self.cast)
        return (CastMember(id=_member_id(self.persona.name), persona=self.persona, opening_line=self.opening_line,
                           hidden_facts=self.hidden_facts, script=self.script),)

    @property
    def is_scene(self) -> bool:
        """Whether more than one persona takes part."""
        return len(self.cast) > 1

    def member(self, member_id: str) -> CastMember:
        """The cast member with this id."""
        return next(m for m in self.members if m.id == member_id)

    def owner_of(self, fact_id: str) -> CastMember:
        """The cast member who holds a hidden fact."""
        return next(m for m in self.members if any(f.id == fact_id for f in m.hidden_facts))

    def fact(self, fact_id: str) -> HiddenFact:
        """Return the hidden fact with this id."""
        return next(f for f in self.hidden_facts if f.id == fact_id)


def _member_id(name: str) -> str:
    first = "".join(ch for ch in name.split()[0].lower() if ch.isalnum()) if name.split() else ""
    return first if len(first) >= 2 else "persona"


def scenario_problems(scenario: Scenario) -> list[Problem]:
    """Consistency problems pydantic cannot see: duplicate ids, dangling fact and cast references."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    if scenario.cast:
        problems += _cast_problems(scenario)
        facts: list[tuple[PathKey, HiddenFact]] = [(("cast", i, "hidden_facts", j), f)
                                                   for i, m in enumerate(scenario.cast) for j, f in enumerate(m.hidden_facts)]
    else:
        facts = [(("hidden_facts", i), f) for i, f in enumerate(scenario.hidden_facts)]
    where_seen: dict[str, PathKey] = {}
    for i, (where, fact) in enumerate(facts):
        if fact.id in seen:
            problems.append(((*where, "id"), f"duplicate id '{fact.id}' (also {format_field(where_seen[fact.id])}); "
                             "give each hidden fact its own id"))
        seen.setdefault(fact.id, i)
        where_seen.setdefault(fact.id, where)
    for where, lines in _script_lines(scenario):
        for j, line in enumerate(lines):
            if isinstance(line, ScriptLine):
                for key in ("after", "before"):
                    for k, fid in enumerate(getattr(line, key)):
                        if fid not in seen:
                            problems.append(((*where, j, key, k), f"'{fid}' is not a hidden fact id; use one of: "
                                             f"{', '.join(seen) or '(no hidden facts defined)'}"))
    for i, fid in enumerate(scenario.end.success.facts_revealed):
        if fid not in seen:
            problems.append((
                ("end", "success", "facts_revealed", i),
                f"'{fid}' is not a hidden fact id; use one of: {', '.join(seen) or '(no hidden facts defined)'}",
            ))
    return problems


_CAST_ONLY = ("persona", "hidden_facts", "script", "opening_line")


def _cast_problems(scenario: Scenario) -> list[Problem]:
    problems: list[Problem] = []
    for name in _CAST_ONLY:
        if name in scenario.model_fields_set:
            problems.append(((name,), f"with a `cast`, give {name} inside each cast member, not at the top level"))
    if len(scenario.cast) > 4:
        problems.append((("cast", 4), f"a cast has 2 to 4 members, this one has {len(scenario.cast)}; "
                         "split the scene or voice the others as `others`"))
    ids: dict[str, int] = {}
    for i, member in enumerate(scenario.cast):
        if member.id in ids:
            problems.append((("cast", i, "id"), f"duplicate cast id '{member.id}' (also cast[{ids[member.id]}])"))
        ids.setdefault(member.id, i)
    for i, member in enumerate(scenario.cast):
        for k, other in enumerate(member.opposes):
            if other not in ids or other == member.id:
                problems.append((("cast", i, "opposes", k), f"'{other}' is not another cast member's id; use one of: "
                                 f"{', '.join(x for x in ids if x != member.id)}"))
        if member.joins_at_turn and not member.join_line:
            problems.append((("cast", i, "join_line"), "a late joiner (joins_at_turn) needs a join_line"))
    if all(m.joins_at_turn for m in scenario.cast):
        problems.append((("cast",), "at least one cast member must be there from the start (joins_at_turn: 0)"))
    return problems


def _script_lines(scenario: Scenario) -> list[tuple[tuple[str | int, ...], list[Line]]]:
    out: list[tuple[tuple[str | int, ...], list[Line]]] = []
    scripts: list[tuple[PathKey, OfflineScript]] = (
        [(("cast", i, "script"), m.script) for i, m in enumerate(scenario.cast)] if scenario.cast
        else [(("script",), scenario.script)])
    for where, script in scripts:
        for move, mood_lines in script.reactions.items():
            for mood in MOODS:
                out.append(((*where, "reactions", move, mood), list(getattr(mood_lines, mood))))
        for mood in MOODS:
            out.append(((*where, "fallback", mood), list(getattr(script.fallback, mood))))
    return out


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate one scenario file.

    Raises:
        ScenarioError: the file cannot be read or parsed.
        ValidationErrors: one or more fields are invalid (each with file:line: field).
    """
    return load_checked(path, Scenario, scenario_problems)


def scenario_schema() -> dict:
    """JSON Schema of a scenario file, for designers' editors."""
    return json_schema(Scenario, "roleplay scenario")
