"""Reinforcement drills: practice scheduled some days after a sprint is signed off, to keep the skill fresh.

The programme's `reinforcement` steps say when (days after sign-off) and why; each drill is a scenario of the
certified sprint at the certified level, the least practised scenarios first. A drill is done when the learner marks
it done, or when it was practised before its reminder went out (a session of its scenario at its level or harder,
started on or after its due date: the sender marks it done instead of emailing). Reminders are `roleplay.nudges`'s.

Dates are UTC: a drill is due from the start (00:00 UTC) of its `due_on` date, for the reminder sender and for the
Progress page alike (`due_date`, `drill_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from roleplay.catalog import Catalog
from roleplay.errors import CertificationError, NotFoundError
from roleplay.models import DrillStatus, PracticeSession, ReinforcementDrill, utcnow
from roleplay.programme import Programme
from roleplay.scenario import LEVELS, Scenario
from roleplay.store import Store, person_in


class Drill(BaseModel):
    """A scheduled reinforcement drill."""

    model_config = ConfigDict(extra="forbid")
    sprint: str = Field(description="Sprint certified.")
    scenario_id: str = Field(description="Scenario to practise.")
    scenario_title: str = Field(description="Its title (the id if it left the library).")
    level: str = Field(description="Level to practise at: the certified level.")
    after_days: int = Field(description="Days after sign-off.")
    due_on: date = Field(description="Date the drill is due.")
    purpose: str = Field(description="Why this drill.")
    status: str = Field(description="scheduled, sending (its reminder is being emailed), sent (emailed) or done.")
    id: int | None = Field(default=None, description="The stored drill's id (None while only planned).")
    sent_at: datetime | None = Field(default=None, description="When its reminder email went out.")
    done_at: datetime | None = Field(default=None, description="When it was marked done (or practised).")

    @property
    def done(self) -> bool:
        """Whether the learner has done this drill."""
        return self.status == DrillStatus.DONE


def plan_drills(programme: Programme, sprint: str, scenarios: Sequence[Scenario], level: str,
                practised: Iterable[str], issued: datetime) -> list[Drill]:
    """The drills of a sign-off: one per reinforcement step, cycling through `scenarios`, least practised first.

    Args:
        programme: The programme, whose `reinforcement` steps are scheduled.
        sprint: The sprint signed off.
        scenarios: The sprint's scenarios (at least one).
        level: The certified level.
        practised: Scenario ids of the sessions that counted, once per session.
        issued: When the sprint was signed off; due dates count from its date.
    """
    used = {s.id: 0 for s in scenarios}
    for scenario_id in practised:
        if scenario_id in used:
            used[scenario_id] += 1
    order = sorted(scenarios, key=lambda s: (used[s.id], s.id))  # the least practised first
    plan = []
    for i, step in enumerate(programme.reinforcement):
        scn = order[i % len(order)]
        plan.append(Drill(sprint=sprint, scenario_id=scn.id, scenario_title=scn.title, level=level,
                          after_days=step.after_days, due_on=issued.date() + timedelta(days=step.after_days),
                          purpose=step.purpose, status=DrillStatus.SCHEDULED))
    return plan


def schedule_drills(db: Session, plan: Iterable[Drill], *, certification_id: int, person_id: int) -> None:
    """Store a planned sign-off's drills in the session `db` (committed with the sign-off); each gets its id."""
    for d in plan:
        row = ReinforcementDrill(certification_id=certification_id, person_id=person_id, sprint=d.sprint,
                                 scenario_id=d.scenario_id, level=d.level, after_days=d.after_days,
                                 due_on=d.due_on, status=DrillStatus.SCHEDULED)
        db.add(row)
        db.flush()
        d.id = row.id


def due_date(now: datetime) -> date:
    """The latest `due_on` that is due at `now`: the UTC date of `now` (a naive time is taken as UTC)."""
    return (now if now.tzinfo is None else now.astimezone(UTC)).date()


def drill_state(drill: Drill, now: datetime | None = None) -> str:
    """How a drill stands, in a few words: 'done 09 Mar', 'emailed 09 Mar', 'due' (its UTC due date has come by
    `now`, the current time when None) or 'scheduled'."""
    if drill.done:
        return f"done {drill.done_at:%d %b}" if drill.done_at else "done"
    if drill.sent_at:
        return f"emailed {drill.sent_at:%d %b}"
    return "due" if drill.due_on <= due_date(now or utcnow()) else "scheduled"


_MAX_ID = 2**63 - 1  # the largest id a database integer column holds


def drill_id_of(value: object) -> int:
    """The drill id a page sent (the drill picker's value, which the browser may send as text).

    Raises:
        CertificationError: nothing was picked, or the value is not a drill id (text typed into the picker).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CertificationError("pick the drill you have done first")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) < 20:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_ID:
        raise CertificationError("pick a drill from the list; typed text is not a drill")
    return value


def harder_or_equal(level: str) -> list[str]:
    """`level` and the levels above it."""
    return list(LEVELS[LEVELS.index(level):]) if level in LEVELS else [level]


def practised_at(db: Session, row: ReinforcementDrill) -> datetime | None:
    """When the learner first practised the drill (its scenario at its level or harder, started on or after its due
    date), or None."""
    since = datetime.combine(row.due_on, time(), tzinfo=UTC)
    return db.scalar(select(PracticeSession.started_at)
                     .where(PracticeSession.person_id == row.person_id, PracticeSession.scenario_id == row.scenario_id,
                            PracticeSession.level.in_(harder_or_equal(row.level)), PracticeSession.started_at >= since)
                     .order_by(PracticeSession.started_at).limit(1))


def _drill(row: ReinforcementDrill, catalog: Catalog, purposes: dict[int, str]) -> Drill:
    scn = catalog.scenarios.get(row.scenario_id)
    return Drill(id=row.id, sprint=row.sprint, scenario_id=row.scenario_id,
                 scenario_title=scn.title if scn else row.scenario_id, level=row.level, after_days=row.after_days,
                 due_on=row.due_on, purpose=purposes.get(row.after_days, ""), status=row.status, sent_at=row.sent_at,
                 done_at=row.done_at)


def drills_of(store: Store, programme: Programme, catalog: Catalog, username: str) -> list[Drill]:
    """The learner's reinforcement drills, soonest first."""
    purposes = {r.after_days: r.purpose for r in programme.reinforcement}
    with store.session() as db:
        person = person_in(db, username)
        rows = list(db.scalars(select(ReinforcementDrill).where(ReinforcementDrill.person_id == person.id)
                               .order_by(ReinforcementDrill.due_on, ReinforcementDrill.sprint)))
    return [_drill(r, catalog, purposes) for r in rows]


def mark_done(store: Store, programme: Programme, catalog: Catalog, username: str, drill_id: int,
              clock: Callable[[], datetime] = utcnow) -> Drill:
    """Mark one of the learner's drills done (its reminder, if not sent yet, is then never sent).

    Raises:
        NotFoundError: the learner has no drill `drill_id`.
        CertificationError: it is done already.
    """
    purposes = {r.after_days: r.purpose for r in programme.reinforcement}
    now = clock()
    with store.session() as db:
        person = person_in(db, username)
        row = db.scalar(select(ReinforcementDrill).where(ReinforcementDrill.id == drill_id,
                                                         ReinforcementDrill.person_id == person.id))
        if row is None:
            raise NotFoundError(f"you have no reinforcement drill {drill_id}; reload your Progress page")
        if row.status == DrillStatus.DONE:
            raise CertificationError(f"that drill was already done on {row.done_at:%d %b %Y}" if row.done_at
                                     else "that drill is already done")
        db.execute(update(ReinforcementDrill).where(ReinforcementDrill.id == row.id,
                                                    ReinforcementDrill.status != DrillStatus.DONE)
                   .values(status=DrillStatus.DONE, done_at=now))
        db.refresh(row)
    return _drill(row, catalog, purposes)
