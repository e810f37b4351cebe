"""Review page (facilitators): the queue, transcript and grade side by side, edit a criterion, approve or reject."""

from __future__ import annotations

from typing import Any

import gradio as gr

from roleplay.grader import transcript_of_session
from roleplay.models import ReviewStatus
from roleplay.review import CriterionEdit
from roleplay.ui import render
from roleplay.ui.common import ctx, gate, handler, page_frame, require, store

PAGE = "Review"
ROLES = ("facilitator",)
STATUSES = ("pending", "approved", "rejected", "all")
HEADERS = ["Review", "Learner", "Scenario", "Level", "AI overall", "Status", "Graded"]


def _picked(value: int | str | None) -> int | None:
    """A number picked in a dropdown or radio (None when nothing is picked)."""
    return None if value is None or value == "" else int(value)


def _queue(status: str | None, keep: int | None = None) -> tuple[list[list[Any]], list[tuple[str, int]]]:
    """Queue rows and dropdown choices (`keep` stays choosable even when it left this status)."""
    svc = ctx().reviews
    views = svc.queue(None if status is None or status == "all" else ReviewStatus(status))
    if keep is not None and all(v.review_id != keep for v in views):
        extra = svc.get(keep)
    else:
        extra = None
    titles = {s.id: s.title for s in ctx().catalog.scenarios.values()}
    rows, choices = [], []
    for v in views:
        created = v.history[0].at if v.history else None
        rows.append([v.review_id, v.learner, titles.get(v.scenario_id, v.scenario_id), v.level,
                     round(v.ai_grade.overall, 2), v.status, render.when(created)])
        choices.append((f"#{v.review_id} · {v.learner} · {titles.get(v.scenario_id, v.scenario_id)} ({v.status})",
                        v.review_id))
    if extra is not None:
        label = f"#{extra.review_id} · {extra.learner} · {titles.get(extra.scenario_id, extra.scenario_id)} ({extra.status})"
        choices.append((label, extra.review_id))
    return rows, choices


def _view_outputs(review_id: int) -> tuple[Any, ...]:
    """Header, transcript, grade, history, version, criterion choices and decision-button states of a review."""
    view = ctx().reviews.get(int(review_id))
    rubric = ctx().catalog.rubric(view.ai_grade.rubric_id)
    scn = ctx().catalog.scenarios.get(view.scenario_id)
    transcript, _ = transcript_of_session(store(), view.session_id)
    names = {c.id: c.name for c in rubric.criteria}
    header = (f"### Review #{view.review_id} · {view.status}\n**Learner:** {view.learner} · **Scenario:** "
              f"{scn.title if scn else view.scenario_id} ({view.level}) · **Rubric:** {rubric.title} · "
              f"**Version:** {view.version}"
              + (f"\n\n**Decided by** {view.decided_by}, {render.when(view.decided_at)}: “{view.comment}”"
                 if view.decided_by else ""))
    grade = render.grade_html(view.current, rubric, ai_grade=view.ai_grade, show_checks=True)
    pending = view.status == "pending"
    act = gr.update(interactive=pending)
    return (header,
            render.transcript_html(transcript.turns, render.evidence_of(view.current), learner=view.learner,
                                   persona=scn.persona.name if scn else "Persona"),
            grade, render.history_md(view.history, names), view.version,
            gr.update(choices=[(c.name, c.id) for c in rubric.criteria], value=None, interactive=pending),
            gr.update(value=None), "", "", act, act, act)


EMPTY_VIEW = ("Pick a review from the queue.", "", "", "", None, gr.update(choices=[], value=None),
              gr.update(value=None), "", "", gr.update(interactive=False), gr.update(interactive=False),
              gr.update(interactive=False))


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(status: str, request: gr.Request) -> tuple[Any, ...]:
    """Show the queue to facilitators, a refusal to anyone else."""
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return message, body, gr.update(), gr.update()
    require(request, PAGE, *ROLES)
    rows, choices = _queue(status or "pending")
    return "", body, rows, gr.update(choices=choices)


@handler
def load_queue(status: str, request: gr.Request) -> tuple[Any, ...]:
    """The reviews with a status."""
    require(request, PAGE, *ROLES)
    rows, choices = _queue(status or "pending")
    return rows, gr.update(choices=choices, value=None)


@handler
def open_review(review_id: int | str | None, request: gr.Request) -> tuple[Any, ...]:
    """Transcript and grade of one review, evidence highlighted, with its history."""
    require(request, PAGE, *ROLES)
    picked = _picked(review_id)
    if picked is None:
        return EMPTY_VIEW
    return _view_outputs(picked)


@handler
def pick_criterion(review_id: int | str | None, criterion_id: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Prefill the edit form with a criterion's current level, feedback and better line."""
    require(request, PAGE, *ROLES)
    picked = _picked(review_id)
    if picked is None or not criterion_id:
        return gr.update(value=None), "", ""
    c = ctx().reviews.get(picked).current.criterion(criterion_id)
    return gr.update(value=c.level), c.rationale, c.better_alternative


@handler
def save_edit(review_id: int | str | None, version: int | None, criterion_id: str | None, level: int | str | None,
              feedback: str, better: str, reason: str, status: str, request: gr.Request) -> tuple[Any, ...]:
    """Change one criterion (only what differs), with a reason; refused if someone else changed it meanwhile."""
    person = require(request, PAGE, *ROLES)
    picked = _picked(review_id)
    if picked is None:
        raise gr.Error("Pick a review first.", print_exception=False)
    if not criterion_id:
        raise gr.Error("Pick the criterion to change.", print_exception=False)
    svc = ctx().reviews
    current = svc.get(picked).current.criterion(criterion_id)
    new_level = _picked(level)
    edit = CriterionEdit(
        criterion_id=criterion_id,
        level=new_level if new_level is not None and new_level != current.level else None,
        feedback=feedback.strip() if feedback and feedback.strip() != current.rationale else None,
        better_alternative=better.strip() if better and better.strip() != current.better_alternative else None,
    )
    if edit.level is None and edit.feedback is None and edit.better_alternative is None:
        raise gr.Error("Nothing changed: set a different level, feedback or better line first.", print_exception=False)
    svc.edit(picked, person.username, [edit], reason, expected_version=version)
    gr.Info("Edit saved to the review's history.")
    rows, choices = _queue(status, keep=picked)
    return (*_view_outputs(picked), "", rows, gr.update(choices=choices))


def _decide(action: str, review_id: int | str | None, version: int | None, comment: str, status: str,
            request: gr.Request) -> tuple[Any, ...]:
    person = require(request, PAGE, *ROLES)
    picked = _picked(review_id)
    if picked is None:
        raise gr.Error("Pick a review first.", print_exception=False)
    svc = ctx().reviews
    if action == "approve":
        svc.approve(picked, person.username, (comment or "").strip() or None, expected_version=version)
        gr.Info("Approved: the learner can now see this feedback.")
    else:
        svc.reject(picked, person.username, comment, expected_version=version)
        gr.Info("Rejected: the learner sees your reason.")
    rows, choices = _queue(status, keep=picked)
    return (*_view_outputs(picked), "", rows, gr.update(choices=choices))


@handler
def approve(review_id: int | None, version: int | None, comment: str, status: str, request: gr.Request) -> tuple[Any, ...]:
    """Approve the grade as it stands (with edits)."""
    return _decide("approve", review_id, version, comment, status, request)


@handler
def reject(review_id: int | None, version: int | None, comment: str, status: str, request: gr.Request) -> tuple[Any, ...]:
    """Reject the grade with a reason."""
    return _decide("reject", review_id, version, comment, status, request)


def _ready_choices() -> list[tuple[str, str]]:
    """(label, 'learner|sprint') for every learner sprint ready for sign-off."""
    svc = ctx().certification
    out = []
    for person in store().people():
        if person.role != "learner":
            continue
        for s in svc.status(person.username).sprints:
            if s.ready_for_sign_off:
                out.append((f"{person.username} · {s.title} ({s.level}, {s.approved_passing} approved passing)",
                            f"{person.username}|{s.sprint}"))
    return out


@handler
def load_sign_offs(request: gr.Request) -> Any:
    """Learners whose sprints are ready for a facilitator's sign-off."""
    require(request, PAGE, *ROLES)
    return gr.update(choices=_ready_choices(), value=None)


@handler
def sign_off(choice: str | None, comment: str, request: gr.Request) -> tuple[Any, ...]:
    """Certify a learner's sprint with a written comment; the credential is issued and drills scheduled."""
    person = require(request, PAGE, *ROLES)
    if not choice or "|" not in choice:
        raise gr.Error("Pick a learner and sprint that are ready for sign-off.", print_exception=False)
    learner, sprint = choice.split("|", 1)
    cert = ctx().certification.sign_off(sprint, learner, person.username, comment)
    drills = ", ".join(f"{d.scenario_title} on {d.due_on.isoformat()}" for d in cert.drills) or "none"
    gr.Info(f"{learner} is certified in {sprint}.")
    return (f"**{learner}** certified in **{sprint}** at {cert.level}; credential issued. Drills scheduled: {drills}.",
            gr.update(choices=_ready_choices(), value=None), "")


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md, body = page_frame("review")
    with body:
        with gr.Row():
            status = gr.Radio(list(STATUSES), value="pending", label="Show", elem_id="review-status", scale=3)
            refresh = gr.Button("Refresh queue", elem_id="review-refresh", scale=1)
        queue = gr.Dataframe(headers=HEADERS, value=[], interactive=False, elem_id="review-queue", max_height=220)
        pick = gr.Dropdown(choices=[], value=None, label="Open review", elem_id="review-pick")
        header = gr.Markdown("Pick a review from the queue.", elem_id="review-header")
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("#### Transcript (evidence highlighted)")
                transcript = gr.HTML("", elem_id="review-transcript")
            with gr.Column(scale=1):
                gr.Markdown("#### Grade")
                grade = gr.HTML("", elem_id="review-grade")
                with gr.Accordion("Edit a criterion", open=True, elem_id="review-edit"):
                    criterion = gr.Dropdown(choices=[], value=None, label="Criterion", elem_id="review-criterion",
                                            interactive=False)
                    level = gr.Radio([1, 2, 3, 4], value=None, label="Level", elem_id="review-level")
                    feedback = gr.Textbox(label="Feedback (rationale the learner reads)", lines=3,
                                          elem_id="review-feedback")
                    better = gr.Textbox(label="Better alternative line", lines=2, elem_id="review-better")
                    reason = gr.Textbox(label="Why you changed it (kept in the history)", elem_id="review-reason")
                    save_btn = gr.Button("Save edit", elem_id="review-save-edit", interactive=False)
                comment = gr.Textbox(label="Comment to the learner (required to reject)", lines=2,
                                     elem_id="review-comment")
                with gr.Row():
                    approve_btn = gr.Button("Approve", variant="primary", elem_id="review-approve", interactive=False)
                    reject_btn = gr.Button("Reject", variant="stop", elem_id="review-reject", interactive=False)
                gr.Markdown("#### History")
                history = gr.Markdown("", elem_id="review-history")
        with gr.Accordion("Certification sign-off", open=False, elem_id="review-signoff-panel"):
            with gr.Row():
                ready = gr.Dropdown(choices=[], value=None, label="Ready for sign-off", elem_id="review-ready", scale=3)
                ready_refresh = gr.Button("Refresh", elem_id="review-ready-refresh", scale=1)
            signoff_comment = gr.Textbox(label="Written comment for the learner (required)", lines=2,
                                         elem_id="review-signoff-comment")
            signoff_btn = gr.Button("Sign off and issue credential", variant="primary", elem_id="review-signoff")
            signoff_md = gr.Markdown("", elem_id="review-signoff-result")
    version = gr.State(None)

    view = [header, transcript, grade, history, version, criterion, level, feedback, better, save_btn, approve_btn,
            reject_btn]
    status.change(load_queue, status, [queue, pick])
    refresh.click(load_queue, status, [queue, pick])
    pick.input(open_review, pick, view)
    criterion.input(pick_criterion, [pick, criterion], [level, feedback, better])
    save_btn.click(save_edit, [pick, version, criterion, level, feedback, better, reason, status],
                   [*view, reason, queue, pick])
    approve_btn.click(approve, [pick, version, comment, status], [*view, comment, queue, pick])
    reject_btn.click(reject, [pick, version, comment, status], [*view, comment, queue, pick])
    ready_refresh.click(load_sign_offs, None, ready)
    signoff_btn.click(sign_off, [ready, signoff_comment], [signoff_md, ready, signoff_comment])
    return {"gate": gate_md, "body": body, "enter": (enter, [status], [gate_md, body, queue, pick])}
