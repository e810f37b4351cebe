"""Calibration: facilitators score anchor transcripts blind; agreement with the grader and each other; drift."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, String, exists, func, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from roleplay.catalog import Catalog
from roleplay.errors import NotFoundError, PermissionDenied, RoleplayError
from roleplay.gold import load_gold
from roleplay.grader import Judge, OfflineJudge
from roleplay.metrics import LEVELS, Agreement, agreement
from roleplay.models import CalibrationRating, GradeRow, Person, ReviewEvent, ReviewRow, ReviewStatus, Role
from roleplay.review import PAGE_SIZE, ReviewService
from roleplay.store import Store
from roleplay.transcript import Transcript

MIN_AGREEMENT_SCORES = 5
"""Fewest paired scores on which an agreement figure (QWK, exact, adjacent) is shown; below it a caveat instead."""


def too_few_scores(a: Agreement) -> str | None:
    """The caveat for an agreement resting on too few paired scores to judge, or None when there are enough."""
    if a.n >= MIN_AGREEMENT_SCORES:
        return None
    return f"too few scores to judge agreement (n = {a.n}; at least {MIN_AGREEMENT_SCORES})"


class Anchor(BaseModel):
    """A transcript facilitators score blind to calibrate against each other and the grader."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Anchor id.")
    scenario_id: str = Field(description="Scenario of the transcript.")
    rubric_id: str = Field(description="Rubric scored.")
    criteria: list[str] = Field(description="Criterion ids to score.")
    transcript: Transcript = Field(description="The transcript to score.")


class DriftPoint(BaseModel):
    """Share of criteria facilitators changed in approved reviews, for one week."""

    model_config = ConfigDict(extra="forbid")
    week: str = Field(description="ISO week start date.")
    reviews: int = Field(description="Approved reviews that week.")
    disagreement: float = Field(description="Share of criteria whose approved level differs from the AI level.")


class DriftPage(BaseModel):
    """One page of the weekly drift, the newest weeks on page 1, with the count of every week."""

    model_config = ConfigDict(extra="forbid")
    points: list[DriftPoint] = Field(description="The page's weeks, oldest first (the order a trend is drawn in).")
    weeks: int = Field(description="Weeks with approved reviews, in all.")
    page: int = Field(description="Page number, 1 = the newest weeks.")
    size: int = Field(description="Weeks per page.")

    @property
    def has_newer(self) -> bool:
        """Whether a page of newer weeks comes before this one."""
        return self.page > 1

    @property
    def has_older(self) -> bool:
        """Whether a page of older weeks comes after this one."""
        return (self.page - 1) * self.size + len(self.points) < self.weeks

    def showing(self) -> str:
        """The page in words, e.g. "showing weeks 1-50 of 104, newest first"."""
        if not self.points:
            return "no approved reviews yet"
        first = (self.page - 1) * self.size + 1
        return f"showing weeks {first:,}-{first + len(self.points) - 1:,} of {self.weeks:,}, newest first"


class CalibrationReport(BaseModel):
    """Agreement of facilitators with the grader and with each other, plus the grader's drift."""

    model_config = ConfigDict(extra="forbid")
    facilitator_vs_grader: dict[str, Agreement] = Field(description="Per criterion: every facilitator rating vs the grader.")
    between_facilitators: dict[str, Agreement] = Field(description="Per criterion: all pairs of facilitators on the same anchor.")
    overall_vs_grader: Agreement = Field(description="All criteria pooled, facilitators vs grader.")
    raters: list[str] = Field(description="Facilitators who have rated.")
    anchors_rated: int = Field(description="Anchors with at least one rating.")
    drift: list[DriftPoint] = Field(description="Weekly disagreement between approved and AI levels.")
    recent_disagreement: float | None = Field(description="Disagreement over the most recent approved reviews.")
    drift_threshold: float = Field(description="Configured threshold (ROLEPLAY_DRIFT_THRESHOLD).")
    drifting: bool = Field(description="True when recent disagreement exceeds the threshold.")
    drift_weeks: int = Field(default=0, description="Weeks with approved reviews, in all (`drift` is one page).")
    drift_page: int = Field(default=1, description="The page of weeks `drift` shows, 1 = the newest.")
    drift_page_size: int = Field(default=PAGE_SIZE, description="Weeks per page of `drift`.")


class CalibrationService:
    """Blind scoring of anchor transcripts and the agreement dashboard.

    Args:
        store: The database.
        catalog: Scenarios and rubrics.
        reviews: The review workflow (the drift signal reads the approved reviews from the store directly).
        judge: Grades anchors for the comparison (the offline judge when None).
        anchors_dir: Gold transcripts used as anchors.
        drift_threshold: Share of changed criteria above which the grader counts as drifting.
        recent: How many recent approved reviews the drift signal looks at.
    """

    def __init__(self, store: Store, catalog: Catalog, reviews: ReviewService, *, judge: Judge | None = None,
                 anchors_dir: Path, drift_threshold: float = 0.3, recent: int = 20) -> None:
        self.store = store
        self.catalog = catalog
        self.reviews = reviews
        self.judge: Judge = judge or OfflineJudge()
        self.anchors_dir = anchors_dir
        self.drift_threshold = drift_threshold
        self.recent = recent
        self._anchors: dict[str, Anchor] | None = None
        self._ai: dict[str, dict[str, int]] = {}

    def anchors(self) -> list[Anchor]:
        """The anchor transcripts."""
        if self._anchors is None:
            items = {}
            for g in load_gold(self.anchors_dir, self.catalog):
                scn = self.catalog.scenario(g.scenario)
                items[g.id] = Anchor(id=g.id, scenario_id=g.scenario, rubric_id=scn.rubric,
                                     criteria=self.catalog.rubric_for(scn).criterion_ids, transcript=g.transcript())
            self._anchors = items
        return list(self._anchors.values())

    def anchor(self, anchor_id: str) -> Anchor:
        """One anchor by id."""
        for a in self.anchors():
            if a.id == anchor_id:
                return a
        raise NotFoundError(f"no anchor transcript '{anchor_id}'")

    def _facilitator(self, username: str) -> Person:
        person = self.store.person(username)
        if person.role != Role.FACILITATOR:
            raise PermissionDenied(f"only facilitators calibrate; '{username}' is a {person.role}")
        return person

    def rated_by(self, username: str) -> set[str]:
        """Anchor ids this facilitator has scored."""
        person = self._facilitator(username)
        with self.store.session() as db:
            return set(db.scalars(select(CalibrationRating.anchor_id).where(CalibrationRating.person_id == person.id)))

    def next_blind(self, username: str) -> Anchor | None:
        """The next anchor this facilitator has not scored (its AI grade stays hidden until they submit)."""
        done = self.rated_by(username)
        return next((a for a in self.anchors() if a.id not in done), None)

    def submit(self, username: str, anchor_id: str, levels: dict[str, int]) -> dict[str, int]:
        """Record a facilitator's blind levels for every criterion of an anchor; returns the grader's levels to compare."""
        person = self._facilitator(username)
        anchor = self.anchor(anchor_id)
        missing = [c for c in anchor.criteria if c not in levels]
        extra = [c for c in levels if c not in anchor.criteria]
        if missing or extra:
            raise RoleplayError(f"score every criterion of '{anchor.rubric_id}' exactly once; missing: "
                                f"{', '.join(missing) or 'none'}; unknown: {', '.join(extra) or 'none'}")
        bad = [c for c, lv in levels.items() if lv not in LEVELS]
        if bad:
            raise RoleplayError(f"levels are 1-4; fix: {', '.join(bad)}")
        if anchor_id in self.rated_by(username):
            raise RoleplayError(f"you have already scored '{anchor_id}'; blind scores cannot be changed")
        with self.store.session() as db:
            for cid, lv in levels.items():
                db.add(CalibrationRating(person_id=person.id, anchor_id=anchor_id, criterion_id=cid, level=lv))
        return self.ai_levels(anchor_id)

    def ai_levels(self, anchor_id: str) -> dict[str, int]:
        """The grader's levels for an anchor (graded once per process)."""
        if anchor_id not in self._ai:
            anchor = self.anchor(anchor_id)
            scn = self.catalog.scenario(anchor.scenario_id)
            grade = self.judge.grade(anchor.transcript, self.catalog.rubric_for(scn), scn)
            self._ai[anchor_id] = {c.criterion_id: c.level for c in grade.criteria}
        return self._ai[anchor_id]

    def report(self, drift_page: int = 1, drift_page_size: int = PAGE_SIZE) -> CalibrationReport:
        """Agreement figures and the drift signal, with one page of the weekly drift (1 = the newest weeks)."""
        with self.store.session() as db:
            rows = list(db.execute(select(Person.username, CalibrationRating.anchor_id, CalibrationRating.criterion_id,
                                          CalibrationRating.level).join(Person, Person.id == CalibrationRating.person_id)))
        vs_ai: dict[str, tuple[list[int], list[int]]] = {}
        by_item: dict[tuple[str, str], dict[str, int]] = {}
        for user, anchor_id, cid, level in rows:
            ai = self.ai_levels(anchor_id).get(cid)
            if ai is not None:
                h, a = vs_ai.setdefault(cid, ([], []))
                h.append(level)
                a.append(ai)
            by_item.setdefault((anchor_id, cid), {})[user] = level
        pairs: dict[str, tuple[list[int], list[int]]] = {}
        for (_, cid), ratings in by_item.items():
            users = sorted(ratings)
            for i, u in enumerate(users):
                for v in users[i + 1:]:
                    a, b = pairs.setdefault(cid, ([], []))
                    a.append(ratings[u])
                    b.append(ratings[v])
        threshold = self.drift_threshold
        drift = self.drift(drift_page, drift_page_size)
        recent = self.recent_disagreement()
        return CalibrationReport(
            facilitator_vs_grader={c: agreement(h, a) for c, (h, a) in sorted(vs_ai.items())},
            between_facilitators={c: agreement(a, b) for c, (a, b) in sorted(pairs.items())},
            overall_vs_grader=agreement([x for h, _ in vs_ai.values() for x in h], [x for _, a in vs_ai.values() for x in a]),
            raters=sorted({r[0] for r in rows}), anchors_rated=len({r[1] for r in rows}),
            drift=drift.points, recent_disagreement=recent, drift_threshold=threshold,
            drifting=recent is not None and recent > threshold, drift_weeks=drift.weeks, drift_page=drift.page,
            drift_page_size=drift.size,
        )

    def drift(self, page: int = 1, size: int = PAGE_SIZE) -> DriftPage:
        """One page of the weekly drift: per week, the approved reviews and the share of criterion levels changed.

        Args:
            page: 1 is the newest weeks; a page past the last shows the last.
            size: Weeks per page.

        Returns:
            The page, its weeks oldest first. Weeks are counted and grouped in the database (every week's count in one
            statement: there are about 52 a year, however many reviews); only reviews a facilitator edited are read
            further (an unedited one changed nothing), so three statements run however many reviews are stored.
        """
        size = max(1, size)
        week = _week_start(ReviewRow.decided_at)
        approved = (ReviewRow.status == ReviewStatus.APPROVED.value) & ReviewRow.decided_at.is_not(None)
        with self.store.session() as db:
            every = db.execute(select(week, func.count()).where(approved).group_by(week).order_by(week.desc())).all()
            page = min(max(1, page), max(1, -(-len(every) // size)))
            counts = every[(page - 1) * size:page * size]
            shares: dict[tuple[int, str], float] = {}
            if counts:  # the page's weeks as a range of times, in the database's time zone as its weeks are
                start = datetime.fromisoformat(counts[-1][0])
                end = datetime.fromisoformat(counts[0][0]) + timedelta(days=7)
                shares = _edited_shares(db, [approved, ReviewRow.decided_at >= start, ReviewRow.decided_at < end])
        changed: dict[str, float] = {}
        for (_, when), share in shares.items():
            changed[when] = changed.get(when, 0.0) + share
        points = [DriftPoint(week=w, reviews=n, disagreement=round(changed.get(w, 0.0) / n, 4)) for w, n in counts]
        return DriftPage(points=points[::-1], weeks=len(every), page=page, size=size)

    def recent_disagreement(self) -> float | None:
        """Share of criterion levels facilitators changed over the `recent` most recently approved reviews."""
        with self.store.session() as db:
            ids = list(db.scalars(select(ReviewRow.id).where(ReviewRow.status == ReviewStatus.APPROVED.value)
                                  .order_by(ReviewRow.decided_at.desc(), ReviewRow.id.desc()).limit(self.recent)))
            shares = _edited_shares(db, [ReviewRow.id.in_(ids)]) if ids else {}
        return round(sum(shares.values()) / len(ids), 4) if ids else None


class _week_start(FunctionElement[str]):  # a SQL function, named as one
    """The ISO date of the Monday starting the week of a timestamp, computed by the database."""

    type = String()
    inherit_cache = True


@compiles(_week_start, "sqlite")
def _week_start_sqlite(element: _week_start, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)}, '-6 days', 'weekday 1')"


@compiles(_week_start, "postgresql")
def _week_start_postgresql(element: _week_start, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char(date_trunc('week', {compiler.process(element.clauses, **kw)}), 'YYYY-MM-DD')"


def _criterion_levels(db: Session) -> tuple[Any, ColumnElement[Any], ColumnElement[Any]]:
    """The criteria of a stored grade as rows (the JSON read by the database): the FROM item, its id and its level."""
    if db.get_bind().dialect.name == "postgresql":
        item = func.json_array_elements(GradeRow.result["criteria"]).table_valued("value").alias("criterion")
        return item, item.c.value.op("->>")("criterion_id"), item.c.value.op("->>")("level")
    item = func.json_each(GradeRow.result, "$.criteria").table_valued("value").alias("criterion")
    return item, func.json_extract(item.c.value, "$.criterion_id"), func.json_extract(item.c.value, "$.level")


def _edited_shares(db: Session, where: list[ColumnElement[bool]]) -> dict[tuple[int, str], float]:
    """Per (review, week) of the matching reviews that facilitators edited: the share of criterion levels changed.

    Two statements: the AI level of each criterion of the edited reviews, and their edits in order.
    """
    week = _week_start(ReviewRow.decided_at)
    edited = exists().where(ReviewEvent.review_id == ReviewRow.id, ReviewEvent.action == "edit")
    item, criterion_id, level = _criterion_levels(db)
    ai: dict[tuple[int, str], dict[str, int]] = {}
    for review_id, when, cid, lv in db.execute(
            select(ReviewRow.id, week, criterion_id, level).select_from(ReviewRow)
            .join(GradeRow, GradeRow.id == ReviewRow.grade_id).join(item, true()).where(*where, edited)):
        ai.setdefault((review_id, when), {})[str(cid)] = int(lv)
    if not ai:
        return {}
    levels: dict[int, dict[str, int]] = {}
    for review_id, payload in db.execute(select(ReviewEvent.review_id, ReviewEvent.payload)
                                         .join(ReviewRow, ReviewRow.id == ReviewEvent.review_id)
                                         .where(*where, ReviewEvent.action == "edit").order_by(ReviewEvent.id)):
        for change in payload.get("changes", []):
            if change.get("level") is not None:
                levels.setdefault(review_id, {})[change["criterion_id"]] = change["level"]
    out = {}
    for (review_id, when), given in ai.items():
        final = {c: levels.get(review_id, {}).get(c, lv) for c, lv in given.items()}
        out[review_id, when] = sum(final[c] != given[c] for c in given) / max(1, len(given))
    return out
