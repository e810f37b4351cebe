"""The certification programme file: sprints, issuer, pre-assessment bands and reinforcement drills."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from roleplay.config import content_dir
from roleplay.errors import NotFoundError
from roleplay.scenario import LEVELS, FeedbackMode, LevelName, Scenario, Sprint
from roleplay.yamlsource import ID_PATTERN, Problem, load_checked

OPTION_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProgrammeSprint(_Model):
    """One sprint of the programme."""

    id: Sprint = Field(description="Sprint id; scenarios with this `sprint` belong to it.")
    title: str = Field(min_length=1, description="Title shown to learners.")
    description: str = Field(min_length=1, description="What the sprint practises, in a sentence or two.")


class Issuer(_Model):
    """Who issues the programme's certificates."""

    name: str = Field(min_length=1, description="Organisation named on certificates.")
    url: str | None = Field(default=None, description="The organisation's home page.")


class AnswerOption(_Model):
    """One answer to a pre-assessment question."""

    id: str = Field(pattern=OPTION_PATTERN, description="Short id unique in the question, e.g. 'a'.")
    text: str = Field(min_length=1, description="The response, as the learner reads it.")
    points: int = Field(ge=0, le=10, description="Points for choosing it; better responses score more.")


class Question(_Model):
    """A situational-judgement question: a situation and possible responses."""

    id: str = Field(pattern=ID_PATTERN, description="Question id unique in the pre-assessment.")
    situation: str = Field(min_length=1, description="The situation the learner responds to.")
    options: list[AnswerOption] = Field(min_length=2, max_length=6, description="2-6 possible responses.")


class Band(_Model):
    """The lowest score that places a learner at a level."""

    level: LevelName = Field(description="novice, intermediate or expert.")
    min_score: int = Field(ge=0, description="Total points from which this level applies.")
    meaning: str = Field(default="", description="What practising at this level is like, shown with the result.")


class BandRange(_Model):
    """A band with the scores it covers, for explaining a result."""

    level: LevelName = Field(description="novice, intermediate or expert.")
    min_score: int = Field(description="Lowest score in the band.")
    max_score: int = Field(description="Highest score in the band.")
    meaning: str = Field(description="What practising at this level is like.")


class PreAssessment(_Model):
    """The short questionnaire that sets a learner's starting level."""

    instructions: str = Field(default="", description="Shown before the questions.")
    questions: list[Question] = Field(min_length=5, max_length=8, description="5-8 multiple-choice questions.")
    bands: list[Band] = Field(min_length=3, max_length=3, description="One band per level, lowest score first.")


class ReinforcementStep(_Model):
    """A drill scheduled some days after certification."""

    after_days: int = Field(ge=1, le=730, description="Days after sign-off the drill is due.")
    purpose: str = Field(default="", description="Why this drill, shown with it.")


class Programme(_Model):
    """A certification programme, loaded from `programs/*.yaml`."""

    id: str = Field(pattern=ID_PATTERN, description="Programme id, used in achievement ids.")
    title: str = Field(min_length=1, description="Title shown to learners and on certificates.")
    description: str = Field(default="", description="What the programme is for.")
    issuer: Issuer = Field(description="Who issues the certificates.")
    choose: int = Field(default=2, ge=1, le=4, description="How many sprints a learner chooses.")
    sessions_required: int = Field(default=2, ge=1, le=20,
                                   description="Approved passing sessions needed per sprint before sign-off.")
    sprints: list[ProgrammeSprint] = Field(min_length=1, description="The sprints on offer.")
    pre_assessment: PreAssessment = Field(description="The questionnaire that sets the starting level.")
    reinforcement: list[ReinforcementStep] = Field(default_factory=list,
                                                   description="Drills scheduled after each certification.")
    feedback: FeedbackMode = Field(
        default="immediate",
        description="When learners see the AI feedback: 'immediate' (at once, marked preliminary until a facilitator "
                    "approves it) or 'after_review' (only once approved); a scenario's own `feedback` wins.")

    def sprint(self, sprint_id: str) -> ProgrammeSprint:
        """The sprint with this id.

        Raises:
            NotFoundError: the programme has no such sprint.
        """
        for s in self.sprints:
            if s.id == sprint_id:
                return s
        raise NotFoundError(f"no sprint '{sprint_id}' in programme '{self.id}'; use one of: {', '.join(self.sprint_ids)}")

    @property
    def sprint_ids(self) -> list[str]:
        """Ids of the sprints, in order."""
        return [s.id for s in self.sprints]

    def sprint_title(self, sprint_id: str) -> str:
        """The title learners read for a sprint id (the id itself when the programme has no such sprint)."""
        return next((s.title for s in self.sprints if s.id == sprint_id), sprint_id)

    @property
    def max_score(self) -> int:
        """The highest possible pre-assessment score."""
        return sum(max(o.points for o in q.options) for q in self.pre_assessment.questions)

    def band_ranges(self) -> list[BandRange]:
        """The bands lowest first, each with the scores it covers (up to the next band, or the highest score)."""
        bands = sorted(self.pre_assessment.bands, key=lambda b: b.min_score)
        tops = [b.min_score - 1 for b in bands[1:]] + [self.max_score]
        return [BandRange(level=b.level, min_score=b.min_score, max_score=top, meaning=b.meaning.strip())
                for b, top in zip(bands, tops)]

    def level_for(self, score: int) -> LevelName:
        """The level a pre-assessment score places a learner at."""
        best: LevelName = "novice"
        for band in sorted(self.pre_assessment.bands, key=lambda b: b.min_score):
            if score >= band.min_score:
                best = band.level
        return best


def programme_problems(programme: Programme) -> list[Problem]:
    """Consistency problems pydantic cannot see: duplicates, band order and reach, schedule order."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(programme.sprints):
        if s.id in seen:
            problems.append((("sprints", i, "id"), f"sprint '{s.id}' is listed twice (also sprints[{seen[s.id]}]); keep one"))
        seen.setdefault(s.id, i)
    if programme.choose > len(seen):
        problems.append((("choose",), (f"learners cannot choose {programme.choose} of {len(seen)} sprint(s); "
                                       f"lower `choose` to at most {len(seen)} or add sprints")))
    pa = programme.pre_assessment
    qids: dict[str, int] = {}
    for i, q in enumerate(pa.questions):
        if q.id in qids:
            problems.append((("pre_assessment", "questions", i, "id"),
                             f"duplicate question id '{q.id}' (also questions[{qids[q.id]}]); give each question its own id"))
        qids.setdefault(q.id, i)
        oids: set[str] = set()
        for j, o in enumerate(q.options):
            if o.id in oids:
                problems.append((("pre_assessment", "questions", i, "options", j, "id"),
                                 f"duplicate option id '{o.id}' in this question; give each option its own id"))
            oids.add(o.id)
    levels = [b.level for b in pa.bands]
    for i, b in enumerate(pa.bands):
        if levels.index(b.level) != i:
            problems.append((("pre_assessment", "bands", i, "level"),
                             f"level '{b.level}' has two bands; give novice, intermediate and expert one band each"))
    if sorted(set(levels), key=LEVELS.index) == list(LEVELS):
        ordered = sorted(pa.bands, key=lambda b: LEVELS.index(b.level))
        for lower, higher in pairwise(ordered):
            if higher.min_score <= lower.min_score:
                problems.append((("pre_assessment", "bands", pa.bands.index(higher), "min_score"),
                                 (f"{higher.level} starts at {higher.min_score}, not above {lower.level} "
                                  f"({lower.min_score}); raise it so levels go up with the score")))
        lowest = sum(min(o.points for o in q.options) for q in pa.questions)
        highest = sum(max(o.points for o in q.options) for q in pa.questions)
        if ordered[0].min_score > lowest:
            problems.append((("pre_assessment", "bands", pa.bands.index(ordered[0]), "min_score"),
                             f"the lowest possible score is {lowest}, below every band; set novice's min_score to 0"))
        if ordered[-1].min_score > highest:
            problems.append((("pre_assessment", "bands", pa.bands.index(ordered[-1]), "min_score"),
                             (f"the highest possible score is {highest}, so nobody can reach {ordered[-1].level}; "
                              f"lower min_score to {highest} or less")))
    days = [r.after_days for r in programme.reinforcement]
    for i in range(1, len(days)):
        if days[i] <= days[i - 1]:
            problems.append((("reinforcement", i, "after_days"),
                             f"{days[i]} days is not after the previous drill ({days[i - 1]}); list drills in order, each later"))
    return problems


def feedback_mode(programme: Programme | None, scenario: Scenario | None) -> FeedbackMode:
    """When a learner sees the AI feedback of a session: the scenario's setting, else the programme's, else at once."""
    if scenario is not None and scenario.feedback is not None:
        return scenario.feedback
    return programme.feedback if programme is not None else "immediate"


def default_programme_path() -> Path:
    """`./programs/sprint-programme.yaml` when run from a checkout, else the one next to the installed package."""
    return content_dir("programs/sprint-programme.yaml")


def load_programme(path: str | Path | None = None) -> Programme:
    """Load and validate a programme file.

    Args:
        path: The YAML file; `default_programme_path()` when None.

    Raises:
        ScenarioError: the file cannot be read or parsed (with file:line).
        ValidationErrors: one or more fields are invalid (each with file:line: field).
    """
    return load_checked(path or default_programme_path(), Programme, programme_problems)
