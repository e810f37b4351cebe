"""Facilitator review: a queue of graded sessions; approve, edit or reject, with append-only history."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.orm import Session

from roleplay.errors import NotFoundError, PermissionDenied, ReviewError
from roleplay.grader import CriterionGrade, Grade, finish_grade
from roleplay.models import GradeRow, Person, PracticeSession, ReviewEvent, ReviewRow, ReviewStatus, Role, utcnow
from roleplay.notices import record_notice
from roleplay.rubric import Rubric
from roleplay.store import Store, person_in

if TYPE_CHECKING:
    from roleplay.exemplars import Exemplar

log = logging.getLogger(__name__)
Status = ReviewStatus
PAGE_SIZE = 50
"""Rows on one page of a review list."""
_Select = TypeVar("_Select", bound="Select[*tuple[Any, ...]]")


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


class ReviewSummary(BaseModel):
    """One row of a review list: what a facilitator scans before opening a review."""

    model_config = ConfigDict(extra="forbid")
    review_id: int = Field(description="Review id.")
    session_id: str = Field(description="Practice session graded.")
    learner: str = Field(description="Learner's username.")
    scenario_id: str = Field(description="Scenario practised.")
    level: str = Field(description="Difficulty practised.")
    status: Status = Field(description="pending, approved or rejected.")
    created_at: datetime = Field(description="When the grade arrived for review.")
    decided_at: datetime | None = Field(description="When it was approved or rejected.")
    ai_overall: float = Field(description="Overall score as the judge gave it.")
    overall: float = Field(description="Overall score with every facilitator edit applied.")
    passed: bool = Field(description="Whether the grade with edits passes.")
    edits: int = Field(description="Facilitator edits so far.")


class ReviewPage(BaseModel):
    """One page of a review list, newest first, with the count of the whole list."""

    model_config = ConfigDict(extra="forbid")
    rows: list[ReviewSummary] = Field(description="The page's reviews, newest first.")
    total: int = Field(description="Reviews in the whole list.")
    page: int = Field(description="Page number, 1 = newest.")
    size: int = Field(description="Rows per page.")
    status: Status | None = Field(description="The status listed (None: every review).")
    learner: str | None = Field(description="The learner listed, if one.")

    @property
    def first(self) -> int:
        """Position of the first row in the whole list (1-based; 0 when the page is empty)."""
        return (self.page - 1) * self.size + 1 if self.rows else 0

    @property
    def last(self) -> int:
        """Position of the last row in the whole list (0 when the page is empty)."""
        return self.first + len(self.rows) - 1 if self.rows else 0

    @property
    def has_newer(self) -> bool:
        """Whether a page of newer reviews comes before this one."""
        return self.page > 1

    @property
    def has_older(self) -> bool:
        """Whether a page of older reviews comes after this one."""
        return self.last < self.total

    def showing(self) -> str:
        """The page in words, e.g. "showing 1-50 of 10,214 pending reviews, newest first"."""
        what = f"{self.status} reviews" if self.status else "reviews"
        if not self.total:
            return f"no {what}" + (f" of {self.learner}" if self.learner else "")
        return (f"showing {self.first:,}-{self.last:,} of {self.total:,} {what}"
                + (f" of {self.learner}" if self.learner else "") + ", newest first")


def _where(status: ReviewStatus | str | None, learner: str | None) -> list[ColumnElement[bool]]:
    """The filters of a review list."""
    where: list[ColumnElement[bool]] = []
    if status:
        # one learner has few reviews: reach them through the learner's sessions, never by scanning every review with
        # the status in its index (SQLite keeps no statistics to know which is smaller), hence `|| ''` then
        where.append((ReviewRow.status + "" if learner is not None else ReviewRow.status) == str(status))
    if learner is not None:
        where.append(Person.username == learner)
    return where


def _joined(q: _Select) -> _Select:
    """A select over reviews joined to their grade, session and learner."""
    return (q.select_from(ReviewRow).join(GradeRow, GradeRow.id == ReviewRow.grade_id)
            .join(PracticeSession, PracticeSession.id == GradeRow.session_id)
            .join(Person, Person.id == PracticeSession.person_id))


def _count(db: Session, where: list[ColumnElement[bool]], *, joined: bool) -> int:
    """How many reviews match; the joins only when a filter needs them."""
    q = select(func.count()).select_from(ReviewRow)
    return int(db.scalar((_joined(select(func.count())) if joined else q).where(*where)) or 0)


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
        on_approved: Each called in turn with the approved ReviewView once the approval is stored (adding exemplars,
            passing the score to an LMS, queueing a statement for the LRS); a failure in one is logged, never undoes
            the approval and does not keep the others from running.
    """

    def __init__(self, store: Store, rubric_for: Callable[[str], Rubric],
                 on_approved: Sequence[Callable[[ReviewView], None]] = ()) -> None:
        self.store = store
        self.rubric_for = rubric_for
        self.on_approved = list(on_approved)

    def queue(self, status: ReviewStatus | str | None = ReviewStatus.PENDING,
              learner: str | None = None) -> list[ReviewView]:
        """Every review with this status (all if None), of one learner if given, oldest first, each complete.

        Three statements whatever the number of reviews; to show a list, use `page` (summary rows, newest first).
        """
        return self._views(_where(status, learner))

    def page(self, status: ReviewStatus | str | None = ReviewStatus.PENDING, learner: str | None = None,
             page: int = 1, size: int = PAGE_SIZE) -> ReviewPage:
        """One page of the reviews with this status (all if None), of one learner if given, newest first.

        Args:
            status: pending, approved or rejected; None for every review.
            learner: Only this learner's reviews (username).
            page: 1 is the newest; a page past the last shows the last.
            size: Rows per page.

        Returns:
            The page's summary rows (no grade, transcript or history) with the total count. At most four statements,
            however many reviews are stored.
        """
        size = max(1, size)
        where = _where(status, learner)
        with self.store.session() as db:
            total = _count(db, where, joined=learner is not None)
            page = min(max(1, page), max(1, -(-total // size)))
            edits = (select(func.count(ReviewEvent.id)).where(ReviewEvent.review_id == ReviewRow.id,
                                                              ReviewEvent.action == "edit")
                     .correlate(ReviewRow).scalar_subquery())
            rows = db.execute(_joined(select(
                ReviewRow.id, GradeRow.session_id, Person.username, PracticeSession.scenario_id, PracticeSession.level,
                ReviewRow.status, ReviewRow.created_at, ReviewRow.decided_at, GradeRow.overall, GradeRow.passed,
                edits.label("edits"))).where(*where).order_by(ReviewRow.created_at.desc(), ReviewRow.id.desc())
                .limit(size).offset((page - 1) * size)).all()
            current = self._current_scores(db, [r.id for r in rows if r.edits])
        summaries = [ReviewSummary(review_id=r.id, session_id=r.session_id, learner=r.username, scenario_id=r.scenario_id,
                                   level=r.level, status=ReviewStatus(r.status), created_at=r.created_at,
                                   decided_at=r.decided_at, ai_overall=r.overall,
                                   overall=current.get(r.id, (r.overall, r.passed))[0],
                                   passed=current.get(r.id, (r.overall, r.passed))[1], edits=r.edits) for r in rows]
        return ReviewPage(rows=summaries, total=total, page=page, size=size,
                          status=None if status is None else ReviewStatus(status), learner=learner)

    def count(self, status: ReviewStatus | str | None = ReviewStatus.PENDING, learner: str | None = None) -> int:
        """How many reviews have this status (all if None), of one learner if given; one statement."""
        with self.store.session() as db:
            return _count(db, _where(status, learner), joined=learner is not None)

    def for_session(self, session_id: str) -> ReviewView | None:
        """The newest review of a practice session, or None when it has not been graded."""
        with self.store.session() as db:
            review_id = db.scalar(select(ReviewRow.id).join(GradeRow, GradeRow.id == ReviewRow.grade_id)
                                  .where(GradeRow.session_id == session_id)
                                  .order_by(ReviewRow.created_at.desc(), ReviewRow.id.desc()).limit(1))
        return None if review_id is None else self.get(review_id)

    def get(self, review_id: int) -> ReviewView:
        """One review with its grade, edits and history."""
        views = self._views([ReviewRow.id == review_id])
        if not views:
            raise NotFoundError(f"no review {review_id}; see `roleplay review list`")
        return views[0]

    def _views(self, where: list[ColumnElement[bool]]) -> list[ReviewView]:
        """Complete views of the matching reviews, oldest first, in three statements: rows, events, actors' names."""
        with self.store.session() as db:
            rows = db.execute(_joined(select(ReviewRow, GradeRow, PracticeSession.scenario_id, PracticeSession.level,
                                             Person.username)).where(*where)
                              .order_by(ReviewRow.created_at, ReviewRow.id)).all()
            if not rows:
                return []
            ids = _joined(select(ReviewRow.id)).where(*where)
            events: dict[int, list[ReviewEvent]] = {}
            for e in db.scalars(select(ReviewEvent).where(ReviewEvent.review_id.in_(ids)).order_by(ReviewEvent.id)):
                events.setdefault(e.review_id, []).append(e)
            people = ({e.actor_id for evs in events.values() for e in evs}
                      | {r[0].decided_by for r in rows if r[0].decided_by is not None})
            names = dict(db.execute(select(Person.id, Person.username).where(Person.id.in_(people))).all()) if people else {}
        return [self._view(review, grade, scenario_id, level, learner, events.get(review.id, []), names)
                for review, grade, scenario_id, level, learner in rows]

    def _view(self, review: ReviewRow, grade_row: GradeRow, scenario_id: str, level: str, learner: str,
              events: list[ReviewEvent], names: dict[int, str]) -> ReviewView:
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
                          session_id=grade_row.session_id, learner=learner, scenario_id=scenario_id, level=level,
                          ai_grade=ai, current=current, history=history, comment=review.comment,
                          decided_by=names.get(review.decided_by) if review.decided_by else None,
                          decided_at=review.decided_at)

    def _current_scores(self, db: Session, review_ids: list[int]) -> dict[int, tuple[float, bool]]:
        """(overall, passed) with facilitators' edits replayed, for edited reviews of one page; two statements."""
        if not review_ids:
            return {}
        results: dict[int, dict[str, Any]] = dict(db.execute(select(ReviewRow.id, GradeRow.result).join(GradeRow, GradeRow.id == ReviewRow.grade_id)
                                  .where(ReviewRow.id.in_(review_ids))).all())
        edits: dict[int, list[list[CriterionEdit]]] = {}
        for review_id, payload in db.execute(select(ReviewEvent.review_id, ReviewEvent.payload).where(
                ReviewEvent.review_id.in_(review_ids), ReviewEvent.action == "edit").order_by(ReviewEvent.id)):
            edits.setdefault(review_id, []).append([CriterionEdit.model_validate(c) for c in payload.get("changes", [])])
        out = {}
        for review_id, result in results.items():
            grade = Grade.model_validate(result)
            for changes in edits.get(review_id, []):  # one event at a time, as the history replays them
                if changes:
                    grade = apply_edits(grade, changes, self.rubric_for(grade.rubric_id))
            out[review_id] = (grade.overall, grade.passed)
        return out

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
        if action == "approve":
            for listener in self.on_approved:
                try:
                    listener(view)
                except Exception:  # noqa: BLE001 - what follows an approval never undoes it
                    log.exception("review %s is approved, but %s failed", review_id,
                                  getattr(listener, "__qualname__", repr(listener)))
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
