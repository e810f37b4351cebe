"""Calibrate page (facilitators): blind scoring of anchor transcripts, then the agreement dashboard."""

from __future__ import annotations

from datetime import date
from typing import Any

import gradio as gr

from roleplay.calibration import MIN_AGREEMENT_SCORES, CalibrationService, DriftPage, too_few_scores
from roleplay.errors import RoleplayError
from roleplay.metrics import Agreement
from roleplay.ui import render
from roleplay.ui.common import Problem, action, ctx, gate, handler, page_frame, require

PAGE = "Calibrate"
ROLES = ("facilitator",)
SLOTS = 8  # most criteria a rubric may have on this page
REPORT_OUTPUTS = 10  # summary, drift flag, two plots, heat map, table, and the drift's count, two buttons and page
TOO_FEW = "too few"


def service() -> CalibrationService:
    """The app's calibration service (it keeps the grader's anchor levels, so each anchor is graded once)."""
    return ctx().calibration


def _criteria(rubric_id: str) -> dict[str, Any]:
    return {c.id: c for c in ctx().catalog.rubric(rubric_id).criteria}


def _names(rubric_id: str) -> dict[str, str]:
    return {cid: c.name for cid, c in _criteria(rubric_id).items()}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def levels_html(criterion: Any) -> str:
    """A criterion's level descriptions (the rubric's anchors), 1 to 4, to read beside the level buttons."""
    rows = "".join(
        f'<div class="calibrate-level" style="display:flex; gap:8px; margin:0 0 3px 0">'
        f'<b style="min-width:1em">{lv}</b><span>{render.esc(text)}</span></div>'
        for lv, text in sorted(criterion.levels.items()))
    return f'<div class="calibrate-anchors" style="font-size:0.85em; line-height:1.3">{rows}</div>'


def _anchor_outputs(username: str) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The next blind anchor: id, header, transcript (no AI grade), one level picker per criterion, submit state;
    and, apart, the level descriptions beside each picker."""
    svc = service()
    anchor = svc.next_blind(username)
    hidden = tuple(gr.update(visible=False, value="") for _ in range(SLOTS))
    if anchor is None:
        total = len(svc.anchors())
        done = (f"### All {total} anchors scored\nYou have scored every anchor transcript; the dashboard below shows "
                "how you agree with the grader and your colleagues.")
        return ((None, done, "", *[gr.update(visible=False, value=None) for _ in range(SLOTS)],
                 gr.update(interactive=False)), hidden)
    scn = ctx().catalog.scenarios.get(anchor.scenario_id)
    criteria = _criteria(anchor.rubric_id)
    done = len(svc.rated_by(username))
    header = (f"### Anchor {done + 1} of {len(svc.anchors())}: {scn.title if scn else anchor.scenario_id}\n"
              "Score every criterion from the transcript alone. The grader's levels are shown only after you submit.")
    slots, levels = [], []
    for i in range(SLOTS):
        if i < len(anchor.criteria):
            cid = anchor.criteria[i]
            crit = criteria.get(cid)
            slots.append(gr.update(visible=True, value=None, label=crit.name if crit else cid))
            levels.append(gr.update(visible=crit is not None, value=levels_html(crit) if crit else ""))
        else:
            slots.append(gr.update(visible=False, value=None))
            levels.append(gr.update(visible=False, value=""))
    transcript = render.transcript_html(anchor.transcript.turns, learner="Manager",
                                        persona=scn.persona.name if scn else "Persona",
                                   cast=render.CastView(scn))
    return (anchor.id, header, transcript, *slots, gr.update(interactive=True)), tuple(levels)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def agreement_said(a: Agreement) -> str:
    """QWK, exact and adjacent agreement in words, or the caveat when there are too few scores to judge."""
    return too_few_scores(a) or f"QWK {_num(a.qwk)}, exact {_pct(a.exact)}, adjacent {_pct(a.adjacent)} (n = {a.n})"


def week_label(week: str) -> str:
    """An ISO week-start date as people write it ("30 Nov 2026")."""
    day = date.fromisoformat(week)
    return f"{day.day} {day:%b %Y}"


def _drift_outputs(drift: DriftPage) -> tuple[Any, ...]:
    """The drift plot of one page of weeks, its count in words, the Newer and Older buttons and the page shown."""
    weeks = [week_label(p.week) for p in drift.points]  # oldest first; the plot keeps this order, not the alphabet's
    plot = render.frame([{"week": w, "share": p.disagreement} for w, p in zip(weeks, drift.points)],
                        {"week": "str", "share": "float64"})
    return (gr.update(value=plot, visible=plot is not None, sort=weeks or None), drift.showing(),
            gr.update(interactive=drift.has_newer), gr.update(interactive=drift.has_older), drift.page)


def _report_outputs() -> tuple[Any, ...]:
    """Summary, drift flag, agreement-per-criterion plot, confusion heat map, drift plot, the figures table, and the
    drift's count, paging buttons and page."""
    rep = service().report()
    names: dict[str, str] = {}
    for r in ctx().catalog.rubrics.values():
        for c in r.criteria:
            names.setdefault(c.id, c.name)
    o = rep.overall_vs_grader
    drift_cls = "bad" if rep.drifting else "ok"
    drift_text = (f"Grader drift: facilitators changed {rep.recent_disagreement:.0%} of criterion levels in recent "
                  f"approved reviews (threshold {rep.drift_threshold:.0%}). Recalibrate or review the rubric."
                  if rep.drifting else
                  f"No drift flag: recent disagreement {_pct(rep.recent_disagreement)} (threshold {rep.drift_threshold:.0%})."
                  if rep.recent_disagreement is not None else
                  "No drift flag: no approved reviews to compare with the grader yet.")
    if rep.raters:
        summary = (f"**{_plural(len(rep.raters), 'facilitator')}** "
                   f"{'has' if len(rep.raters) == 1 else 'have'} scored **{_plural(rep.anchors_rated, 'anchor')}**. "
                   f"Facilitators vs grader, all criteria: {agreement_said(o)}.")
    else:
        summary = "Nobody has scored an anchor yet: agreement figures appear once facilitators submit blind scores."
    rows = []
    for cid, a in rep.facilitator_vs_grader.items():
        if too_few_scores(a):
            continue  # a point on too few scores would look like a finding
        for metric, value in (("QWK", a.qwk), ("exact", a.exact), ("adjacent", a.adjacent)):
            if value is not None:
                rows.append({"criterion": names.get(cid, cid), "metric": metric, "value": value})
    per_criterion = render.frame(rows, {"criterion": "str", "metric": "str", "value": "float64"})
    heat = render.heatmap_html(o.confusion, "facilitator", "grader", "Facilitator vs grader levels (all criteria)")
    drift = _drift_outputs(DriftPage(points=rep.drift, weeks=rep.drift_weeks, page=rep.drift_page,
                                     size=rep.drift_page_size))
    table = []
    for cid in sorted(set(rep.facilitator_vs_grader) | set(rep.between_facilitators)):
        g, b = rep.facilitator_vs_grader.get(cid), rep.between_facilitators.get(cid)
        table.append([names.get(cid, cid), g.n if g else 0, *_figures(g, 4), b.n if b else 0, *_figures(b, 2)])
    return (summary, f'<div class="rp-drift {drift_cls}" id="calibrate-drift">{render.esc(drift_text)}</div>',
            gr.update(value=per_criterion, visible=per_criterion is not None), heat, drift[0], table, *drift[1:])


def _figures(a: Agreement | None, count: int) -> list[str]:
    """QWK, exact, adjacent and mean difference (the first `count`) of a table row; "too few" below the minimum."""
    if a is None:
        return ["—"] * count
    if too_few_scores(a):
        return [TOO_FEW] * count
    return [_num(a.qwk), _pct(a.exact), _pct(a.adjacent), _num(a.mean_difference)][:count]


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(request: gr.Request) -> tuple[Any, ...]:
    """Show the next blind anchor and the dashboard to facilitators, a refusal to anyone else."""
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return (message, body, *[gr.update()] * (5 + SLOTS + REPORT_OUTPUTS + SLOTS))
    person = require(request, PAGE, *ROLES)
    try:
        anchor, levels = _anchor_outputs(person.username)
        return ("", body, *anchor, "", *_report_outputs(), *levels)
    except RoleplayError as exc:  # e.g. no anchor transcripts installed: say so on the page
        return ("", body, None, f"**Calibration is not available:** {exc}", "",
                *[gr.update(visible=False, value=None) for _ in range(SLOTS)], gr.update(interactive=False), "",
                "", "", gr.update(value=None, visible=False), "", gr.update(value=None, visible=False), [], "",
                gr.update(interactive=False), gr.update(interactive=False), 1,
                *[gr.update(visible=False, value="") for _ in range(SLOTS)])


@action
def submit(anchor_id: str | None, l0: int | None, l1: int | None, l2: int | None, l3: int | None, l4: int | None,
           l5: int | None, l6: int | None, l7: int | None, request: gr.Request) -> tuple[Any, ...]:
    """Record the blind levels, then reveal the grader's levels and refresh the dashboard.

    A missing level is a warning and changes nothing on the page: the levels already picked stay picked.
    """
    levels = [l0, l1, l2, l3, l4, l5, l6, l7]
    person = require(request, PAGE, *ROLES)
    if not anchor_id:
        raise Problem("There is no anchor to score.", title="Nothing to score")
    svc = service()
    anchor = svc.anchor(anchor_id)
    given = dict(zip(anchor.criteria, levels))
    missing = [c for c, lv in given.items() if lv in (None, "")]
    names = _names(anchor.rubric_id)
    if missing:
        raise Problem("Score every criterion first; still to score: " + ", ".join(names.get(c, c) for c in missing),
                      title="Not submitted")
    ai = svc.submit(person.username, anchor_id, {c: int(lv) for c, lv in given.items()})
    rows = "".join(
        f"<tr><td>{render.esc(names.get(c, c))}</td><td>{given[c]}</td><td>{ai.get(c, '—')}</td>"
        f"<td>{'✓' if ai.get(c) == int(given[c]) else ('≈' if abs(ai.get(c, 0) - int(given[c])) == 1 else '✗')}</td></tr>"
        for c in anchor.criteria)
    reveal = (f'<div id="calibrate-reveal"><b>Submitted.</b> The grader scored this anchor:<table class="rp-heat" '
              f'style="width:auto"><tr><th>Criterion</th><th>You</th><th>Grader</th><th></th></tr>{rows}</table></div>')
    anchor_out, level_out = _anchor_outputs(person.username)
    return (*anchor_out, reveal, *_report_outputs(), *level_out)


@action
def newer_weeks(page: int | None, request: gr.Request) -> tuple[Any, ...]:
    """The drift of the newer weeks."""
    require(request, PAGE, *ROLES)
    return _drift_outputs(service().drift((page or 1) - 1))


@action
def older_weeks(page: int | None, request: gr.Request) -> tuple[Any, ...]:
    """The drift of the older weeks."""
    require(request, PAGE, *ROLES)
    return _drift_outputs(service().drift((page or 1) + 1))


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md, body = page_frame("calibrate")
    with body:
        with gr.Row():
            with gr.Column(scale=1):
                header = gr.Markdown("", elem_id="calibrate-header")
                transcript = gr.HTML("", elem_id="calibrate-transcript")
            with gr.Column(scale=1):
                gr.Markdown("#### Your blind levels\nPick a level for each criterion; its description is beside it.")
                slots, levels = [], []
                for i in range(SLOTS):
                    with gr.Row(equal_height=False):
                        slots.append(gr.Radio([1, 2, 3, 4], value=None, label=f"Criterion {i + 1}", visible=False,
                                              elem_id=f"calibrate-level-{i}", scale=1, min_width=150))
                        levels.append(gr.HTML("", visible=False, elem_id=f"calibrate-anchors-{i}", scale=3))
                submit_btn = gr.Button("Submit blind scores", variant="primary", interactive=False,
                                       elem_id="calibrate-submit")
                reveal = gr.HTML("", elem_id="calibrate-result")
        gr.Markdown("### Agreement dashboard")
        summary = gr.Markdown("", elem_id="calibrate-summary")
        drift_flag = gr.HTML("", elem_id="calibrate-drift-flag")
        with gr.Row():
            per_criterion = gr.ScatterPlot(x="criterion", y="value", color="metric", y_lim=[-1, 1],
                                           title="Facilitators vs grader, per criterion", height=300,
                                           x_label_angle=-20, visible=False, elem_id="calibrate-agreement-plot")
            heat = gr.HTML("", elem_id="calibrate-heatmap")
        drift = gr.BarPlot(x="week", y="share", y_lim=[0, 1], height=260, x_title="week commencing",
                           y_title="share of levels changed", visible=False,
                           title="Drift: share of criterion levels facilitators changed in approved reviews, per week",
                           elem_id="calibrate-drift-plot")
        with gr.Row(equal_height=True):
            newer = gr.Button("← Newer weeks", elem_id="calibrate-drift-newer", interactive=False, scale=0,
                              min_width=140)
            drift_count = gr.Markdown("", elem_id="calibrate-drift-count")
            older = gr.Button("Older weeks →", elem_id="calibrate-drift-older", interactive=False, scale=0,
                              min_width=140)
        table = gr.Dataframe(headers=["Criterion", "n (vs grader)", "QWK", "exact", "adjacent", "mean diff",
                                      "n (between facilitators)", "QWK", "exact"],
                             value=[], interactive=False, elem_id="calibrate-table")
        gr.Markdown(f"“{TOO_FEW}”: fewer than {MIN_AGREEMENT_SCORES} paired scores, too few to judge agreement; the "
                    "figures appear once there are enough.", elem_id="calibrate-table-note")
    # What the tab has open is held by the browser (not in this process's memory): any app process serves its events.
    anchor_id = gr.Textbox(None, visible="hidden", elem_id="calibrate-anchor-id")
    drift_page = gr.Number(1, precision=0, visible="hidden", elem_id="calibrate-drift-page")  # 1 = the newest weeks
    anchor_out = [anchor_id, header, transcript, *slots, submit_btn]
    drift_out = [drift, drift_count, newer, older, drift_page]
    report_out = [summary, drift_flag, per_criterion, heat, drift, table, *drift_out[1:]]
    submit_btn.click(submit, [anchor_id, *slots], [*anchor_out, reveal, *report_out, *levels])
    newer.click(newer_weeks, drift_page, drift_out)
    older.click(older_weeks, drift_page, drift_out)
    return {"gate": gate_md, "body": body,
            "enter": (enter, [], [gate_md, body, *anchor_out, reveal, *report_out, *levels])}
