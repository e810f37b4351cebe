"""Rubrics: weighted criteria with 1-4 level anchors, yes/partial/no checks, must-pass rules and a threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from roleplay.moves import Move
from roleplay.yamlsource import Problem, json_schema, load_checked

LEVEL_RANGE = (1, 2, 3, 4)
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(_Model):
    """A yes / partial / no question about the learner's side of the conversation."""

    id: str = Field(pattern=ID_PATTERN, description="Identifier unique within the criterion.")
    question: str = Field(min_length=1, description="The question a grader answers yes, partial or no.")
    moves: list[Move] = Field(
        min_length=1, description="Learner moves that count as evidence for this check (offline judge)."
    )
    expect: Literal["present", "absent"] = Field(
        default="present", description="'present': the moves should occur; 'absent': they should not (e.g. blame)."
    )
    min_count: int = Field(
        default=1, ge=1, le=10, description="Turns with these moves needed for 'yes'; fewer (but some) is 'partial'."
    )


MeetingFact = Literal["airtime_balance", "no_sides", "interruptions_handled", "owners_named", "everyone_asked"]
"""Facts a meeting with several personas counts (`roleplay.meeting.MeetingFacts`), usable as checks."""


class FactCheck(_Model):
    """A check answered from what the meeting counted (not read from words): it caps the criterion's level."""

    id: str = Field(pattern=ID_PATTERN, description="Identifier unique within the criterion.")
    fact: MeetingFact = Field(description="airtime_balance (the others' airtime was even), no_sides (no side taken), "
                              "interruptions_handled (the floor handed back), owners_named (actions with named owners) "
                              "or everyone_asked (each person asked by name).")
    question: str = Field(min_length=1, description="The question as facilitators read it.")
    cap: int = Field(default=2, ge=1, le=3, description="Highest level when the answer is no (one higher for partial).")


class Criterion(_Model):
    """One skill the rubric grades on a 1-4 scale."""

    id: str = Field(pattern=ID_PATTERN, description="Identifier unique within the rubric, e.g. 'open-questions'.")
    name: str = Field(min_length=1, description="Name shown to learners and facilitators.")
    description: str = Field(min_length=1, description="What the criterion looks for.")
    weight: float = Field(gt=0, le=10, description="Relative weight in the overall score.")
    must_pass: bool = Field(default=False, description="If true, failing this criterion fails the whole session.")
    levels: dict[int, str] = Field(description="Anchor text for each level 1, 2, 3 and 4.")
    checks: list[Check] = Field(min_length=1, description="Yes / partial / no checks that inform the level.")
    meeting_checks: list[FactCheck] = Field(
        default_factory=list,
        description="Checks answered from a meeting's counted facts (scenes with several personas only; ignored "
                    "for one-person conversations); a 'no' caps the level.")
    tip: str = Field(min_length=1, description="One actionable piece of advice for a learner who scores low.")
    example_lines: list[str] = Field(
        min_length=1, description="Lines that show the skill well; used as better alternatives."
    )


class Rubric(_Model):
    """A rubric authored by a learning designer."""

    id: str = Field(pattern=ID_PATTERN, description="Unique identifier, referenced by scenarios' `rubric` field.")
    title: str = Field(min_length=1, description="Title shown to facilitators.")
    description: str = Field(min_length=1, description="What conversations the rubric is for.")
    pass_threshold: float = Field(ge=1, le=4, description="Weighted mean level (1-4) needed to pass.")
    must_pass_level: int = Field(default=3, ge=1, le=4, description="Level every must-pass criterion needs.")
    criteria: list[Criterion] = Field(min_length=1, description="The criteria graded.")

    def criterion(self, criterion_id: str) -> Criterion:
        """Return the criterion with this id."""
        return next(c for c in self.criteria if c.id == criterion_id)

    @property
    def criterion_ids(self) -> list[str]:
        """Ids of the criteria, in order."""
        return [c.id for c in self.criteria]


def rubric_problems(rubric: Rubric) -> list[Problem]:
    """Problems pydantic cannot see: level anchors other than 1-4, duplicate ids."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, crit in enumerate(rubric.criteria):
        if crit.id in seen:
            problems.append((("criteria", i, "id"),
                             f"duplicate id '{crit.id}' (also criteria[{seen[crit.id]}]); give each criterion its own id"))
        seen.setdefault(crit.id, i)
        missing = [lv for lv in LEVEL_RANGE if lv not in crit.levels]
        extra = sorted(lv for lv in crit.levels if lv not in LEVEL_RANGE)
        if extra:
            problems.append((("criteria", i, "levels", str(extra[0])),
                             f"level {extra[0]} is outside the scale; anchors are for levels 1, 2, 3 and 4 only"))
        if missing:
            problems.append((("criteria", i, "levels"),
                             f"missing anchor for level {', '.join(map(str, missing))}; write one for each of 1, 2, 3 and 4"))
        check_ids: dict[str, int] = {}
        for j, check in enumerate(crit.checks):
            if check.id in check_ids:
                problems.append((("criteria", i, "checks", j, "id"),
                                 f"duplicate check id '{check.id}' in this criterion; give each check its own id"))
            check_ids.setdefault(check.id, j)
    return problems


def load_rubric(path: str | Path) -> Rubric:
    """Load and validate one rubric file.

    Raises:
        ScenarioError: the file cannot be read or parsed.
        ValidationErrors: one or more fields are invalid (each with file:line: field).
    """
    return load_checked(path, Rubric, rubric_problems)


def rubric_schema() -> dict:
    """JSON Schema of a rubric file, for designers' editors."""
    return json_schema(Rubric, "roleplay rubric")
