"""What learners are told about their reviews: the feedback they may see, and notices when a facilitator acts.

A facilitator's approve, edit or reject writes a notice for the learner in the same transaction as the review change
(`record_notice`, called by `ReviewService`). The app lists a learner's recent notices, the unread ones marked new,
and marks them read once they have been shown. Which feedback a learner sees follows the programme's (or scenario's)
`feedback` setting: `immediate` shows the AI feedback at once, marked preliminary until a facilitator approves it;
`after_review` shows nothing until then. Only approved results ever count (`review.approved_results`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from roleplay.models import NoticeKind, NoticeRow, Person, PracticeSession, utcnow
from roleplay.scenario import FeedbackMode
from roleplay.store import Store, person_in

if TYPE_CHECKING:
    from roleplay.grader import Grade
    from roleplay.review import ReviewView

KIND_OF_ACTION = {"approve": NoticeKind.APPROVED, "edit": NoticeKind.EDITED, "reject": NoticeKind.REJECTED}
PRELIMINARY = "Preliminary: your facilitator reviews it before it counts."


class Notice(BaseModel):
    """A message to a learner about a facilitator's action on one of their sessions."""

    model_config = ConfigDict(extra="forbid")
    id: int = Field(description="Notice id.")
    kind: NoticeKind = Field(description="approved, edited or rejected.")
    session_id: str = Field(description="The learner's practice session.")
    scenario_id: str = Field(description="Scenario of that session.")
    level: str = Field(description="Level it was practised at.")
    actor: str = Field(description="Username of the facilitator who acted.")
    comment: str | None = Field(description="Their comment or reason.")
    created_at: datetime = Field(description="When (UTC).")
    read: bool = Field(description="Whether the learner has seen it.")

    def text(self, titles: Mapping[str, str] | None = None) -> str:
        """One sentence for the learner, naming the scenario by its title."""
        title = (titles or {}).get(self.scenario_id, self.scenario_id)
        what = f"your “{title}” session ({self.level})"
        said = f": “{self.comment}”" if self.comment else ""
        if self.kind == NoticeKind.APPROVED:
            return f"{self.actor} approved the feedback on {what}; it is your result now{said}"
        if self.kind == NoticeKind.EDITED:
            return f"{self.actor} changed the feedback on {what}; it counts once approved{said}"
        return f"{self.actor} did not accept {what}, so it does not count{said}"


def record_notice(db: Session, *, review_id: int, session: PracticeSession, actor_id: int, action: str,
                  comment: str | None) -> None:
    """Add the notice for a review action to the open transaction (`ReviewService` calls it with the change)."""
    kind = KIND_OF_ACTION.get(action)
    if kind is not None:
        db.add(NoticeRow(person_id=session.person_id, session_id=session.id, review_id=review_id, kind=kind,
                         actor_id=actor_id, comment=comment))


class NoticeService:
    """A learner's notices on a store.

    Args:
        store: The database.
        clock: Returns the current UTC time (when a notice was read).
    """

    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.clock = clock

    def recent(self, username: str, limit: int = 8) -> list[Notice]:
        """The learner's newest notices, newest first."""
        with self.store.session() as db:
            person = person_in(db, username)
            rows = db.execute(
                select(NoticeRow, PracticeSession.scenario_id, PracticeSession.level, Person.username)
                .join(PracticeSession, PracticeSession.id == NoticeRow.session_id)
                .join(Person, Person.id == NoticeRow.actor_id)
                .where(NoticeRow.person_id == person.id)
                .order_by(NoticeRow.created_at.desc(), NoticeRow.id.desc()).limit(limit)).all()
        return [Notice(id=n.id, kind=NoticeKind(n.kind), session_id=n.session_id, scenario_id=scenario_id, level=level,
                       actor=actor, comment=n.comment, created_at=n.created_at, read=n.read_at is not None)
                for n, scenario_id, level, actor in rows]

    def unread(self, username: str) -> int:
        """How many notices the learner has not seen."""
        with self.store.session() as db:
            person = person_in(db, username)
            return db.scalar(select(func.count()).select_from(NoticeRow).where(
                NoticeRow.person_id == person.id, NoticeRow.read_at.is_(None))) or 0

    def mark_read(self, username: str, notice_ids: Iterable[int] | None = None) -> int:
        """Mark the learner's notices (these ids, or all) read; returns how many were unread. Others' are untouched."""
        ids = None if notice_ids is None else list(notice_ids)
        if ids == []:
            return 0
        with self.store.session() as db:
            person = person_in(db, username)
            stmt = update(NoticeRow).where(NoticeRow.person_id == person.id, NoticeRow.read_at.is_(None))
            if ids is not None:
                stmt = stmt.where(NoticeRow.id.in_(ids))
            return db.execute(stmt.values(read_at=self.clock())).rowcount or 0

    def show(self, username: str, limit: int = 8) -> list[Notice]:
        """The notices a page shows now (as they were before this call: the unread ones marked new), then marked read."""
        notices = self.recent(username, limit)
        self.mark_read(username, [n.id for n in notices if not n.read])
        return notices


class LearnerFeedback(BaseModel):
    """What a learner may see of a session's grade."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    state: Literal["none", "awaiting", "preliminary", "approved", "rejected"] = Field(
        description="none (not graded), awaiting (after_review, pending), preliminary (immediate, pending), "
                    "approved or rejected.")
    grade: Any = Field(default=None, description="The grade to show (None when nothing may be shown).")
    edited_by: list[str] = Field(default_factory=list, description="Facilitators who changed the pending grade.")
    decided_by: str | None = Field(default=None, description="Who approved or rejected it.")
    comment: str | None = Field(default=None, description="Their comment or reason.")
    counts: bool = Field(default=False, description="Whether it counts (only approved results do).")


def learner_feedback(view: ReviewView | None, mode: FeedbackMode) -> LearnerFeedback:
    """What the learner may see of a review: nothing before grading; while pending, the grade as it stands (marked
    preliminary) when `mode` is immediate, else nothing; the approved grade once approved; the reason once rejected."""
    if view is None:
        return LearnerFeedback(state="none")
    if view.status == "approved":
        return LearnerFeedback(state="approved", grade=view.current, decided_by=view.decided_by, comment=view.comment,
                               counts=True)
    if view.status == "rejected":
        return LearnerFeedback(state="rejected", decided_by=view.decided_by, comment=view.comment)
    if mode != "immediate":
        return LearnerFeedback(state="awaiting")
    editors = list(dict.fromkeys(h.actor for h in view.history if h.action == "edit"))
    grade: Grade = view.current
    return LearnerFeedback(state="preliminary", grade=grade, edited_by=editors)
