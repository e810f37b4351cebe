"""Facilitator review: a queue of graded sessions; approve, edit or reject, with append-only history."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from roleplay.errors import NotFoundError, PermissionDenied, ReviewError
from roleplay.grader import CriterionGrade, Grade, finish_grade
from roleplay.rubric import Rubric
from roleplay.models import GradeRow, Person, PracticeSession, ReviewEvent, ReviewRow, ReviewStatus, Role, utcnow
from roleplay.notices import record_notice
from roleplay.store import Store, person_in

if TYPE_CHECKING:
    from roleplay.exemplars import Exemplar

log = logging.getLogger(__name__)
Status = ReviewStatus


class CriterionEdit(BaseModel):
    """A facilitator's change to one criterion of a grade."""

    model_config = ConfigDict(extra="forbid")
    criterion_id: str = Field(description="Criterion changed.")
    level: int | None = Field(default=None, ge=1, le=4, description="New level, if changed.")
    evidence: list[str] | None = Field(default=None, description="New evidence quotes, if changed.")
    feedback: str | None = Field(default=None, description="New rationale / feedback text, if changed.")
    better_alternative: str | None = Field(default=None, description="New better-alternative line, if changed.")


class HistoryEntry(BaseModel):
    """One event in a review's history."""

    model_config = ConfigDict(extra="forbid")
    action: str = Field(description="created, edit, approve or reject.")
    actor: str = Field(description="Username of who acted.")
    at: datetime = Field(description="When (UTC).")
    comment: str | None = Field(description="Why.")
    changes: list[CriterionEdit] = Field(default_factory=list, description="Criterion edits, for 'edit'.")


class ReviewView(BaseModel):
    """A review with everything a facilitator needs to decide."""

    model_config = ConfigDict(extra="forbid")
    review_id: int = Field(description="Review id.")
    status: Status = Field(description="pending, approved or rejected.")
    version: int = Field(description="Changes so far; pass it back to detect concurrent edits.")
    session_id: str = Field(description="Practice session graded.")
    learner: str = Field(description="Learner's username.")
    scenario_id: str = Field(description="Scenario practised.")
    level: str = Field(description="Difficulty practised.")
    ai_grade: Grade = Field(description="The grade as the judge gave it (never changed).")
    current: Grade = Field(description="The grade with every facilitator edit applied.")
    history: list[HistoryEntry] = Field(description="Append-only history, oldest first.")
    comment: str | None = Field(description="The deciding comment or rejection reason.")
    decided_by: str | None = Field(description="Who approved or rejected.")
    decided_at: datetime | None = Field(description="When it was decided.")


def _require_facilitator(db: Session, username: str) -> Person:
    person = person_in(db, username)
    if person.role != Role.FACILITATOR:
        raise PermissionDenied(f"only facilitators review grades; '{username}' is a {person.role}")
    return person


def _review_in(db: Session, review_id: int) -> ReviewRow:
    review = db.get(ReviewRow, review_id)
    if review is None:
        raise NotFoundError(f"no review {review_id}; see `roleplay review list`")
    return review


def apply_edits(grade: Grade, edits: list[CriterionEdit], rubric: Rubric) -> Grade:
    """A new grade with `edits` applied and the score recomputed in code (the input is not changed)."""
    ids = {c.criterion_id for c in grade.criteria}
    for e in edits:
        if e.criterion_id not in ids:
            raise ReviewError(f"criterion '{e.criterion_id}' is not in rubric '{grade.rubric_id}'; use one of: "
                              f"{', '.join(sorted(ids))}")
    by_id = {e.criterion_id: e for e in edits}
    criteria: list[CriterionGrade] = []
    for c in grade.criteria:
        e = by_id.get(c.criterion_id)
        if e is None:
            criteria.append(c)
            continue
        update_: dict[str, Any] = {"supported": True}
        if e.level is not None:
            update_["level"] = e.level
        if e.evidence is not None:
            update_["evidence"] = e.evidence
        if e.feedback is not None:
            update_["rationale"] = e.feedback
        if e.better_alternative is not None:
            update_["better_alternative"] = e.better_alternative
        criteria.append(c.model_copy(update=update_))
    return finish_grade(rubric, grade.judge, criteria, prompt=grade.prompt, raw_reply=grade.raw_reply,
                        calls=grade.calls, flagged=grade.flagged, samples=grade.samples, prompt_tokens=grade.prompt_tokens,
                        completion_tokens=grade.completion_tokens, structured_mode=grade.structured_mode,
                        fitted=grade.fitted)


class ReviewService:
    """The review workflow on a store; every check is made here, not in the UI.

    Args:
        store: The database.
        rubric_for: Returns the rubric by id (to recompute edited grades).
        on_approved: Called with the approved ReviewView (e.g. to add exemplars); failures there never undo an approval.
    """

    def __init__(self, store: Store, rubric_for: Callable[[str], Rubric],
                 on_approved: Callable[[ReviewView], None] | None = None) -> None:
        self.store = store
        self.rubric_for = rubric_for
        self.on_approved = on_approved

    def queue(self, status: ReviewStatus | None = ReviewStatus.PENDING, learner: str | None = None) -> list[ReviewView]:
        """Reviews with this status (all if None), of one learner if given, oldest first."""
        with self.store.session() as db:
            q = select(ReviewRow.id).order_by(ReviewRow.created_at, ReviewRow.id)
            if status:
                q = q.where(ReviewRow.status == status)
            if learner is not None:
                q = (q.join(GradeRow, GradeRow.id == ReviewRow.grade_id)
                     .join(PracticeSession, PracticeSession.id == GradeRow.session_id)
                     .join(Person, Person.id == PracticeSession.person_id).where(Person.username == learner))
            ids = list(db.scalars(q))
        return [self.get(i) for i in ids]

    def for_session(self, session_id: str) -> ReviewView | None:
        """The newest review of a practice session, or None when it has not been graded."""
        with self.store.session() as db:
            review_id = db.scalar(select(ReviewRow.id).join(GradeRow, GradeRow.id == ReviewRow.grade_id)
                                  .where(GradeRow.session_id == session_id)
                                  .order_by(ReviewRow.created_at.desc(), ReviewRow.id.desc()).limit(1))
        return None if review_id is None else self.get(review_id)

    def get(self, review_id: int) -> ReviewView:
        """One review with its grade, edits and history."""
        with self.store.session() as db:
            review = _review_in(db, review_id)
            grade_row = db.get(GradeRow, review.grade_id)
            sess = db.get(PracticeSession, grade_row.session_id)
            learner = db.get(Person, sess.person_id)
            events = list(db.scalars(select(ReviewEvent).where(ReviewEvent.review_id == review_id).order_by(ReviewEvent.id)))
            names = {p.id: p.username for p in db.scalars(select(Person).where(
                Person.id.in_({e.actor_id for e in events} | {review.decided_by or -1})))}
        ai = Grade.model_validate({**grade_row.result, "prompt": grade_row.prompt, "raw_reply": grade_row.raw_reply})
        current = ai
        history = [HistoryEntry(action="created", actor="grader", at=grade_row.created_at, comment=ai.summary)]
        for e in events:
            changes = [CriterionEdit.model_validate(c) for c in e.payload.get("changes", [])]
            if changes:
                current = apply_edits(current, changes, self.rubric_for(ai.rubric_id))
            history.append(HistoryEntry(action=e.action, actor=names.get(e.actor_id, "?"), at=e.created_at,
                                        comment=e.comment, changes=changes))
        return ReviewView(review_id=review.id, status=ReviewStatus(review.status), version=review.version,
                          session_id=sess.id, learner=learner.username, scenario_id=sess.scenario_id, level=sess.level,
                          ai_grade=ai, current=current, history=history, comment=review.comment,
                          decided_by=names.get(review.decided_by) if review.decided_by else None,
                          decided_at=review.decided_at)

    def _act(self, review_id: int, username: str, action: str, comment: str | None, expected_version: int | None,
             changes: list[CriterionEdit] | None = None) -> ReviewView:
        with self.store.session() as db:
            actor = _require_facilitator(db, username)
            review = _review_in(db, review_id)
            sess = db.get(PracticeSession, db.get(GradeRow, review.grade_id).session_id)
            if sess.person_id == actor.id:
                raise PermissionDenied("you cannot review your own practice session; ask another facilitator")
            if review.status != ReviewStatus.PENDING:
                raise ReviewError(self._decided_message(db, review))
            version = review.version if expected_version is None else expected_version
            values: dict[str, Any] = {"version": version + 1}
            if action in ("approve", "reject"):
                values.update(status=ReviewStatus.APPROVED if action == "approve" else ReviewStatus.REJECTED, decided_by=actor.id,
                              decided_at=utcnow(), comment=comment)
            if action == "reject":
                values["open_session_id"] = None  # a rejected session may be graded again
            # the conditional update is the lock: of two concurrent actions on one version, exactly one matches
            result = db.execute(update(ReviewRow).where(ReviewRow.id == review_id, ReviewRow.version == version,
                                                        ReviewRow.status == ReviewStatus.PENDING).values(**values))
            if result.rowcount != 1:
                db.rollback()
                fresh = db.get(ReviewRow, review_id)
                db.refresh(fresh)
                if fresh.status != ReviewStatus.PENDING:
                    raise ReviewError(self._decided_message(db, fresh))
                raise ReviewError(f"review {review_id} was changed by someone else while you were working on it (it is "
                                  f"at version {fresh.version} now, you acted on version {version}); reload it "
                                  f"(`roleplay review show {review_id}`), check their changes and try again with "
                                  "that version; nothing of yours was saved")
            db.add(ReviewEvent(review_id=review_id, actor_id=actor.id, action=action, comment=comment,
                               payload={"changes": [c.model_dump(exclude_none=True) for c in changes or []]}))
            record_notice(db, review_id=review_id, session=sess, actor_id=actor.id, action=action, comment=comment)
        view = self.get(review_id)
        if action == "approve" and self.on_approved is not None:
            try:
                self.on_approved(view)
            except Exception:  # noqa: BLE001 - exemplars are a bonus; the approval stands
                log.exception("review %s is approved, but its exemplars were not stored", review_id)
        return view

    @staticmethod
    def _decided_message(db: Session, review: ReviewRow) -> str:
        who = db.get(Person, review.decided_by).username if review.decided_by else "someone"
        when = review.decided_at.strftime("%Y-%m-%d %H:%M") if review.decided_at else "earlier"
        return f"review {review.id} was already {review.status} by {who} at {when} UTC; nothing was changed"

    def approve(self, review_id: int, username: str, comment: str | None = None,
                expected_version: int | None = None) -> ReviewView:
        """Approve the grade as it stands (with any edits); only then does it count."""
        return self._act(review_id, username, "approve", comment, expected_version)

    def edit(self, review_id: int, username: str, changes: list[CriterionEdit], comment: str,
             expected_version: int | None = None) -> ReviewView:
        """Change criteria (level, evidence, feedback) with a comment; appended to history, the AI grade is kept."""
        if not changes:
            raise ReviewError("an edit needs at least one criterion change")
        if not comment or not comment.strip():
            raise ReviewError("say why you changed the grade: a comment is required with every edit")
        view = self.get(review_id)
        apply_edits(view.current, changes, self.rubric_for(view.ai_grade.rubric_id))  # validates criterion ids
        return self._act(review_id, username, "edit", comment.strip(), expected_version, changes)

    def reject(self, review_id: int, username: str, reason: str, expected_version: int | None = None) -> ReviewView:
        """Reject the grade with a reason; the session never counts and the learner may practise again."""
        if not reason or not reason.strip():
            raise ReviewError("give the learner a reason when rejecting")
        return self._act(review_id, username, "reject", reason.strip(), expected_version)


class ApprovedResult(BaseModel):
    """An approved session: the only kind of result that counts downstream."""

    model_config = ConfigDict(extra="forbid")
    review_id: int = Field(description="Review that approved it.")
    session_id: str = Field(description="Practice session.")
    learner: str = Field(description="Learner's username.")
    scenario_id: str = Field(description="Scenario practised.")
    level: str = Field(description="Difficulty practised.")
    grade: Grade = Field(description="The approved grade (with facilitator edits), not the AI's.")
    approved_by: str = Field(description="Facilitator who approved.")
    approved_at: datetime = Field(description="When.")


def approved_results(service: ReviewService, learner: str | None = None) -> list[ApprovedResult]:
    """Every approved result (of one learner, if given), oldest first."""
    out = []
    for v in service.queue(ReviewStatus.APPROVED, learner=learner):
        out.append(ApprovedResult(review_id=v.review_id, session_id=v.session_id, learner=v.learner,
                                  scenario_id=v.scenario_id, level=v.level, grade=v.current,
                                  approved_by=v.decided_by or "?", approved_at=v.decided_at or utcnow()))
    return out


def exemplars_from(view: ReviewView) -> list[Exemplar]:
    """Exemplars for the grader's few-shot store from an approved review (edited criteria marked as such)."""
    from roleplay.exemplars import Exemplar

    edited = {c.criterion_id for h in view.history for c in h.changes}
    out = []
    for c in view.current.criteria:
        if not c.evidence:
            continue
        out.append(Exemplar(id=f"{view.review_id}-{c.criterion_id}", rubric_id=view.current.rubric_id,
                            criterion_id=c.criterion_id, excerpt=" … ".join(c.evidence), level=c.level,
                            rationale=c.rationale[:500], source="edited" if c.criterion_id in edited else "approved",
                            scenario_id=view.scenario_id))
    return out
