"""The `roleplay analytics` command: cohort figures in a few lines, and every table as CSV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from roleplay.cli_common import CliGroup, app_context

if TYPE_CHECKING:
    from roleplay.cohort import CohortReport


def _filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """The filter options every analytics command takes."""
    for option in reversed((
            click.option("--from", "start", default=None, metavar="YYYY-MM-DD",
                         help="Only sessions started on or after this day (UTC)."),
            click.option("--to", "end", default=None, metavar="YYYY-MM-DD",
                         help="Only sessions started on or before this day (UTC)."),
            click.option("--scenario", default=None, help="Only this scenario (its id; `roleplay scenarios`)."),
            click.option("--stuck-attempts", type=int, default=None,
                         help="Attempts at a scenario without an approved pass that make a learner stuck [3]."),
            click.option("--inactive-days", type=int, default=None,
                         help="Days without a session that make a learner inactive [14]."))):
        command = option(command)
    return command


def _report(start: str | None, end: str | None, scenario: str | None, stuck_attempts: int | None,
            inactive_days: int | None) -> CohortReport:
    from roleplay.analytics import AnalyticsService
    from roleplay.cohort import CohortFilter

    app = app_context()
    cohort = CohortFilter.parse(start, end, scenario, stuck_attempts, inactive_days)
    return AnalyticsService(app.store, app.catalog).report(cohort)


@click.group(cls=CliGroup, invoke_without_command=True)
@_filters
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON instead of the summary.")
@click.pass_context
def analytics(ctx: click.Context, start: str | None, end: str | None, scenario: str | None,
              stuck_attempts: int | None, inactive_days: int | None, as_json: bool) -> None:
    """Cohort figures: practice, approved passes, skills, stuck and inactive learners, the review queue.

    Without a subcommand, prints a summary; `roleplay analytics export --out DIR` writes every table as CSV.
    """
    if ctx.invoked_subcommand is not None:
        return
    report = _report(start, end, scenario, stuck_attempts, inactive_days)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    for line in report.summary():
        click.echo(line)


@analytics.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the CSV files (made if missing; files of the same name are replaced).")
@_filters
def analytics_export(out: Path, start: str | None, end: str | None, scenario: str | None,
                     stuck_attempts: int | None, inactive_days: int | None) -> None:
    """Write one CSV file per table (practice per week, rates, heat map, trend, learner lists, queue, agreement)."""
    from roleplay.cohort import write_csv

    report = _report(start, end, scenario, stuck_attempts, inactive_days)
    paths = write_csv(report, out)
    click.echo(f"{len(paths)} CSV files written to {out} ({report.filter.describe()}):")
    for path, rows in zip(paths, report.tables().values(), strict=True):
        click.echo(f"  {path.name:30} {len(rows):>6} row(s)")
