"""Calibrate page (facilitators): blind scoring of anchor transcripts, then the agreement dashboard."""

from __future__ import annotations

from typing import Any

import gradio as gr

from roleplay.calibration import CalibrationService
from roleplay.errors import RoleplayError
from roleplay.ui import render
from roleplay.ui.common import ctx, gate, handler, page_frame, require

PAGE = "Calibrate"
ROLES = ("facilitator",)
SLOTS = 8  # most criteria a rubric may have on this page


def service() -> CalibrationService:
    """The app's calibration service (it keeps the grader's anchor levels, so each anchor is graded once)."""
    return ctx().calibration


def _names(rubric_id: str) -> dict[str, str]:
    return {c.id: c.name for c in ctx().catalog.rubric(rubric_id).criteria}


def _anchor_outputs(username: str) -> tuple[Any, ...]:
    """The next blind anchor: id, header, transcript (no AI grade), one level picker per criterion, submit state."""
    svc = service()
    anchor = svc.next_blind(username)
    if anchor is None:
        total = len(svc.anchors())
        done = (f"### All {total} anchors scored\nYou have scored every anchor transcript; the dashboard below shows "
                "how you agree with the grader and your colleagues.")
        return (None, done, "",
                *[gr.update(visible=False, value=None) for _ in range(SLOTS)], gr.update(interactive=False))
    scn = ctx().catalog.scenarios.get(anchor.scenario_id)
    names = _names(anchor.rubric_id)
    done = len(svc.rated_by(username))
    header = (f"### Anchor {done + 1} of {len(svc.anchors())}: {scn.title if scn else anchor.scenario_id}\n"
              "Score every criterion from the transcript alone. The grader's levels are shown only after you submit.")
    slots = []
    for i in range(SLOTS):
        if i < len(anchor.criteria):
            cid = anchor.criteria[i]
            slots.append(gr.update(visible=True, value=None, label=names.get(cid, cid)))
        else:
            slots.append(gr.update(visible=False, value=None))
    transcript = render.transcript_html(anchor.transcript.turns, learner="Manager",
                                        persona=scn.persona.name if scn else "Persona")
    return (anchor.id, header, transcript, *slots, gr.update(interactive=True))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _report_outputs() -> tuple[Any, ...]:
    """Summary, agreement-per-criterion plot, confusion heat map, drift plot and the figures table."""
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
                  (f"No drift flag: recent disagreement {_pct(rep.recent_disagreement)} "
                   f"(threshold {rep.drift_threshold:.0%})."))
    summary = (f"**{len(rep.raters)} facilitator(s)** have scored **{rep.anchors_rated} anchor(s)**. "
               f"Facilitators vs grader, all criteria: QWK {_num(o.qwk)}, exact {_pct(o.exact)}, "
               f"adjacent {_pct(o.adjacent)} (n = {o.n}).")
    rows = []
    for cid, a in rep.facilitator_vs_grader.items():
        for metric, value in (("QWK", a.qwk), ("exact", a.exact), ("adjacent", a.adjacent)):
            if value is not None:
                rows.append({"criterion": names.get(cid, cid), "metric": metric, "value": value})
    per_criterion = render.frame(rows, {"criterion": "str", "metric": "str", "value": "float64"})
    heat = render.heatmap_html(o.confusion, "facilitator", "grader", "Facilitator vs grader levels (all criteria)")
    drift = render.frame([{"week": p.week, "share": p.disagreement} for p in rep.drift],
                         {"week": "str", "share": "float64"})
    table = []
    for cid in sorted(set(rep.facilitator_vs_grader) | set(rep.between_facilitators)):
        g, b = rep.facilitator_vs_grader.get(cid), rep.between_facilitators.get(cid)
        table.append([names.get(cid, cid),
                      g.n if g else 0, _num(g.qwk if g else None), _pct(g.exact if g else None),
                      _pct(g.adjacent if g else None), _num(g.mean_difference if g else None),
                      b.n if b else 0, _num(b.qwk if b else None), _pct(b.exact if b else None)])
    return (summary, f'<div class="rp-drift {drift_cls}" id="calibrate-drift">{render.esc(drift_text)}</div>',
            per_criterion, heat, drift, table)


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(request: gr.Request) -> tuple[Any, ...]:
    """Show the next blind anchor and the dashboard to facilitators, a refusal to anyone else."""
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return (message, body, *[gr.update()] * (5 + SLOTS + 6))
    person = require(request, PAGE, *ROLES)
    try:
        return ("", body, *_anchor_outputs(person.username), "", *_report_outputs())
    except RoleplayError as exc:  # e.g. no anchor transcripts installed: say so on the page
        return ("", body, None, f"**Calibration is not available:** {exc}", "",
                *[gr.update(visible=False, value=None) for _ in range(SLOTS)], gr.update(interactive=False), "",
                "", "", None, "", None, [])


@handler
def submit(anchor_id: str | None, l0: int | None, l1: int | None, l2: int | None, l3: int | None, l4: int | None,
           l5: int | None, l6: int | None, l7: int | None, request: gr.Request) -> tuple[Any, ...]:
    """Record the blind levels, then reveal the grader's levels and refresh the dashboard."""
    levels = [l0, l1, l2, l3, l4, l5, l6, l7]
    person = require(request, PAGE, *ROLES)
    if not anchor_id:
        raise gr.Error("There is no anchor to score.", print_exception=False)
    svc = service()
    anchor = svc.anchor(anchor_id)
    given = dict(zip(anchor.criteria, levels))
    missing = [c for c, lv in given.items() if lv in (None, "")]
    if missing:
        names = _names(anchor.rubric_id)
        raise gr.Error("Score every criterion first; missing: " + ", ".join(names.get(c, c) for c in missing),
                       print_exception=False)
    ai = svc.submit(person.username, anchor_id, {c: int(lv) for c, lv in given.items()})
    names = _names(anchor.rubric_id)
    rows = "".join(
        f"<tr><td>{render.esc(names.get(c, c))}</td><td>{given[c]}</td><td>{ai.get(c, '—')}</td>"
        f"<td>{'✓' if ai.get(c) == int(given[c]) else ('≈' if abs(ai.get(c, 0) - int(given[c])) == 1 else '✗')}</td></tr>"
        for c in anchor.criteria)
    reveal = (f'<div id="calibrate-reveal"><b>Submitted.</b> The grader scored this anchor:<table class="rp-heat" '
              f'style="width:auto"><tr><th>Criterion</th><th>You</th><th>Grader</th><th></th></tr>{rows}</table></div>')
    return (*_anchor_outputs(person.username), reveal, *_report_outputs())


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md, body = page_frame("calibrate")
    with body:
        with gr.Row():
            with gr.Column(scale=3):
                header = gr.Markdown("", elem_id="calibrate-header")
                transcript = gr.HTML("", elem_id="calibrate-transcript")
            with gr.Column(scale=2):
                gr.Markdown("#### Your blind levels (1 = weak, 4 = strong)")
                slots = [gr.Radio([1, 2, 3, 4], value=None, label=f"Criterion {i + 1}", visible=False,
                                  elem_id=f"calibrate-level-{i}") for i in range(SLOTS)]
                submit_btn = gr.Button("Submit blind scores", variant="primary", interactive=False,
                                       elem_id="calibrate-submit")
                reveal = gr.HTML("", elem_id="calibrate-result")
        gr.Markdown("### Agreement dashboard")
        summary = gr.Markdown("", elem_id="calibrate-summary")
        drift_flag = gr.HTML("", elem_id="calibrate-drift-flag")
        with gr.Row():
            per_criterion = gr.ScatterPlot(x="criterion", y="value", color="metric", y_lim=[-1, 1],
                                           title="Facilitators vs grader, per criterion", height=300,
                                           x_label_angle=-20, elem_id="calibrate-agreement-plot")
            heat = gr.HTML("", elem_id="calibrate-heatmap")
        drift = gr.BarPlot(x="week", y="share", y_lim=[0, 1], height=260,
                           title="Drift: share of criterion levels facilitators changed in approved reviews, per week",
                           elem_id="calibrate-drift-plot")
        table = gr.Dataframe(headers=["Criterion", "n (vs grader)", "QWK", "exact", "adjacent", "mean diff",
                                      "n (between facilitators)", "QWK", "exact"],
                             value=[], interactive=False, elem_id="calibrate-table")
    anchor_id = gr.State(None)
    anchor_out = [anchor_id, header, transcript, *slots, submit_btn]
    report_out = [summary, drift_flag, per_criterion, heat, drift, table]
    submit_btn.click(submit, [anchor_id, *slots], [*anchor_out, reveal, *report_out])
    return {"gate": gate_md, "body": body, "enter": (enter, [], [gate_md, body, *anchor_out, reveal, *report_out])}
