"""The `roleplay eval grader`, `roleplay eval persona` and `roleplay eval reader` commands."""

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
    distinct lines and reply relevance, and for scenes with several personas who answered, what side-taking cost
    and how airtime and the grade followed."""
    from roleplay import evals, persona_eval
    from roleplay.config import PROJECT_ROOT

    app = app_context()
    scripts = persona_eval.load_scripts(scripts_dir or persona_eval.SCRIPTS_DIR)
    reader = app.reader(offline=True)
    from roleplay.offline_judge import OfflineJudge

    res = persona_eval.run_persona_eval(app.catalog.scenarios, reader, scripts,
                                        levels=levels or ("novice", "intermediate", "expert"), progress=_progress,
                                        judge=OfflineJudge(reader=reader), rubrics=app.catalog.rubrics)
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


GRADER_SETS = ("gold", "robustness", "injection", "annomi", "consistency")


@click.command("grader")
@click.option("--dataset", type=click.Choice([*GRADER_SETS, "all"]), default="all", show_default=True)
@click.option("--offline", is_flag=True, help="Evaluate the offline judge even if an endpoint is configured.")
@click.option("--gold-dir", type=click.Path(path_type=Path), default=None, help="Gold transcripts (default: evals/gold).")
@click.option("--annomi", "annomi_csv", default=None, help="AnnoMI-simple.csv (default: shared/datasets/annomi next to the checkout).")
@click.option("--limit", type=int, default=None, help="Only the first N transcripts of each dataset.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Report directory (default: evals/reports).")
def eval_grader(dataset: str, offline: bool, gold_dir: Path | None, annomi_csv: str | None, limit: int | None,
                out_dir: Path | None) -> None:
    """Run a judge over the gold set, the robustness sets, the injection corpus, AnnoMI and a consistency check."""
    from roleplay import evals, injection, robustness
    from roleplay.config import PROJECT_ROOT
    from roleplay.gold import load_gold

    app = app_context()
    cat = app.catalog
    judge = app.judge(offline)
    label = "offline" if judge.name == "offline" else "llm"
    out = out_dir or PROJECT_ROOT / "evals" / "reports"
    sets = PROJECT_ROOT / "evals" / "grader-sets"
    wanted = GRADER_SETS if dataset == "all" else (dataset,)
    gold = load_gold(gold_dir or app.settings.anchors_dir, cat)[:limit] if {"gold", "robustness", "consistency"} & set(wanted) else []
    if "gold" in wanted:
        click.echo(f"gold set: {len(gold)} transcripts", err=True)
        res = evals.run_gold(judge, gold, cat, _progress)
        paths = evals.write_report(f"gold-{label}", res, out, evals.gold_markdown(res, label))
        a, hh = res["all_criteria"], (res["human_human"].get("all_criteria") or {})
        click.echo(f"gold ({label}): QWK {a['qwk']}, exact {a['exact']}, adjacent {a['adjacent']}; human-human QWK "
                   f"{hh.get('qwk')} -> {paths[1]}")
    if "robustness" in wanted:
        pairs = robustness.load_paraphrases(sets / "paraphrase", cat)[:limit]
        click.echo(f"robustness: stock, off-topic and filler variants of {len(gold)} gold transcripts, {len(pairs)} "
                   "paraphrase pairs", err=True)
        res = robustness.run_robustness(judge, gold, pairs, cat, _progress)
        paths = evals.write_report(f"robustness-{label}", res, out, robustness.robustness_markdown(res, label))
        click.echo(f"robustness ({label}): stock passed {res['stock']['passed']}/{res['stock']['n']}, off-topic passed "
                   f"{res['off_topic']['passed']}/{res['off_topic']['n']}, filler max gain {res['filler']['max_gain']}, "
                   f"paraphrase max move {res['paraphrase']['max_move']} -> {paths[1]}")
    if "injection" in wanted:
        attacks = injection.load_corpus(sets / "injection" / "attacks.yaml")
        ordinary = injection.load_corpus(sets / "injection" / "ordinary.yaml")
        res = {split: injection.measure([a for a in attacks if a.split == split], [o for o in ordinary if o.split == split])
               for split in ("dev", "test")}
        md = "# Injection screening (advisory)\n\n" + "".join(
            f"## {split} split\n\n" + injection.markdown_report(r) + "\n" for split, r in res.items())
        paths = evals.write_report("injection", res, out, md)
        click.echo(f"injection screen (test split): detection {res['test']['detection_rate']}, false positives "
                   f"{res['test']['false_positive_rate']} -> {paths[1]}")
    if "annomi" in wanted:
        items = evals.load_annomi(evals.annomi_path(annomi_csv, app.settings.annomi_csv))[:limit]
        click.echo(f"AnnoMI: {len(items)} transcripts", err=True)
        res = evals.run_annomi(judge, items, cat, progress=_progress)
        paths = evals.write_report(f"annomi-{label}", res, out, evals.annomi_markdown(res, label))
        b = res["behaviour_agreement"]
        click.echo(f"AnnoMI ({label}): AUROC {res['auroc_overall_high_vs_low']}, balanced accuracy "
                   f"{res['balanced_accuracy_at_pass_threshold']}, move agreement kappa {b['cohen_kappa']} -> {paths[1]}")
    if "consistency" in wanted:
        sample = max(gold, key=lambda g: len(g.turns))
        res = evals.run_consistency(judge, sample.transcript(), cat, sample.scenario)
        res["transcript"] = sample.id
        paths = evals.write_report(f"consistency-{label}", res, out, evals.consistency_markdown(res, label))
        click.echo(f"consistency ({label}): identical {res['identical']}, stdev {res['overall_stdev']} -> {paths[1]}")
