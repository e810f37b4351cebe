"""Calibration: facilitators score anchor transcripts blind; agreement with the grader and each other; drift."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from roleplay.catalog import Catalog
from roleplay.errors import NotFoundError, PermissionDenied, RoleplayError
from roleplay.gold import load_gold
from roleplay.grader import Judge, OfflineJudge
from roleplay.metrics import LEVELS, Agreement, agreement
from roleplay.models import CalibrationRating, Person, ReviewStatus, Role
from roleplay.review import ReviewService
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


class CalibrationService:
    """Blind scoring of anchor transcripts and the agreement dashboard.

    Args:
        store: The database.
        catalog: Scenarios and rubrics.
        reviews: The review workflow, source of the approved reviews the drift signal reads.
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

    def report(self) -> CalibrationReport:
        """Agreement figures and the drift signal."""
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
        drift, recent = self._drift()
        return CalibrationReport(
            facilitator_vs_grader={c: agreement(h, a) for c, (h, a) in sorted(vs_ai.items())},
            between_facilitators={c: agreement(a, b) for c, (a, b) in sorted(pairs.items())},
            overall_vs_grader=agreement([x for h, _ in vs_ai.values() for x in h], [x for _, a in vs_ai.values() for x in a]),
            raters=sorted({r[0] for r in rows}), anchors_rated=len({r[1] for r in rows}),
            drift=drift, recent_disagreement=recent, drift_threshold=threshold,
            drifting=recent is not None and recent > threshold,
        )

    def _drift(self) -> tuple[list[DriftPoint], float | None]:
        views = self.reviews.queue(ReviewStatus.APPROVED)
        views.sort(key=lambda v: v.decided_at or datetime.min.replace(tzinfo=timezone.utc))
        weekly: dict[str, list[float]] = {}
        per_review: list[float] = []
        for v in views:
            changed = sum(a.level != c.level for a, c in zip(v.ai_grade.criteria, v.current.criteria))
            share = changed / max(1, len(v.current.criteria))
            per_review.append(share)
            when = v.decided_at or datetime.now(timezone.utc)
            week = (when - timedelta(days=when.weekday())).date().isoformat()
            weekly.setdefault(week, []).append(share)
        points = [DriftPoint(week=w, reviews=len(s), disagreement=round(sum(s) / len(s), 4)) for w, s in sorted(weekly.items())]
        recent = per_review[-self.recent:]
        return points, (round(sum(recent) / len(recent), 4) if recent else None)
