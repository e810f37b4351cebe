"""Agreement between raters (facilitators, the AI grader): QWK, exact and adjacent agreement, confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

LEVELS = (1, 2, 3, 4)


class Agreement(BaseModel):
    """How far two raters agree on 1-4 levels for one criterion (or overall)."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(description="Number of paired ratings.")
    qwk: float | None = Field(description="Quadratic weighted kappa (None when undefined, e.g. no variation).")
    exact: float | None = Field(description="Share of pairs with the same level.")
    adjacent: float | None = Field(description="Share of pairs within one level.")
    mean_difference: float | None = Field(description="Mean of (b - a): positive when rater b scores higher.")
    confusion: list[list[int]] = Field(description="4x4 counts: row = rater a's level, column = rater b's.")


def confusion_matrix(a: Sequence[int], b: Sequence[int], levels: Sequence[int] = LEVELS) -> list[list[int]]:
    """Counts of (a, b) level pairs; rows are a, columns b."""
    index = {lv: i for i, lv in enumerate(levels)}
    m = [[0] * len(levels) for _ in levels]
    for x, y in zip(a, b, strict=True):
        m[index[x]][index[y]] += 1
    return m


def quadratic_weighted_kappa(a: Sequence[int], b: Sequence[int], levels: Sequence[int] = LEVELS) -> float | None:
    """Cohen's kappa with quadratic weights; None when expected disagreement is zero."""
    n = len(a)
    if n == 0:
        return None
    k = len(levels)
    obs = confusion_matrix(a, b, levels)
    row = [sum(r) for r in obs]
    col = [sum(obs[i][j] for i in range(k)) for j in range(k)]
    num = den = 0.0
    for i in range(k):
        for j in range(k):
            w = ((i - j) ** 2) / ((k - 1) ** 2)
            num += w * obs[i][j]
            den += w * row[i] * col[j] / n
    if den == 0:
        return 1.0 if num == 0 and len(set(a)) == 1 and set(a) == set(b) else None
    return round(1 - num / den, 4)


def agreement(a: Sequence[int], b: Sequence[int]) -> Agreement:
    """All agreement figures for paired 1-4 ratings."""
    n = len(a)
    if n != len(b):
        raise ValueError("ratings must be paired: both lists need the same length")
    if n == 0:
        return Agreement(n=0, qwk=None, exact=None, adjacent=None, mean_difference=None,
                         confusion=confusion_matrix([], []))
    return Agreement(
        n=n,
        qwk=quadratic_weighted_kappa(a, b),
        exact=round(sum(x == y for x, y in zip(a, b)) / n, 4),
        adjacent=round(sum(abs(x - y) <= 1 for x, y in zip(a, b)) / n, 4),
        mean_difference=round(sum(y - x for x, y in zip(a, b)) / n, 4),
        confusion=confusion_matrix(a, b),
    )


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return round(wins / (len(pos) * len(neg)), 4)


def balanced_accuracy(predicted: Sequence[bool], actual: Sequence[bool]) -> float | None:
    """Mean of sensitivity and specificity; None without both classes."""
    tp = sum(p and a for p, a in zip(predicted, actual))
    tn = sum((not p) and (not a) for p, a in zip(predicted, actual))
    pos = sum(actual)
    neg = len(actual) - pos
    if not pos or not neg:
        return None
    return round((tp / pos + tn / neg) / 2, 4)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Unweighted Cohen's kappa for categorical labels."""
    n = len(a)
    if n == 0:
        return None
    labels = sorted(set(a) | set(b))
    po = sum(x == y for x, y in zip(a, b)) / n
    pe = sum((list(a).count(lab) / n) * (list(b).count(lab) / n) for lab in labels)
    return None if pe == 1 else round((po - pe) / (1 - pe), 4)


# --- the calibration workflow ---------------------------------------------------------------------

import os  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from roleplay.errors import NotFoundError, PermissionDenied, RoleplayError  # noqa: E402


class Anchor(BaseModel):
    """A transcript facilitators score blind to calibrate against each other and the grader."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Anchor id.")
    scenario_id: str = Field(description="Scenario of the transcript.")
    rubric_id: str = Field(description="Rubric scored.")
    criteria: list[str] = Field(description="Criterion ids to score.")
    transcript: Any = Field(description="The Transcript.")


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
        judge: Grades anchors for the comparison (the configured judge by default).
        anchors_dir: Gold transcripts used as anchors (evals/gold by default).
        recent: How many recent approved reviews the drift signal looks at.
    """

    def __init__(self, store: Any, catalog: Any, judge: Any = None, anchors_dir: Path | None = None,
                 recent: int = 20) -> None:
        from roleplay.config import PROJECT_ROOT

        self.store = store
        self.catalog = catalog
        self.judge = judge
        self.anchors_dir = anchors_dir or Path(os.environ.get("ROLEPLAY_ANCHORS_DIR") or PROJECT_ROOT / "evals" / "gold")
        self.recent = recent
        self._anchors: dict[str, Anchor] | None = None
        self._ai: dict[str, dict[str, int]] = {}

    def anchors(self) -> list[Anchor]:
        """The anchor transcripts."""
        if self._anchors is None:
            from roleplay.evals import load_gold

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

    def _facilitator(self, username: str) -> Any:
        person = self.store.person(username)
        if person.role != "facilitator":
            raise PermissionDenied(f"only facilitators calibrate; '{username}' is a {person.role}")
        return person

    def rated_by(self, username: str) -> set[str]:
        """Anchor ids this facilitator has scored."""
        from sqlalchemy import select

        from roleplay.store import CalibrationRating

        person = self._facilitator(username)
        with self.store.session() as db:
            return set(db.scalars(select(CalibrationRating.anchor_id).where(CalibrationRating.person_id == person.id)))

    def next_blind(self, username: str) -> Anchor | None:
        """The next anchor this facilitator has not scored (its AI grade stays hidden until they submit)."""
        done = self.rated_by(username)
        return next((a for a in self.anchors() if a.id not in done), None)

    def submit(self, username: str, anchor_id: str, levels: dict[str, int]) -> dict[str, int]:
        """Record a facilitator's blind levels for every criterion of an anchor; returns the grader's levels to compare."""
        from roleplay.store import CalibrationRating

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
            from roleplay.grader import make_judge

            anchor = self.anchor(anchor_id)
            scn = self.catalog.scenario(anchor.scenario_id)
            judge = self.judge or make_judge()
            grade = judge.grade(anchor.transcript, self.catalog.rubric_for(scn), scn)
            self._ai[anchor_id] = {c.criterion_id: c.level for c in grade.criteria}
        return self._ai[anchor_id]

    def report(self) -> CalibrationReport:
        """Agreement figures and the drift signal."""
        from sqlalchemy import select

        from roleplay.store import CalibrationRating, Person

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
        threshold = float(os.environ.get("ROLEPLAY_DRIFT_THRESHOLD", "0.3"))
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
        from roleplay.review import ReviewService

        views = ReviewService(self.store, self.catalog.rubric).queue("approved")
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
