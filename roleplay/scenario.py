"""Scenarios: the persona, hidden facts, briefing, difficulty levels and offline script, loaded from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from roleplay.moves import Move
from roleplay.yamlsource import Problem, json_schema, load_checked

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


class Scenario(_Model):
    """A practice scenario authored by a learning designer."""

    id: str = Field(pattern=ID_PATTERN, description="Unique identifier (lowercase, digits, hyphens), e.g. 'missed-deadlines'.")
    title: str = Field(min_length=1, description="Title shown to learners.")
    sprint: Sprint = Field(description="Sprint this scenario belongs to.")
    summary: str = Field(min_length=1, description="One sentence shown in the scenario picker.")
    rubric: str = Field(pattern=ID_PATTERN, description="Id of the rubric in rubrics/ that grades this scenario.")
    language: str = Field(default="en", pattern=r"^[a-z]{2}$", description="ISO 639-1 code of the language the conversation is held in.")
    briefing: str = Field(min_length=1, description="What the learner knows before starting.")
    objectives: list[str] = Field(min_length=1, description="What the learner should achieve in the conversation.")
    persona: Persona = Field(description="The AI persona the learner talks to.")
    others: list[OtherPerson] = Field(default_factory=list, description="Other people present (e.g. in a meeting).")
    opening_line: str = Field(min_length=1, description="The persona's first line.")
    hidden_facts: list[HiddenFact] = Field(default_factory=list, description="Facts revealed only when earned.")
    levels: Levels = Field(description="Difficulty levels: novice, intermediate and expert.")
    end: EndConditions = Field(description="How the conversation ends.")
    script: OfflineScript = Field(description="Lines for the offline engine.")
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

    def fact(self, fact_id: str) -> HiddenFact:
        """Return the hidden fact with this id."""
        return next(f for f in self.hidden_facts if f.id == fact_id)


def scenario_problems(scenario: Scenario) -> list[Problem]:
    """Consistency problems pydantic cannot see: duplicate fact ids, dangling fact references."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, fact in enumerate(scenario.hidden_facts):
        if fact.id in seen:
            problems.append(((
                "hidden_facts", i, "id"),
                f"duplicate id '{fact.id}' (also hidden_facts[{seen[fact.id]}]); give each hidden fact its own id",
            ))
        seen.setdefault(fact.id, i)
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


def _script_lines(scenario: Scenario) -> list[tuple[tuple[str | int, ...], list[Line]]]:
    out: list[tuple[tuple[str | int, ...], list[Line]]] = []
    for move, mood_lines in scenario.script.reactions.items():
        for mood in MOODS:
            out.append((("script", "reactions", move, mood), list(getattr(mood_lines, mood))))
    for mood in MOODS:
        out.append((("script", "fallback", mood), list(getattr(scenario.script.fallback, mood))))
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
