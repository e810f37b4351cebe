"""The `roleplay` command line: validate, schema, people, practice, grade, review, eval, serve."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from roleplay.errors import RoleplayError


class _Group(click.Group):
    """A click group that turns every error into a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RoleplayError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - last line of defence for users
            if os.environ.get("ROLEPLAY_DEBUG"):
                raise
            click.echo(f"error: unexpected {type(exc).__name__}: {exc} (set ROLEPLAY_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)


@click.group(cls=_Group)
def main() -> None:
    """Practise hard conversations against an AI persona; grade, review and certify."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Check scenario and rubric YAML files (default: the configured scenarios and rubrics)."""
    from roleplay.catalog import load_catalog
    from roleplay.config import settings

    cfg = settings()
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
    from roleplay.rubric import rubric_schema
    from roleplay.scenario import scenario_schema

    click.echo(json.dumps(scenario_schema() if kind == "scenario" else rubric_schema(), indent=2))


@main.command("scenarios")
def list_scenarios() -> None:
    """List the available scenarios."""
    from roleplay.library import catalog

    for scn in sorted(catalog().scenarios.values(), key=lambda s: (s.sprint, s.id)):
        click.echo(f"{scn.id:24} {scn.sprint:22} {scn.title}")


@main.group(cls=_Group)
def people() -> None:
    """Manage learners, facilitators and designers."""


@people.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["learner", "facilitator", "designer"]), required=True)
@click.option("--name", "display_name", default=None, help="Display name (defaults to the username).")
def people_add(username: str, role: str, display_name: str | None) -> None:
    """Add a person with a role."""
    from roleplay.store import default_store

    person = default_store().add_person(username, role, display_name)  # type: ignore[arg-type]
    click.echo(f"added {person.username} ({person.role})")


@people.command("list")
def people_list() -> None:
    """List everyone."""
    from roleplay.store import default_store

    for person in default_store().people():
        click.echo(f"{person.username:20} {person.role:12} {person.display_name}")


@main.command()
@click.argument("scenario_id")
@click.option("--level", type=click.Choice(["novice", "intermediate", "expert"]), default="intermediate", show_default=True)
@click.option("--offline", is_flag=True, help="Use the offline scripted persona even if an endpoint is configured.")
@click.option("--user", "username", default=None, help="Learner username (default: your login name).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the offline persona.")
def practice(scenario_id: str, level: str, offline: bool, username: str | None, seed: int) -> None:
    """Practise a scenario in the terminal; every turn is stored. Type /end to finish."""
    import getpass

    from roleplay.library import catalog
    from roleplay.practice import engine_notice, make_voice, start_practice
    from roleplay.store import default_store

    scenario = catalog().scenario(scenario_id)
    voice = make_voice(offline=offline)
    run = start_practice(default_store(), username or getpass.getuser(), scenario, level, voice, seed=seed)
    click.echo(f"# {scenario.title} ({level})\n{engine_notice(voice)}\n")
    click.echo(scenario.briefing.strip() + "\n")
    click.echo("Objectives:\n" + "\n".join(f"  - {o}" for o in scenario.objectives) + "\n")
    click.echo("Type your lines; /end finishes the session.\n")
    click.echo(f"{scenario.persona.name}: {run.open()}")
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
        click.echo(f"{scenario.persona.name}: ", nl=False)
        shown = ""
        for text in run.respond(line):
            if text.startswith(shown):
                click.echo(text[len(shown):], nl=False)
            else:
                click.echo(f"\n[rephrased] {text}", nl=False)
            shown = text
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
    from roleplay.grader import format_grade, grade_session, make_judge
    from roleplay.library import catalog
    from roleplay.store import default_store
    from roleplay.transcript import load_transcript

    cat = catalog()
    judge = make_judge(offline=offline)
    if Path(target).exists():
        transcript = load_transcript(target)
        sid = scenario_id or transcript.scenario_id
        scenario = cat.scenario(sid) if sid else None
        if scenario is None and not rubric_id:
            raise RoleplayError("say which rubric grades this transcript: --scenario ID or --rubric ID")
        rubric = cat.rubric(rubric_id) if rubric_id else cat.rubric_for(scenario)  # type: ignore[arg-type]
        result = judge.grade(transcript, rubric, scenario)
        stored = ""
    else:
        result, grade_id = grade_session(default_store(), target, judge, cat)
        rubric = cat.rubric(result.rubric_id)
        stored = f"\nStored as grade {grade_id}; awaiting facilitator review."
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        click.echo(format_grade(result, rubric) + stored)


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema (also done automatically on start)."""
    from roleplay.config import settings
    from roleplay.store import Store, _describe_url

    url = settings().database_url
    Store(url).close()
    click.echo(f"database is up to date: {_describe_url(url)}")


if __name__ == "__main__":
    main()
