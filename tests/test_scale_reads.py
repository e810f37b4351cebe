"""Review and calibration lists at scale: pages of the newest reviews with their count, no gaps between pages, one
learner's list, the weekly drift page by page, and a number of SQL statements per page that does not grow with the
sessions stored; on SQLite and PostgreSQL (skipped with the reason when no server is reachable)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from content import catalog
from sqlalchemy import event, insert, select

from roleplay.calibration import CalibrationService
from roleplay.models import GradeRow, PracticeSession, ReviewEvent, ReviewRow, ReviewStatus
from roleplay.review import PAGE_SIZE, ReviewService
from roleplay.store import Store

LEARNERS = ("ana", "ben", "cat", "dan", "eve", "fin", "gil", "hal", "ivy", "joe")
START = datetime(2026, 1, 7, 12, tzinfo=UTC)
HOURS_APART = 4


@dataclass
class Seeded:
    """What was stored, to check the lists against."""

    status: dict[int, str] = field(default_factory=dict)  # review id -> status
    learner: dict[int, str] = field(default_factory=dict)  # review id -> learner
    created: dict[int, datetime] = field(default_factory=dict)
    edited: set[int] = field(default_factory=set)


def _grade(scenario_id: str) -> dict[str, Any]:
    from roleplay.grader import CheckResult, CriterionGrade, finish_grade

    rubric = catalog().rubric_for(catalog().scenario(scenario_id))
    criteria = [CriterionGrade(criterion_id=c.id, level=3, checks=[CheckResult(id=k.id, answer="yes") for k in c.checks],
                               evidence=[], rationale="Clear.", better_alternative=c.example_lines[0])
                for c in rubric.criteria]
    return finish_grade(rubric, "offline", criteria).model_dump(mode="json")


def seed(store: Store, count: int, into: Seeded | None = None) -> Seeded:
    """Store `count` more graded sessions with reviews in bulk: 3 in 5 pending, 1 approved (every other one edited
    first, one criterion a level down), 1 rejected; one every `HOURS_APART` hours, five in a row by one learner."""
    out = into or Seeded()
    people = {name: (store.person(name) if _exists(store, name) else store.add_person(name, "learner")).id
              for name in LEARNERS}
    fac = store.person("fac").id
    result = _grade("missed-deadlines")
    first = result["criteria"][0]
    offset = len(out.status)
    with store.engine.begin() as conn:
        sessions, grades = [], []
        for i in range(offset, offset + count):
            at = START + timedelta(hours=HOURS_APART * i)
            sessions.append({"id": f"s{i:031d}", "person_id": people[_learner(i)],
                             "scenario_id": "missed-deadlines", "level": "novice", "engine": "offline",
                             "status": "ended", "state": {}, "started_at": at, "ended_at": at})
            grades.append({"id": f"g{i:031d}", "session_id": f"s{i:031d}", "judge": "offline",
                           "rubric_id": result["rubric_id"], "result": result, "overall": result["overall"],
                           "passed": result["passed"], "created_at": at})
        conn.execute(insert(PracticeSession), sessions)
        conn.execute(insert(GradeRow), grades)
        conn.execute(insert(ReviewRow), [
            {"grade_id": g["id"], "open_session_id": None if i % 5 == 4 else g["session_id"],
             "status": ("pending", "pending", "pending", "approved", "rejected")[i % 5],
             "version": 0 if i % 5 < 3 else 1 + (i % 10 == 3), "decided_by": None if i % 5 < 3 else fac,
             "decided_at": None if i % 5 < 3 else g["created_at"] + timedelta(hours=1), "created_at": g["created_at"]}
            for i, g in enumerate(grades, offset)])
        ids = dict(conn.execute(select(ReviewRow.grade_id, ReviewRow.id).where(
            ReviewRow.grade_id.in_([g["id"] for g in grades]))).all())
        events = []
        for i, g in enumerate(grades, offset):
            rid = ids[g["id"]]
            out.status[rid] = ("pending", "pending", "pending", "approved", "rejected")[i % 5]
            out.learner[rid] = _learner(i)
            out.created[rid] = g["created_at"]
            if i % 10 == 3:
                out.edited.add(rid)
                events.append({"review_id": rid, "actor_id": fac, "action": "edit", "comment": "generous",
                               "payload": {"changes": [{"criterion_id": first["criterion_id"], "level": 2}]},
                               "created_at": g["created_at"]})
            if i % 5 >= 3:
                events.append({"review_id": rid, "actor_id": fac, "action": "approve" if i % 5 == 3 else "reject",
                               "comment": None, "payload": {"changes": []}, "created_at": g["created_at"]})
        conn.execute(insert(ReviewEvent), events)
    return out


def _learner(i: int) -> str:
    return LEARNERS[(i // 5) % len(LEARNERS)]


def _exists(store: Store, username: str) -> bool:
    from roleplay.errors import NotFoundError

    try:
        store.person(username)
    except NotFoundError:
        return False
    return True


class Statements:
    """Counts the SQL statements sent to the database."""

    def __init__(self, store: Store) -> None:
        self.n = 0
        event.listen(store.engine, "before_cursor_execute", self._one)

    def _one(self, *_: Any) -> None:
        self.n += 1

    def of(self, call: Callable[[], Any]) -> int:
        before = self.n
        call()
        return self.n - before


@pytest.fixture()
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store(db_url)
    s.add_person("fac", "facilitator")
    yield s
    s.close()


def newest_first(seeded: Seeded, ids: set[int]) -> list[int]:
    return sorted(ids, key=lambda r: (seeded.created[r], r), reverse=True)


def test_the_queue_shows_the_newest_pending_reviews_first_with_the_count(store: Store) -> None:
    seeded = seed(store, 130)
    pending = newest_first(seeded, {r for r, s in seeded.status.items() if s == "pending"})
    first = ReviewService(store, catalog().rubric).page("pending")
    assert first.total == len(pending) == 78 and first.size == PAGE_SIZE == 50
    assert [r.review_id for r in first.rows] == pending[:50]
    assert first.showing() == "showing 1-50 of 78 pending reviews, newest first"
    assert not first.has_newer and first.has_older
    row = first.rows[0]
    assert (row.learner, row.scenario_id, row.level, row.status) == (seeded.learner[row.review_id], "missed-deadlines",
                                                                     "novice", ReviewStatus.PENDING)


def test_the_next_pages_continue_without_duplicates_or_gaps(store: Store) -> None:
    seeded = seed(store, 260)
    svc = ReviewService(store, catalog().rubric)
    for status in ("pending", None):
        expected = newest_first(seeded, {r for r, s in seeded.status.items() if status in (None, s)})
        shown, page = [], svc.page(status)
        while True:
            shown += [r.review_id for r in page.rows]
            assert page.first == len(shown) - len(page.rows) + 1 and page.last == len(shown)
            if not page.has_older:
                break
            page = svc.page(status, page=page.page + 1)
        assert shown == expected  # every review once, in order, nothing skipped
        assert page.page == -(-len(expected) // PAGE_SIZE) and page.has_newer
        assert svc.page(status, page=99).page == page.page  # past the end: the last page
    everything = svc.page(None, page=2)
    assert everything.showing() == "showing 51-100 of 260 reviews, newest first"


def test_one_learners_list_and_count(store: Store) -> None:
    seeded = seed(store, 300)
    svc = ReviewService(store, catalog().rubric)
    bens = newest_first(seeded, {r for r, s in seeded.status.items() if s == "pending" and seeded.learner[r] == "ben"})
    page = svc.page("pending", learner="ben", size=10)
    assert page.total == len(bens) == svc.count("pending", learner="ben") == 18
    assert [r.review_id for r in page.rows] == bens[:10] and {r.learner for r in page.rows} == {"ben"}
    assert page.showing() == "showing 1-10 of 18 pending reviews of ben, newest first"
    assert [v.review_id for v in svc.queue("pending", learner="ben")] == bens[::-1]  # the full views, oldest first
    assert svc.count("approved") == sum(s == "approved" for s in seeded.status.values())
    assert svc.page("pending", learner="nobody").showing() == "no pending reviews of nobody"


def test_an_edited_review_lists_its_score_as_edited(store: Store) -> None:
    seeded = seed(store, 20)
    svc = ReviewService(store, catalog().rubric)
    rows = {r.review_id: r for r in svc.page("approved").rows}
    edited = next(iter(seeded.edited))
    view = svc.get(edited)
    assert rows[edited].edits == 1 and rows[edited].overall == view.current.overall < rows[edited].ai_overall
    assert rows[edited].passed == view.current.passed
    plain = next(r for r in rows.values() if r.review_id not in seeded.edited)
    assert plain.edits == 0 and plain.overall == plain.ai_overall


def _calibration(store: Store, tmp_path: Any) -> CalibrationService:
    svc = ReviewService(store, catalog().rubric)
    return CalibrationService(store, catalog(), svc, anchors_dir=tmp_path, recent=20)


@pytest.mark.slow
def test_drift_is_weekly_page_by_page_and_agrees_with_the_replayed_grades(store: Store, tmp_path: Any) -> None:
    seed(store, 24 // HOURS_APART * 7 * 60)  # 60 weeks of sessions
    calibration = _calibration(store, tmp_path)
    views = calibration.reviews.queue(ReviewStatus.APPROVED)
    weekly: dict[str, list[float]] = {}
    for v in views:  # the grade with every edit replayed, as a facilitator sees it
        when = v.decided_at  # as the database's time zone has it, which also says where its weeks start
        assert when is not None
        week = (when - timedelta(days=when.weekday())).date().isoformat()
        changed = sum(a.level != c.level for a, c in zip(v.ai_grade.criteria, v.current.criteria))
        weekly.setdefault(week, []).append(changed / len(v.current.criteria))
    expected = [(w, len(s), round(sum(s) / len(s), 4)) for w, s in sorted(weekly.items())]
    first = calibration.drift()
    assert first.weeks == len(expected) > 50 and first.page == 1
    assert [(p.week, p.reviews, p.disagreement) for p in first.points] == expected[-50:]  # the newest, oldest first
    assert first.showing() == f"showing weeks 1-50 of {len(expected)}, newest first"
    assert first.has_older and not first.has_newer
    older = calibration.drift(page=2)
    assert [(p.week, p.reviews, p.disagreement) for p in older.points] == expected[:-50] and not older.has_older
    assert older.has_newer and any(p.disagreement for p in older.points)
    recent = sorted(views, key=lambda v: (v.decided_at, v.review_id))[-20:]
    shares = [sum(a.level != c.level for a, c in zip(v.ai_grade.criteria, v.current.criteria)) / len(v.current.criteria)
              for v in recent]
    report = calibration.report()
    assert report.recent_disagreement == round(sum(shares) / len(shares), 4)
    assert report.drift_weeks == len(expected) and [p.week for p in report.drift] == [p.week for p in first.points]


@pytest.mark.slow
def test_statements_per_page_do_not_grow_with_the_sessions_stored(store: Store, tmp_path: Any) -> None:
    svc = ReviewService(store, catalog().rubric)
    calibration = _calibration(store, tmp_path)
    statements = Statements(store)
    reads: dict[str, Callable[[], Any]] = {
        "queue page": lambda: svc.page("pending"),
        "queue page 2": lambda: svc.page("pending", page=2),
        "all page": lambda: svc.page(None),
        "approved page": lambda: svc.page("approved"),
        "one learner": lambda: svc.page("pending", learner="ana"),
        "pending count": lambda: svc.count("pending", learner="ana"),
        "one review": lambda: svc.get(svc.page("approved").rows[0].review_id),
        "one learner's approved views": lambda: svc.queue("approved", learner="ana"),
        "drift": lambda: calibration.drift(),
        "report": lambda: calibration.report(),
    }
    seeded = seed(store, 200)
    small = {name: statements.of(read) for name, read in reads.items()}
    seed(store, 1800, seeded)
    large = {name: statements.of(read) for name, read in reads.items()}
    assert large == small
    assert max(small.values()) <= 10, small


@dataclass
class SignedIn:
    """What the page handlers read from a Gradio request: the signed-in username."""

    username: str


@pytest.mark.slow
def test_the_review_and_calibrate_pages_open_on_the_first_page_with_its_count() -> None:
    from roleplay.ui import calibrate_page, review_page
    from roleplay.ui.common import ctx

    store = ctx().store
    store.add_person("fac", "facilitator")
    seeded = seed(store, 24 // HOURS_APART * 7 * 60)
    pending = newest_first(seeded, {r for r, s in seeded.status.items() if s == "pending"})
    fac = SignedIn("fac")
    _, _, rows, count, newer, older, page, _jobs = review_page.enter("pending", fac)
    assert [r[0] for r in rows] == pending[:50] and rows[0][1:4] == [seeded.learner[pending[0]], "Missed deadlines",
                                                                     "novice"]
    assert count == f"showing 1-50 of {len(pending):,} pending reviews, newest first" and page == 1
    assert newer["interactive"] is False and older["interactive"] is True
    rows, count, newer, older, page, _jobs = review_page.older_page("pending", page, fac)
    assert [r[0] for r in rows] == pending[50:100] and count.startswith("showing 51-100 of ") and page == 2
    assert newer["interactive"] is True
    assert review_page.newer_page("pending", page, fac)[0][0][0] == pending[0]
    assert review_page.first_page("all", fac)[1] == f"showing 1-50 of {len(seeded.status):,} reviews, newest first"

    out = calibrate_page.enter(fac)
    plot, weeks, newer, older, page = out[7 + calibrate_page.SLOTS + 4], *out[7 + calibrate_page.SLOTS + 6:][:4]
    assert len(plot["value"]) == 50 and weeks.startswith("showing weeks 1-50 of ") and page == 1
    assert newer["interactive"] is False and older["interactive"] is True
    plot, weeks, newer, older, page = calibrate_page.older_weeks(page, fac)
    assert page == 2 and weeks.endswith(", newest first") and len(plot["value"]) < 50 and older["interactive"] is False
