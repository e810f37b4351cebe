"""The `roleplay` command line: validate, schema, people, practice, grade, review, eval, worker, serve."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from roleplay.cli_common import CliGroup, app_context
from roleplay.errors import RoleplayError


@click.group(cls=CliGroup, lazy={"certify": "roleplay.cli_certify:certify", "export": "roleplay.cli_certify:export",
                                  "lti": "roleplay.cli_lti:lti", "xapi": "roleplay.cli_xapi:xapi",
                                  "analytics": "roleplay.cli_analytics:analytics"})
@click.version_option(package_name="roleplay", prog_name="roleplay", message="%(prog)s %(version)s")
def main() -> None:
    """Practise hard conversations against an AI persona; grade, review and certify."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Check scenario and rubric YAML files (default: the configured scenarios and rubrics)."""
    from roleplay.catalog import load_catalog

    cfg = app_context().settings
    targets = list(paths) or [cfg.scenarios_dir, cfg.rubrics_dir]
    missing = [p for p in targets if not p.exists()]
    if missing:
        raise RoleplayError(f"{missing[0]}: no such file or directory")
    catalog = load_catalog(targets, rubric_dirs=[cfg.rubrics_dir])
    for err in catalog.errors:
        click.echo(err.format())
    if catalog.errors:
        click.echo(f"{len(catalog.errors)} error(s)", err=True)
        sys.exit(1)
    click.echo(f"ok: {len(catalog.scenarios)} scenario(s), {len(catalog.rubrics)} rubric(s)")


@main.command()
@click.argument("kind", type=click.Choice(["scenario", "rubric"]))
def schema(kind: str) -> None:
    """Print the JSON Schema of a scenario or rubric file."""
    import json

    from roleplay.rubric import rubric_schema
    from roleplay.scenario import scenario_schema

    click.echo(json.dumps(scenario_schema() if kind == "scenario" else rubric_schema(), indent=2))


@main.command("scenarios")
def list_scenarios() -> None:
    """List the available scenarios."""

    for scn in sorted(app_context().catalog.scenarios.values(), key=lambda s: (s.sprint, s.id)):
        click.echo(f"{scn.id:24} {scn.sprint:22} {scn.title}")


@main.group(cls=CliGroup)
def people() -> None:
    """Manage learners, facilitators and designers."""


@people.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["learner", "facilitator", "designer"]), required=True)
@click.option("--name", "display_name", default=None, help="Display name (defaults to the username).")
@click.option("--password", is_flag=True, help="Ask for a sign-in password for the web app.")
@click.option("--email", default=None, help="Where drill reminders are emailed.")
def people_add(username: str, role: str, display_name: str | None, password: bool, email: str | None) -> None:
    """Add a person with a role."""
    from roleplay.models import Role
    from roleplay.people import PeopleService, check_email

    store = app_context().store
    address = check_email(email)
    secret = click.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    person = store.add_person(username, Role(role), display_name, password=secret)
    if address:
        PeopleService(store).set_email(person.username, address)
    click.echo(f"added {person.username} ({person.role})" + (" with a password" if secret else "")
               + (f", email {address}" if address else ""))


@people.command("set")
@click.argument("username")
@click.option("--email", required=True, help="Where drill reminders are emailed ('' removes it).")
def people_set(username: str, email: str) -> None:
    """Change someone's details: the email address drill reminders go to."""
    from roleplay.people import PeopleService

    address = PeopleService(app_context().store).set_email(username, email)
    click.echo(f"email of {username}: {address}" if address else f"email of {username} removed")


@people.command("password")
@click.argument("username")
def people_password(username: str) -> None:
    """Set someone's sign-in password."""

    app_context().store.set_password(username, click.prompt("Password", hide_input=True, confirmation_prompt=True))
    click.echo(f"password set for {username}")


@people.command("remove")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def people_remove(username: str, yes: bool) -> None:
    """Remove a person and everything that is theirs (sessions, grades, certifications, buddy links)."""
    from roleplay.errors import NotFoundError

    store = app_context().store
    try:
        person = store.person(username)
    except NotFoundError:
        raise NotFoundError(f"no person '{username}'; `roleplay people list` shows who exists") from None
    if not yes:
        click.confirm(f"Remove {person.username} ({person.role}) and all their sessions, grades and certifications?",
                      abort=True)
    sessions = store.remove_person(username)
    click.echo(f"removed {username}" + (f" and {sessions} practice session{'s' if sessions != 1 else ''}"
                                        if sessions else ""))


@people.command("list")
def people_list() -> None:
    """List everyone."""

    for person in app_context().store.people():
        click.echo(f"{person.username:20} {person.role:12} {person.display_name}")


@main.command()
@click.argument("scenario_id")
@click.option("--level", type=click.Choice(["novice", "intermediate", "expert"]), default="intermediate", show_default=True)
@click.option("--offline", is_flag=True, help="Use the offline scripted persona even if an endpoint is configured.")
@click.option("--user", "username", default=None, help="Learner username (default: your login name).")
@click.option("--seed", type=int, default=None, help="Seed for the offline persona (default: a fresh one, stored).")
def practice(scenario_id: str, level: str, offline: bool, username: str | None, seed: int | None) -> None:
    """Practise a scenario in the terminal; every turn is stored. Type /end to finish."""
    import getpass

    from roleplay.practice import engine_notice, start_practice

    scenario = app_context().catalog.scenario(scenario_id)
    app = app_context()
    voice = app.voice(offline)
    run = start_practice(app.store, username or getpass.getuser(), scenario, level, voice, seed=seed,
                         model_name=app.settings.model, prices=(app.settings.price_input, app.settings.price_output),
                         reader=app.reader(offline))
    click.echo(f"# {scenario.title} ({level})\n{engine_notice(voice, app.settings)}\n")
    click.echo(scenario.briefing.strip() + "\n")
    click.echo("Objectives:\n" + "\n".join(f"  - {o}" for o in scenario.objectives) + "\n")
    click.echo("Type your lines; /end finishes the session.\n")
    run.open()
    for turn in run.conversation.opening_turns():
        click.echo(f"{scenario.member(turn.who or scenario.members[0].id).persona.name}: {turn.text}")
    while not run.state.ended:
        try:
            line = click.prompt("You", prompt_suffix=": ", default="", show_default=False)
        except (EOFError, click.exceptions.Abort):
            line = "/end"
        if line.strip() == "/end":
            run.end()
            break
        if not line.strip():
            continue
        shown, current = "", -1
        for spoken in run.respond_scene(line):
            if spoken.index != current:
                if current >= 0:
                    click.echo()
                current, shown = spoken.index, ""
                click.echo(f"{scenario.member(spoken.who or scenario.members[0].id).persona.name}: ", nl=False)
            if spoken.text.startswith(shown):
                click.echo(spoken.text[len(shown):], nl=False)
            else:
                click.echo(f"\n[rephrased] {spoken.text}", nl=False)
            shown = spoken.text
        click.echo()
    usage = run.usage()
    click.echo(f"\nSession {run.session_id} ended ({run.state.end_reason}); {len(run.conversation.transcript.turns)} turns stored.")
    click.echo(f"Tokens: {usage['transcript_tokens']} in the transcript, {usage['prompt_tokens']} prompt / "
               f"{usage['completion_tokens']} completion ({usage['counting']})"
               + (f", estimated cost {usage['estimated_cost']:.4f}" if usage["estimated_cost"] is not None else ""))
    click.echo(f"Revealed: {', '.join(run.state.revealed_ids) or 'nothing'}. Grade it with: roleplay grade {run.session_id}")


@main.command()
@click.argument("target")
@click.option("--offline", is_flag=True, help="Use the offline judge even if an endpoint is configured.")
@click.option("--scenario", "scenario_id", default=None, help="Scenario of a transcript file (sets the rubric).")
@click.option("--rubric", "rubric_id", default=None, help="Rubric for a transcript file without a scenario.")
@click.option("--json", "as_json", is_flag=True, help="Print the grade as JSON.")
def grade(target: str, offline: bool, scenario_id: str | None, rubric_id: str | None, as_json: bool) -> None:
    """Grade a stored session (by id) or a transcript file (.json or 'Learner:/Persona:' text)."""
    from roleplay.grader import format_grade, grade_session
    from roleplay.transcript import load_transcript

    cat = app_context().catalog
    judge = app_context().judge(offline)
    path = Path(target)
    if path.exists() or path.is_symlink():
        _check_transcript_file(path)
        transcript = load_transcript(target)
        sid = scenario_id or transcript.scenario_id
        scenario = cat.scenario(sid) if sid else None
        if rubric_id:
            rubric = cat.rubric(rubric_id)
        elif scenario is not None:
            rubric = cat.rubric_for(scenario)
        else:
            raise RoleplayError("say which rubric grades this transcript: --scenario ID or --rubric ID")
        result = judge.grade(transcript, rubric, scenario)
        stored = ""
    else:
        existing = app_context().reviews.for_session(target)
        if existing is not None and existing.status != "rejected":  # grading a session twice gives the same grade
            result, rubric = existing.current, cat.rubric(existing.current.rubric_id)
            stored = (f"\nAlready graded: review {existing.review_id} is {existing.status}; nothing new was stored "
                      f"(see `roleplay review show {existing.review_id}`).")
        else:
            result, grade_id = grade_session(app_context().store, target, judge, cat)
            rubric = cat.rubric(result.rubric_id)
            stored = f"\nStored as grade {grade_id}; awaiting facilitator review."
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        click.echo(format_grade(result, rubric) + stored)


def _check_transcript_file(path: Path) -> None:
    """Refuse what cannot be a transcript file before it is read: devices, pipes, folders, unreadable or huge files.

    At most one byte more than the limit is read, whatever the file says its size is.
    """
    from roleplay.transcript import MAX_TRANSCRIPT_BYTES

    if not path.is_file():
        raise RoleplayError(f"{path}: not a regular file (a device, pipe or folder); give a transcript file: "
                            "JSON, or text with 'Learner:' and 'Persona:' lines")
    try:
        with path.open("rb") as fh:
            size = len(fh.read(MAX_TRANSCRIPT_BYTES + 1))
    except OSError as exc:
        raise RoleplayError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); give a readable "
                            "transcript file") from None
    if size > MAX_TRANSCRIPT_BYTES:
        raise RoleplayError(f"{path}: larger than {MAX_TRANSCRIPT_BYTES} bytes; a practice transcript is far smaller")


@main.group(cls=CliGroup, name="eval", lazy={"grader": "roleplay.cli_eval:eval_grader",
                                             "persona": "roleplay.cli_eval:eval_persona",
                                             "reader": "roleplay.cli_eval:eval_reader"})
def eval_() -> None:
    """Evaluate the graders, the persona and the turn reader."""


@main.group(cls=CliGroup)
def review() -> None:
    """Facilitator review of graded sessions."""


@review.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "all"]), default="pending", show_default=True)
@click.option("--learner", default=None, help="Only this learner's reviews.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True, help="Page number, 1 = newest.")
@click.option("--size", type=click.IntRange(1, 500), default=50, show_default=True, help="Reviews per page.")
def review_list(status: str, learner: str | None, page: int, size: int) -> None:
    """List reviews, newest first, a page at a time."""
    listed = app_context().reviews.page(None if status == "all" else status, learner=learner, page=page, size=size)
    if not listed.rows:
        click.echo(listed.showing())
        return
    for v in listed.rows:
        click.echo(f"{v.review_id:5}  {v.status:9} {v.learner:14} {v.scenario_id:22} {v.level:12} "
                   f"{v.overall:.2f} {'pass' if v.passed else 'not yet'}")
    click.echo(listed.showing() + (f"; older: --page {page + 1}" if listed.last < listed.total else ""), err=True)


@review.command("show")
@click.argument("review_id", type=int)
def review_show(review_id: int) -> None:
    """Show a review: transcript, grade, evidence and history."""
    from roleplay.grader import format_grade, transcript_of_session

    v = app_context().reviews.get(review_id)
    transcript, _ = transcript_of_session(app_context().store, v.session_id)
    click.echo(f"Review {v.review_id} ({v.status}, version {v.version}): {v.learner}, {v.scenario_id} ({v.level})")
    if v.status == "pending":
        click.echo(f"Act on what you see here with --version {v.version} (edit, approve, reject).")
    click.echo()
    click.echo(transcript.to_text() + "\n")
    click.echo(format_grade(v.current, app_context().catalog.rubric(v.current.rubric_id)))
    click.echo("\nHistory:")
    for h in v.history:
        changes = "; ".join(f"{c.criterion_id} -> level {c.level}" for c in h.changes if c.level)
        click.echo(f"  {h.at:%Y-%m-%d %H:%M} {h.action} by {h.actor}: {h.comment or ''} {changes}".rstrip())


@review.command("approve")
@click.argument("review_id", type=int)
@click.option("--as", "username", required=True, help="Your facilitator username.")
@click.option("--comment", default=None)
@click.option("--version", "version", type=int, default=None,
              help="The version you reviewed (`roleplay review show` prints it); refused if it changed since.")
def review_approve(review_id: int, username: str, comment: str | None, version: int | None) -> None:
    """Approve a grade (with any edits); with --version, only the version you reviewed."""
    v = app_context().reviews.approve(review_id, username, comment, expected_version=version)
    click.echo(f"review {v.review_id} approved: {v.current.summary}")


@review.command("edit")
@click.argument("review_id", type=int)
@click.option("--as", "username", required=True, help="Your facilitator username.")
@click.option("--criterion", required=True, help="Criterion id to change.")
@click.option("--level", type=click.IntRange(1, 4), default=None)
@click.option("--feedback", default=None, help="New feedback text for the criterion.")
@click.option("--evidence", multiple=True, help="Evidence quote (repeat for several).")
@click.option("--comment", required=True, help="Why you changed it.")
@click.option("--version", "version", type=int, default=0, show_default=True,
              help="The version you reviewed (`roleplay review show` prints it); needed once someone has edited it.")
def review_edit(review_id: int, username: str, criterion: str, level: int | None, feedback: str | None,
                evidence: tuple[str, ...], comment: str, version: int) -> None:
    """Edit one criterion of a grade (the AI grade is kept; the change is appended to history).

    An edit applies to the version you reviewed: 0, the grade as the judge gave it, unless you pass --version.
    If someone else changed the review since, nothing is saved and you are told its version.
    """
    from roleplay.review import CriterionEdit

    change = CriterionEdit(criterion_id=criterion, level=level, feedback=feedback, evidence=list(evidence) or None)
    v = app_context().reviews.edit(review_id, username, [change], comment, expected_version=version)
    click.echo(f"review {v.review_id} edited (version {v.version}): {v.current.summary}")


@review.command("reject")
@click.argument("review_id", type=int)
@click.option("--as", "username", required=True, help="Your facilitator username.")
@click.option("--reason", required=True, help="Why; the learner sees it.")
@click.option("--version", "version", type=int, default=None,
              help="The version you reviewed (`roleplay review show` prints it); refused if it changed since.")
def review_reject(review_id: int, username: str, reason: str, version: int | None) -> None:
    """Reject a grade; the session will not count and the learner may practise again."""
    v = app_context().reviews.reject(review_id, username, reason, expected_version=version)
    click.echo(f"review {v.review_id} rejected")


@main.group(cls=CliGroup)
def calibrate() -> None:
    """Rubric calibration: blind scoring and agreement."""


@calibrate.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def calibrate_report(as_json: bool) -> None:
    """Agreement of facilitators with the grader and each other, and the drift signal."""

    rep = app_context().calibration.report()
    if as_json:
        click.echo(rep.model_dump_json(indent=2))
        return
    click.echo(f"{len(rep.raters)} facilitator(s), {rep.anchors_rated} anchor(s) rated\n")
    click.echo(f"{'criterion':24} {'n':>4} {'QWK':>6} {'exact':>6} {'adj.':>6}   (facilitators vs grader)")
    for cid, a in rep.facilitator_vs_grader.items():
        click.echo(f"{cid:24} {a.n:4} {_num(a.qwk):>6} {_num(a.exact):>6} {_num(a.adjacent):>6}")
    if rep.between_facilitators:
        click.echo(f"\n{'criterion':24} {'n':>4} {'QWK':>6} {'exact':>6} {'adj.':>6}   (between facilitators)")
        for cid, a in rep.between_facilitators.items():
            click.echo(f"{cid:24} {a.n:4} {_num(a.qwk):>6} {_num(a.exact):>6} {_num(a.adjacent):>6}")
    state = "DRIFTING" if rep.drifting else "ok"
    click.echo(f"\nDrift: {state}; recent disagreement {_num(rep.recent_disagreement)} (threshold {rep.drift_threshold})")


@calibrate.command("score")
@click.argument("anchor_id")
@click.option("--as", "username", required=True, help="Your facilitator username.")
@click.option("--level", "levels", multiple=True, required=True, help="criterion=level, once per criterion.")
def calibrate_score(anchor_id: str, username: str, levels: tuple[str, ...]) -> None:
    """Record your blind levels for an anchor transcript; then see the grader's."""

    parsed: dict[str, int] = {}
    for item in levels:
        cid, _, lv = item.partition("=")
        if not lv.isdigit():
            raise RoleplayError(f"--level {item!r}: write criterion=level, e.g. empathy=3")
        parsed[cid.strip()] = int(lv)
    ai = app_context().calibration.submit(username, anchor_id, parsed)
    for cid, lv in parsed.items():
        click.echo(f"{cid:24} you {lv}  grader {ai.get(cid, '?')}")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


@main.group(cls=CliGroup)
def nudges() -> None:
    """Reinforcement drill reminders by email."""


@nudges.command("send")
@click.option("--dry-run", is_flag=True, help="Show the emails that are due; send and record nothing.")
def nudges_send(dry_run: bool) -> None:
    """Email every learner whose reinforcement drill is due, once (for cron; exits 1 when an email failed)."""
    report = app_context().nudges.send_due(dry_run=dry_run)
    for outcome in report.outcomes:
        click.echo(outcome.line())
    click.echo(report.summary())
    if report.count("failed"):
        sys.exit(1)


@main.command()
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes to start (each grades on its own threads).")
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Grading threads per process (a grade mostly waits for the model).")
def worker(processes: int, threads: int) -> None:
    """Grade ended sessions from the queue on Redis (ROLEPLAY_REDIS_URL) until stopped with Ctrl-C or SIGTERM.

    Start as many as you like, on any machine that shares the database; each job is graded once.
    """
    from roleplay.jobs import serve_processes

    sys.exit(serve_processes(processes, threads))


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema (also done automatically on start)."""
    from roleplay.store import Store, _describe_url

    url = app_context().settings.database_url
    Store(url).close()
    click.echo(f"database is up to date: {_describe_url(url)}")


if __name__ == "__main__":
    main()
