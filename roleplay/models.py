"""The tables: one SQLAlchemy model per stored noun, and the enums of their status columns."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Role(StrEnum):
    """What a person does in roleplay."""

    LEARNER = "learner"
    FACILITATOR = "facilitator"
    DESIGNER = "designer"


ROLES: tuple[str, ...] = tuple(Role)


class SessionStatus(StrEnum):
    """Whether a practice session is still going."""

    ACTIVE = "active"
    ENDED = "ended"


class ReviewStatus(StrEnum):
    """Where a grade is in the facilitator review."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class CertificationStatus(StrEnum):
    """A learner's certification in one sprint."""

    IN_PROGRESS = "in_progress"
    CERTIFIED = "certified"


class NoticeKind(StrEnum):
    """What a facilitator did to a learner's graded session."""

    APPROVED = "approved"
    EDITED = "edited"
    REJECTED = "rejected"


class DrillStatus(StrEnum):
    """A reinforcement drill: scheduled, its reminder being sent (claimed) or sent, and done by the learner."""

    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DONE = "done"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A fresh random identifier for sessions and grades."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Person(Base):
    """Someone who uses roleplay: a learner, facilitator or designer."""

    __tablename__ = "people"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    email: Mapped[str | None] = mapped_column(String(320))  # where reinforcement reminders go
    unsubscribed_at: Mapped[datetime | None]  # when they turned reminder emails off (None: on)


class CalibrationRating(Base):
    """A facilitator's blind level for one criterion of one anchor transcript."""

    __tablename__ = "calibration_ratings"
    __table_args__ = (UniqueConstraint("person_id", "anchor_id", "criterion_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    anchor_id: Mapped[str] = mapped_column(String(100), index=True)
    criterion_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PracticeSession(Base):
    """One conversation of a learner with a persona."""

    __tablename__ = "practice_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    scenario_id: Mapped[str] = mapped_column(String(64), index=True)
    level: Mapped[str] = mapped_column(String(20))
    engine: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=SessionStatus.ACTIVE.value)
    end_reason: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    turns: Mapped[list[TurnRow]] = relationship(order_by="TurnRow.idx", back_populates="session")


class TurnRow(Base):
    """One stored turn of a practice session."""

    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("session_id", "idx"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    speaker: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int | None]
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    session: Mapped[PracticeSession] = relationship(back_populates="turns")


class GradeRow(Base):
    """A grade produced by a judge; never updated after it is written."""

    __tablename__ = "grades"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id"), index=True)
    judge: Mapped[str] = mapped_column(String(40))
    rubric_id: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]]
    overall: Mapped[float] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
    prompt: Mapped[str | None] = mapped_column(Text)
    raw_reply: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewRow(Base):
    """The facilitator review of one grade; `version` guards concurrent decisions.

    `open_session_id` is the graded session while the review is pending or approved and NULL once it is rejected:
    being unique, it lets a session have one open review at most, however many graders race (a rejected session
    may be graded again).
    """

    __tablename__ = "reviews"
    __table_args__ = (  # the review lists, newest first, and the weekly drift of decided reviews
        Index("ix_reviews_status_created_at", "status", "created_at", "id"),
        Index("ix_reviews_created_at", "created_at", "id"),
        Index("ix_reviews_status_decided_at", "status", "decided_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    grade_id: Mapped[str] = mapped_column(ForeignKey("grades.id"), unique=True)
    open_session_id: Mapped[str | None] = mapped_column(ForeignKey("practice_sessions.id"), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=ReviewStatus.PENDING.value)
    version: Mapped[int] = mapped_column(Integer, default=0)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    decided_at: Mapped[datetime | None]
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewEvent(Base):
    """Append-only history of a review: who did what, when and why."""

    __tablename__ = "review_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    action: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CertificationRow(Base):
    """A learner's certification in one sprint."""

    __tablename__ = "certifications"
    __table_args__ = (UniqueConstraint("person_id", "sprint"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    sprint: Mapped[str] = mapped_column(String(40))
    level: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=CertificationStatus.IN_PROGRESS.value)
    signed_off_by: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    comment: Mapped[str | None] = mapped_column(Text)
    credential: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    issued_at: Mapped[datetime | None]


class Enrolment(Base):
    """A learner's place in the certification programme: pre-assessment result and starting level.

    The sprints the learner chose are their `certifications` rows.
    """

    __tablename__ = "enrolments"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), unique=True)
    programme_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(20))
    score: Mapped[int] = mapped_column(Integer)
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    assessed_at: Mapped[datetime] = mapped_column(default=utcnow)
    sprints_chosen_at: Mapped[datetime | None]


class ReinforcementDrill(Base):
    """A practice drill scheduled after a certification, to keep the skill fresh."""

    __tablename__ = "reinforcement_drills"
    __table_args__ = (UniqueConstraint("certification_id", "after_days"),
                      Index("ix_reinforcement_drills_status_due_on", "status", "due_on"))
    id: Mapped[int] = mapped_column(primary_key=True)
    certification_id: Mapped[int] = mapped_column(ForeignKey("certifications.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    sprint: Mapped[str] = mapped_column(String(40))
    scenario_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(20))
    after_days: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default=DrillStatus.SCHEDULED.value)
    claimed_at: Mapped[datetime | None]  # a sender took it (status sending); an old claim is retried
    sent_at: Mapped[datetime | None]  # the reminder email was accepted by the mail server
    done_at: Mapped[datetime | None]  # the learner marked it done
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # reminder emails tried
    last_error: Mapped[str | None] = mapped_column(Text)  # why the last try failed


class BuddyLink(Base):
    """The learning buddy a learner has named (at most one at a time)."""

    __tablename__ = "learning_buddies"
    id: Mapped[int] = mapped_column(primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("people.id"), unique=True)
    buddy_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    named_at: Mapped[datetime] = mapped_column(default=utcnow)


class SharedSessionRow(Base):
    """A practice session a learner shared with their buddy."""

    __tablename__ = "shared_sessions"
    __table_args__ = (UniqueConstraint("session_id", "buddy_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id"), index=True)
    buddy_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    shared_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReflectionRow(Base):
    """A reflection note on a shared practice session, by the buddy (or the learner)."""

    __tablename__ = "buddy_reflections"
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NoticeRow(Base):
    """A message to a learner that a facilitator approved, edited or rejected the feedback on one of their sessions.

    Written in the same transaction as the review change; `read_at` is set once the learner has seen it. A notice goes
    with its person, session or review (ON DELETE CASCADE), so removing a person needs no step for notices.
    """

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id", ondelete="CASCADE"))
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]


class PassbackStatus(StrEnum):
    """Whether an approved score has reached the LMS it was launched from."""

    PENDING = "pending"
    SENT = "sent"


class LtiLink(Base):
    """Someone of an LMS (the platform's issuer and their `sub` there) and the roleplay account they launch as."""

    __tablename__ = "lti_links"
    __table_args__ = (UniqueConstraint("issuer", "sub"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    sub: Mapped[str] = mapped_column(String(255))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LtiLaunch(Base):
    """One launch from an LMS: who, which scenario, and the grade book line item an approved score goes back to."""

    __tablename__ = "lti_launches"
    __table_args__ = (Index("ix_lti_launches_person_scenario", "person_id", "scenario_id", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("lti_links.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(255))
    deployment_id: Mapped[str] = mapped_column(String(255))
    scenario_id: Mapped[str | None] = mapped_column(String(64))
    resource_link_id: Mapped[str | None] = mapped_column(String(255))
    lineitem: Mapped[str | None] = mapped_column(Text)
    lineitems: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LtiPassback(Base):
    """An approved score owed to an LMS: pending until the platform accepts it, then sent (kept as the record)."""

    __tablename__ = "lti_passbacks"
    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), unique=True)
    launch_id: Mapped[int] = mapped_column(ForeignKey("lti_launches.id", ondelete="CASCADE"), index=True)
    score_given: Mapped[float] = mapped_column(Float)
    score_maximum: Mapped[float] = mapped_column(Float)
    comment: Mapped[str | None] = mapped_column(Text)
    approved_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20), default=PassbackStatus.PENDING.value, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class LtiState(Base):
    """A short-lived value of an LTI exchange, used once: a nonce issued at sign-in, a deep-linking request."""

    __tablename__ = "lti_states"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class OutboxStatus(StrEnum):
    """Where an approved result's xAPI statement is on its way to the LRS."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class XapiOutboxRow(Base):
    """An approved result's xAPI statement owed to the LRS (one per review; its id is deterministic).

    Queued until the LRS holds it, then sent (kept as the record); failed when the LRS refused that statement on its
    own. `attempts` and `last_error` say how delivery went. The statement is stored as built at approval, in its
    xAPI 2.0 form; it is fitted to the LRS's version when sent.
    """

    __tablename__ = "xapi_outbox"
    __table_args__ = (Index("ix_xapi_outbox_status_id", "status", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), unique=True)
    statement_id: Mapped[str] = mapped_column(String(36), unique=True)
    statement: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default=OutboxStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]


class JobStatus(StrEnum):
    """Where a session's grading job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class GradingJob(Base):
    """The background grading of one ended session: queued, running (on which worker), done or failed with why.

    The row is the record; the queue (Redis, or the app process's own threads) only carries the work, so a job the
    queue lost is sent again (`roleplay.jobs.GradingJobs.resend_stale`).
    """

    __tablename__ = "grading_jobs"
    __table_args__ = (Index("ix_grading_jobs_status_queued_at", "status", "queued_at"),)
    session_id: Mapped[str] = mapped_column(ForeignKey("practice_sessions.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(10), default=JobStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(120))
    error: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class SignInToken(Base):
    """A browser signed in to the web app (the token in its sign-in cookie), known to every app process."""

    __tablename__ = "sign_in_tokens"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
