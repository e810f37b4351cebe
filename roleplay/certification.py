"""Certification: pre-assessment, sprint choice, evidence rules, sign-off with an Open Badge, reinforcement drills.

A learner takes a short pre-assessment that sets their level, chooses `choose` of the programme's sprints, and
practises. Only facilitator-approved results count (`approved_results`): a sprint is ready for sign-off when the
learner has `sessions_required` approved, passing sessions in that sprint's scenarios at their level or harder.
A facilitator then signs the sprint off with a written comment, which issues a signed Open Badges 3.0 credential
and schedules reinforcement drills.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from roleplay.badges import badge_credential, identity_matches, load_or_create_signing_key, verify_credential
from roleplay.catalog import Catalog
from roleplay.drills import Drill, drills_of, mark_done, plan_drills, schedule_drills
from roleplay.errors import CertificationError, NotFoundError, PermissionDenied
from roleplay.models import (
    CertificationRow,
    CertificationStatus,
    Enrolment,
    GradeRow,
    Person,
    PracticeSession,
    ReviewRow,
    ReviewStatus,
    Role,
    utcnow,
)
from roleplay.programme import BandRange, Programme
from roleplay.review import ApprovedResult, ReviewService, approved_results
from roleplay.scenario import LEVELS, LevelName, Scenario
from roleplay.store import Store, person_in
from roleplay.xapi import XapiConfig

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


class PastSession(_Out):
    """An approved session of a programme sprint, and whether it counts at the learner's level."""

    session_id: str = Field(description="Practice session.")
    scenario_id: str = Field(description="Scenario practised.")
    sprint: str = Field(description="Sprint of the scenario.")
    level: str = Field(description="Difficulty practised.")
    overall: float = Field(description="Approved overall score, 1-4.")
    counts: bool = Field(description="Whether it counts toward its sprint at the learner's level.")
    reason: str = Field(description="Why it does not count ('' when it does).")


class Assessment(_Out):
    """A pre-assessment result that explains itself: score, bands, what changes for sessions already approved."""

    learner: str = Field(description="Username.")
    score: int = Field(description="Points scored.")
    max_score: int = Field(description="Highest possible score.")
    level: LevelName = Field(description="The level the score places the learner at.")
    bands: list[BandRange] = Field(description="Every band, lowest first, with its scores and meaning.")
    can_retake: bool = Field(description="Whether it may be taken again (until sprints are chosen).")
    sessions: list[PastSession] = Field(description="Approved sessions so far, oldest first.")


class CertificateView(_Out):
    """What a readable certificate shows, read from the stored credential, with its verification."""

    holder: str = Field(description="The learner's name.")
    email: str = Field(description="The address the credential's hashed identity is checked against.")
    sprint: str = Field(description="Sprint id.")
    achievement: str = Field(description="Achievement name.")
    description: str = Field(description="What the achievement means.")
    criteria: str = Field(description="What had to be done to earn it.")
    evidence: str = Field(description="The learner's sessions behind it.")
    issuer: str = Field(description="Issuing organisation.")
    issuer_url: str | None = Field(description="Its home page.")
    issued_at: str = Field(description="validFrom of the credential.")
    credential_id: str = Field(description="Credential id.")
    signed_off_by: str | None = Field(description="Facilitator who signed off.")
    comment: str | None = Field(description="Their written comment.")
    verified: bool = Field(description="Signature valid with this deployment's key and identity matching.")
    verification: str = Field(description="The verification result in one sentence.")


COUNTING_RULE = ("Approved, passing sessions count toward a sprint when practised at your level or harder, whenever "
                 "you practised them; easier ones stay in your history and skill trend but do not count.")
RETAKE_RULE = "You can retake the pre-assessment until you choose your sprints; choosing them fixes your level."


# --- the service -------------------------------------------------------------------------------

def _rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else -1


def why_not_counted(result: ApprovedResult, level: str) -> str | None:
    """Why an approved session does not count for a learner at `level`, or None when it counts.

    The rule: an approved, passing session counts when it was practised at the learner's level or harder, whenever it
    was practised (before or after the pre-assessment). Easier sessions stay in the learner's history and skill trend.
    """
    if _rank(result.level) < _rank(level):
        return f"practised at {result.level}; only {level} or harder counts for this learner"
    if not result.grade.passed:
        return f"did not pass ({result.grade.overall:.2f} of 4)"
    return None


def _enrolment(db: Session, person: Person) -> Enrolment | None:
    return db.scalar(select(Enrolment).where(Enrolment.person_id == person.id))


def _chosen(db: Session, person: Person) -> dict[str, CertificationRow]:
    """The person's certification rows (one per chosen sprint), by sprint id."""
    return {r.sprint: r for r in db.scalars(select(CertificationRow).where(CertificationRow.person_id == person.id))}


def _certification(db: Session, person: Person, sprint: str) -> CertificationRow | None:
    return db.scalar(select(CertificationRow).where(CertificationRow.person_id == person.id,
                                                    CertificationRow.sprint == sprint))


class CertificationService:
    """The certification rules on a store; every check is made here, not in the UI.

    Args:
        store: The database.
        programme: The programme (see `load_programme`).
        catalog: Scenarios, to know which sprint a session belongs to and to pick drills.
        review_service: Source of approved results; nothing else counts.
        signing_key: Badge signing key; `load_or_create_signing_key(data_dir)` at first sign-off when None.
        data_dir: The data directory the signing key lives in (needed unless `signing_key` is given).
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
        self.identity = identity or XapiConfig()
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
            person = person_in(db, username)
            row = _enrolment(db, person)
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

    def assessment(self, username: str) -> Assessment | None:
        """The learner's pre-assessment result explained (None before they take it); see `COUNTING_RULE`."""
        with self.store.session() as db:
            row = _enrolment(db, person_in(db, username))
            if row is None:
                return None
            level, score, chosen = row.level, row.score, row.sprints_chosen_at is not None
        sessions = []
        for r in self._approved(username):
            scn = self.catalog.scenarios.get(r.scenario_id)
            if scn is not None and scn.sprint in self.programme.sprint_ids:
                reason = why_not_counted(r, level)
                sessions.append(PastSession(session_id=r.session_id, scenario_id=r.scenario_id, sprint=scn.sprint,
                                            level=r.level, overall=r.grade.overall, counts=reason is None,
                                            reason=reason or ""))
        return Assessment(learner=username, score=score, max_score=self.programme.max_score,
                          level=level,  # type: ignore[arg-type]
                          bands=self.programme.band_ranges(), can_retake=not chosen, sessions=sessions)

    def choose_sprints(self, username: str, sprints: list[str]) -> LearnerStatus:
        """Choose exactly `programme.choose` distinct sprints (after the pre-assessment).

        Choosing again replaces sprints not yet certified; certified sprints must stay in the choice.

        Raises:
            CertificationError: no pre-assessment yet, wrong number, duplicates, unknown ids, or a certified sprint dropped.
        """
        valid = self.programme.sprint_ids
        unknown = [s for s in sprints if s not in valid]
        if unknown:
            raise CertificationError(f"not sprints of this programme: {', '.join(unknown)}; choose from: "
                                     + ", ".join(f"{s.id} ({s.title})" for s in self.programme.sprints))
        if len(set(sprints)) != len(sprints):
            dupes = sorted({s for s in sprints if sprints.count(s) > 1})
            named = ", ".join(f"{d} ({self.programme.sprint_title(d)})" for d in dupes)
            raise CertificationError(f"sprint(s) chosen twice: {named}; choose {self.programme.choose} different sprints")
        n = self.programme.choose
        if len(sprints) > n:
            ticked = [v for v in valid if v in sprints]  # in programme order, as the page lists them
            raise CertificationError(f"choose exactly {n} sprints (got {len(sprints)}: {self._titles(ticked)}); "
                                     f"untick {len(sprints) - n} of them")
        if len(sprints) < n:
            raise CertificationError(f"choose exactly {n} sprints (got {len(sprints)}) from: {self._titles(valid)}")
        empty = [s for s in sprints if not self._scenarios_of(s)]
        if empty:
            raise CertificationError(f"{self._titles(empty)} have no scenarios in the library yet, so they "
                                     "cannot be practised; choose others or ask a designer to add scenarios")
        with self.store.session() as db:
            person = person_in(db, username)
            enrolment = _enrolment(db, person)
            if enrolment is None:
                raise CertificationError(f"{username} has not taken the pre-assessment; take it first, it sets the "
                                         "level you practise at")
            rows = _chosen(db, person)
            dropped = [s for s, r in rows.items() if r.status == CertificationStatus.CERTIFIED and s not in sprints]
            if dropped:
                raise CertificationError(f"{username} is already certified in {', '.join(dropped)}; keep it in the choice")
            for s, r in rows.items():
                if s not in sprints:
                    db.delete(r)
            for s in sprints:
                if s not in rows:
                    db.add(CertificationRow(person_id=person.id, sprint=s, level=enrolment.level, status=CertificationStatus.IN_PROGRESS))
            enrolment.sprints_chosen_at = self.clock()
        return self.status(username)

    # status ----------------------------------------------------------------------------------
    def _titles(self, sprints: list[str]) -> str:
        return ", ".join(self.programme.sprint_title(s) for s in sprints)

    def _scenario_title(self, scenario_id: str) -> str:
        scenario = self.catalog.scenarios.get(scenario_id)
        return scenario.title if scenario else scenario_id

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
            person = person_in(db, username)
            enrolment = _enrolment(db, person)
            rows = _chosen(db, person)
            names = {p.id: p.username for p in db.scalars(select(Person).where(
                Person.id.in_({r.signed_off_by for r in rows.values() if r.signed_off_by})))}
            pending = list(db.execute(
                select(PracticeSession.id, PracticeSession.scenario_id)
                .join(GradeRow, GradeRow.session_id == PracticeSession.id)
                .join(ReviewRow, ReviewRow.grade_id == GradeRow.id)
                .where(PracticeSession.person_id == person.id, ReviewRow.status == ReviewStatus.PENDING)))
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
                reason = why_not_counted(r, row.level)
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
            certified = row.status == CertificationStatus.CERTIFIED
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

    def awaiting_sign_off(self) -> list[str]:
        """Learners with a chosen sprint not yet certified, by username, in one statement (`status` says if ready)."""
        with self.store.session() as db:
            return list(db.scalars(select(Person.username).join(CertificationRow, CertificationRow.person_id == Person.id)
                                   .where(Person.role == Role.LEARNER,
                                          CertificationRow.status == CertificationStatus.IN_PROGRESS)
                                   .distinct().order_by(Person.username)))

    def _next_step(self, sprints: list[SprintStatus]) -> str:
        if not sprints:
            return f"choose {self.programme.choose} sprints"
        if all(s.certified for s in sprints):
            return "all chosen sprints are certified; keep up the reinforcement drills"
        ready = [s.title for s in sprints if s.ready_for_sign_off]
        if ready:
            return f"ask a facilitator to sign off: {', '.join(ready)}"
        todo = [f"{s.title} ({s.still_needed} more at {s.level} or harder)" for s in sprints if not s.certified]
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
            facilitator = person_in(db, facilitator_username)
            if facilitator.role != Role.FACILITATOR:
                raise PermissionDenied(f"only facilitators sign off sprints; '{facilitator_username}' is a {facilitator.role}")
            if facilitator.username == learner:
                raise PermissionDenied("you cannot sign off your own certification; ask another facilitator")
            person = person_in(db, learner)
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
        plan = plan_drills(self.programme, sprint, self._scenarios_of(sprint), current.level,
                           (c.scenario_id for c in current.counted), issued)
        with self.store.session() as db:
            row = _certification(db, person, sprint)
            done = db.execute(update(CertificationRow).where(
                CertificationRow.id == row.id, CertificationRow.status == CertificationStatus.IN_PROGRESS).values(
                status=CertificationStatus.CERTIFIED, signed_off_by=facilitator.id, comment=comment.strip(), credential=credential,
                issued_at=issued))
            if done.rowcount != 1:
                raise CertificationError(f"{learner} was certified in '{sprint}' by someone else a moment ago; "
                                         "reload the status (nothing of yours was saved)")
            schedule_drills(db, plan, certification_id=row.id, person_id=person.id)
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
                       + ", ".join(f"{self._scenario_title(c.scenario_id)} at {c.level} ({c.overall:.2f} of 4)"
                                   for c in current.counted)),
            valid_from=issued,
        )

    def drills(self, username: str) -> list[Drill]:
        """The learner's reinforcement drills, soonest first."""
        return drills_of(self.store, self.programme, self.catalog, username)

    def mark_drill_done(self, username: str, drill_id: int) -> Drill:
        """Mark one of the learner's reinforcement drills done (see `roleplay.drills.mark_done`)."""
        return mark_done(self.store, self.programme, self.catalog, username, drill_id, clock=self.clock)

    def certificate(self, username: str, sprint: str) -> dict[str, Any]:
        """The signed credential issued for a sprint.

        Raises:
            NotFoundError: the learner is not certified in that sprint.
        """
        with self.store.session() as db:
            person = person_in(db, username)
            row = _certification(db, person, sprint)
        if row is None or row.status != CertificationStatus.CERTIFIED or not row.credential:
            raise NotFoundError(f"{username} has no certificate in '{sprint}' yet; a facilitator issues it at sign-off")
        return row.credential

    def certificate_view(self, username: str, sprint: str) -> CertificateView:
        """A readable view of the credential issued for a sprint, checked against this deployment's signing key.

        Raises:
            NotFoundError: the learner is not certified in that sprint.
        """
        credential = self.certificate(username, sprint)
        with self.store.session() as db:
            person = person_in(db, username)
            holder = person.display_name or person.username
        current = next((s for s in self.status(username).sprints if s.sprint == sprint), None)
        email = f"{username}@{self.identity.mbox_domain}"
        signed = verify_credential(credential, self.signing_key.public_key())
        verified = signed and identity_matches(credential, email)
        subject = credential.get("credentialSubject", {})
        achievement = subject.get("achievement", {})
        issuer = credential.get("issuer", {})
        verification = (f"Verified: signed with {issuer.get('name', 'the issuer')}'s key and unchanged since it was "
                        f"issued to {email}." if verified else
                        "Not verified: the signature does not match this issuer's key or the credential was changed "
                        "after it was issued; do not rely on it.")
        return CertificateView(
            holder=holder, email=email, sprint=sprint, achievement=achievement.get("name", ""),
            description=achievement.get("description", ""),
            criteria=achievement.get("criteria", {}).get("narrative", ""), evidence=subject.get("narrative", ""),
            issuer=issuer.get("name", ""), issuer_url=issuer.get("url"), issued_at=credential.get("validFrom", ""),
            credential_id=credential.get("id", ""), signed_off_by=current.signed_off_by if current else None,
            comment=current.comment if current else None, verified=verified, verification=verification)
