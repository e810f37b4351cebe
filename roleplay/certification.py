"""The certification programme: pre-assessment, sprint choice, sign-off with Open Badges, reinforcement, buddies.

A learner takes a short pre-assessment that sets their level, chooses `choose` of the programme's sprints, and
practises. Only facilitator-approved results count (`approved_results`): a sprint is ready for sign-off when the
learner has `sessions_required` approved, passing sessions in that sprint's scenarios at their level or harder.
A facilitator then signs the sprint off with a written comment, which issues a signed Open Badges 3.0 credential
and schedules reinforcement drills. Learners may name a learning buddy and share sessions for reflection.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from roleplay.catalog import Catalog
from roleplay.errors import NotFoundError, PermissionDenied, RoleplayError
from roleplay.review import ApprovedResult, ReviewService, approved_results
from roleplay.scenario import LEVELS, LevelName, Scenario, Sprint
from roleplay.standards import XapiConfig, badge_credential, load_or_create_signing_key
from roleplay.store import (
    BuddyLink,
    CertificationRow,
    Enrolment,
    GradeRow,
    Person,
    PracticeSession,
    ReflectionRow,
    ReinforcementDrill,
    ReviewRow,
    SharedSessionRow,
    Store,
    utcnow,
)
from roleplay.yamlsource import ID_PATTERN, Problem, load_checked

OPTION_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
MAX_NOTE = 4000


class CertificationError(RoleplayError):
    """A certification step is not possible yet or was given invalid input; the message says what to do."""


# --- the programme file ------------------------------------------------------------------------

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


def default_programme_path() -> Path:
    """`./programs/sprint-programme.yaml` when run from a checkout, else the one next to the installed package."""
    from roleplay.config import PROJECT_ROOT

    here = Path.cwd() / "programs" / "sprint-programme.yaml"
    return here if here.is_file() else PROJECT_ROOT / "programs" / "sprint-programme.yaml"


def load_programme(path: str | Path | None = None) -> Programme:
    """Load and validate a programme file.

    Args:
        path: The YAML file; `default_programme_path()` when None.

    Raises:
        ScenarioError: the file cannot be read or parsed (with file:line).
        ValidationErrors: one or more fields are invalid (each with file:line: field).
    """
    return load_checked(path or default_programme_path(), Programme, programme_problems)


# --- results of the service --------------------------------------------------------------------

class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CountedSession(_Out):
    """An approved, passing session that counts toward a sprint."""

    session_id: str = Field(description="Practice session.")
    scenario_id: str = Field(description="Scenario practised.")
    level: str = Field(description="Difficulty practised.")
    overall: float = Field(description="Approved overall score, 1-4.")
    approved_by: str = Field(description="Facilitator who approved the grade.")
    approved_at: datetime = Field(description="When the grade was approved.")


class UncountedSession(_Out):
    """An approved session of the sprint that does not count, and why."""

    session_id: str = Field(description="Practice session.")
    scenario_id: str = Field(description="Scenario practised.")
    level: str = Field(description="Difficulty practised.")
    overall: float = Field(description="Approved overall score, 1-4.")
    reason: str = Field(description="Why it does not count.")


class SprintStatus(_Out):
    """Where a learner stands in one chosen sprint."""

    sprint: str = Field(description="Sprint id.")
    title: str = Field(description="Sprint title.")
    level: LevelName = Field(description="Level the learner is certified at; sessions at this level or harder count.")
    required: int = Field(description="Approved passing sessions needed.")
    approved_passing: int = Field(description="Approved passing sessions that count.")
    still_needed: int = Field(description="How many more are needed (0 when enough).")
    counted: list[CountedSession] = Field(description="The sessions that count, oldest first.")
    not_counted: list[UncountedSession] = Field(description="Approved sessions of this sprint that do not count.")
    pending_reviews: int = Field(description="Sessions of this sprint still waiting for a facilitator (not counted).")
    ready_for_sign_off: bool = Field(description="Enough sessions and not yet certified.")
    certified: bool = Field(description="A facilitator has signed the sprint off.")
    signed_off_by: str | None = Field(description="Facilitator who signed off.")
    signed_off_at: datetime | None = Field(description="When.")
    comment: str | None = Field(description="The facilitator's sign-off comment.")
    credential_id: str | None = Field(description="Id of the issued Open Badges credential.")


class LearnerStatus(_Out):
    """A learner's progress through the programme."""

    learner: str = Field(description="Username.")
    programme_id: str = Field(description="Programme.")
    assessed: bool = Field(description="Whether the pre-assessment has been taken.")
    level: LevelName | None = Field(description="Starting level from the pre-assessment.")
    score: int | None = Field(description="Pre-assessment score.")
    choose: int = Field(description="How many sprints to choose.")
    sprints: list[SprintStatus] = Field(description="The chosen sprints, in programme order.")
    next_step: str = Field(description="What the learner should do next.")


class Drill(_Out):
    """A scheduled reinforcement drill."""

    sprint: str = Field(description="Sprint certified.")
    scenario_id: str = Field(description="Scenario to practise.")
    scenario_title: str = Field(description="Its title (the id if it left the library).")
    level: str = Field(description="Level to practise at: the certified level.")
    after_days: int = Field(description="Days after sign-off.")
    due_on: date = Field(description="Date the drill is due.")
    purpose: str = Field(description="Why this drill.")
    status: str = Field(description="'scheduled' (the only state so far).")


class Certificate(_Out):
    """A signed-off sprint."""

    learner: str = Field(description="Username.")
    sprint: str = Field(description="Sprint id.")
    level: str = Field(description="Certified level.")
    signed_off_by: str = Field(description="Facilitator.")
    comment: str = Field(description="The facilitator's written comment.")
    issued_at: datetime = Field(description="When.")
    credential: dict[str, Any] = Field(description="The signed Open Badges 3.0 credential.")
    drills: list[Drill] = Field(description="Reinforcement drills scheduled.")


class SharedSession(_Out):
    """A practice session shared with a buddy."""

    session_id: str = Field(description="Practice session.")
    learner: str = Field(description="Whose session it is.")
    scenario_id: str = Field(description="Scenario practised.")
    level: str = Field(description="Difficulty practised.")
    started_at: datetime = Field(description="When the session started.")
    shared_at: datetime = Field(description="When it was shared.")


class SharedTurn(_Out):
    """One turn of a shared session."""

    speaker: str = Field(description="learner or persona.")
    text: str = Field(description="What was said.")


class Reflection(_Out):
    """A reflection note on a session."""

    session_id: str = Field(description="Practice session.")
    author: str = Field(description="Who wrote it.")
    note: str = Field(description="The note.")
    created_at: datetime = Field(description="When.")


class SharedSessionView(_Out):
    """A shared session with its transcript and reflections, for the learner or their buddy."""

    session: SharedSession = Field(description="The session.")
    turns: list[SharedTurn] = Field(description="The transcript, in order.")
    reflections: list[Reflection] = Field(description="Reflections so far, oldest first.")


# --- the service -------------------------------------------------------------------------------

def _person(db: Session, username: str) -> Person:
    person = db.scalar(select(Person).where(Person.username == username))
    if person is None:
        raise NotFoundError(f"no person '{username}'; create them with `roleplay people add {username}`")
    return person


def _rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else -1


class CertificationService:
    """The certification rules on a store; every check is made here, not in the UI.

    Args:
        store: The database.
        programme: The programme (see `load_programme`).
        catalog: Scenarios, to know which sprint a session belongs to and to pick drills.
        review_service: Source of approved results; nothing else counts.
        signing_key: Badge signing key; `load_or_create_signing_key(data_dir)` at first sign-off when None.
        data_dir: Where the signing key lives; `settings().data_dir` when None.
        identity: Base IRI of achievements and the email domain of learners in credentials.
        clock: Returns the current UTC time (for tests and back-dating imports).
    """

    def __init__(self, store: Store, programme: Programme, catalog: Catalog, review_service: ReviewService, *,
                 signing_key: Ed25519PrivateKey | None = None, data_dir: str | Path | None = None,
                 identity: XapiConfig | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.programme = programme
        self.catalog = catalog
        self.reviews = review_service
        self._key = signing_key
        self.data_dir = data_dir
        self.identity = identity or XapiConfig.from_env()
        self.clock = clock

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        """The badge signing key (loaded or created on first use)."""
        if self._key is None:
            self._key = load_or_create_signing_key(self.data_dir)
        return self._key

    # pre-assessment and sprint choice ---------------------------------------------------------
    def pre_assessment(self, username: str, answers: dict[str, str]) -> LevelName:
        """Score the learner's answers and store their starting level.

        Args:
            username: The learner.
            answers: Question id -> chosen option id, for every question.

        Returns:
            novice, intermediate or expert.

        Raises:
            CertificationError: answers missing, unknown questions or options, or sprints already chosen.
        """
        questions = {q.id: q for q in self.programme.pre_assessment.questions}
        problems: list[str] = []
        missing = [q for q in questions if q not in answers]
        if missing:
            problems.append(f"unanswered: {', '.join(missing)}")
        unknown = [q for q in answers if q not in questions]
        if unknown:
            problems.append(f"not questions of this pre-assessment: {', '.join(unknown)} "
                            f"(questions are: {', '.join(questions)})")
        score = 0
        for qid, option in answers.items():
            q = questions.get(qid)
            if q is None:
                continue
            chosen = next((o for o in q.options if o.id == option), None)
            if chosen is None:
                problems.append(f"'{option}' is not an option of question '{qid}' (options: "
                                f"{', '.join(o.id for o in q.options)})")
            else:
                score += chosen.points
        if problems:
            raise CertificationError("the pre-assessment cannot be scored: " + "; ".join(problems)
                                     + "; answer every question with one of its option ids")
        level = self.programme.level_for(score)
        with self.store.session() as db:
            person = _person(db, username)
            row = db.scalar(select(Enrolment).where(Enrolment.person_id == person.id))
            if row is not None and row.sprints_chosen_at is not None:
                raise CertificationError(
                    f"{username}'s starting level ({row.level}) was set by the pre-assessment and sprints are chosen; "
                    "it can no longer change, so keep practising at that level")
            if row is None:
                row = Enrolment(person_id=person.id, programme_id=self.programme.id, level=level, score=score)
                db.add(row)
            row.programme_id, row.level, row.score = self.programme.id, level, score
            row.answers = dict(answers)
            row.assessed_at = self.clock()
        return level

    def choose_sprints(self, username: str, sprints: list[str]) -> LearnerStatus:
        """Choose exactly `programme.choose` distinct sprints (after the pre-assessment).

        Choosing again replaces sprints not yet certified; certified sprints must stay in the choice.

        Raises:
            CertificationError: no pre-assessment yet, wrong number, duplicates, unknown ids, or a certified sprint dropped.
        """
        valid = self.programme.sprint_ids
        unknown = [s for s in sprints if s not in valid]
        if unknown:
            raise CertificationError(f"not sprints of this programme: {', '.join(unknown)}; choose from: {', '.join(valid)}")
        if len(set(sprints)) != len(sprints):
            dupes = sorted({s for s in sprints if sprints.count(s) > 1})
            raise CertificationError(f"sprint(s) chosen twice: {', '.join(dupes)}; choose {self.programme.choose} different sprints")
        if len(sprints) != self.programme.choose:
            raise CertificationError(f"choose exactly {self.programme.choose} sprints (got {len(sprints)}) from: {', '.join(valid)}")
        empty = [s for s in sprints if not self._scenarios_of(s)]
        if empty:
            raise CertificationError(f"sprint(s) {', '.join(empty)} have no scenarios in the library yet, so they "
                                     "cannot be practised; choose others or ask a designer to add scenarios")
        with self.store.session() as db:
            person = _person(db, username)
            enrolment = db.scalar(select(Enrolment).where(Enrolment.person_id == person.id))
            if enrolment is None:
                raise CertificationError(f"{username} has not taken the pre-assessment; take it first, it sets the "
                                         "level you practise at")
            rows = {r.sprint: r for r in db.scalars(select(CertificationRow).where(CertificationRow.person_id == person.id))}
            dropped = [s for s, r in rows.items() if r.status == "certified" and s not in sprints]
            if dropped:
                raise CertificationError(f"{username} is already certified in {', '.join(dropped)}; keep it in the choice")
            for s, r in rows.items():
                if s not in sprints:
                    db.delete(r)
            for s in sprints:
                if s not in rows:
                    db.add(CertificationRow(person_id=person.id, sprint=s, level=enrolment.level, status="in_progress"))
            enrolment.sprints_chosen_at = self.clock()
        return self.status(username)

    # status ----------------------------------------------------------------------------------
    def _scenarios_of(self, sprint: str) -> list[Scenario]:
        return sorted((s for s in self.catalog.scenarios.values() if s.sprint == sprint), key=lambda s: s.id)

    def _approved(self, username: str) -> list[ApprovedResult]:
        """Approved results of the learner, one per session (the latest approval), oldest first."""
        latest: dict[str, ApprovedResult] = {}
        for r in approved_results(self.reviews, username):
            if r.session_id not in latest or r.approved_at >= latest[r.session_id].approved_at:
                latest[r.session_id] = r
        return sorted(latest.values(), key=lambda r: r.approved_at)

    def status(self, username: str) -> LearnerStatus:
        """Progress in each chosen sprint; only approved, passing sessions at the learner's level or above count."""
        with self.store.session() as db:
            person = _person(db, username)
            enrolment = db.scalar(select(Enrolment).where(Enrolment.person_id == person.id))
            rows = {r.sprint: r for r in db.scalars(select(CertificationRow).where(CertificationRow.person_id == person.id))}
            names = {p.id: p.username for p in db.scalars(select(Person).where(
                Person.id.in_({r.signed_off_by for r in rows.values() if r.signed_off_by})))}
            pending = list(db.execute(
                select(PracticeSession.id, PracticeSession.scenario_id)
                .join(GradeRow, GradeRow.session_id == PracticeSession.id)
                .join(ReviewRow, ReviewRow.grade_id == GradeRow.id)
                .where(PracticeSession.person_id == person.id, ReviewRow.status == "pending")))
        if enrolment is None:
            return LearnerStatus(learner=username, programme_id=self.programme.id, assessed=False, level=None,
                                 score=None, choose=self.programme.choose, sprints=[],
                                 next_step="take the pre-assessment to set your starting level")
        results = self._approved(username) if rows else []
        counted_ids = {r.session_id for r in results}
        sprints: list[SprintStatus] = []
        for sprint in self.programme.sprints:
            row = rows.get(sprint.id)
            if row is None:
                continue
            counted: list[CountedSession] = []
            not_counted: list[UncountedSession] = []
            for r in results:
                scenario = self.catalog.scenarios.get(r.scenario_id)
                if scenario is None or scenario.sprint != sprint.id:
                    continue
                reason = None
                if _rank(r.level) < _rank(row.level):
                    reason = f"practised at {r.level}; only {row.level} or harder counts for this learner"
                elif not r.grade.passed:
                    reason = f"did not pass ({r.grade.overall:.2f} of 4)"
                if reason:
                    not_counted.append(UncountedSession(session_id=r.session_id, scenario_id=r.scenario_id,
                                                        level=r.level, overall=r.grade.overall, reason=reason))
                else:
                    counted.append(CountedSession(session_id=r.session_id, scenario_id=r.scenario_id, level=r.level,
                                                  overall=r.grade.overall, approved_by=r.approved_by,
                                                  approved_at=r.approved_at))
            waiting = {sid for sid, scn in pending if sid not in counted_ids
                       and getattr(self.catalog.scenarios.get(scn), "sprint", None) == sprint.id}
            required = self.programme.sessions_required
            certified = row.status == "certified"
            sprints.append(SprintStatus(
                sprint=sprint.id, title=sprint.title, level=row.level, required=required,  # type: ignore[arg-type]
                approved_passing=len(counted), still_needed=max(0, required - len(counted)),
                counted=counted, not_counted=not_counted, pending_reviews=len(waiting),
                ready_for_sign_off=not certified and len(counted) >= required, certified=certified,
                signed_off_by=names.get(row.signed_off_by) if row.signed_off_by else None,
                signed_off_at=row.issued_at, comment=row.comment,
                credential_id=(row.credential or {}).get("id")))
        return LearnerStatus(learner=username, programme_id=self.programme.id, assessed=True,
                             level=enrolment.level, score=enrolment.score,  # type: ignore[arg-type]
                             choose=self.programme.choose, sprints=sprints, next_step=self._next_step(sprints))

    def _next_step(self, sprints: list[SprintStatus]) -> str:
        if not sprints:
            return f"choose {self.programme.choose} sprints"
        if all(s.certified for s in sprints):
            return "all chosen sprints are certified; keep up the reinforcement drills"
        ready = [s.sprint for s in sprints if s.ready_for_sign_off]
        if ready:
            return f"ask a facilitator to sign off: {', '.join(ready)}"
        todo = [f"{s.sprint} ({s.still_needed} more at {s.level} or harder)" for s in sprints if not s.certified]
        return "practise and get approved passing sessions in " + ", ".join(todo)

    # sign-off, certificates and drills -----------------------------------------------------------
    def sign_off(self, sprint: str, learner: str, facilitator_username: str, comment: str) -> Certificate:
        """Certify a learner in a sprint: issues a signed Open Badges 3.0 credential and schedules drills.

        Args:
            sprint: The sprint id.
            learner: The learner's username.
            facilitator_username: Who signs off; must be a facilitator and not the learner.
            comment: The facilitator's written comment (required).

        Raises:
            PermissionDenied: not a facilitator, or signing off oneself.
            CertificationError: no comment, sprint not chosen, already certified, or not enough sessions yet.
        """
        with self.store.session() as db:
            facilitator = _person(db, facilitator_username)
            if facilitator.role != "facilitator":
                raise PermissionDenied(f"only facilitators sign off sprints; '{facilitator_username}' is a {facilitator.role}")
            if facilitator.username == learner:
                raise PermissionDenied("you cannot sign off your own certification; ask another facilitator")
            person = _person(db, learner)
        if not comment or not comment.strip():
            raise CertificationError("write a comment for the learner: a sign-off needs a written comment")
        self.programme.sprint(sprint)
        status = self.status(learner)
        current = next((s for s in status.sprints if s.sprint == sprint), None)
        if current is None:
            raise CertificationError(f"{learner} has not chosen the sprint '{sprint}'; "
                                     f"their sprints are: {', '.join(s.sprint for s in status.sprints) or '(none chosen)'}")
        if current.certified:
            raise CertificationError(f"{learner} was already certified in '{sprint}' by {current.signed_off_by}; "
                                     "nothing was changed")
        if not current.ready_for_sign_off:
            raise CertificationError(
                f"{learner} is not ready for sign-off in '{sprint}': {current.approved_passing} of {current.required} "
                f"approved passing sessions at {current.level} or harder ({current.pending_reviews} waiting for review); "
                f"{current.still_needed} more needed")
        issued = self.clock()
        credential = self._credential(person, sprint, current, comment.strip(), issued)
        plan = self._plan_drills(sprint, current, issued)
        with self.store.session() as db:
            row = db.scalar(select(CertificationRow).where(CertificationRow.person_id == person.id,
                                                           CertificationRow.sprint == sprint))
            done = db.execute(update(CertificationRow).where(
                CertificationRow.id == row.id, CertificationRow.status == "in_progress").values(
                status="certified", signed_off_by=facilitator.id, comment=comment.strip(), credential=credential,
                issued_at=issued))
            if done.rowcount != 1:
                raise CertificationError(f"{learner} was certified in '{sprint}' by someone else a moment ago; "
                                         "reload the status (nothing of yours was saved)")
            for d in plan:
                db.add(ReinforcementDrill(certification_id=row.id, person_id=person.id, sprint=sprint,
                                          scenario_id=d.scenario_id, level=d.level, after_days=d.after_days,
                                          due_on=d.due_on, status="scheduled"))
        return Certificate(learner=learner, sprint=sprint, level=current.level, signed_off_by=facilitator_username,
                           comment=comment.strip(), issued_at=issued, credential=credential, drills=plan)

    def _credential(self, person: Person, sprint: str, current: SprintStatus, comment: str,
                    issued: datetime) -> dict[str, Any]:
        info = self.programme.sprint(sprint)
        title = f"{info.title} ({current.level})"
        return badge_credential(
            key=self.signing_key,
            learner_email=f"{person.username}@{self.identity.mbox_domain}",
            achievement_id=self.identity.iri("achievements", self.programme.id, sprint, current.level),
            achievement_name=f"{self.programme.title}: {title}",
            achievement_description=info.description.strip(),
            criteria_narrative=(
                f"Completed at least {self.programme.sessions_required} practice conversations in the '{info.title}' "
                f"sprint at {current.level} level or harder, each graded against its rubric as a pass and approved by "
                "a facilitator, followed by a facilitator's written sign-off."),
            issuer_name=self.programme.issuer.name,
            issuer_url=self.programme.issuer.url,
            narrative=(f"{current.approved_passing} approved passing sessions: "
                       + ", ".join(f"{c.scenario_id} at {c.level} ({c.overall:.2f} of 4)" for c in current.counted)),
            valid_from=issued,
        )

    def _plan_drills(self, sprint: str, current: SprintStatus, issued: datetime) -> list[Drill]:
        scenarios = self._scenarios_of(sprint)
        used = {s.id: 0 for s in scenarios}
        for c in current.counted:
            if c.scenario_id in used:
                used[c.scenario_id] += 1
        order = sorted(scenarios, key=lambda s: (used[s.id], s.id))  # the least practised first
        plan = []
        for i, step in enumerate(self.programme.reinforcement):
            scn = order[i % len(order)]
            plan.append(Drill(sprint=sprint, scenario_id=scn.id, scenario_title=scn.title, level=current.level,
                              after_days=step.after_days, due_on=issued.date() + timedelta(days=step.after_days),
                              purpose=step.purpose, status="scheduled"))
        return plan

    def drills(self, username: str) -> list[Drill]:
        """The learner's reinforcement drills, soonest first."""
        purposes = {r.after_days: r.purpose for r in self.programme.reinforcement}
        with self.store.session() as db:
            person = _person(db, username)
            rows = list(db.scalars(select(ReinforcementDrill).where(ReinforcementDrill.person_id == person.id)
                                   .order_by(ReinforcementDrill.due_on, ReinforcementDrill.sprint)))
        out = []
        for r in rows:
            scn = self.catalog.scenarios.get(r.scenario_id)
            out.append(Drill(sprint=r.sprint, scenario_id=r.scenario_id, scenario_title=scn.title if scn else r.scenario_id,
                             level=r.level, after_days=r.after_days, due_on=r.due_on,
                             purpose=purposes.get(r.after_days, ""), status=r.status))
        return out

    def certificate(self, username: str, sprint: str) -> dict[str, Any]:
        """The signed credential issued for a sprint.

        Raises:
            NotFoundError: the learner is not certified in that sprint.
        """
        with self.store.session() as db:
            person = _person(db, username)
            row = db.scalar(select(CertificationRow).where(CertificationRow.person_id == person.id,
                                                           CertificationRow.sprint == sprint))
        if row is None or row.status != "certified" or not row.credential:
            raise NotFoundError(f"{username} has no certificate in '{sprint}' yet; a facilitator issues it at sign-off")
        return row.credential

    # learning buddies --------------------------------------------------------------------------
    def name_buddy(self, learner: str, buddy_username: str) -> None:
        """Name (or change) the learner's learning buddy.

        A buddy sees shared sessions only while they are the named buddy, so naming someone else withdraws the
        previous buddy's access (sessions must be shared again with the new one).

        Raises:
            CertificationError: naming oneself.
            NotFoundError: no such person.
        """
        if learner == buddy_username:
            raise CertificationError("you cannot be your own learning buddy; name a colleague on the programme")
        with self.store.session() as db:
            me, buddy = _person(db, learner), _person(db, buddy_username)
            link = db.scalar(select(BuddyLink).where(BuddyLink.learner_id == me.id))
            if link is None:
                db.add(BuddyLink(learner_id=me.id, buddy_id=buddy.id, named_at=self.clock()))
            elif link.buddy_id != buddy.id:
                link.buddy_id, link.named_at = buddy.id, self.clock()

    def buddy_of(self, learner: str) -> str | None:
        """The learner's current buddy, if any."""
        with self.store.session() as db:
            me = _person(db, learner)
            link = db.scalar(select(BuddyLink).where(BuddyLink.learner_id == me.id))
            return db.get(Person, link.buddy_id).username if link else None

    def share_session(self, learner: str, session_id: str) -> SharedSession:
        """Share one of the learner's own sessions with their buddy.

        Raises:
            PermissionDenied: the session is someone else's.
            CertificationError: no buddy named yet.
            NotFoundError: no such session.
        """
        with self.store.session() as db:
            me = _person(db, learner)
            sess = db.get(PracticeSession, session_id)
            if sess is None:
                raise NotFoundError(f"no practice session '{session_id}'")
            if sess.person_id != me.id:
                raise PermissionDenied("you can only share your own practice sessions")
            link = db.scalar(select(BuddyLink).where(BuddyLink.learner_id == me.id))
            if link is None:
                raise CertificationError("name a learning buddy first, then share sessions with them")
            share = db.scalar(select(SharedSessionRow).where(SharedSessionRow.session_id == session_id,
                                                             SharedSessionRow.buddy_id == link.buddy_id))
            if share is None:
                share = SharedSessionRow(session_id=session_id, buddy_id=link.buddy_id, shared_at=self.clock())
                db.add(share)
                db.flush()
            return SharedSession(session_id=sess.id, learner=learner, scenario_id=sess.scenario_id, level=sess.level,
                                 started_at=sess.started_at, shared_at=share.shared_at)

    def buddy_sessions(self, buddy: str) -> list[SharedSession]:
        """Sessions shared with `buddy` by learners who currently name them as buddy, newest share first."""
        with self.store.session() as db:
            me = _person(db, buddy)
            rows = list(db.execute(
                select(SharedSessionRow, PracticeSession, Person)
                .join(PracticeSession, PracticeSession.id == SharedSessionRow.session_id)
                .join(Person, Person.id == PracticeSession.person_id)
                .join(BuddyLink, (BuddyLink.learner_id == PracticeSession.person_id) & (BuddyLink.buddy_id == me.id))
                .where(SharedSessionRow.buddy_id == me.id)
                .order_by(SharedSessionRow.shared_at.desc(), SharedSessionRow.id.desc())))
        return [SharedSession(session_id=s.id, learner=p.username, scenario_id=s.scenario_id, level=s.level,
                              started_at=s.started_at, shared_at=share.shared_at) for share, s, p in rows]

    def _visible(self, db: Session, viewer: str, session_id: str) -> tuple[Person, PracticeSession, Person, datetime | None]:
        me = _person(db, viewer)
        sess = db.get(PracticeSession, session_id)
        if sess is None:
            raise NotFoundError(f"no practice session '{session_id}'")
        owner = db.get(Person, sess.person_id)
        if owner.id == me.id:
            share = db.scalar(select(func.min(SharedSessionRow.shared_at)).where(SharedSessionRow.session_id == session_id))
            return me, sess, owner, share
        shared_at = db.scalar(
            select(SharedSessionRow.shared_at)
            .join(BuddyLink, (BuddyLink.learner_id == sess.person_id) & (BuddyLink.buddy_id == me.id))
            .where(SharedSessionRow.session_id == session_id, SharedSessionRow.buddy_id == me.id))
        if shared_at is None:
            raise PermissionDenied(f"session '{session_id}' has not been shared with {viewer}; "
                                   "only the learner and the buddy they shared it with can see it")
        return me, sess, owner, shared_at

    def shared_session(self, viewer: str, session_id: str) -> SharedSessionView:
        """A session's transcript and reflections, for its learner or the buddy it was shared with.

        Raises:
            PermissionDenied: anyone else.
        """
        with self.store.session() as db:
            _, sess, owner, shared_at = self._visible(db, viewer, session_id)
            turns = [SharedTurn(speaker=t.speaker, text=t.text) for t in sess.turns]
            info = SharedSession(session_id=sess.id, learner=owner.username, scenario_id=sess.scenario_id,
                                 level=sess.level, started_at=sess.started_at, shared_at=shared_at or sess.started_at)
        return SharedSessionView(session=info, turns=turns, reflections=self.reflections(session_id))

    def add_reflection(self, buddy: str, session_id: str, note: str) -> Reflection:
        """Add a reflection note to a session shared with `buddy` (the learner may reflect on their own too).

        Raises:
            PermissionDenied: the session is not shared with `buddy`.
            CertificationError: the note is empty or too long.
        """
        text = (note or "").strip()
        if not text:
            raise CertificationError("a reflection cannot be empty; write what went well and what to try next")
        if len(text) > MAX_NOTE:
            raise CertificationError(f"a reflection is limited to {MAX_NOTE} characters (got {len(text)}); shorten it")
        with self.store.session() as db:
            me, sess, _, _ = self._visible(db, buddy, session_id)
            row = ReflectionRow(session_id=sess.id, author_id=me.id, note=text, created_at=self.clock())
            db.add(row)
        return Reflection(session_id=session_id, author=buddy, note=text, created_at=row.created_at)

    def reflections(self, session_id: str, viewer: str | None = None) -> list[Reflection]:
        """Reflections on a session, oldest first.

        Args:
            session_id: The session.
            viewer: If given, who is asking: must be the learner or the buddy it was shared with.

        Raises:
            PermissionDenied: `viewer` may not see the session.
        """
        with self.store.session() as db:
            if viewer is not None:
                self._visible(db, viewer, session_id)
            elif db.get(PracticeSession, session_id) is None:
                raise NotFoundError(f"no practice session '{session_id}'")
            rows = list(db.execute(select(ReflectionRow, Person.username)
                                   .join(Person, Person.id == ReflectionRow.author_id)
                                   .where(ReflectionRow.session_id == session_id)
                                   .order_by(ReflectionRow.created_at, ReflectionRow.id)))
        return [Reflection(session_id=r.session_id, author=name, note=r.note, created_at=r.created_at) for r, name in rows]


__all__ = [
    "AnswerOption", "Band", "Certificate", "CertificationError", "CertificationService", "CountedSession", "Drill",
    "Issuer", "LearnerStatus", "PreAssessment", "Programme", "ProgrammeSprint", "Question", "Reflection",
    "ReinforcementStep", "SharedSession", "SharedSessionView", "SharedTurn", "SprintStatus", "UncountedSession",
    "default_programme_path", "load_programme", "programme_problems",
]
