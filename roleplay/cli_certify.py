"""The `roleplay certify` and `roleplay export` commands: the certification programme and its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from roleplay.cli_common import CliGroup, app_context


@click.group(cls=CliGroup)
def certify() -> None:
    """Certification: pre-assessment, sprint choice, status and sign-off."""


@certify.command("assess")
@click.argument("username")
def certify_assess(username: str) -> None:
    """Take the pre-assessment that sets your starting level."""
    programme = app_context().programme
    click.echo(programme.pre_assessment.instructions.strip() + "\n")
    answers: dict[str, str] = {}
    for q in programme.pre_assessment.questions:
        click.echo(q.situation.strip())
        for o in q.options:
            click.echo(f"  {o.id}) {o.text}")
        answers[q.id] = click.prompt("Your answer", type=click.Choice([o.id for o in q.options]))
        click.echo()
    click.echo(f"Your starting level: {app_context().certification.pre_assessment(username, answers)}")


@certify.command("choose")
@click.argument("username")
@click.argument("sprints", nargs=-1, required=True)
def certify_choose(username: str, sprints: tuple[str, ...]) -> None:
    """Choose the sprints to be certified in."""
    status = app_context().certification.choose_sprints(username, list(sprints))
    click.echo(f"chosen: {', '.join(s.sprint for s in status.sprints)}. {status.next_step}")


@certify.command("status")
@click.argument("username")
def certify_status(username: str) -> None:
    """Where a learner stands in each chosen sprint (only approved sessions count)."""
    st = app_context().certification.status(username)
    click.echo(f"{st.learner}: level {st.level or 'not assessed'}")
    for s in st.sprints:
        state = "CERTIFIED" if s.certified else "ready for sign-off" if s.ready_for_sign_off else f"{s.still_needed} more needed"
        click.echo(f"  {s.sprint:22} {s.approved_passing}/{s.required} approved passing at {s.level}+, "
                   f"{s.pending_reviews} pending review: {state}")
    click.echo(st.next_step)


@certify.command("issue")
@click.argument("username")
@click.argument("sprint")
@click.option("--as", "facilitator", required=True, help="Your facilitator username.")
@click.option("--comment", required=True, help="Your written sign-off comment.")
def certify_issue(username: str, sprint: str, facilitator: str, comment: str) -> None:
    """Sign off a sprint: issues the signed credential and schedules reinforcement drills."""
    cert = app_context().certification.sign_off(sprint, username, facilitator, comment)
    click.echo(f"certified {username} in {sprint} ({cert.level}); credential {cert.credential.get('id')}")
    for d in cert.drills:
        click.echo(f"  drill {d.due_on}: {d.scenario_title} ({d.level}) - {d.purpose}")


@click.group(cls=CliGroup)
def export() -> None:
    """Export results as xAPI statements or Open Badges credentials, and scenarios as SCORM packages."""


@export.command("xapi")
@click.option("--learner", default=None, help="Only this learner's approved sessions.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write JSON here instead of stdout.")
@click.option("--send", is_flag=True, help="Also send to the LRS (ROLEPLAY_LRS_URL, ROLEPLAY_LRS_KEY, ROLEPLAY_LRS_SECRET).")
def export_xapi_cmd(learner: str | None, out: Path | None, send: bool) -> None:
    """xAPI statements for approved sessions (the approved score, not the AI's), in ROLEPLAY_LRS_VERSION's form."""
    from roleplay.review import approved_results
    from roleplay.xapi import export_xapi, send_to_lrs, xapi_statement

    app = app_context()
    lrs = app.lrs() if send else None  # a missing LRS is reported before anything is written
    statements = [xapi_statement(r, app.catalog.scenarios.get(r.scenario_id), config=app.xapi,
                                 version=app.settings.lrs_version)
                  for r in approved_results(app.reviews, learner)]
    text = export_xapi(statements)
    if out:
        out.write_text(text)
        click.echo(f"{len(statements)} statement(s) written to {out}")
    else:
        click.echo(text)
    if lrs is not None:
        ids = send_to_lrs(statements, lrs)
        click.echo(f"sent {len(ids)} statement(s) to the LRS", err=True)


@export.command("badge")
@click.argument("username")
@click.argument("sprint")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write JSON here instead of stdout.")
def export_badge(username: str, sprint: str, out: Path | None) -> None:
    """The signed Open Badges 3.0 credential of a certified sprint."""
    from roleplay.badges import verify_credential

    credential = app_context().certification.certificate(username, sprint)
    text = json.dumps(credential, indent=2)
    if out:
        out.write_text(text)
        click.echo(f"credential written to {out} (verifies: {verify_credential(credential)})")
    else:
        click.echo(text)


@export.command("public-key")
def export_public_key() -> None:
    """The PEM public key that verifies issued credentials."""
    from roleplay.badges import public_key_pem

    click.echo(public_key_pem(app_context().settings.data_dir), nl=False)


@export.command("scorm")
@click.argument("scenario_id", metavar="SCENARIO")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="The zip to write (default: SCENARIO-scorm12.zip here).")
@click.option("--app-url", default=None, help="The app's address as learners open it (default: ROLEPLAY_PUBLIC_URL).")
def export_scorm_cmd(scenario_id: str, out: Path | None, app_url: str | None) -> None:
    """A SCORM 1.2 package of a scenario for an LMS; it reports the learner's approved result."""
    from roleplay.scorm import export_scorm

    path, package = export_scorm(app_context(), scenario_id, out, app_url)
    mastery = (f"mastery score {package.mastery:g}" if package.mastery is not None
               else "no mastery score: must-pass criteria decide too, so the package reports passed or failed itself")
    click.echo(f"SCORM 1.2 package of '{package.title}' written to {path} ({mastery}); upload it to your LMS")
