"""Cohort analytics: practice, completion, approved passes, skills, stuck and inactive learners, the review queue.

Every figure is computed by the database in grouped statements (twelve in all, whatever the number of sessions; the
grades' criteria are read from their JSON by the database too). A facilitator's edit changes a grade's levels and score
without changing the stored grade, so reviews that were edited before approval are the only rows read one by one: their
grades are scored again as the review workflow scores them (`apply_edits`, each kind of grade once) and each figure is
corrected by the difference. Only approved results count as passes, levels or scores.

The filter selects sessions by the day they started (UTC) and by scenario; every figure describes those sessions, their
grades and their reviews. The report's shape and its CSV are in `roleplay.cohort`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import Float, Integer, String, and_, case, exists, func, literal, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from roleplay.calibration import _criterion_levels, _week_start
from roleplay.catalog import Catalog
from roleplay.cohort import (
    TABLES,
    AgreementPoint,
    CohortFilter,
    CohortReport,
    CriterionMean,
    FilterError,
    InactiveLearner,
    QueueAge,
    ScenarioRate,
    StuckLearner,
    TrendPoint,
    Turnaround,
    WeekCount,
    csv_text,
    ratio,
    write_csv,
    zip_bytes,
)
from roleplay.errors import NotFoundError, PermissionDenied
from roleplay.grader import CriterionGrade, Grade
from roleplay.models import (
    GradeRow,
    Person,
    PracticeSession,
    ReviewEvent,
    ReviewRow,
    ReviewStatus,
    Role,
    SessionStatus,
    utcnow,
)
from roleplay.review import CriterionEdit, apply_edits
from roleplay.scenario import LEVELS
from roleplay.store import Store

__all__ = ["AGE_BUCKETS", "ROLES", "TABLES", "AgreementPoint", "AnalyticsService", "CohortFilter", "CohortReport",
           "CriterionMean", "FilterError", "InactiveLearner", "QueueAge", "ScenarioRate", "StuckLearner", "TrendPoint",
           "Turnaround", "WeekCount", "csv_text", "write_csv", "zip_bytes"]

ROLES: tuple[str, ...] = (Role.FACILITATOR.value,)
"""Who may see cohort analytics (they run the programme)."""
AGE_BUCKETS: tuple[tuple[str, float], ...] = (("under 1 day", 1), ("1-3 days", 3), ("3-7 days", 7),
                                              ("1-2 weeks", 14), ("over 2 weeks", float("inf")))
"""Ages of pending reviews, in days: a label and the age it stops at."""


# --- the database ---------------------------------------------------------------------------------------------

class _hours_between(FunctionElement[float]):  # a SQL function, named as one
    """Hours from the first timestamp to the second, computed by the database."""

    type = Float()
    inherit_cache = True


@compiles(_hours_between, "sqlite")
def _hours_sqlite(element: _hours_between, compiler: SQLCompiler, **kw: Any) -> str:
    first, second = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({second}) - julianday({first})) * 24.0)"


@compiles(_hours_between, "postgresql")
def _hours_postgresql(element: _hours_between, compiler: SQLCompiler, **kw: Any) -> str:
    first, second = (compiler.process(c, **kw) for c in element.clauses)
    return f"(EXTRACT(EPOCH FROM ({second} - {first})) / 3600.0)"


class _criteria_count(FunctionElement[int]):
    """How many criteria a stored grade (its JSON) has, read by the database."""

    type = Integer()
    inherit_cache = True


@compiles(_criteria_count, "sqlite")
def _count_sqlite(element: _criteria_count, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_array_length({compiler.process(element.clauses, **kw)}, '$.criteria')"


@compiles(_criteria_count, "postgresql")
def _count_postgresql(element: _criteria_count, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_array_length(({compiler.process(element.clauses, **kw)})->'criteria')"


class _criteria_brief(FunctionElement[str]):
    """A stored grade's criteria as JSON text of [id, level, supported] lists, made by PostgreSQL (SQLite builds a flat
    list with `json_extract`, see `AnalyticsService._brief`)."""

    type = String()
    inherit_cache = True


@compiles(_criteria_brief, "postgresql")
def _brief_postgresql(element: _criteria_brief, compiler: SQLCompiler, **kw: Any) -> str:
    result = compiler.process(element.clauses, **kw)  # compiled SQL of a column expression, never input
    return ("(SELECT json_agg(json_build_array(c->>'criterion_id', (c->>'level')::int, "  # nosec B608
            "COALESCE((c->>'supported')::boolean, true))) "
            f"FROM json_array_elements(({result})->'criteria') AS c)::text")


def _unbrief(text: str | None) -> tuple[tuple[str, int, bool], ...] | None:
    """(id, level, supported) of each criterion from `_brief`'s text; None when the grade has more criteria than were
    read (SQLite reads one more than the longest rubric)."""
    items = json.loads(text) if text else []
    if items and isinstance(items[0], list):  # PostgreSQL: every criterion, as lists
        return tuple((str(c), int(lv), bool(True if ok is None else ok)) for c, lv, ok in items)
    triples = [items[i:i + 3] for i in range(0, len(items), 3)]
    if triples and triples[-1][0] is not None:
        return None
    return tuple((str(c), int(lv), bool(True if ok is None else ok)) for c, lv, ok in triples if c is not None)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def _n(value: Any) -> int:
    return int(value or 0)


def _aware(value: datetime) -> datetime:
    """A stored time as timezone-aware UTC (SQLite gives it back naive)."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass
class _Edited:
    """An approved review a facilitator edited first: where it is counted, and how the edits changed it."""

    scenario_id: str
    level: str
    person_id: int
    practised: str  # week the session started
    decided: str  # week it was approved
    passes: int  # how the edits changed the pass count: -1, 0 or +1
    overall: float  # how they changed the overall score
    levels: dict[str, tuple[int, int]] = field(default_factory=dict)  # criterion -> (grader's level, approved level)
    decided_by: int | None = None
    passed: bool = False  # whether the approved grade passes


@dataclass
class _Approved:
    """Approved results summed by the database for one group, before edits are added."""

    results: int = 0
    passed: int = 0
    overall: float = 0.0
    criteria: int = 0


class AnalyticsService:
    """Cohort figures from the store, in about a dozen statements however many sessions are stored.

    Args:
        store: The database.
        catalog: Scenarios and rubrics (titles, criterion names, and the rubrics edited grades are scored by again).
        clock: The current time (UTC), for ages and inactivity.
    """

    def __init__(self, store: Store, catalog: Catalog, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock

    def check_viewer(self, username: str) -> None:
        """Refuse anyone whose role may not see cohort analytics."""
        person = self.store.person(username)
        if person.role not in ROLES:
            hint = " (a learner's own results are on the Progress page)" if person.role == Role.LEARNER else ""
            raise PermissionDenied(f"cohort analytics are for facilitators; '{username}' is a {person.role}{hint}")

    def report(self, cohort: CohortFilter | None = None, *, viewer: str | None = None) -> CohortReport:
        """Every figure for the sessions `cohort` selects.

        Args:
            cohort: The filter (every session when None).
            viewer: Who is asking; refused unless a facilitator. None for the command line, which has the database
                already.

        Raises:
            PermissionDenied: `viewer` may not see cohort analytics.
            NotFoundError: the filter names a scenario that does not exist.
        """
        if viewer is not None:
            self.check_viewer(viewer)
        cohort = cohort or CohortFilter()
        if cohort.scenario_id and cohort.scenario_id not in self.catalog.scenarios:
            raise NotFoundError(f"no scenario '{cohort.scenario_id}'; `roleplay scenarios` lists them")
        now = self.clock()
        where = self._where(cohort)
        with self.store.session() as db:
            inactive = self._inactive(db, cohort, now)
            counts = self._sessions(db, where)
            if not counts:
                return CohortReport(filter=cohort, generated_at=now, learners=0, weekly=[], rates=[], heatmap=[],
                                    trend=[], stuck=[], inactive=inactive, queue=[], oldest_pending_hours=None,
                                    turnaround=[], agreement=[])
            edited = self._edited(db, where)
            by_week, by_decision = self._approved(db, where)
            queue, oldest = self._queue(db, where, now)
            return CohortReport(
                filter=cohort, generated_at=now,
                learners=_n(db.scalar(select(func.count(func.distinct(PracticeSession.person_id))).where(*where))),
                weekly=self._weekly(counts, self._graded_weeks(db, where)),
                rates=self._rates(counts, by_week, edited), heatmap=self._heatmap(self._heat(db, where), edited),
                trend=self._trend(by_week, edited), stuck=self._stuck(db, where, cohort, edited), inactive=inactive,
                queue=queue, oldest_pending_hours=oldest, turnaround=self._turnaround(db, where),
                agreement=self._agreement(by_decision, edited, self._names(db, {w for _, w in by_decision})))

    # -- helpers -------------------------------------------------------------------------------------------
    @staticmethod
    def _where(cohort: CohortFilter) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if cohort.start:
            where.append(PracticeSession.started_at >= _midnight(cohort.start))
        if cohort.end:
            where.append(PracticeSession.started_at < _midnight(cohort.end + timedelta(days=1)))
        if cohort.scenario_id:
            where.append(PracticeSession.scenario_id == cohort.scenario_id)
        return where

    def _title(self, scenario_id: str) -> str:
        scn = self.catalog.scenarios.get(scenario_id)
        return scn.title if scn else scenario_id

    def _criteria(self, scenario_id: str) -> list[tuple[str, str]]:
        """(id, name) of the scenario's rubric criteria in rubric order; [] for a scenario no longer in the catalog."""
        scn = self.catalog.scenarios.get(scenario_id)
        if scn is None or scn.rubric not in self.catalog.rubrics:
            return []
        return [(c.id, c.name) for c in self.catalog.rubric(scn.rubric).criteria]

    @staticmethod
    def _approved_joined(q: Any) -> Any:
        """`q` over the approved review open on each session, with its grade."""
        return (q.select_from(PracticeSession)
                .join(ReviewRow, ReviewRow.open_session_id == PracticeSession.id)
                .join(GradeRow, GradeRow.id == ReviewRow.grade_id)
                .where(ReviewRow.status == ReviewStatus.APPROVED.value))

    # -- statements ----------------------------------------------------------------------------------------
    def _sessions(self, db: Session, where: list[ColumnElement[bool]]) -> list[Any]:
        """Sessions started, ended, graded and approved per scenario, level, week started and week ended; one
        statement over the narrow tables (a grade's row is not read)."""
        started, ended = _week_start(PracticeSession.started_at), _week_start(PracticeSession.ended_at)
        graded = exists().where(GradeRow.session_id == PracticeSession.id)
        keys = (PracticeSession.scenario_id, PracticeSession.level, started, ended)
        return db.execute(
            select(*keys, func.count(),
                   func.sum(case((PracticeSession.status == SessionStatus.ENDED.value, 1), else_=0)),
                   func.sum(case((graded, 1), else_=0)),
                   func.sum(case((ReviewRow.status == ReviewStatus.APPROVED.value, 1), else_=0)))
            .select_from(PracticeSession).outerjoin(ReviewRow, ReviewRow.open_session_id == PracticeSession.id)
            .where(*where).group_by(*keys)).all()

    @staticmethod
    def _reviews(q: Any, where: list[ColumnElement[bool]]) -> Any:
        """`q` over reviews, joined to their grade and session only when the filter needs them."""
        q = q.select_from(ReviewRow)
        if where:
            q = (q.join(GradeRow, GradeRow.id == ReviewRow.grade_id)
                 .join(PracticeSession, PracticeSession.id == GradeRow.session_id).where(*where))
        return q

    def _graded_weeks(self, db: Session, where: list[ColumnElement[bool]]) -> dict[str, int]:
        """Grades given per week (each grade's review is written with it); one statement."""
        week = _week_start(ReviewRow.created_at)
        return {str(w): n for w, n in db.execute(self._reviews(select(week, func.count()), where).group_by(week))}

    def _brief(self, db: Session) -> ColumnElement[str]:
        """A stored grade's criteria as short JSON text, made by the database so that only ids, levels and whether each
        is supported leave it (a grade's JSON also holds evidence and rationales)."""
        if db.get_bind().dialect.name == "postgresql":
            return _criteria_brief(GradeRow.result)
        # one more than the longest rubric has, so that a grade with more criteria shows
        size = max((len(r.criteria) for r in self.catalog.rubrics.values()), default=0) + 1
        paths = [f"$.criteria[{i}].{name}" for i in range(size) for name in ("criterion_id", "level", "supported")]
        return func.json_extract(GradeRow.result, *paths)

    def _heat(self, db: Session, where: list[ColumnElement[bool]]) -> dict[tuple[str, str], list[int]]:
        """Per (scenario, criterion): approved results and the sum of their levels as the grader gave them; one
        statement, the grades grouped by their levels (a few hundred kinds), or by criterion when a stored grade has
        more criteria than any rubric now has."""
        sums: dict[tuple[str, str], list[int]] = {}
        brief = self._brief(db)
        for scenario_id, text, n in db.execute(self._approved_joined(
                select(PracticeSession.scenario_id, brief, func.count())).where(*where)
                .group_by(PracticeSession.scenario_id, brief)):
            criteria = _unbrief(text)
            if criteria is None:
                return self._heat_by_criterion(db, where)
            for cid, level, _ in criteria:
                cell = sums.setdefault((scenario_id, cid), [0, 0])
                cell[0] += n
                cell[1] += n * level
        return sums

    @staticmethod
    def _heat_by_criterion(db: Session, where: list[ColumnElement[bool]]) -> dict[tuple[str, str], list[int]]:
        """`_heat`, each grade's criteria made rows by the database (slower, for grades of any length)."""
        item, criterion_id, level = _criterion_levels(db)
        return {(s, str(c)): [_n(n), _n(total)] for s, c, n, total in db.execute(
            AnalyticsService._approved_joined(select(PracticeSession.scenario_id, criterion_id, func.count(),
                                                     func.sum(level.cast(Integer))))
            .join(item, true()).where(*where).group_by(PracticeSession.scenario_id, criterion_id))}

    def _approved(self, db: Session, where: list[ColumnElement[bool]]) -> tuple[
            dict[tuple[str, str, str], _Approved], dict[tuple[str, int], _Approved]]:
        """The approved results, passes, overall scores and criteria as the grader gave them, summed by the database;
        one statement.

        Returns:
            Per (scenario, level, week practised) and per (week approved, facilitator).
        """
        practised, decided = _week_start(PracticeSession.started_at), _week_start(ReviewRow.decided_at)
        keys = (PracticeSession.scenario_id, PracticeSession.level, practised, decided, ReviewRow.decided_by)
        by_week: dict[tuple[str, str, str], _Approved] = {}
        by_decision: dict[tuple[str, int], _Approved] = {}
        for scenario_id, lv, week, when, who, n, passed, overall, criteria in db.execute(self._approved_joined(select(
                *keys, func.count(), func.sum(case((GradeRow.passed, 1), else_=0)), func.sum(GradeRow.overall),
                func.sum(_criteria_count(GradeRow.result)))).where(*where).group_by(*keys)):
            for total in (by_week.setdefault((scenario_id, lv, str(week)), _Approved()),
                          by_decision.setdefault((str(when), who), _Approved())):
                total.results += n
                total.passed += _n(passed)
                total.overall += float(overall or 0)
                total.criteria += _n(criteria)
        return by_week, by_decision

    def _edited(self, db: Session, where: list[ColumnElement[bool]]) -> list[_Edited]:
        """The approved reviews a facilitator edited, scored again with their edits; two statements (three when a
        stored grade has more criteria than any rubric now has).

        Grades with the same levels and edits are scored once (there are few distinct ones).
        """
        edit = exists().where(ReviewEvent.review_id == ReviewRow.id, ReviewEvent.action == "edit")
        rows = db.execute(self._approved_joined(select(
            ReviewRow.id, PracticeSession.scenario_id, PracticeSession.level, PracticeSession.person_id,
            _week_start(PracticeSession.started_at), _week_start(ReviewRow.decided_at), ReviewRow.decided_by,
            GradeRow.rubric_id, GradeRow.overall, GradeRow.passed, self._brief(db))).where(*where, edit)).all()
        if not rows:
            return []
        changes: dict[int, list[tuple[tuple[str, int | None], ...]]] = {}
        ids = self._approved_joined(select(ReviewRow.id)).where(*where, edit)
        for review_id, payload in db.execute(select(ReviewEvent.review_id, ReviewEvent.payload).where(
                ReviewEvent.review_id.in_(ids), ReviewEvent.action == "edit").order_by(ReviewEvent.id)):
            changes.setdefault(review_id, []).append(
                tuple((c["criterion_id"], c.get("level")) for c in payload.get("changes", [])))
        briefs = {r[0]: _unbrief(r[-1]) for r in rows}
        longer = [review_id for review_id, criteria in briefs.items() if criteria is None]
        if longer:
            for review_id, criteria in db.execute(select(ReviewRow.id, GradeRow.result["criteria"]).join(
                    GradeRow, GradeRow.id == ReviewRow.grade_id).where(ReviewRow.id.in_(longer))):
                briefs[review_id] = tuple((c["criterion_id"], int(c["level"]), bool(c.get("supported", True)))
                                          for c in criteria)
        out, scores = [], {}
        for review_id, scenario_id, lv, person_id, practised, decided, who, rubric_id, overall, passed, _ in rows:
            given = briefs[review_id] or ()
            key = (rubric_id, given, tuple(changes.get(review_id, ())))
            if key not in scores:  # grades with the same levels and edits are scored once (there are few distinct)
                scores[key] = self._rescored(*key) or (float(overall), bool(passed), {c: lv for c, lv, _ in given})
            final_overall, final_passed, final = scores[key]
            out.append(_Edited(scenario_id, lv, person_id, str(practised), str(decided),
                               passes=int(final_passed) - int(bool(passed)), overall=final_overall - float(overall),
                               levels={cid: (level, final[cid]) for cid, level, _ in given}, decided_by=who,
                               passed=final_passed))
        return out

    def _rescored(self, rubric_id: str, given: tuple[tuple[str, int, bool], ...],
                  events: tuple[tuple[tuple[str, int | None], ...], ...]) -> tuple[float, bool, dict[str, int]] | None:
        """Overall, pass and levels of a grade with these criterion levels after these edits, scored as the review
        workflow scores it (`apply_edits`, one event at a time); None when the rubric it was graded on is no longer
        in the catalog as it was (then the grader's score stands in the figures)."""
        if (rubric_id not in self.catalog.rubrics
                or {c for c, _, _ in given} != set(self.catalog.rubric(rubric_id).criterion_ids)):
            return None
        criteria = [CriterionGrade.model_construct(criterion_id=cid, level=level, supported=supported, checks=[],
                                                   evidence=[], rationale="", better_alternative="")
                    for cid, level, supported in given]
        grade = Grade.model_construct(rubric_id=rubric_id, judge="", criteria=criteria, prompt=None, raw_reply=None,
                                      calls=0, flagged=[], samples=1, prompt_tokens=None, completion_tokens=None,
                                      structured_mode=None, fitted=None)
        rubric = self.catalog.rubric(rubric_id)
        for event in events:
            if event:
                grade = apply_edits(grade, [CriterionEdit(criterion_id=cid, level=lv) for cid, lv in event], rubric)
        return grade.overall, grade.passed, {c.criterion_id: c.level for c in grade.criteria}

    @staticmethod
    def _names(db: Session, ids: set[int | None]) -> dict[int, str]:
        """Usernames by person id; one statement."""
        ids_ = {i for i in ids if i is not None}
        return dict(db.execute(select(Person.id, Person.username).where(Person.id.in_(ids_))).all()) if ids_ else {}

    def _stuck(self, db: Session, where: list[ColumnElement[bool]], cohort: CohortFilter,
               edited: list[_Edited]) -> list[StuckLearner]:
        """Learners with `stuck_attempts` sessions of a scenario or more and no approved pass in it; one statement.

        The database keeps the (person, scenario) pairs with enough attempts and no unedited approved pass; an edited
        approval that passes takes a pair off the list.
        """
        approved = ReviewRow.status == ReviewStatus.APPROVED.value
        unedited = ~exists().where(ReviewEvent.review_id == ReviewRow.id, ReviewEvent.action == "edit")
        pairs = (select(PracticeSession.person_id, PracticeSession.scenario_id, func.count().label("n"),
                        func.sum(case((approved, 1), else_=0)).label("approved"),
                        func.max(PracticeSession.started_at).label("last"))
                 .outerjoin(ReviewRow, ReviewRow.open_session_id == PracticeSession.id)
                 .outerjoin(GradeRow, and_(GradeRow.id == ReviewRow.grade_id, approved))  # read for approvals only
                 .where(*where).group_by(PracticeSession.person_id, PracticeSession.scenario_id)
                 .having(func.count() >= cohort.stuck_attempts,
                         func.sum(case((and_(approved, GradeRow.passed, unedited), 1), else_=0)) == 0).subquery())
        rows = db.execute(select(pairs.c.person_id, Person.username, Person.display_name, pairs.c.scenario_id,
                                 pairs.c.n, pairs.c.approved, pairs.c.last)
                          .join(Person, Person.id == pairs.c.person_id)).all()
        passed = {(e.person_id, e.scenario_id) for e in edited if e.passed}
        out = [StuckLearner(learner=user, name=name or user, scenario_id=scenario_id, scenario=self._title(scenario_id),
                            attempts=n, approved=_n(n_approved), last_attempt=_aware(last))
               for person_id, user, name, scenario_id, n, n_approved, last in rows
               if (person_id, scenario_id) not in passed]
        return sorted(out, key=lambda s: (-s.attempts, s.learner, s.scenario))

    @staticmethod
    def _inactive(db: Session, cohort: CohortFilter, now: datetime) -> list[InactiveLearner]:
        """Learners without a session (of the scenario, if one is chosen) in the `inactive_days` before the end of the
        range (now, when it has no end or ends later); one statement. Learners who joined later are not listed."""
        as_of = min(now, _midnight(cohort.end + timedelta(days=1))) if cohort.end else now
        cutoff = as_of - timedelta(days=cohort.inactive_days)
        mine = [PracticeSession.started_at < as_of]
        if cohort.scenario_id:
            mine.append(PracticeSession.scenario_id == cohort.scenario_id)
        last = (select(PracticeSession.person_id, func.max(PracticeSession.started_at).label("last"),
                       func.count().label("n")).where(*mine).group_by(PracticeSession.person_id).subquery())
        rows = db.execute(
            select(Person.username, Person.display_name, last.c.n, last.c.last).select_from(Person)
            .outerjoin(last, last.c.person_id == Person.id)
            .where(Person.role == Role.LEARNER.value, Person.created_at < as_of,
                   last.c.last.is_(None) | (last.c.last < cutoff))).all()
        out = []
        for user, name, n, when in rows:
            when = _aware(when) if when is not None else None
            out.append(InactiveLearner(learner=user, name=name or user, sessions=_n(n), last_session=when,
                                       days_inactive=(as_of - when).days if when else None))
        return sorted(out, key=lambda i: (i.last_session is not None, i.last_session or as_of, i.learner))

    @staticmethod
    def _queue(db: Session, where: list[ColumnElement[bool]], now: datetime) -> tuple[list[QueueAge], float | None]:
        """Pending reviews by age, and the oldest one's age in hours; one statement."""
        cuts = [now - timedelta(days=days) for _, days in AGE_BUCKETS[:-1]]
        bucket = case(*[(ReviewRow.created_at > at, literal(i)) for i, at in enumerate(cuts)], else_=literal(len(cuts)))
        rows = db.execute(AnalyticsService._reviews(select(bucket, func.count(), func.min(ReviewRow.created_at)), where)
                          .where(ReviewRow.status == ReviewStatus.PENDING.value).group_by(bucket)).all()
        if not rows:
            return [], None
        counts = {int(i): n for i, n, _ in rows}
        oldest = min(_aware(at) for _, _, at in rows)
        return ([QueueAge(age=label, pending=counts.get(i, 0)) for i, (label, _) in enumerate(AGE_BUCKETS)],
                round((now - oldest).total_seconds() / 3600, 2))

    @staticmethod
    def _turnaround(db: Session, where: list[ColumnElement[bool]]) -> list[Turnaround]:
        """Per facilitator: decisions, and the median hours from grade (its review is written with it) to decision;
        one statement, the median found by the database (the middle one or two of each facilitator's ranked hours)."""
        hours = _hours_between(ReviewRow.created_at, ReviewRow.decided_at)
        ranked = (AnalyticsService._reviews(select(
            ReviewRow.decided_by.label("who"), hours.label("hours"),
            func.row_number().over(partition_by=ReviewRow.decided_by, order_by=hours).label("rank"),
            func.count().over(partition_by=ReviewRow.decided_by).label("n")), where)
                  .where(ReviewRow.decided_at.is_not(None), ReviewRow.decided_by.is_not(None)).subquery())
        rows = db.execute(select(Person.username, Person.display_name, func.max(ranked.c.n), func.avg(ranked.c.hours))
                          .join(Person, Person.id == ranked.c.who)
                          .where(ranked.c.rank * 2 >= ranked.c.n, ranked.c.rank * 2 <= ranked.c.n + 2)
                          .group_by(Person.username, Person.display_name)).all()
        out = [Turnaround(facilitator=user, name=name or user, decisions=n, median_hours=round(float(h), 2))
               for user, name, n, h in rows]
        return sorted(out, key=lambda t: (t.median_hours, t.facilitator))

    # -- figures -------------------------------------------------------------------------------------------
    @staticmethod
    def _weekly(counts: list[Any], graded: dict[str, int]) -> list[WeekCount]:
        """Practice per week, every week from the first to the last (a quiet week shows as zeros)."""
        weeks: dict[str, list[int]] = {}
        for _, _, started, ended, n, n_ended, _, _ in counts:
            weeks.setdefault(str(started), [0, 0])[0] += n
            if ended is not None:
                weeks.setdefault(str(ended), [0, 0])[1] += _n(n_ended)
        known = set(weeks) | set(graded)
        day, last = date.fromisoformat(min(known)), date.fromisoformat(max(known))
        out = []
        while day <= last:
            started, ended = weeks.get(day.isoformat(), (0, 0))
            out.append(WeekCount(week=day.isoformat(), started=started, ended=ended,
                                 graded=graded.get(day.isoformat(), 0)))
            day += timedelta(days=7)
        return out

    def _rates(self, counts: list[Any], approved: dict[tuple[str, str, str], _Approved],
               edited: list[_Edited]) -> list[ScenarioRate]:
        """Completion and approved passes per scenario (by title) and level."""
        sums: dict[tuple[str, str], list[int]] = {}
        for scenario_id, lv, _, _, n, ended, graded, n_approved in counts:
            row = sums.setdefault((scenario_id, lv), [0, 0, 0, 0, 0])
            for i, value in enumerate((n, ended, graded, n_approved)):
                row[i] += _n(value)
        for (scenario_id, lv, _), a in approved.items():
            sums[scenario_id, lv][4] += a.passed
        for e in edited:
            sums[e.scenario_id, e.level][4] += e.passes
        order = {lv: i for i, lv in enumerate(LEVELS)}
        out = [ScenarioRate(scenario_id=scenario_id, scenario=self._title(scenario_id), level=lv, started=started,
                            ended=ended, graded=graded, approved=n_approved, passed=passed,
                            completion_rate=ratio(ended, started), pass_rate=ratio(passed, ended))
               for (scenario_id, lv), (started, ended, graded, n_approved, passed) in sums.items()]
        return sorted(out, key=lambda r: (r.scenario.lower(), order.get(r.level, len(order)), r.level))

    def _heatmap(self, sums: dict[tuple[str, str], list[int]], edited: list[_Edited]) -> list[CriterionMean]:
        """Mean approved level per criterion, per scenario (by title), criteria in rubric order."""
        sums = {key: list(value) for key, value in sums.items()}
        for e in edited:
            for cid, (ai, final) in e.levels.items():
                if (e.scenario_id, cid) in sums:
                    sums[e.scenario_id, cid][1] += final - ai
        out = []
        for scenario_id in sorted({s for s, _ in sums}, key=lambda s: self._title(s).lower()):
            known = self._criteria(scenario_id)
            ids = [c for c, _ in known] + sorted(c for s, c in sums if s == scenario_id and c not in dict(known))
            names = dict(known)
            for cid in ids:
                n, total = sums.get((scenario_id, cid), (0, 0))
                if n:
                    out.append(CriterionMean(scenario_id=scenario_id, scenario=self._title(scenario_id),
                                             criterion_id=cid,
                                             criterion=names.get(cid, cid), results=n, mean_level=round(total / n, 3)))
        return out

    @staticmethod
    def _trend(approved: dict[tuple[str, str, str], _Approved], edited: list[_Edited]) -> list[TrendPoint]:
        """Mean approved overall per week the sessions started."""
        sums: dict[str, list[float]] = {}
        for (_, _, week), a in approved.items():
            point = sums.setdefault(week, [0, 0.0])
            point[0] += a.results
            point[1] += a.overall
        for e in edited:
            sums[e.practised][1] += e.overall
        return [TrendPoint(week=w, approved=int(n), mean_overall=round(total / n, 3))
                for w, (n, total) in sorted(sums.items()) if n]

    @staticmethod
    def _agreement(decisions: dict[tuple[str, int], _Approved], edited: list[_Edited],
                   names: dict[int, str]) -> list[AgreementPoint]:
        """Per week of approval and facilitator: the criteria approved and how many kept the grader's level."""
        changed: dict[tuple[str, int | None], int] = {}
        for e in edited:
            key = (e.decided, e.decided_by)
            changed[key] = changed.get(key, 0) + sum(ai != final for ai, final in e.levels.values())
        out = []
        for (week, who), a in decisions.items():
            if who is None or not a.criteria:
                continue
            unchanged = a.criteria - changed.get((week, who), 0)
            out.append(AgreementPoint(week=week, facilitator=names.get(who, "?"), reviews=a.results,
                                      criteria=a.criteria,
                                      unchanged=unchanged, agreement=round(unchanged / a.criteria, 4)))
        return sorted(out, key=lambda a: (a.week, a.facilitator))
