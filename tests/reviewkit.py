"""Helpers to make graded sessions for review and certification tests."""

from __future__ import annotations

from roleplay.grader import OfflineJudge, grade_session
from content import GOOD_LINES, catalog
from roleplay.practice import start_practice
from roleplay.review import ReviewService
from roleplay.models import ReviewRow
from roleplay.store import Store

GOOD = GOOD_LINES


def graded_session(store: Store, learner: str = "ana", scenario_id: str = "missed-deadlines", level: str = "novice",
                   lines: list[str] | None = None) -> int:
    """Practise offline, grade offline, and return the id of the review that opened."""
    from sqlalchemy import select

    run = start_practice(store, learner, catalog().scenario(scenario_id), level, seed=0)
    run.open()
    for line in lines or GOOD:
        if run.state.ended:
            break
        list(run.respond(line))
    run.end()
    _, grade_id = grade_session(store, run.session_id, OfflineJudge(), catalog())
    with store.session() as db:
        return db.scalar(select(ReviewRow.id).where(ReviewRow.grade_id == grade_id))


def service(store: Store, on_approved=None) -> ReviewService:  # type: ignore[no-untyped-def]
    return ReviewService(store, catalog().rubric, [on_approved] if on_approved else ())
