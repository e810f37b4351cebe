"""The `roleplay` command line: validate, schema, people, practice, grade, review, eval, serve."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from roleplay.errors import RoleplayError

if TYPE_CHECKING:
    from roleplay.context import AppContext


def _app() -> AppContext:
    """The command's app context: settings read once, parts built on first use, closed when the command ends."""
    from roleplay.context import AppContext

    root = click.get_current_context().find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
        root.call_on_close(root.obj.close)
    return root.obj


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return bool(getattr(getattr(obj, "settings", None), "debug", False))


class _Group(click.Group):
    """A click group that turns every error into a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RoleplayError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"error: {line}", err=True)
            sys.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except BrokenPipeError:  # the output was piped into something that stopped reading (e.g. `head`)
            sys.stderr.close()
            sys.exit(0)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - last line of defence for users
            if _debug():
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

    cfg = _app().settings
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

    for scn in sorted(_app().catalog.scenarios.values(), key=lambda s: (s.sprint, s.id)):
        click.echo(f"{scn.id:24} {scn.sprint:22} {scn.title}")


@main.group(cls=_Group)
def people() -> None:
    """Manage learners, facilitators and designers."""


@people.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["learner", "facilitator", "designer"]), required=True)
@click.option("--name", "display_name", default=None, help="Display name (defaults to the username).")
@click.option("--password", is_flag=True, help="Ask for a sign-in password for the web app.")
def people_add(username: str, role: str, display_name: str | None, password: bool) -> None:
    """Add a person with a role."""

    store = _app().store
    secret = click.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    person = store.add_person(username, role, display_name)  # type: ignore[arg-type]
    if secret:
        store.set_password(username, secret)
    click.echo(f"added {person.username} ({person.role})" + (" with a password" if secret else ""))


@people.command("password")
@click.argument("username")
def people_password(username: str) -> None:
    """Set someone's sign-in password."""

    _app().store.set_password(username, click.prompt("Password", hide_input=True, confirmation_prompt=True))
    click.echo(f"password set for {username}")


@people.command("list")
def people_list() -> None:
    """List everyone."""

    for person in _app().store.people():
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

    from roleplay.practice import engine_notice, start_practice

    scenario = _app().catalog.scenario(scenario_id)
    app = _app()
    voice = app.voice(offline)
    run = start_practice(app.store, username or getpass.getuser(), scenario, level, voice, seed=seed,
                         model_name=app.settings.model, prices=(app.settings.price_input, app.settings.price_output))
    click.echo(f"# {scenario.title} ({level})\n{engine_notice(voice, app.settings)}\n")
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
    from roleplay.grader import format_grade, grade_session
    from roleplay.transcript import load_transcript

    cat = _app().catalog
    judge = _app().judge(offline)
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
        result, grade_id = grade_session(_app().store, target, judge, cat)
        rubric = cat.rubric(result.rubric_id)
        stored = f"\nStored as grade {grade_id}; awaiting facilitator review."
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        click.echo(format_grade(result, rubric) + stored)


@main.group(cls=_Group, name="eval")
def eval_() -> None:
    """Evaluate the graders."""


@eval_.command("grader")
@click.option("--dataset", type=click.Choice(["gold", "annomi", "consistency", "all"]), default="all", show_default=True)
@click.option("--offline", is_flag=True, help="Evaluate the offline judge even if an endpoint is configured.")
@click.option("--gold-dir", type=click.Path(path_type=Path), default=None, help="Gold transcripts (default: evals/gold).")
@click.option("--annomi", "annomi_csv", default=None, help="AnnoMI-simple.csv (default: shared/datasets/annomi next to the checkout).")
@click.option("--limit", type=int, default=None, help="Only the first N transcripts of each dataset.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Report directory (default: evals/reports).")
def eval_grader(dataset: str, offline: bool, gold_dir: Path | None, annomi_csv: str | None, limit: int | None,
                out_dir: Path | None) -> None:
    """Run a judge over the gold set, AnnoMI and a consistency check; write markdown + JSON reports."""
    from roleplay import evals
    from roleplay.gold import load_gold
    from roleplay.config import PROJECT_ROOT

    cat = _app().catalog
    judge = _app().judge(offline)
    label = "offline" if judge.name == "offline" else "llm"
    out = out_dir or PROJECT_ROOT / "evals" / "reports"
    gold_path = gold_dir or _app().settings.anchors_dir

    def progress(i: int, n: int, item: str) -> None:
        click.echo(f"\r  {i}/{n} {item[:40]:40}", nl=False, err=True)
        if i == n:
            click.echo("", err=True)

    if dataset in ("gold", "all", "consistency"):
        gold = load_gold(gold_path, cat)[:limit]
    if dataset in ("gold", "all"):
        click.echo(f"gold set: {len(gold)} transcripts", err=True)
        res = evals.run_gold(judge, gold, cat, progress)
        paths = evals.write_report(f"gold-{label}", res, out, evals.gold_markdown(res, label))
        a = res["all_criteria"]
        click.echo(f"gold ({label}): QWK {a['qwk']}, exact {a['exact']}, adjacent {a['adjacent']} -> {paths[1]}")
    if dataset in ("annomi", "all"):
        items = evals.load_annomi(evals.annomi_path(annomi_csv, _app().settings.annomi_csv))[:limit]
        click.echo(f"AnnoMI: {len(items)} transcripts", err=True)
        res = evals.run_annomi(judge, items, cat, progress=progress)
        paths = evals.write_report(f"annomi-{label}", res, out, evals.annomi_markdown(res, label))
        b = res["behaviour_agreement"]
        click.echo(f"AnnoMI ({label}): AUROC {res['auroc_overall_high_vs_low']}, balanced accuracy "
                   f"{res['balanced_accuracy_at_pass_threshold']}, move agreement kappa {b['cohen_kappa']} -> {paths[1]}")
    if dataset in ("consistency", "all"):
        sample = max(gold, key=lambda g: len(g.turns))
        res = evals.run_consistency(judge, sample.transcript(), cat, sample.scenario)
        res["transcript"] = sample.id
        paths = evals.write_report(f"consistency-{label}", res, out, evals.consistency_markdown(res, label))
        click.echo(f"consistency ({label}): identical {res['identical']}, stdev {res['overall_stdev']} -> {paths[1]}")


@main.group(cls=_Group)
def review() -> None:
    """Facilitator review of graded sessions."""


@review.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "all"]), default="pending", show_default=True)
def review_list(status: str) -> None:
    """List reviews."""
    views = _app().reviews.queue(None if status == "all" else status)
    if not views:
        click.echo(f"no {status} reviews")
    for v in views:
        click.echo(f"{v.review_id:5}  {v.status:9} {v.learner:14} {v.scenario_id:22} {v.level:12} "
                   f"{v.current.overall:.2f} {'pass' if v.current.passed else 'not yet'}")


@review.command("show")
@click.argument("review_id", type=int)
def review_show(review_id: int) -> None:
    """Show a review: transcript, grade, evidence and history."""
    from roleplay.grader import format_grade, transcript_of_session

    v = _app().reviews.get(review_id)
    transcript, _ = transcript_of_session(_app().store, v.session_id)
    click.echo(f"Review {v.review_id} ({v.status}, version {v.version}): {v.learner}, {v.scenario_id} ({v.level})\n")
    click.echo(transcript.to_text() + "\n")
    click.echo(format_grade(v.current, _app().catalog.rubric(v.current.rubric_id)))
    click.echo("\nHistory:")
    for h in v.history:
        changes = "; ".join(f"{c.criterion_id} -> level {c.level}" for c in h.changes if c.level)
        click.echo(f"  {h.at:%Y-%m-%d %H:%M} {h.action} by {h.actor}: {h.comment or ''} {changes}".rstrip())


@review.command("approve")
@click.argument("review_id", type=int)
@click.option("--as", "username", required=True, help="Your facilitator username.")
@click.option("--comment", default=None)
def review_approve(review_id: int, username: str, comment: str | None) -> None:
    """Approve a grade (with any edits)."""
    v = _app().reviews.approve(review_id, username, comment)
    click.echo(f"review {v.review_id} approved: {v.current.summary}")


@review.command("edit")
@click.argument("review_id", type=int)
@click.option("--as", "username", required=True, help="Your facilitator username.")
@click.option("--criterion", required=True, help="Criterion id to change.")
@click.option("--level", type=click.IntRange(1, 4), default=None)
@click.option("--feedback", default=None, help="New feedback text for the criterion.")
@click.option("--evidence", multiple=True, help="Evidence quote (repeat for several).")
@click.option("--comment", required=True, help="Why you changed it.")
def review_edit(review_id: int, username: str, criterion: str, level: int | None, feedback: str | None,
                evidence: tuple[str, ...], comment: str) -> None:
    """Edit one criterion of a grade (the AI grade is kept; the change is appended to history)."""
    from roleplay.review import CriterionEdit

    change = CriterionEdit(criterion_id=criterion, level=level, feedback=feedback, evidence=list(evidence) or None)
    v = _app().reviews.edit(review_id, username, [change], comment)
    click.echo(f"review {v.review_id} edited (version {v.version}): {v.current.summary}")


@review.command("reject")
@click.argument("review_id", type=int)
@click.option("--as", "username", required=True, help="Your facilitator username.")
@click.option("--reason", required=True, help="Why; the learner sees it.")
def review_reject(review_id: int, username: str, reason: str) -> None:
    """Reject a grade; the session will not count and the learner may practise again."""
    v = _app().reviews.reject(review_id, username, reason)
    click.echo(f"review {v.review_id} rejected")


@main.group(cls=_Group)
def calibrate() -> None:
    """Rubric calibration: blind scoring and agreement."""


@calibrate.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def calibrate_report(as_json: bool) -> None:
    """Agreement of facilitators with the grader and each other, and the drift signal."""

    rep = _app().calibration.report()
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
    ai = _app().calibration.submit(username, anchor_id, parsed)
    for cid, lv in parsed.items():
        click.echo(f"{cid:24} you {lv}  grader {ai.get(cid, '?')}")


@main.group(cls=_Group)
def certify() -> None:
    """Certification: pre-assessment, sprint choice, status and sign-off."""


@certify.command("assess")
@click.argument("username")
def certify_assess(username: str) -> None:
    """Take the pre-assessment that sets your starting level."""
    programme = _app().programme
    click.echo(programme.pre_assessment.instructions.strip() + "\n")
    answers: dict[str, str] = {}
    for q in programme.pre_assessment.questions:
        click.echo(q.situation.strip())
        for o in q.options:
            click.echo(f"  {o.id}) {o.text}")
        answers[q.id] = click.prompt("Your answer", type=click.Choice([o.id for o in q.options]))
        click.echo()
    click.echo(f"Your starting level: {_app().certification.pre_assessment(username, answers)}")


@certify.command("choose")
@click.argument("username")
@click.argument("sprints", nargs=-1, required=True)
def certify_choose(username: str, sprints: tuple[str, ...]) -> None:
    """Choose the sprints to be certified in."""
    status = _app().certification.choose_sprints(username, list(sprints))
    click.echo(f"chosen: {', '.join(s.sprint for s in status.sprints)}. {status.next_step}")


@certify.command("status")
@click.argument("username")
def certify_status(username: str) -> None:
    """Where a learner stands in each chosen sprint (only approved sessions count)."""
    st = _app().certification.status(username)
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
    cert = _app().certification.sign_off(sprint, username, facilitator, comment)
    click.echo(f"certified {username} in {sprint} ({cert.level}); credential {cert.credential.get('id')}")
    for d in cert.drills:
        click.echo(f"  drill {d.due_on}: {d.scenario_title} ({d.level}) - {d.purpose}")


@main.group(cls=_Group)
def export() -> None:
    """Export results as xAPI statements or Open Badges credentials."""


@export.command("xapi")
@click.option("--learner", default=None, help="Only this learner's approved sessions.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write JSON here instead of stdout.")
@click.option("--send", is_flag=True, help="Also send to the LRS (ROLEPLAY_LRS_URL, ROLEPLAY_LRS_KEY, ROLEPLAY_LRS_SECRET).")
def export_xapi_cmd(learner: str | None, out: Path | None, send: bool) -> None:
    """xAPI 1.0.3 statements for approved sessions (the approved score, not the AI's)."""
    from roleplay.review import approved_results
    from roleplay.xapi import export_xapi, send_to_lrs, xapi_statement

    app = _app()
    lrs = app.lrs() if send else None  # a missing LRS is reported before anything is written
    statements = [xapi_statement(r, app.catalog.scenarios.get(r.scenario_id), config=app.xapi)
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

    credential = _app().certification.certificate(username, sprint)
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

    click.echo(public_key_pem(_app().settings.data_dir), nl=False)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema (also done automatically on start)."""
    from roleplay.store import Store, _describe_url

    url = _app().settings.database_url
    Store(url).close()
    click.echo(f"database is up to date: {_describe_url(url)}")


if __name__ == "__main__":
    main()
