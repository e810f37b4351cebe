"""Progress page (learners): approved sessions, skill trend per criterion, certification and drills."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from roleplay.library import catalog
from roleplay.review import approved_results
from roleplay.ui import render
from roleplay.ui.common import gate, handler, require, review_service, store

PAGE = "Progress"
ROLES = ("learner",)


def approved_rows(username: str) -> tuple[list[list[Any]], pd.DataFrame, int]:
    """Approved sessions (table), the level of every criterion over them (trend) and how many await review."""
    svc = review_service()
    results = approved_results(svc, username)
    titles = {s.id: s.title for s in catalog().scenarios.values()}
    names: dict[str, str] = {}
    for r in catalog().rubrics.values():
        for c in r.criteria:
            names.setdefault(c.id, c.name)
    rows, trend = [], []
    for i, r in enumerate(results, 1):
        rows.append([render.when(r.approved_at), titles.get(r.scenario_id, r.scenario_id), r.level,
                     round(r.grade.overall, 2), "pass" if r.grade.passed else "not yet", r.approved_by])
        for c in r.grade.criteria:
            trend.append({"session": i, "level": c.level, "criterion": names.get(c.criterion_id, c.criterion_id)})
    pending = sum(1 for v in svc.queue("pending") if v.learner == username)
    return rows, pd.DataFrame(trend, columns=["session", "level", "criterion"]), pending


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(request: gr.Request) -> tuple[Any, ...]:
    """The learner's progress; a refusal to anyone else."""
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return (message, body, *[gr.update()] * 4)
    person = require(request, PAGE, *ROLES)
    rows, trend, pending = approved_rows(person.username)
    count = len(rows)
    head = (f"**{count} approved session{'s' if count != 1 else ''}**"
            + (f" · {pending} awaiting facilitator review" if pending else "")
            + ("" if count else ". Practise a scenario and your approved results appear here."))
    return "", body, head, rows, trend, ""


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md = gr.Markdown("", elem_id="progress-gate")
    with gr.Column(visible=False, elem_id="progress-body") as body:
        head = gr.Markdown("", elem_id="progress-summary")
        table = gr.Dataframe(headers=["Approved", "Scenario", "Level", "Overall (1-4)", "Result", "Approved by"],
                             value=[], interactive=False, elem_id="progress-approved")
        trend = gr.LinePlot(x="session", y="level", color="criterion", y_lim=[1, 4], height=300,
                            title="Skill trend: level per criterion over your approved sessions",
                            x_title="approved session", elem_id="progress-trend")
        cert = gr.Markdown("", elem_id="progress-certification")
    return {"gate": gate_md, "body": body, "enter": (enter, [], [gate_md, body, head, table, trend, cert])}
