"""The `roleplay xapi` commands: the outbox of approved results' xAPI statements, and sending it to the LRS."""

from __future__ import annotations

import json
from datetime import datetime

import click

from roleplay.cli_common import CliGroup, app_context


@click.group(cls=CliGroup)
def xapi() -> None:
    """xAPI statements of approved results on their way to the LRS (ROLEPLAY_LRS_URL)."""


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


@xapi.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def xapi_status(as_json: bool) -> None:
    """How many statements are queued, sent and failed, and the last delivery error."""
    app = app_context()
    cfg = app.settings
    state = app.outbox.state()
    if as_json:
        click.echo(json.dumps({"lrs": cfg.lrs_url, "version": cfg.lrs_version, "queued": state.queued,
                               "sent": state.sent, "failed": state.failed, "last_error": state.last_error,
                               "last_error_at": state.last_error_at.isoformat() if state.last_error_at else None,
                               "last_error_attempts": state.last_error_attempts}, indent=2))
        return
    click.echo(f"LRS: {cfg.lrs_url} (xAPI {cfg.lrs_version})" if cfg.lrs_url else
               "LRS: none configured; set ROLEPLAY_LRS_URL, ROLEPLAY_LRS_KEY and ROLEPLAY_LRS_SECRET to send them")
    oldest = f" (oldest {_when(state.oldest_queued_at)})" if state.queued else ""
    click.echo(f"queued {state.queued}{oldest}, sent {state.sent} (last {_when(state.last_sent_at)}), "
               f"failed {state.failed}")
    if state.last_error:
        click.echo(f"last error ({_when(state.last_error_at)}, attempt {state.last_error_attempts}): "
                   f"{state.last_error}")
    if state.failed:
        click.echo("the LRS refused the failed ones; fix what it said, then `roleplay xapi send --retry-failed`")
    elif state.queued:
        click.echo("`roleplay xapi send` delivers the queued ones now")


@xapi.command("send")
@click.option("--retry-failed", is_flag=True, help="Queue the statements the LRS refused again first.")
def xapi_send(retry_failed: bool) -> None:
    """Deliver every queued statement to the LRS now (safe to run from cron; ids are stable, so nothing duplicates)."""
    from roleplay.errors import LRSError
    from roleplay.xapi import LRSConfig

    app = app_context()
    lrs = LRSConfig.from_settings(app.settings)  # no LRS configured: said before anything else
    if retry_failed:
        click.echo(f"{app.outbox.retry_failed()} failed statement(s) queued again")
    report = app.outbox.send()
    if report.swept:
        click.echo(f"{report.swept} approved result(s) were not in the outbox yet and were queued")
    held = f" ({report.held} it already held)" if report.held else ""
    click.echo(f"sent {report.sent} statement(s){held} to {lrs.endpoint} (xAPI {lrs.version}); "
               f"{report.queued} queued, {report.failed} refused in this run")
    if report.error:
        raise LRSError(f"{report.error} ({report.queued} statement(s) stay queued)")
