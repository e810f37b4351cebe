"""The cohort report: the filter that picks sessions, the tables of figures and their CSV.

`roleplay.analytics` computes the report; this module holds its shape, so the page, the command line and the CSV files
share one set of field names.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from roleplay.errors import RoleplayError

STUCK_ATTEMPTS = 3
"""Attempts at one scenario without an approved pass after which a learner counts as stuck."""
INACTIVE_DAYS = 14
"""Days without a session after which a learner counts as inactive."""


class FilterError(RoleplayError):
    """A cohort filter cannot be used (a date that is not a date, a range that ends before it starts)."""


_FORBID = ConfigDict(extra="forbid")


class CohortFilter(BaseModel):
    """Which sessions the figures describe, and the thresholds of the learner lists."""

    model_config = _FORBID
    start: date | None = Field(default=None, description="First day (UTC) a session may have started on; None: any.")
    end: date | None = Field(default=None, description="Last day (UTC) a session may have started on; None: any.")
    scenario_id: str | None = Field(default=None, description="Only this scenario; None: every scenario.")
    stuck_attempts: int = Field(default=STUCK_ATTEMPTS, ge=2, le=100,
                                description="Attempts at a scenario without an approved pass that make one stuck.")
    inactive_days: int = Field(default=INACTIVE_DAYS, ge=1, le=3650,
                               description="Days without a session that make a learner inactive.")

    @classmethod
    def parse(cls, start: str | None = None, end: str | None = None, scenario_id: str | None = None,
              stuck_attempts: int | float | None = None, inactive_days: int | float | None = None) -> CohortFilter:
        """A filter from what a person typed (dates as YYYY-MM-DD, blanks for "any"); one-line errors."""
        first, last = _day(start, "start"), _day(end, "end")
        if first and last and last < first:
            raise FilterError(f"the date range ends ({last}) before it starts ({first}); swap the dates")
        out: dict[str, Any] = {"start": first, "end": last, "scenario_id": (scenario_id or "").strip() or None}
        for name, value, low, high in (("stuck_attempts", stuck_attempts, 2, 100),
                                       ("inactive_days", inactive_days, 1, 3650)):
            if value is not None:
                if int(value) != value or not low <= value <= high:
                    raise FilterError(f"{name.replace('_', ' ')} must be a whole number from {low} to {high}")
                out[name] = int(value)
        return cls(**out)

    def describe(self) -> str:
        """The filter in words, e.g. "sessions started 6 Jan 2025 - 31 Mar 2025, scenario missed-deadlines"."""
        days = ("any day" if not (self.start or self.end) else
                f"from {_said(self.start)}" if not self.end else f"until {_said(self.end)}" if not self.start else
                f"{_said(self.start)} - {_said(self.end)}")
        scenario = f"scenario {self.scenario_id}" if self.scenario_id else "every scenario"
        return f"sessions started {days}, {scenario}"


def _day(text: str | None, which: str) -> date | None:
    """A typed day (YYYY-MM-DD; a time after it is ignored), or None when blank."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text.replace("T", " ").split(" ")[0])
    except ValueError:
        raise FilterError(f"the {which} date '{text[:40]}' is not a date; write it as YYYY-MM-DD, or leave it empty "
                          "for no limit") from None


def _said(day: date | None) -> str:
    return f"{day.day} {day:%b %Y}" if day else ""


# --- results ----------------------------------------------------------------------------------------------------

class WeekCount(BaseModel):
    """Practice in one week (Monday to Sunday)."""

    model_config = _FORBID
    week: str = Field(description="ISO date of the week's Monday.")
    started: int = Field(description="Sessions started that week.")
    ended: int = Field(description="Sessions ended that week.")
    graded: int = Field(description="Grades given that week (a session graded again after a rejection counts again).")


class ScenarioRate(BaseModel):
    """Completion and approved passes of one scenario at one level."""

    model_config = _FORBID
    scenario_id: str = Field(description="Scenario id.")
    scenario: str = Field(description="Scenario title.")
    level: str = Field(description="Difficulty practised.")
    started: int = Field(description="Sessions started.")
    ended: int = Field(description="Sessions ended (completed).")
    graded: int = Field(description="Sessions with a grade.")
    approved: int = Field(description="Sessions whose grade a facilitator approved.")
    passed: int = Field(description="Approved results that pass (with facilitators' edits).")
    completion_rate: float | None = Field(description="Ended / started.")
    pass_rate: float | None = Field(description="Approved passes / ended sessions (a pending pass does not count).")


class CriterionMean(BaseModel):
    """One cell of the heat map: the mean approved level of a criterion in a scenario."""

    model_config = _FORBID
    scenario_id: str = Field(description="Scenario id.")
    scenario: str = Field(description="Scenario title.")
    criterion_id: str = Field(description="Criterion id.")
    criterion: str = Field(description="Criterion name.")
    results: int = Field(description="Approved results averaged.")
    mean_level: float = Field(description="Mean approved level, 1-4.")


class TrendPoint(BaseModel):
    """The mean approved overall score of the sessions practised in one week."""

    model_config = _FORBID
    week: str = Field(description="ISO date of the Monday of the week the sessions started.")
    approved: int = Field(description="Approved results of that week's sessions.")
    mean_overall: float = Field(description="Their mean overall score, 1-4.")


class StuckLearner(BaseModel):
    """A learner with several attempts at a scenario and no approved pass in it."""

    model_config = _FORBID
    learner: str = Field(description="Username.")
    name: str = Field(description="Display name.")
    scenario_id: str = Field(description="Scenario id.")
    scenario: str = Field(description="Scenario title.")
    attempts: int = Field(description="Sessions started.")
    approved: int = Field(description="Of them, approved results (none passing).")
    last_attempt: datetime = Field(description="When the latest attempt started.")


class InactiveLearner(BaseModel):
    """A learner with no session for the filter's number of days."""

    model_config = _FORBID
    learner: str = Field(description="Username.")
    name: str = Field(description="Display name.")
    sessions: int = Field(description="Sessions ever started (of the scenario, when one is chosen).")
    last_session: datetime | None = Field(description="When the latest started; None: never practised.")
    days_inactive: int | None = Field(description="Whole days since then; None: never practised.")


class QueueAge(BaseModel):
    """Pending reviews of one age."""

    model_config = _FORBID
    age: str = Field(description="How long they have waited.")
    pending: int = Field(description="Pending reviews.")


class Turnaround(BaseModel):
    """How fast one facilitator decides."""

    model_config = _FORBID
    facilitator: str = Field(description="Username.")
    name: str = Field(description="Display name.")
    decisions: int = Field(description="Reviews approved or rejected.")
    median_hours: float = Field(description="Median hours from grade to decision.")


class AgreementPoint(BaseModel):
    """How much of the grader's levels one facilitator kept in the reviews they approved in one week."""

    model_config = _FORBID
    week: str = Field(description="ISO date of the Monday of the week of approval.")
    facilitator: str = Field(description="Username of who approved.")
    reviews: int = Field(description="Reviews approved.")
    criteria: int = Field(description="Criteria in them.")
    unchanged: int = Field(description="Criteria whose approved level is the grader's.")
    agreement: float = Field(description="Unchanged / criteria.")


class CohortReport(BaseModel):
    """Every cohort figure for one filter."""

    model_config = _FORBID
    filter: CohortFilter = Field(description="What the figures describe.")
    generated_at: datetime = Field(description="When they were computed (UTC).")
    learners: int = Field(description="People with a session in the filter.")
    weekly: list[WeekCount] = Field(description="Practice per week, oldest first, every week in between.")
    rates: list[ScenarioRate] = Field(description="Per scenario (by title) and level.")
    heatmap: list[CriterionMean] = Field(description="Per scenario, its criteria in rubric order.")
    trend: list[TrendPoint] = Field(description="Mean approved overall per week of practice, oldest first.")
    stuck: list[StuckLearner] = Field(description="Most attempts first.")
    inactive: list[InactiveLearner] = Field(description="Never practised first, then longest inactive.")
    queue: list[QueueAge] = Field(description="Pending reviews by age, youngest first.")
    oldest_pending_hours: float | None = Field(description="Hours the oldest pending review has waited.")
    turnaround: list[Turnaround] = Field(description="Per facilitator, fastest first.")
    agreement: list[AgreementPoint] = Field(description="Per week of approval and facilitator, oldest first.")

    @property
    def empty(self) -> bool:
        """Whether no session matches the filter."""
        return not self.rates

    def total(self, name: str) -> int:
        """A column of `rates` summed: started, ended, graded, approved or passed."""
        return sum(getattr(r, name) for r in self.rates)

    def pending(self) -> int:
        """Pending reviews in all."""
        return sum(q.pending for q in self.queue)

    def overall_agreement(self) -> float | None:
        """Unchanged / criteria over every approved review, or None without one."""
        criteria = sum(a.criteria for a in self.agreement)
        return round(sum(a.unchanged for a in self.agreement) / criteria, 4) if criteria else None

    def summary(self) -> list[str]:
        """The figures in a few lines of words."""
        if self.empty:
            return [f"no practice sessions yet ({self.filter.describe()})"] + (
                [f"{len(self.inactive)} learner account(s) without a session"] if self.inactive else [])
        started, ended = self.total("started"), self.total("ended")
        agree = self.overall_agreement()
        turn = ", ".join(f"{t.facilitator} {t.median_hours:.1f} h ({t.decisions})" for t in self.turnaround)
        return [f"{self.filter.describe()}: {self.learners} learner(s)",
                f"sessions: {started} started, {ended} ended ({_pct(ended / started)}), {self.total('graded')} graded, "
                f"{self.total('approved')} approved, {self.total('passed')} approved passes",
                f"learners stuck ({self.filter.stuck_attempts}+ attempts, no approved pass): {len(self.stuck)}; "
                f"inactive ({self.filter.inactive_days}+ days): {len(self.inactive)}",
                f"review queue: {self.pending()} pending" + (f", oldest {self.oldest_pending_hours / 24:.1f} days"
                                                            if self.oldest_pending_hours is not None else ""),
                "turnaround (median hours from grade to decision): " + (turn or "no decisions yet"),
                "grader agreement: " + (f"facilitators kept {agree:.1%} of the grader's criterion levels"
                                        if agree is not None else "no approved reviews yet")]

    def tables(self) -> dict[str, list[BaseModel]]:
        """Each table of the report by its CSV file name, in `TABLES` order."""
        return {name: list(getattr(self, attribute)) for name, (attribute, _) in TABLES.items()}


TABLES: dict[str, tuple[str, type[BaseModel]]] = {
    "practice-per-week": ("weekly", WeekCount), "rates-per-scenario-level": ("rates", ScenarioRate),
    "criterion-heatmap": ("heatmap", CriterionMean), "skill-trend": ("trend", TrendPoint),
    "learners-stuck": ("stuck", StuckLearner), "learners-inactive": ("inactive", InactiveLearner),
    "review-queue-age": ("queue", QueueAge), "facilitator-turnaround": ("turnaround", Turnaround),
    "grader-agreement": ("agreement", AgreementPoint)}
"""Each CSV file (by name): the report's list it holds and its row model, whose fields are the columns."""


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def ratio(a: int, b: int) -> float | None:
    """a / b to four places, or None when b is 0."""
    return round(a / b, 4) if b else None


# --- CSV ----------------------------------------------------------------------------------------------------------

def _cell(value: Any) -> Any:
    """A CSV cell; text a spreadsheet would run as a formula (=, +, -, @ first) is quoted with an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return f"{value.astimezone(timezone.utc) if value.tzinfo else value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_text(name: str, rows: list[BaseModel]) -> str:
    """One table as CSV text, a header row of the model's field names first (so an empty table still has one)."""
    columns = list(TABLES[name][1].model_fields)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(getattr(row, c)) for c in columns])
    return out.getvalue()


def write_csv(report: CohortReport, folder: Path) -> list[Path]:
    """Write one CSV per table into `folder` (made if missing); returns the files, in table order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in report.tables().items():
        path = folder / f"{name}.csv"
        path.write_text(csv_text(name, rows), encoding="utf-8")
        paths.append(path)
    return paths


def zip_bytes(report: CohortReport) -> bytes:
    """Every table's CSV in one zip file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, rows in report.tables().items():
            archive.writestr(f"{name}.csv", csv_text(name, rows))
    return buffer.getvalue()
