"""Grade passback (LTI 1.3 Assignment and Grade Services): an approved score goes back to the LMS it came from.

When a facilitator approves the review of a session whose learner launched that scenario from an LMS, the approved
grade (`ReviewView.current`, with the facilitator's edits, never the judge's own) is stored as a pending passback and
posted to the launch's line item: `scoreGiven` the grade's 0-1 score (`Grade.scaled`), `scoreMaximum` 1,
`activityProgress` Completed, `gradingProgress` FullyGraded, `userId` the learner's `sub` on that platform. The access
token comes from the platform's token URL (OAuth2 client credentials, a JWT signed with the tool's key).

A session belongs to the newest launch of its learner made before it started, for its scenario (or for no scenario
in particular). A failure is logged and the passback stays pending: the next approval sends it again, and so does
`roleplay lti retry` (`roleplay.cli_lti`), which also queues any approved LMS session that has no passback yet.
Nothing is marked sent before the platform accepted it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import requests
from pydantic import BaseModel, ConfigDict, Field
from pylti1p3.assignments_grades import AssignmentsGradesService
from pylti1p3.exception import LtiException, LtiServiceException
from pylti1p3.grade import Grade
from pylti1p3.lineitem import LineItem
from pylti1p3.service_connector import ServiceConnector
from sqlalchemy import or_, select

from roleplay.errors import RoleplayError
from roleplay.lti import LtiTool
from roleplay.lti_launch import TimedSession, ToolConfig
from roleplay.models import (
    GradeRow,
    LtiLaunch,
    LtiLink,
    LtiPassback,
    PassbackStatus,
    PracticeSession,
    ReviewRow,
    ReviewStatus,
    utcnow,
)

if TYPE_CHECKING:
    from roleplay.context import AppContext
    from roleplay.review import ReviewView

log = logging.getLogger(__name__)

SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
LINEITEM_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
BATCH = 50  # pending passbacks sent after one approval (the oldest first)


class PassbackReport(BaseModel):
    """What one round of sending did."""

    model_config = ConfigDict(extra="forbid")
    sent: int = Field(default=0, description="Passbacks the platforms accepted in this round.")
    pending: int = Field(default=0, description="Passbacks still waiting (failed in this round or not tried).")
    errors: list[str] = Field(default_factory=list, description="One line per failure in this round.")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _why(exc: Exception) -> str:
    """One line on a failed call to a platform."""
    if isinstance(exc, LtiServiceException):
        return f"the platform answered HTTP {exc.response.status_code} at {exc.response.url}"
    if isinstance(exc, requests.RequestException):
        where = getattr(getattr(exc, "request", None), "url", None) or "the platform"
        return f"cannot reach {where} ({type(exc).__name__})"
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


class GradePassback:
    """Approved scores owed to LMS grade books, stored until each platform accepted its own.

    Args:
        context: The app context (store, settings, catalog, reviews).
    """

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.tool = LtiTool(context)

    @property
    def enabled(self) -> bool:
        """Whether LMS launches are set up (ROLEPLAY_LTI_CONFIG)."""
        return self.context.settings.lti_config is not None

    def __call__(self, view: ReviewView) -> None:
        """The approval listener: queue this review's score when its session came from an LMS, then send what is
        pending (a failure stays pending and is logged)."""
        if not self.enabled:
            return
        if self.queue(view) is None:
            return
        report = self.send_pending(BATCH)
        for line in report.errors:
            log.warning("lti: grade passback failed, kept to retry: %s", line)

    def _launch_for(self, db: Any, session_id: str) -> LtiLaunch | None:
        sess = db.get(PracticeSession, session_id)
        if sess is None:
            return None
        return db.scalar(select(LtiLaunch).where(
            LtiLaunch.person_id == sess.person_id, LtiLaunch.created_at <= sess.started_at,
            or_(LtiLaunch.scenario_id == sess.scenario_id, LtiLaunch.scenario_id.is_(None)))
            .order_by(LtiLaunch.created_at.desc(), LtiLaunch.id.desc()).limit(1))

    def queue(self, view: ReviewView) -> int | None:
        """Store the approved score of `view` as a pending passback; its id, or None when the session did not come
        from an LMS with a grade book (or the score is queued already)."""
        if view.status != ReviewStatus.APPROVED:
            return None
        grade = view.current
        with self.context.store.session() as db:
            launch = self._launch_for(db, view.session_id)
            if launch is None or SCORE_SCOPE not in (launch.scopes or []) or not (launch.lineitem or launch.lineitems):
                return None
            existing = db.scalar(select(LtiPassback.id).where(LtiPassback.review_id == view.review_id))
            if existing is not None:
                return None
            row = LtiPassback(review_id=view.review_id, launch_id=launch.id, score_given=round(grade.scaled, 4),
                              score_maximum=1.0, approved_at=view.decided_at or utcnow(),
                              comment=f"{grade.overall:.2f} of 4, {'passed' if grade.passed else 'not passed yet'}; "
                                      "approved by a facilitator")
            db.add(row)
            db.flush()
            return row.id

    def catch_up(self) -> int:
        """Queue every approved review of an LMS-launched session that has no passback yet; how many were queued."""
        launched = select(LtiLaunch.person_id)
        done = select(LtiPassback.review_id)
        with self.context.store.session() as db:
            ids = list(db.scalars(select(ReviewRow.id).join(GradeRow, GradeRow.id == ReviewRow.grade_id)
                                  .join(PracticeSession, PracticeSession.id == GradeRow.session_id)
                                  .where(ReviewRow.status == ReviewStatus.APPROVED,
                                         PracticeSession.person_id.in_(launched), ReviewRow.id.not_in(done))))
        return sum(1 for rid in ids if self.queue(self.context.reviews.get(rid)) is not None)

    def send_pending(self, limit: int | None = None) -> PassbackReport:
        """Post pending passbacks, the oldest first (at most `limit`); each is marked sent once its platform accepted
        it, or keeps its error to be tried again. After a platform's first failure its other passbacks wait for the
        next round, so an approval waits for one timeout at most per platform that is down."""
        with self.context.store.session() as db:
            q = select(LtiPassback, LtiLaunch, LtiLink).join(LtiLaunch, LtiLaunch.id == LtiPassback.launch_id).join(
                LtiLink, LtiLink.id == LtiLaunch.link_id).where(LtiPassback.status == PassbackStatus.PENDING).order_by(
                LtiPassback.id)
            rows = db.execute(q.limit(limit) if limit else q).all()
        report = PassbackReport()
        if not rows:
            return report
        try:
            config = self.tool.config()
        except RoleplayError as exc:
            return PassbackReport(pending=len(rows), errors=[str(exc).splitlines()[0]])
        connectors: dict[tuple[str, str], ServiceConnector] = {}
        down: set[tuple[str, str]] = set()  # a platform that failed once is not tried again in this round
        for passback, launch, link in rows:
            if (link.issuer, launch.client_id) in down:
                report.pending += 1
                continue
            error = None
            try:
                self._send(passback, launch, link, config, connectors)
            except (LtiException, RoleplayError, requests.RequestException, ValueError) as exc:
                error = f"review {passback.review_id} to {link.issuer}: {_why(exc)}"
            self._mark(passback.id, error)
            if error:
                down.add((link.issuer, launch.client_id))
                report.errors.append(error)
                report.pending += 1
            else:
                report.sent += 1
                log.info("lti: sent the approved score of review %s to %s", passback.review_id, link.issuer)
        return report

    def _mark(self, passback_id: int, error: str | None) -> None:
        with self.context.store.session() as db:
            row = db.get(LtiPassback, passback_id)
            row.attempts += 1
            row.last_error = error
            if error is None:
                row.status, row.sent_at = PassbackStatus.SENT, utcnow()

    def _send(self, passback: LtiPassback, launch: LtiLaunch, link: LtiLink, config: ToolConfig,
              connectors: dict[tuple[str, str], ServiceConnector]) -> None:
        platform = config.platform(link.issuer, launch.client_id)
        if platform is None:
            raise RoleplayError(f"issuer {link.issuer} with client id {launch.client_id} is no longer in "
                                "ROLEPLAY_LTI_CONFIG; add it back to send this score")
        key = (platform.issuer, platform.client_id)
        if key not in connectors:
            connectors[key] = ServiceConnector(config.registration(platform), TimedSession())
        service: dict[str, Any] = {"scope": list(launch.scopes or [])}
        if launch.lineitem:
            service["lineitem"] = launch.lineitem
        if launch.lineitems:
            service["lineitems"] = launch.lineitems
        ags = AssignmentsGradesService(connectors[key], service)  # type: ignore[arg-type]
        grade = (Grade().set_score_given(passback.score_given).set_score_maximum(passback.score_maximum)
                 .set_activity_progress("Completed").set_grading_progress("FullyGraded")
                 .set_timestamp(_aware(passback.approved_at).isoformat()).set_user_id(link.sub))
        if passback.comment:
            grade.set_comment(passback.comment)
        if launch.lineitem:
            ags.put_grade(grade)
            return
        if LINEITEM_SCOPE not in service["scope"] or not launch.resource_link_id:
            raise RoleplayError("the launch gave a line items container but no line item, and no right to create one")
        title = self.context.catalog.scenarios.get(launch.scenario_id or "")
        item = (LineItem().set_score_maximum(1).set_label(title.title if title else "roleplay")
                .set_resource_link_id(launch.resource_link_id).set_resource_id(launch.scenario_id or "roleplay"))
        ags.put_grade(grade, ags.find_or_create_lineitem(item, find_by="resource_link_id"))


def listener(context: AppContext) -> GradePassback:
    """The approval listener of `context` (does nothing while ROLEPLAY_LTI_CONFIG is unset)."""
    return GradePassback(context)

