"""The `roleplay lti` commands: approved scores owed to LMS grade books (LTI 1.3 grade passback)."""

from __future__ import annotations

import sys

import click

from roleplay.cli_common import CliGroup, app_context
from roleplay.errors import RoleplayError


@click.group(cls=CliGroup)
def lti() -> None:
    """LMS launches (LTI 1.3): approved scores passed back to grade books."""


@lti.command("retry")
def lti_retry() -> None:
    """Send every approved score an LMS has not accepted yet (and queue any that were missed); exit 1 while some
    are still pending."""
    from roleplay.lti_grades import GradePassback

    passback = GradePassback(app_context())
    if not passback.enabled:
        raise RoleplayError("LMS launch is not set up here: set ROLEPLAY_LTI_CONFIG to the platforms file")
    queued = passback.catch_up()
    report = passback.send_pending()
    click.echo(f"sent {report.sent}, still pending {report.pending}" + (f" ({queued} newly queued)" if queued else ""))
    for line in report.errors:
        click.echo(f"not sent: {line}", err=True)
    if report.pending:
        sys.exit(1)
