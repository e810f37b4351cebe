"""The `roleplay eval persona` and `roleplay eval reader` commands."""

from __future__ import annotations

from pathlib import Path

import click

from roleplay.cli_common import app_context


def _progress(i: int, n: int, item: str) -> None:
    click.echo(f"\r  {i}/{n} {item[:48]:48}", nl=False, err=True)
    if i == n:
        click.echo("", err=True)


@click.command("persona")
@click.option("--scripts", "scripts_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Learner scripts (default: evals/persona/scripts).")
@click.option("--level", "levels", multiple=True, type=click.Choice(["novice", "intermediate", "expert"]),
              help="Only these levels (repeatable; default all three).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Report directory (default: evals/reports).")
def eval_persona(scripts_dir: Path | None, levels: tuple[str, ...], out_dir: Path | None) -> None:
    """Play scripted learner styles against every shipped scenario and level; report reveals, walkouts, endings,
    distinct lines and reply relevance."""
    from roleplay import evals, persona_eval
    from roleplay.config import PROJECT_ROOT

    app = app_context()
    scripts = persona_eval.load_scripts(scripts_dir or persona_eval.SCRIPTS_DIR)
    reader = app.reader(offline=True)
    res = persona_eval.run_persona_eval(app.catalog.scenarios, reader, scripts,
                                        levels=levels or ("novice", "intermediate", "expert"), progress=_progress)
    paths = evals.write_report("persona-offline", res, out_dir or PROJECT_ROOT / "evals" / "reports",
                               persona_eval.persona_markdown(res))
    click.echo(persona_eval.persona_markdown(res))
    click.echo(f"-> {paths[1]}")


@click.command("reader")
@click.option("--annomi", "annomi_csv", default=None, help="AnnoMI-simple.csv (default: shared/datasets/annomi).")
@click.option("--limit", type=int, default=None, help="Only the first N AnnoMI transcripts.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Report directory (default: evals/reports).")
def eval_reader(annomi_csv: str | None, limit: int | None, out_dir: Path | None) -> None:
    """Report the offline reader's dev-set figures and its agreement with AnnoMI's expert utterance codes."""
    from roleplay import evals, reader_eval
    from roleplay.config import PROJECT_ROOT
    from roleplay.moves import classify

    app = app_context()
    reader = app.reader(offline=True)
    dev = reader_eval.dev_figures(reader)
    items = evals.load_annomi(evals.annomi_path(annomi_csv, app.settings.annomi_csv))[:limit]
    click.echo(f"AnnoMI: {len(items)} transcripts", err=True)
    annomi = reader_eval.annomi_agreement(reader, items, _progress, baseline=classify)
    md = reader_eval.reader_markdown(dev, annomi)
    paths = evals.write_report("reader-offline", {"dev": dev, "annomi": annomi},
                               out_dir or PROJECT_ROOT / "evals" / "reports", md)
    click.echo(md)
    click.echo(f"-> {paths[1]}")
