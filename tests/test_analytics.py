"""Cohort analytics (`roleplay.analytics`): every figure on a small seeded cohort whose answers are worked out by hand
below, the filters, the CSV files, an empty store, who may see them, the command line and the page's handlers, and at
scale the same figures as the approved results give one by one, in as many statements at 1,000 sessions as at 200."""

from __future__ import annotations

import csv
import io
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from content import catalog
from sqlalchemy import event

from roleplay.analytics import AnalyticsService
from roleplay.cohort import TABLES, CohortFilter, FilterError, csv_text, write_csv, zip_bytes
from roleplay.errors import NotFoundError, PermissionDenied
from roleplay.grader import CriterionGrade, finish_grade
from roleplay.models import GradeRow, Person, PracticeSession, ReviewEvent, ReviewRow, new_id
from roleplay.store import Store

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)  # a Saturday
JOINED = datetime(2025, 1, 1, tzinfo=UTC)
MD, SC = "missed-deadlines", "sceptical-senior"
ACTIONS = {"approved": "approve", "rejected": "reject"}
PEOPLE = (("ana", "learner", "Ana Silva"), ("ben", "learner", "Ben Okoro"), ("cat", "learner", "Cat Wu"),
          ("dan", "learner", "Dan Roe"), ("fay", "facilitator", "Fay Jones"), ("gus", "facilitator", "Gus Lee"),
          ("dee", "designer", "Dee Patel"))


# --- seeding ----------------------------------------------------------------------------------------------------

def add_people(store: Store, people: Iterable[tuple[str, str, str]] = PEOPLE, joined: datetime = JOINED) -> None:
    """People who joined on `joined` (the store would stamp them with today)."""
    with store.session() as db:
        for username, role, name in people:
            db.add(Person(username=username, role=role, display_name=name, created_at=joined))


def record(store: Store, learner: str, scenario_id: str, level: str, started: datetime, levels: list[int] | None = None,
           *, review: str = "pending", by: str | None = None, hours: float = 1.0, edits: dict[str, int] | None = None,
           ended: bool = True, graded_after: timedelta = timedelta(minutes=25),
           altered: Callable[[dict[str, Any]], None] | None = None) -> str:
    """One practice session as the app stores it, with chosen times: started, ended 20 minutes later, graded with
    `levels` (one per criterion of the rubric, in order; no grade when None), and its review: pending, or approved or
    rejected by `by` `hours` after the grade, after `by`'s edits of criterion levels when given (None: the feedback
    only). `altered` may change the stored grade's JSON first."""
    scn = catalog().scenario(scenario_id)
    rubric = catalog().rubric_for(scn)
    with store.session() as db:
        person = db.query(Person).filter_by(username=learner).one()
        sid = new_id()
        db.add(PracticeSession(id=sid, person_id=person.id, scenario_id=scenario_id, level=level, engine="offline",
                               status="ended" if ended else "active", end_reason="learner" if ended else None,
                               state={}, started_at=started,
                               ended_at=started + timedelta(minutes=20) if ended else None))
        db.flush()  # rows go in the order they are added (no relationships tell the session otherwise)
        if levels is None:
            return sid
        graded = started + graded_after
        criteria = [CriterionGrade(criterion_id=c.id, level=lv, checks=[], evidence=[], rationale="As heard.",
                                   better_alternative=c.example_lines[0]) for c, lv in zip(rubric.criteria, levels,
                                                                                           strict=True)]
        grade = finish_grade(rubric, "offline", criteria)
        gid = new_id()
        result = grade.model_dump(mode="json")
        if altered:
            altered(result)
        db.add(GradeRow(id=gid, session_id=sid, judge="offline", rubric_id=rubric.id, result=result,
                        overall=result["overall"], passed=result["passed"], created_at=graded))
        db.flush()
        facilitator = db.query(Person).filter_by(username=by).one() if by else None
        decided = graded + timedelta(hours=hours) if review != "pending" else None
        row = ReviewRow(grade_id=gid, open_session_id=None if review == "rejected" else sid, status=review,
                        version=int(bool(edits)) + int(decided is not None),
                        decided_by=facilitator.id if decided and facilitator else None, decided_at=decided,
                        comment="cut short" if review == "rejected" else None, created_at=graded)
        db.add(row)
        db.flush()
        if edits and facilitator:
            db.add(ReviewEvent(review_id=row.id, actor_id=facilitator.id, action="edit", comment="recalibrated",
                               payload={"changes": [{"criterion_id": c, **({"level": lv} if lv is not None else
                                                                             {"feedback": "Reworded."})}
                                                    for c, lv in edits.items()]},
                               created_at=graded + timedelta(minutes=5)))
        if decided and facilitator:
            db.add(ReviewEvent(review_id=row.id, actor_id=facilitator.id, action=ACTIONS[review],
                               payload={"changes": []}, created_at=decided))
    return sid


def day(month: int, dom: int, hour: int = 9) -> datetime:
    return datetime(2025, month, dom, hour, tzinfo=UTC)


def seed_cohort(store: Store, with_people: bool = True) -> dict[str, str]:
    """The hand-worked cohort (missed-deadlines: criteria weighted 1, 1.5, 1, 1, 1 = 5.5; pass at 2.5 with the must-pass
    candid-feedback at 2 or more), and its people unless they are there already. Returns the session ids by name."""
    if with_people:
        add_people(store)
    s = {}
    s["a1"] = record(store, "ana", MD, "novice", day(1, 6, 10), [2, 2, 2, 2, 2], review="approved", by="fay", hours=10)
    # 2.0 edited to [3, 4, 2, 2, 2]: (3 + 6 + 2 + 2 + 2) / 5.5 = 2.727, a pass
    s["a2"] = record(store, "ana", MD, "intermediate", day(1, 14), [2, 2, 2, 2, 2], review="approved", by="fay",
                     hours=20, edits={"open-questions": 3, "reflective-listening": 4})
    s["b1"] = record(store, "ben", MD, "novice", day(1, 15), [2, 2, 2, 1, 2], review="approved", by="gus", hours=4)
    # a pass edited to [3, 3, 3, 1, 3]: 2.636, but candid-feedback at 1 fails the must-pass
    s["b2"] = record(store, "ben", MD, "novice", day(1, 22), [3, 3, 3, 3, 3], review="approved", by="gus", hours=30,
                     edits={"candid-feedback": 1})
    s["b3"] = record(store, "ben", MD, "novice", day(1, 29), [2, 2, 2, 2, 2])  # pending for 31 days
    s["b4"] = record(store, "ben", MD, "novice", day(2, 27), [3, 3, 3, 3, 3])  # pending for 2 days
    s["c1"] = record(store, "cat", SC, "expert", day(2, 3), [4, 4, 4, 4, 4], review="rejected", by="fay", hours=2)
    s["c2"] = record(store, "cat", SC, "expert", day(2, 4), ended=False)
    s["c3"] = record(store, "cat", MD, "novice", day(2, 26), [4, 3, 3, 3, 3],  # pending for 18 hours
                     graded_after=timedelta(days=2, hours=9))
    return s


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty store."""
    s = Store(f"sqlite:///{tmp_path / 'cohort.db'}")
    yield s
    s.close()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, dict[str, str]]]:
    """A store with the hand-worked cohort, shared by the tests that only read it."""
    s = Store(f"sqlite:///{tmp_path_factory.mktemp('cohort') / 'cohort.db'}")
    ids = seed_cohort(s)
    yield s, ids
    s.close()


def service(store: Store) -> AnalyticsService:
    return AnalyticsService(store, catalog(), clock=lambda: NOW)


# --- the figures, by hand ----------------------------------------------------------------------------------------

def test_every_figure_matches_the_hand_worked_cohort(cohort: tuple[Store, dict[str, str]]) -> None:
    check_the_hand_worked_figures(cohort[0])


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_every_figure_matches_the_hand_worked_cohort_on_postgresql(db_url: str) -> None:
    store = Store(db_url)
    try:
        seed_cohort(store)
        check_the_hand_worked_figures(store)
    finally:
        store.close()


def check_the_hand_worked_figures(store: Store) -> None:
    report = service(store).report()
    assert report.learners == 3
    assert [(w.week, w.started, w.ended, w.graded) for w in report.weekly] == [
        ("2025-01-06", 1, 1, 1), ("2025-01-13", 2, 2, 2), ("2025-01-20", 1, 1, 1), ("2025-01-27", 1, 1, 1),
        ("2025-02-03", 2, 1, 1), ("2025-02-10", 0, 0, 0), ("2025-02-17", 0, 0, 0), ("2025-02-24", 2, 2, 2)]
    assert [(r.scenario, r.level, r.started, r.ended, r.graded, r.approved, r.passed, r.completion_rate, r.pass_rate)
            for r in report.rates] == [
        ("Missed deadlines", "novice", 6, 6, 6, 3, 0, 1.0, 0.0),  # ben's edited pass fails the must-pass
        ("Missed deadlines", "intermediate", 1, 1, 1, 1, 1, 1.0, 1.0),  # ana's edited fail passes
        ("The sceptical senior", "expert", 2, 1, 1, 0, 0, 0.5, 0.0)]  # a rejected pass never counts
    assert [(c.criterion, c.results, c.mean_level) for c in report.heatmap] == [
        ("Open questions", 4, 2.5), ("Reflective listening", 4, 2.75), ("Empathy without rescuing", 4, 2.25),
        ("Candid, respectful feedback", 4, 1.5), ("Agreeing next steps", 4, 2.25)]
    assert {c.scenario_id for c in report.heatmap} == {MD}  # cat's only grade there was rejected
    assert [(t.week, t.approved) for t in report.trend] == [("2025-01-06", 1), ("2025-01-13", 2), ("2025-01-20", 1)]
    assert [t.mean_overall for t in report.trend] == pytest.approx([2.0, (2.727 + 1.818) / 2, 2.636], abs=1e-3)
    assert [(s.learner, s.scenario_id, s.attempts, s.approved) for s in report.stuck] == [("ben", MD, 4, 2)]
    assert [(i.learner, i.sessions, i.days_inactive) for i in report.inactive] == [("dan", 0, None), ("ana", 2, 46)]
    assert [(q.age, q.pending) for q in report.queue] == [
        ("under 1 day", 1), ("1-3 days", 1), ("3-7 days", 0), ("1-2 weeks", 0), ("over 2 weeks", 1)]
    assert report.oldest_pending_hours == pytest.approx(31 * 24 + 2 + 35 / 60, abs=0.01)
    assert [(t.facilitator, t.decisions, t.median_hours) for t in report.turnaround] == [("fay", 3, 10.0),
                                                                                         ("gus", 2, 17.0)]
    assert [(a.week, a.facilitator, a.reviews, a.criteria, a.unchanged, a.agreement) for a in report.agreement] == [
        ("2025-01-06", "fay", 1, 5, 5, 1.0), ("2025-01-13", "fay", 1, 5, 3, 0.6), ("2025-01-13", "gus", 1, 5, 5, 1.0),
        ("2025-01-20", "gus", 1, 5, 4, 0.8)]
    assert report.overall_agreement() == 0.85
    assert report.summary()[1] == ("sessions: 9 started, 8 ended (89%), 8 graded, 4 approved, 1 approved passes")


def test_edited_passes_agree_with_the_review_workflow(cohort: tuple[Store, dict[str, str]]) -> None:
    """The pass the figures count for an edited review is the one the facilitator saw when approving it."""
    from roleplay.review import ReviewService

    store, ids = cohort
    reviews = ReviewService(store, catalog().rubric)
    current = {v.session_id: v.current for v in reviews.queue("approved")}
    assert current[ids["a2"]].passed and current[ids["a2"]].overall == 2.727
    assert not current[ids["b2"]].passed and current[ids["b2"]].failed_must_pass == ["candid-feedback"]
    rates = {r.level: r.passed for r in service(store).report(CohortFilter(scenario_id=MD)).rates}
    assert rates == {"novice": 0, "intermediate": 1}


def test_the_filters_pick_sessions_by_start_day_and_scenario(cohort: tuple[Store, dict[str, str]]) -> None:
    store, _ = cohort
    january = service(store).report(CohortFilter(start=date(2025, 1, 13), end=date(2025, 1, 26)))
    assert [(w.week, w.started) for w in january.weekly] == [("2025-01-13", 2), ("2025-01-20", 1)]
    assert [(r.level, r.started, r.approved, r.passed) for r in january.rates] == [("novice", 2, 2, 0),
                                                                                   ("intermediate", 1, 1, 1)]
    assert january.queue == [] and january.oldest_pending_hours is None
    # inactive as of the range's end: cat had not practised by then
    assert [(i.learner, i.last_session) for i in january.inactive] == [("cat", None), ("dan", None)]
    senior = service(store).report(CohortFilter(scenario_id=SC, stuck_attempts=2))
    assert [(r.level, r.started, r.ended) for r in senior.rates] == [("expert", 2, 1)]
    assert senior.heatmap == [] and senior.trend == [] and senior.agreement == []
    assert [(s.learner, s.attempts, s.approved) for s in senior.stuck] == [("cat", 2, 0)]
    assert [(t.facilitator, t.decisions, t.median_hours) for t in senior.turnaround] == [("fay", 1, 2.0)]
    assert "sessions started any day, scenario sceptical-senior" in senior.summary()[0]


def test_an_edited_approval_that_passes_takes_a_learner_off_the_stuck_list(
        cohort: tuple[Store, dict[str, str]]) -> None:
    store, _ = cohort
    stuck = service(store).report(CohortFilter(stuck_attempts=2)).stuck
    assert [(s.learner, s.scenario_id) for s in stuck] == [("ben", MD), ("cat", SC)]  # ana's 2nd was edited to pass


def test_confirmed_evidence_makes_a_pass_and_a_grade_of_a_longer_rubric_still_counts(store: Store) -> None:
    """A grade the grader could not verify (candid feedback unsupported) does not pass until a facilitator confirms
    it; a grade stored when the rubric had more criteria is still averaged, those criteria under their ids."""
    add_people(store)

    def unverified(result: dict[str, Any]) -> None:
        result["criteria"][3]["supported"] = False
        result["passed"] = False

    def longer(result: dict[str, Any]) -> None:
        for name in ("retired", "also-retired"):
            result["criteria"].append({**result["criteria"][0], "criterion_id": name, "level": 4})

    record(store, "ana", MD, "novice", day(1, 6), [3, 3, 3, 3, 3], review="approved", by="fay",
           edits={"candid-feedback": None}, altered=unverified)
    record(store, "ben", MD, "novice", day(1, 7), [1, 1, 1, 1, 1], review="approved", by="fay", altered=longer)
    report = service(store).report()
    assert [(r.approved, r.passed) for r in report.rates] == [(2, 1)]
    assert [(c.criterion_id, c.results, c.mean_level) for c in report.heatmap] == [
        ("open-questions", 2, 2.0), ("reflective-listening", 2, 2.0), ("empathy", 2, 2.0), ("candid-feedback", 2, 2.0),
        ("next-steps", 2, 2.0), ("also-retired", 1, 4.0), ("retired", 1, 4.0)]
    assert [(a.criteria, a.unchanged) for a in report.agreement] == [(12, 12)]  # a feedback edit keeps the level


def test_typed_filters_are_checked_with_one_line_each() -> None:
    assert CohortFilter.parse(" 2025-01-06 ", "2025-02-01T00:00", "", 4, 30.0) == CohortFilter(
        start=date(2025, 1, 6), end=date(2025, 2, 1), stuck_attempts=4, inactive_days=30)
    with pytest.raises(FilterError, match="the start date '6/1/2025' is not a date; write it as YYYY-MM-DD"):
        CohortFilter.parse("6/1/2025")
    with pytest.raises(FilterError, match=r"ends \(2025-01-01\) before it starts \(2025-02-01\)"):
        CohortFilter.parse("2025-02-01", "2025-01-01")
    with pytest.raises(FilterError, match="stuck attempts must be a whole number from 2 to 100"):
        CohortFilter.parse(stuck_attempts=1)


def test_an_unknown_scenario_is_named(cohort: tuple[Store, dict[str, str]]) -> None:
    store, _ = cohort
    with pytest.raises(NotFoundError, match="no scenario 'nope'; `roleplay scenarios` lists them"):
        service(store).report(CohortFilter(scenario_id="nope"))


def test_an_empty_store_gives_empty_figures_and_says_so(store: Store) -> None:
    add_people(store, [("dan", "learner", "Dan Roe"), ("fay", "facilitator", "Fay Jones")])
    report = service(store).report(viewer="fay")
    assert report.empty and report.learners == 0
    assert (report.weekly, report.rates, report.heatmap, report.trend, report.stuck, report.queue, report.turnaround,
            report.agreement) == ([], [], [], [], [], [], [], [])
    assert [i.learner for i in report.inactive] == ["dan"]
    assert report.summary() == ["no practice sessions yet (sessions started any day, every scenario)",
                                "1 learner account(s) without a session"]
    header = "scenario_id,scenario,criterion_id,criterion,results,mean_level\n"
    assert csv_text("criterion-heatmap", report.heatmap) == header  # a file with its columns, even empty


@pytest.mark.parametrize(("who", "role"), [("ana", "learner"), ("dee", "designer")])
def test_only_facilitators_see_cohort_analytics(cohort: tuple[Store, dict[str, str]], who: str, role: str) -> None:
    store, _ = cohort
    with pytest.raises(PermissionDenied, match=f"cohort analytics are for facilitators; '{who}' is a {role}"):
        service(store).report(viewer=who)
    assert service(store).report(viewer="gus").learners == 3


# --- CSV ----------------------------------------------------------------------------------------------------------

def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_each_table_is_one_csv_file_with_the_figures(cohort: tuple[Store, dict[str, str]], tmp_path: Path) -> None:
    store, _ = cohort
    report = service(store).report()
    paths = write_csv(report, tmp_path / "out")
    assert [p.name for p in paths] == [f"{name}.csv" for name in TABLES]
    heat = rows_of((tmp_path / "out" / "criterion-heatmap.csv").read_text(encoding="utf-8"))
    assert [(r["criterion_id"], r["results"], r["mean_level"]) for r in heat] == [
        ("open-questions", "4", "2.5"), ("reflective-listening", "4", "2.75"), ("empathy", "4", "2.25"),
        ("candid-feedback", "4", "1.5"), ("next-steps", "4", "2.25")]
    inactive = rows_of((tmp_path / "out" / "learners-inactive.csv").read_text(encoding="utf-8"))
    assert inactive[1] == {"learner": "ana", "name": "Ana Silva", "sessions": "2",
                           "last_session": "2025-01-14 09:00:00", "days_inactive": "46"}
    assert inactive[0]["last_session"] == "" and inactive[0]["days_inactive"] == ""
    with zipfile.ZipFile(io.BytesIO(zip_bytes(report))) as archive:
        assert archive.namelist() == [p.name for p in paths]
        assert archive.read("learners-stuck.csv").decode() == (tmp_path / "out" / "learners-stuck.csv").read_text()


def test_a_name_a_spreadsheet_would_run_as_a_formula_is_written_as_text(store: Store) -> None:
    add_people(store, [("eve", "learner", "=HYPERLINK(\"http://x\")")])
    for n in range(3):
        record(store, "eve", MD, "novice", day(2, 3 + n), [1, 1, 1, 1, 1])
    report = service(store).report()
    assert rows_of(csv_text("learners-stuck", report.stuck))[0]["name"] == "'=HYPERLINK(\"http://x\")"


# --- the command line -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_command_prints_a_summary_and_exports_csv(tmp_path: Path) -> None:
    from roleplay.cli import main
    from roleplay.context import AppContext

    app = AppContext()
    seed_cohort(app.store)
    app.close()
    runner = CliRunner()
    out = runner.invoke(main, ["analytics", "--scenario", MD])
    assert out.exit_code == 0, out.output
    assert "sessions: 7 started, 7 ended (100%), 7 graded, 4 approved, 1 approved passes" in out.output
    assert "learners stuck (3+ attempts, no approved pass): 1" in out.output
    out = runner.invoke(main, ["analytics", "export", "--out", str(tmp_path / "csv"), "--to", "2025-01-31"])
    assert out.exit_code == 0, out.output
    assert "9 CSV files written to" in out.output
    rates = rows_of((tmp_path / "csv" / "rates-per-scenario-level.csv").read_text(encoding="utf-8"))
    assert [(r["level"], r["started"]) for r in rates] == [("novice", "4"), ("intermediate", "1")]
    bad = runner.invoke(main, ["analytics", "--from", "yesterday"])
    assert bad.exit_code == 1
    assert bad.output.strip() == ("error: the start date 'yesterday' is not a date; write it as YYYY-MM-DD, or leave "
                                  "it empty for no limit")


# --- the page's handlers ------------------------------------------------------------------------------------------

@dataclass
class SignedIn:
    """What the page handlers read from a Gradio request: the signed-in username."""

    username: str


@pytest.mark.slow
def test_the_page_shows_figures_to_facilitators_refuses_learners_and_warns_on_a_bad_date() -> None:
    from roleplay.ui import analytics_page
    from roleplay.ui.common import ctx

    store = ctx().store
    add_people(store)
    out = analytics_page.enter("", "", "", 3, 14, SignedIn("fay"))
    gate, body, page = out[0], out[1], out[2 + analytics_page.FILTERS:]
    assert gate == "" and body["visible"] is True and len(page) == analytics_page.OUTPUTS
    assert page[0].startswith("**No practice sessions yet.**")
    assert "No approved results yet" in page[4]  # the heat map's empty state
    assert page[1]["visible"] is False  # no plot without data
    refused = analytics_page.enter("", "", "", 3, 14, SignedIn("ana"))
    assert refused[0] == ("**Not available:** The Analytics page is for facilitators; you are signed in as 'ana', a "
                          "learner.") and refused[1]["visible"] is False
    seed_cohort(store, with_people=False)
    out = analytics_page.show("2025-01-01", "", MD, 3, 14, SignedIn("fay"))
    assert "**3 learners**, 7 sessions started" in out[0]
    assert out[1]["visible"] is True and len(out[1]["value"]) == 3 * 8  # started, ended, graded for 8 weeks
    assert "Reflective listening" in out[4] and "2.75" in out[4]
    files = out[13]["value"]
    assert [Path(f).name for f in files][2] == "criterion-heatmap-fay.csv"
    assert "Reflective listening,4,2.75" in Path(files[2]).read_text(encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = analytics_page.show("31/12/2025", "", "", 3, 14, SignedIn("fay"))
    assert kept == {"__type__": "update"}  # the page stays as it is
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == [
        "The start date '31/12/2025' is not a date; write it as YYYY-MM-DD, or leave it empty for no limit"]
    with warnings.catch_warnings(record=True) as caught:  # coming back to the tab with that date still typed
        warnings.simplefilter("always")
        back = analytics_page.enter("31/12/2025", "", MD, 3, 14, SignedIn("fay"))
    assert back[2:4] == ("", "") and back[4]["value"] == "" and "**3 learners**, 9 sessions" in back[7]
    assert len([w for w in caught if issubclass(w.category, UserWarning)]) == 1
    kept_filters = analytics_page.enter("2025-01-01", "", MD, 3, 14, SignedIn("fay"))
    assert kept_filters[2] == "2025-01-01" and kept_filters[4]["value"] == MD and "7 sessions" in kept_filters[7]


# --- at scale -----------------------------------------------------------------------------------------------------

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


def bench_seed() -> Callable[..., dict[str, int]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_reads import seed

    return seed


@pytest.mark.slow
def test_at_scale_the_figures_equal_the_approved_results_one_by_one_in_as_many_statements(store: Store,
                                                                                         tmp_path: Path) -> None:
    from roleplay.review import ReviewService, approved_results

    seed = bench_seed()
    few = Store(f"sqlite:///{tmp_path / 'few.db'}")
    try:
        seed(few, catalog(), 200, seed_value=3)
        small = Statements(few).of(service(few).report)
    finally:
        few.close()
    counts = seed(store, catalog(), 1000, seed_value=5)
    svc = service(store)
    report = svc.report()
    assert Statements(store).of(svc.report) == small <= 12
    assert counts["edited"] > 20
    results = approved_results(ReviewService(store, catalog().rubric))
    levels: dict[tuple[str, str], list[int]] = {}
    weeks: dict[str, list[float]] = {}
    passes: dict[tuple[str, str], int] = {}
    for r in results:
        for c in r.grade.criteria:
            levels.setdefault((r.scenario_id, c.criterion_id), []).append(c.level)
        passes[r.scenario_id, r.level] = passes.get((r.scenario_id, r.level), 0) + r.grade.passed
    with store.session() as db:
        started = dict(db.query(PracticeSession.id, PracticeSession.started_at).all())
    for r in results:
        when = started[r.session_id]
        weeks.setdefault((when - timedelta(days=when.weekday())).date().isoformat(), []).append(r.grade.overall)
    assert {(c.scenario_id, c.criterion_id): c.mean_level for c in report.heatmap} == {
        key: round(sum(v) / len(v), 3) for key, v in levels.items()}
    assert {t.week: t.mean_overall for t in report.trend} == pytest.approx(
        {w: sum(v) / len(v) for w, v in weeks.items()}, abs=1e-3)
    assert {(r.scenario_id, r.level): r.passed for r in report.rates if r.approved} == {
        k: v for k, v in passes.items()}
    assert sum(r.approved for r in report.rates) == len(results) == counts["approved"]
