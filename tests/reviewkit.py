"""Helpers to make graded sessions for review and certification tests."""

from __future__ import annotations

from roleplay.grader import OfflineJudge, grade_session
from content import catalog
from roleplay.practice import start_practice
from roleplay.review import ReviewService
from roleplay.models import ReviewRow
from roleplay.store import Store

GOOD = ["Hi Sam, thanks for making time.", "What has been going on for you lately?",
        "It sounds like the mornings have been really hard.", "That sounds exhausting. Thank you for telling me.",
        "The last two reports were late and the client noticed; I need them by Friday noon.",
        "What would help you most?", "Let me check I've understood: mornings are hard and you catch up at night.",
        "Shall we agree you flag risks by Wednesday and we check in next Monday?"]


def graded_session(store: Store, learner: str = "ana", scenario_id: str = "missed-deadlines", level: str = "novice",
                   lines: list[str] | None = None) -> int:
    """Practise offline, grade offline, and return the id of the review that opened."""
    from sqlalchemy import select

    run = start_practice(store, learner, catalog().scenario(scenario_id), level)
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
    return ReviewService(store, catalog().rubric, on_approved)
