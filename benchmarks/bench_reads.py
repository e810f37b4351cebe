"""10. Reads at scale: the review queue, review "all" and calibrate drift on 1k / 10k / 100k stored sessions.

Each size is seeded into a fresh temporary SQLite database through the store (`Store(url)` runs the migrations,
then bulk inserts of people, sessions, grades, reviews and review events, the shape the app writes). The reads are the
product's own: `ReviewService.page` (pending queue and "all", first page of 50, newest first) and
`CalibrationService.drift` (first page of weeks). Each is compared with an anchor measured in the same run on the
same database: one joined SELECT of the same rows written with plain SQLAlchemy Core. The statements each read sends
are counted with a `before_cursor_execute` listener. 100k sessions only without --quick.

Usage inside the run: `run(quick)`; alone: `python benchmarks/bench_reads.py [--quick]`.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import ROOT, SectionResult, median, ms, verdict

GOAL_SECONDS = 0.5  # review queue, first page, at 100k sessions
SESSIONS_PER_LEARNER = 20
BATCH = 5_000
SPAN_DAYS = 730  # the sessions are spread over two years: about 104 weeks of approved reviews


def _grades(catalog: Any) -> dict[str, dict[str, Any]]:
    """A realistic stored grade per scenario (every criterion with checks, evidence, rationale and a better line)."""
    from roleplay.grader import CheckResult, CriterionGrade, finish_grade

    out = {}
    for scn in catalog.scenarios.values():
        rubric = catalog.rubric_for(scn)
        criteria = [CriterionGrade(criterion_id=c.id, level=2 + i % 2,
                                   checks=[CheckResult(id=k.id, answer="partial") for k in c.checks],
                                   evidence=["So you're starting later and catching up in the evenings."],
                                   rationale="The learner reflected what they heard but did not ask what would help; "
                                             "the reflection was accurate and the tone was calm.",
                                   better_alternative=c.example_lines[0])
                    for i, c in enumerate(rubric.criteria)]
        out[scn.id] = finish_grade(rubric, "offline", criteria).model_dump(mode="json")
    return out


def seed(store: Any, catalog: Any, sessions: int, *, seed_value: int = 7) -> dict[str, int]:
    """Store `sessions` graded sessions with their reviews (half pending, 40% approved, a fifth of those edited first).

    Returns how many rows of each kind were written.
    """
    from sqlalchemy import insert

    from roleplay.models import GradeRow, Person, PracticeSession, ReviewEvent, ReviewRow

    rnd = random.Random(seed_value)
    grades = _grades(catalog)
    scenarios = sorted(grades)
    learners = max(5, sessions // SESSIONS_PER_LEARNER)
    start = datetime(2025, 1, 6, 9, tzinfo=UTC)
    step = timedelta(days=SPAN_DAYS) / sessions
    counts = {"sessions": 0, "pending": 0, "approved": 0, "rejected": 0, "edited": 0}
    with store.engine.begin() as conn:
        conn.execute(insert(Person), [{"id": i, "username": f"learner{i:05d}", "display_name": f"Learner {i}",
                                       "role": "learner", "created_at": start} for i in range(1, learners + 1)]
                     + [{"id": learners + k, "username": f"facilitator{k}", "display_name": f"Facilitator {k}",
                         "role": "facilitator", "created_at": start} for k in (1, 2)])
        facilitators = (learners + 1, learners + 2)
        for lo in range(0, sessions, BATCH):
            rows: dict[str, list[dict[str, Any]]] = {"s": [], "g": [], "r": [], "e": []}
            for i in range(lo, min(sessions, lo + BATCH)):
                sid, gid, rid = f"s{i:031d}", f"g{i:031d}", i + 1
                scn = scenarios[i % len(scenarios)]
                began = start + step * i
                graded = began + timedelta(minutes=20)
                roll = rnd.random()
                status = "pending" if roll < 0.5 else "approved" if roll < 0.9 else "rejected"
                result = grades[scn]
                rows["s"].append({"id": sid, "person_id": 1 + i % learners, "scenario_id": scn,
                                  "level": ("novice", "intermediate", "expert")[i % 3], "engine": "offline",
                                  "status": "ended", "end_reason": "learner", "state": {}, "started_at": began,
                                  "ended_at": graded})
                rows["g"].append({"id": gid, "session_id": sid, "judge": "offline", "rubric_id": result["rubric_id"],
                                  "result": result, "overall": result["overall"], "passed": result["passed"],
                                  "created_at": graded})
                decided = graded + timedelta(hours=rnd.randint(1, 72)) if status != "pending" else None
                who = facilitators[i % 2]
                version = 0
                if status == "approved" and rnd.random() < 0.2:
                    first = result["criteria"][0]
                    rows["e"].append({"review_id": rid, "actor_id": who, "action": "edit", "comment": "too generous",
                                      "payload": {"changes": [{"criterion_id": first["criterion_id"],
                                                               "level": 1 if first["level"] > 1 else 4}]},
                                      "created_at": graded + timedelta(minutes=30)})
                    version += 1
                    counts["edited"] += 1
                if decided is not None:
                    approved = status == "approved"
                    rows["e"].append({"review_id": rid, "actor_id": who, "action": "approve" if approved else "reject",
                                      "comment": None if approved else "cut short", "payload": {"changes": []},
                                      "created_at": decided})
                    version += 1
                rows["r"].append({"id": rid, "grade_id": gid, "open_session_id": None if status == "rejected" else sid,
                                  "status": status, "version": version, "decided_by": who if decided else None,
                                  "decided_at": decided, "comment": None, "created_at": graded})
                counts[status] += 1
                counts["sessions"] += 1
            conn.execute(insert(PracticeSession), rows["s"])
            conn.execute(insert(GradeRow), rows["g"])
            conn.execute(insert(ReviewRow), rows["r"])
            if rows["e"]:
                conn.execute(insert(ReviewEvent), rows["e"])
    return counts


class Statements:
    """Counts the statements an engine sends (a `before_cursor_execute` listener)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.n = 0
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_: Any) -> None:
        self.n += 1

    def of(self, fn: Callable[[], Any]) -> int:
        """How many statements one call of `fn` sends."""
        before = self.n
        fn()
        return self.n - before


def _timed(fn: Callable[[], Any], anchor: Callable[[], Any], n: int) -> tuple[float, float]:
    """Median seconds of `fn` and of `anchor`, measured in alternating order after one warm-up each."""
    fn(), anchor()
    a: list[float] = []
    b: list[float] = []
    for i in range(n):
        for call, out in ((fn, a), (anchor, b)) if i % 2 == 0 else ((anchor, b), (fn, a)):
            t = time.perf_counter()
            call()
            out.append(time.perf_counter() - t)
    return median(a), median(b)


def _anchors(engine: Any) -> dict[str, Callable[[], Any]]:
    """The same rows as each read, in one joined SELECT written with plain SQLAlchemy Core."""
    from sqlalchemy import func, select

    from roleplay.models import GradeRow, Person, PracticeSession, ReviewRow

    r, g, s, p = ReviewRow.__table__, GradeRow.__table__, PracticeSession.__table__, Person.__table__
    joined = (select(r.c.id, g.c.session_id, p.c.username, s.c.scenario_id, s.c.level, r.c.status, r.c.created_at,
                     r.c.decided_at, g.c.overall, g.c.passed)
              .select_from(r.join(g, g.c.id == r.c.grade_id).join(s, s.c.id == g.c.session_id)
                           .join(p, p.c.id == s.c.person_id))
              .order_by(r.c.created_at.desc(), r.c.id.desc()).limit(50))
    week = func.date(r.c.decided_at, "-6 days", "weekday 1")
    weekly = (select(week.label("week"), func.count()).where(r.c.status == "approved").group_by("week")
              .order_by(week.desc()).limit(50))

    def rows(stmt: Any) -> Callable[[], Any]:
        def call() -> Any:
            with engine.connect() as conn:
                return conn.execute(stmt).all()
        return call

    return {"pending": rows(joined.where(r.c.status == "pending")), "all": rows(joined), "drift": rows(weekly)}


def _size(res: SectionResult, n_sessions: int, reps: int, folder: Path, catalog: Any) -> dict[str, float]:
    """Seed one database and measure every read on it; returns the product's medians in seconds."""
    from roleplay.calibration import CalibrationService
    from roleplay.review import PAGE_SIZE, ReviewService
    from roleplay.store import Store

    store = Store(f"sqlite:///{folder / f'reads-{n_sessions}.db'}")
    try:
        t = time.perf_counter()
        counts = seed(store, catalog, n_sessions)
        seeded = time.perf_counter() - t
        reviews = ReviewService(store, catalog.rubric)
        calibration = CalibrationService(store, catalog, reviews, anchors_dir=folder)
        anchors = _anchors(store.engine)
        statements = Statements(store.engine)
        reads: dict[str, tuple[str, Callable[[], Any]]] = {
            "pending": ("review queue", lambda: reviews.page("pending")),
            "all": ("review all", lambda: reviews.page(None)),
            "drift": ("calibrate drift", lambda: calibration.drift()),
        }
        out: dict[str, float] = {}
        label = f"{n_sessions // 1000}k"
        res.line(f"{label} sessions seeded in {seeded:.1f} s ({counts['pending']:,} pending, {counts['approved']:,} "
                 f"approved of which {counts['edited']:,} edited, {counts['rejected']:,} rejected)")
        for name, (title, read) in reads.items():
            sent = statements.of(read)
            product, anchor = _timed(read, anchors[name], reps)
            out[name] = product
            res.line(f"  {title}, first page: {ms(product)} vs {ms(anchor)} one Core SELECT "
                     f"({product / anchor:.1f}x), {sent} statements")
            goal = name == "pending" and n_sessions >= 100_000
            res.row(f"{label} sessions: {title} first page vs one Core SELECT",
                    f"{ms(product)} vs {ms(anchor)} ({product / anchor:.1f}x)",
                    f"< {GOAL_SECONDS * 1000:.0f} ms" if goal else "", verdict(product < GOAL_SECONDS) if goal else "")
        last = reviews.page("pending", page=-(-reviews.count("pending") // PAGE_SIZE))
        older = _timed(lambda: reviews.page("pending", page=last.page), anchors["pending"], max(3, reps // 3))[0]
        learner = reviews.page("pending").rows[0].learner
        one_learner = _timed(lambda: reviews.page("pending", learner=learner), anchors["pending"], reps)[0]
        opened = _timed(lambda: reviews.get(last.rows[0].review_id), anchors["pending"], reps)[0]
        res.line(f"  last page of the queue ({last.showing()}): {ms(older)}; one learner's queue: "
                 f"{ms(one_learner)}; one review opened (grade and history): {ms(opened)}")
        return out
    finally:
        store.close()


def run(quick: bool = False) -> SectionResult:
    """Seed 1k and 10k sessions (and 100k without `quick`) and measure the list reads on each."""
    import tempfile

    from roleplay.catalog import load_catalog

    res = SectionResult("10", "Reads at scale (review queue, review all, calibrate drift)")
    catalog = load_catalog([ROOT / "scenarios", ROOT / "rubrics"])
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    reps = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="roleplay-reads-") as tmp:
        for n in sizes:
            _size(res, n, reps, Path(tmp), catalog)
    return res


if __name__ == "__main__":
    from benchlib import isolate

    tmp_root = isolate()
    try:
        run(quick="--quick" in sys.argv)
    finally:
        import shutil

        shutil.rmtree(tmp_root, ignore_errors=True)
