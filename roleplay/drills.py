"""Reinforcement drills: practice scheduled some days after a sprint is signed off, to keep the skill fresh.

The programme's `reinforcement` steps say when (days after sign-off) and why; each drill is a scenario of the
certified sprint at the certified level, the least practised scenarios first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from roleplay.catalog import Catalog
from roleplay.models import DrillStatus, ReinforcementDrill
from roleplay.programme import Programme
from roleplay.scenario import Scenario
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
    status: str = Field(description="'scheduled' (the only state so far).")


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
    """Store a planned sign-off's drills in the session `db` (committed with the sign-off)."""
    for d in plan:
        db.add(ReinforcementDrill(certification_id=certification_id, person_id=person_id, sprint=d.sprint,
                                  scenario_id=d.scenario_id, level=d.level, after_days=d.after_days,
                                  due_on=d.due_on, status=DrillStatus.SCHEDULED))


def drills_of(store: Store, programme: Programme, catalog: Catalog, username: str) -> list[Drill]:
    """The learner's reinforcement drills, soonest first."""
    purposes = {r.after_days: r.purpose for r in programme.reinforcement}
    with store.session() as db:
        person = person_in(db, username)
        rows = list(db.scalars(select(ReinforcementDrill).where(ReinforcementDrill.person_id == person.id)
                               .order_by(ReinforcementDrill.due_on, ReinforcementDrill.sprint)))
    out = []
    for r in rows:
        scn = catalog.scenarios.get(r.scenario_id)
        out.append(Drill(sprint=r.sprint, scenario_id=r.scenario_id, scenario_title=scn.title if scn else r.scenario_id,
                         level=r.level, after_days=r.after_days, due_on=r.due_on,
                         purpose=purposes.get(r.after_days, ""), status=r.status))
    return out
