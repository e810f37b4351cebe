"""Analytics page (facilitators): cohort figures for the people who run the programme, with CSV downloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import gradio as gr

from roleplay.analytics import AGE_BUCKETS, ROLES, AnalyticsService
from roleplay.cohort import (
    INACTIVE_DAYS,
    STUCK_ATTEMPTS,
    CohortFilter,
    CohortReport,
    CriterionMean,
    FilterError,
    csv_text,
    zip_bytes,
)
from roleplay.ui import render
from roleplay.ui.calibrate_page import week_label
from roleplay.ui.common import action, ctx, gate, handler, page_frame, require, warn

PAGE = "Analytics"
ALL = ""  # the scenario choice "every scenario"
LIST_ROWS = 200  # most people a list shows on the page; the CSV has every one
OUTPUTS = 16  # what `_outputs` fills
FILTERS = 5  # from, to, scenario, stuck after, inactive after


def service() -> AnalyticsService:
    """Cohort figures on the app's store and current catalog."""
    return AnalyticsService(ctx().store, ctx().catalog)


def _scenarios() -> list[tuple[str, str]]:
    titles = sorted((s.title, s.id) for s in ctx().catalog.scenarios.values())
    return [("All scenarios", ALL), *titles]


def _level_colour(level: float) -> str:
    """A background from red (level 1) through amber to green (level 4)."""
    hue = max(0.0, min(1.0, (level - 1) / 3)) * 130
    return f"hsl({hue:.0f}, 70%, 82%)"


def heatmap_html(cells: list[CriterionMean]) -> str:
    """The mean approved level of each criterion: a row per scenario, its criteria in rubric order, coloured."""
    if not cells:
        return ('<div id="analytics-heatmap-empty" class="rp-pending">No approved results yet: the heat map fills in '
                "as facilitators approve grades.</div>")
    rows: dict[str, list[CriterionMean]] = {}
    for c in cells:
        rows.setdefault(c.scenario, []).append(c)
    body = []
    for scenario, items in rows.items():
        tds = "".join(
            f'<td style="background:{_level_colour(c.mean_level)}; color:#111; padding:4px 6px; '
            f'border:1px solid #fff; vertical-align:top" title="{render.esc(c.criterion)}: mean approved level '
            f'{c.mean_level:.2f} over {c.results} result(s)"><div style="font-size:0.8em">{render.esc(c.criterion)}'
            f'</div><b>{c.mean_level:.2f}</b> <small>n={c.results}</small></td>' for c in items)
        head = f'<th style="text-align:left; padding:4px 6px; font-weight:600; width:22%">{render.esc(scenario)}</th>'
        body.append(f"<tr>{head}{tds}</tr>")
    legend = "".join(f'<span style="background:{_level_colour(lv)}; padding:0 8px; margin-right:4px">{lv}</span>'
                     for lv in (1, 2, 3, 4))
    return (f'<div id="analytics-heatmap-table"><b>Mean approved level per criterion</b> '
            f'<span style="font-size:0.85em">(level {legend})</span><table style="border-collapse:collapse; '
            f'margin-top:4px; width:100%; table-layout:fixed; font-size:0.9em">{"".join(body)}</table></div>')


def _plots(report: CohortReport) -> tuple[Any, ...]:
    """Practice per week, skill trend, pass rates, queue age and agreement, each hidden when it has nothing to show."""
    weeks = [week_label(w.week) for w in report.weekly]
    weekly = render.frame([{"week": label, "sessions": getattr(w, stage), "stage": stage}
                           for label, w in zip(weeks, report.weekly) for stage in ("started", "ended", "graded")],
                          {"week": "str", "sessions": "int64", "stage": "str"})
    trend_weeks = [week_label(t.week) for t in report.trend]
    trend = render.frame([{"week": label, "overall": t.mean_overall} for label, t in zip(trend_weeks, report.trend)],
                         {"week": "str", "overall": "float64"})
    bars = [f"{r.level} · {r.scenario}" for r in report.rates if r.ended]  # the level first: long titles are cut
    rates = render.frame([{"scenario": f"{r.level} · {r.scenario}", "pass rate": r.pass_rate or 0.0, "level": r.level}
                          for r in report.rates if r.ended],
                         {"scenario": "str", "pass rate": "float64", "level": "str"})
    ages = [label for label, _ in AGE_BUCKETS]
    queue = render.frame([{"age": q.age, "pending": q.pending} for q in report.queue],
                         {"age": "str", "pending": "int64"})
    agree_weeks = sorted({a.week for a in report.agreement})
    agreement = render.frame([{"week": week_label(a.week), "agreement": a.agreement, "facilitator": a.facilitator}
                              for a in report.agreement], {"week": "str", "agreement": "float64", "facilitator": "str"})

    def shown(frame: Any, order: list[str]) -> Any:
        return gr.update(value=frame, visible=frame is not None, sort=order or None)

    return (shown(weekly, weeks), shown(trend, trend_weeks), shown(rates, bars), shown(queue, ages),
            shown(agreement, [week_label(w) for w in agree_weeks]))


def _tables(report: CohortReport) -> tuple[Any, ...]:
    """Rates, stuck and inactive learners (with their headings), and turnaround as table rows."""
    rates = [[r.scenario, r.level, r.started, r.ended, _pct(r.completion_rate), r.approved, r.passed,
              _pct(r.pass_rate)] for r in report.rates]
    stuck = [[f"{s.name} ({s.learner})" if s.name != s.learner else s.learner, s.scenario, s.attempts, s.approved,
              _day(s.last_attempt)] for s in report.stuck[:LIST_ROWS]]
    inactive = [[f"{i.name} ({i.learner})" if i.name != i.learner else i.learner, i.sessions,
                 _day(i.last_session) if i.last_session else "never",
                 "—" if i.days_inactive is None else i.days_inactive] for i in report.inactive[:LIST_ROWS]]
    turnaround = [[f"{t.name} ({t.facilitator})" if t.name != t.facilitator else t.facilitator, t.decisions,
                   t.median_hours] for t in report.turnaround]
    f = report.filter
    stuck_head = (f"#### Learners stuck: {len(report.stuck)}\n{f.stuck_attempts} or more attempts at a scenario and no "
                  "approved pass in it." + _more(len(report.stuck)))
    inactive_head = (f"#### Learners inactive: {len(report.inactive)}\nNo session for {f.inactive_days} days or more "
                     "(or never)." + _more(len(report.inactive)))
    return rates, stuck_head, stuck, inactive_head, inactive, turnaround


def _more(n: int) -> str:
    return f" The first {LIST_ROWS} are shown; the CSV has all {n}." if n > LIST_ROWS else ""


def _day(when: datetime) -> str:
    """A day as people write it ("3 Nov 2026")."""
    return f"{when.day} {when:%b %Y}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _summary(report: CohortReport) -> str:
    """The headline figures, or the friendly empty state."""
    f = report.filter
    filtered = f.start or f.end or f.scenario_id
    if report.empty:
        if filtered:
            return "**No sessions match these filters.** Widen the dates or choose all scenarios."
        return ("**No practice sessions yet.** The figures appear here once learners practise; results count once a "
                "facilitator approves them.")
    agree = report.overall_agreement()
    oldest = (f", the oldest waiting {report.oldest_pending_hours / 24:.1f} days"
              if report.oldest_pending_hours is not None else "")
    return (f"**{report.learners} learner{'s' if report.learners != 1 else ''}**, {report.total('started')} sessions "
            f"started, {report.total('ended')} ended, {report.total('approved')} approved of which "
            f"**{report.total('passed')} pass**. Review queue: {report.pending()} pending{oldest}. "
            + (f"Facilitators kept **{agree:.1%}** of the grader's criterion levels." if agree is not None else "")
            + "\n\n_Only approved results count as passes, levels and scores. The dates pick sessions by the day they "
              "started (UTC)._")


def _downloads(report: CohortReport, username: str) -> tuple[Any, Any]:
    """One CSV per table and a zip of them all, written to the app's private download folder."""
    if report.empty:
        return gr.update(value=None, visible=False), gr.update(value=None, visible=False)
    folder = ctx().downloads
    files = [str(folder.write(f"{name}-{username}.csv", csv_text(name, rows)))
             for name, rows in report.tables().items()]
    archive = folder.write(f"roleplay-analytics-{username}.zip", "")  # the folder writes text; the zip goes in after
    archive.write_bytes(zip_bytes(report))
    return gr.update(value=files, visible=True), gr.update(value=str(archive), visible=True)


def _outputs(report: CohortReport, username: str) -> tuple[Any, ...]:
    """Everything the page shows for one report, in the order of `build`'s outputs."""
    weekly, trend, rates_plot, queue, agreement = _plots(report)
    rates, stuck_head, stuck, inactive_head, inactive, turnaround = _tables(report)
    files, archive = _downloads(report, username)
    return (_summary(report), weekly, trend, rates_plot, heatmap_html(report.heatmap), rates, stuck_head, stuck,
            inactive_head, inactive, queue, turnaround, agreement, files, archive, report.filter.describe())


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(start: str | None, end: str | None, scenario: str | None, stuck: float | None, inactive: float | None,
          request: gr.Request) -> tuple[Any, ...]:
    """The figures for the filters in the boxes (every session at first) for facilitators, a refusal to anyone else.

    Filters that cannot be used (typed but never shown) are cleared with a warning, and every session is shown.
    """
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return (message, body, *[gr.update()] * (FILTERS + OUTPUTS))
    person = require(request, PAGE, *ROLES)
    choices = _scenarios()
    if scenario not in {value for _, value in choices}:
        scenario = ALL
    try:
        cohort = CohortFilter.parse(start, end, scenario or None, stuck, inactive)
        boxes = (start, end, scenario, cohort.stuck_attempts, cohort.inactive_days)
    except FilterError as exc:
        warn(exc)
        cohort = CohortFilter()
        boxes = ("", "", ALL, cohort.stuck_attempts, cohort.inactive_days)
    report = service().report(cohort, viewer=person.username)
    return ("", body, *boxes[:2], gr.update(choices=choices, value=boxes[2]), *boxes[3:],
            *_outputs(report, person.username))


@action
def show(start: str | None, end: str | None, scenario: str | None, stuck: float | None, inactive: float | None,
         request: gr.Request) -> tuple[Any, ...]:
    """The figures for the filters; a date that is not a date is a warning and the page stays as it was."""
    person = require(request, PAGE, *ROLES)
    cohort = CohortFilter.parse(start, end, scenario or None, stuck, inactive)
    return _outputs(service().report(cohort, viewer=person.username), person.username)


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md, body = page_frame("analytics")
    with body:
        gr.Markdown("### Cohort analytics")
        with gr.Row(equal_height=True):
            start = gr.Textbox(label="From (YYYY-MM-DD)", placeholder="any day", max_length=30,
                               elem_id="analytics-from")
            end = gr.Textbox(label="To (YYYY-MM-DD)", placeholder="any day", max_length=30, elem_id="analytics-to")
            scenario = gr.Dropdown(allow_custom_value=True, choices=[("All scenarios", ALL)], value=ALL,
                                   label="Scenario", elem_id="analytics-scenario")
            stuck_after = gr.Number(STUCK_ATTEMPTS, precision=0, minimum=2, maximum=100, label="Stuck after (attempts)",
                                    elem_id="analytics-stuck-after")
            inactive_after = gr.Number(INACTIVE_DAYS, precision=0, minimum=1, maximum=3650,
                                       label="Inactive after (days)", elem_id="analytics-inactive-after")
            apply = gr.Button("Show", variant="primary", elem_id="analytics-apply", scale=0, min_width=100)
        summary = gr.Markdown("", elem_id="analytics-summary")
        with gr.Row():
            weekly = gr.LinePlot(x="week", y="sessions", color="stage", height=280, x_title="week commencing",
                                 title="Practice per week: sessions started, ended and graded", visible=False,
                                 x_label_angle=-30, elem_id="analytics-weekly")
            trend = gr.LinePlot(x="week", y="overall", y_lim=[1, 4], height=280, x_title="week practised",
                                y_title="mean approved overall (1-4)", visible=False, x_label_angle=-30,
                                title="Skill trend: mean approved overall score per week", elem_id="analytics-trend")
        with gr.Row():
            rates_plot = gr.BarPlot(x="scenario", y="pass rate", color="level", y_lim=[0, 1], height=300,
                                    x_label_angle=-30, visible=False, elem_id="analytics-pass-rates",
                                    title="Approved passes per ended session, by scenario and level")
            heat = gr.HTML("", elem_id="analytics-heatmap")
        rates = gr.Dataframe(headers=["Scenario", "Level", "Started", "Ended", "Completed", "Approved", "Passed",
                                      "Pass rate"], value=[], interactive=False, max_height=300,
                             elem_id="analytics-rates")
        with gr.Row():
            with gr.Column():
                stuck_head = gr.Markdown("", elem_id="analytics-stuck-head")
                stuck = gr.Dataframe(headers=["Learner", "Scenario", "Attempts", "Approved", "Last attempt"], value=[],
                                     interactive=False, max_height=260, elem_id="analytics-stuck",
                                     column_widths=["24%", "28%", "14%", "14%", "20%"])
            with gr.Column():
                inactive_head = gr.Markdown("", elem_id="analytics-inactive-head")
                inactive = gr.Dataframe(headers=["Learner", "Sessions", "Last session", "Days inactive"], value=[],
                                        interactive=False, max_height=260, elem_id="analytics-inactive")
        with gr.Row():
            queue = gr.BarPlot(x="age", y="pending", height=260, visible=False, elem_id="analytics-queue",
                               title="Review queue: pending reviews by how long they have waited")
            with gr.Column():
                gr.Markdown("#### Facilitator turnaround\nMedian hours from grade to decision.")
                turnaround = gr.Dataframe(headers=["Facilitator", "Decisions", "Median hours"], value=[],
                                          interactive=False, elem_id="analytics-turnaround")
        agreement = gr.LinePlot(x="week", y="agreement", color="facilitator", y_lim=[0, 1], height=260, visible=False,
                                x_title="week approved", y_title="share of levels kept", x_label_angle=-30,
                                title="Grader agreement: share of the grader's criterion levels each facilitator kept",
                                elem_id="analytics-agreement")
        gr.Markdown("#### Download the tables (CSV)")
        scope = gr.Markdown("", elem_id="analytics-scope")
        with gr.Row():
            files = gr.File(label="One CSV per table", file_count="multiple", interactive=False, visible=False,
                            elem_id="analytics-csv")
            archive = gr.DownloadButton("Download all tables (zip)", visible=False, elem_id="analytics-zip", scale=0)
    outputs = [summary, weekly, trend, rates_plot, heat, rates, stuck_head, stuck, inactive_head, inactive, queue,
               turnaround, agreement, files, archive, scope]
    filters = [start, end, scenario, stuck_after, inactive_after]
    apply.click(show, filters, outputs)
    return {"gate": gate_md, "body": body, "enter": (enter, filters, [gate_md, body, *filters, *outputs])}
