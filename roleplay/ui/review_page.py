"""Review page (facilitators): the queue, transcript and grade side by side, edit a criterion, approve or reject."""

from __future__ import annotations

from typing import Any

import gradio as gr

from roleplay.grader import transcript_of_session
from roleplay.models import ReviewStatus
from roleplay.review import CriterionEdit, ReviewPage
from roleplay.ui import render
from roleplay.ui.common import Problem, action, ctx, display_names, gate, handler, page_frame, require, store

PAGE = "Review"
ROLES = ("facilitator",)
STATUSES = ("pending", "approved", "rejected", "all")
HEADERS = ["Review", "Learner", "Scenario", "Level", "AI overall", "Status", "Graded"]


def _picked(value: int | str | None) -> int | None:
    """A number picked in a radio or kept in the page's state (None when nothing is picked)."""
    return None if value is None or value == "" else int(value)


def _who(username: str | None, names: dict[str, str]) -> str:
    """A person as a facilitator knows them: their name, with the username when it differs."""
    if not username:
        return "—"
    name = names.get(username, username)
    return name if name == username else f"{name} ({username})"


def _page(status: str | None, page: int | None = 1) -> ReviewPage:
    """One page of the queue (1 = the newest reviews)."""
    shown = None if not status or status == "all" else ReviewStatus(status)
    return ctx().reviews.page(shown, page=int(page or 1))


def _rows(page: ReviewPage) -> list[list[Any]]:
    """Queue rows (review number, learner's and scenario's names, level, AI overall, status, graded)."""
    titles = {s.id: s.title for s in ctx().catalog.scenarios.values()}
    names = display_names()
    return [[r.review_id, names.get(r.learner, r.learner), titles.get(r.scenario_id, r.scenario_id), r.level,
             round(r.ai_overall, 2), r.status, render.when(r.created_at)] for r in page.rows]


def _queue(status: str | None, page: int | None = 1) -> tuple[Any, ...]:
    """The queue's rows, its count in words, the Newer and Older buttons, the page shown and the grading jobs not
    done."""
    shown = _page(status, page)
    return (_rows(shown), shown.showing(), gr.update(interactive=shown.has_newer),
            gr.update(interactive=shown.has_older), shown.page, jobs_md())


JOBS_SHOWN = 20


def jobs_md() -> str:
    """The sessions being graded (queued, running) and those whose grading failed, as facilitators see them."""
    jobs = ctx().jobs.not_done(limit=JOBS_SHOWN + 1)
    if not jobs:
        return ""
    titles = {s.id: s.title for s in ctx().catalog.scenarios.values()}
    names = display_names()
    counts = {k: sum(1 for j in jobs[:JOBS_SHOWN] if j.status == k) for k in ("queued", "running", "failed")}
    head = ", ".join(f"{n} {k}" for k, n in counts.items() if n) + (f" (the oldest {JOBS_SHOWN} shown)"
                                                                     if len(jobs) > JOBS_SHOWN else "")
    rows = []
    for j in jobs[:JOBS_SHOWN]:
        since = j.started_at if j.status == "running" else j.finished_at if j.status == "failed" else j.queued_at
        detail = j.error if j.status == "failed" else (j.worker or "") if j.status == "running" else "waiting"
        rows.append(f"| {render.md_cell(names.get(j.learner or '', j.learner or ''))} | "
                    f"{render.md_cell(titles.get(j.scenario_id or '', j.scenario_id or ''))} | {j.status} | "
                    f"{render.when(since)} | {render.md_cell(detail or '')} |")
    return ("**Grading in progress:** " + head + " — a grade joins the queue below when it is made.\n\n"
            "| Learner | Scenario | Job | Since | Worker or why it failed |\n|---|---|---|---|---|\n" + "\n".join(rows))


def edits_said(history: Any) -> str:
    """How often facilitators changed a grade, in words ("not edited yet", "edited once", "edited 3 times")."""
    edits = sum(1 for h in history if h.action == "edit")
    return "not edited yet" if edits == 0 else "edited once" if edits == 1 else f"edited {edits} times"


def _view_outputs(review_id: int) -> tuple[Any, ...]:
    """Header, transcript, grade, history, version, criterion choices, decision-button states and the review id."""
    view = ctx().reviews.get(int(review_id))
    rubric = ctx().catalog.rubric(view.ai_grade.rubric_id)
    scn = ctx().catalog.scenarios.get(view.scenario_id)
    transcript, _ = transcript_of_session(store(), view.session_id)
    names = {c.id: c.name for c in rubric.criteria}
    people = display_names()
    header = (f"### Review #{view.review_id} · {view.status}\n**Learner:** {_who(view.learner, people)} · "
              f"**Scenario:** {scn.title if scn else view.scenario_id} ({view.level}) · **Rubric:** {rubric.title} · "
              f"**Grade** {edits_said(view.history)}"
              + (f"\n\n**Decided by** {_who(view.decided_by, people)}, {render.when(view.decided_at)}: “{view.comment}”"
                 if view.decided_by else ""))
    grade = render.grade_html(view.current, rubric, ai_grade=view.ai_grade, show_checks=True)
    pending = view.status == "pending"
    act = gr.update(interactive=pending)
    return (header,
            render.transcript_html(transcript.turns, render.evidence_of(view.current),
                                   learner=people.get(view.learner, view.learner),
                                   persona=scn.persona.name if scn else "Persona",
                                   cast=render.CastView(scn))
            + render.airtime_html(transcript.meeting, render.CastView(scn)),
            grade, render.history_md(view.history, names), view.version,
            gr.update(choices=[(c.name, c.id) for c in rubric.criteria], value=None, interactive=pending),
            gr.update(value=None), "", "", act, act, act, view.review_id)


EMPTY_VIEW = ("Click a review in the queue to open it.", "", "", "", None, gr.update(choices=[], value=None),
              gr.update(value=None), "", "", gr.update(interactive=False), gr.update(interactive=False),
              gr.update(interactive=False), None)


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(status: str, request: gr.Request) -> tuple[Any, ...]:
    """Show the queue to facilitators, a refusal to anyone else."""
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return message, body, *[gr.update()] * 6
    require(request, PAGE, *ROLES)
    return "", body, *_queue(status or "pending")


@action
def load_queue(status: str, request: gr.Request) -> Any:
    """The rows of the first page of reviews with a status (newest first)."""
    require(request, PAGE, *ROLES)
    return _rows(_page(status or "pending"))


@action
def first_page(status: str, request: gr.Request) -> tuple[Any, ...]:
    """The first page of reviews with a status, with its count and paging buttons."""
    require(request, PAGE, *ROLES)
    return _queue(status or "pending")


@action
def refresh_page(status: str, page: int | None, request: gr.Request) -> tuple[Any, ...]:
    """The page in view again (the last one if it is now past the end)."""
    require(request, PAGE, *ROLES)
    return _queue(status or "pending", page)


@action
def newer_page(status: str, page: int | None, request: gr.Request) -> tuple[Any, ...]:
    """The page of newer reviews."""
    require(request, PAGE, *ROLES)
    return _queue(status or "pending", (page or 1) - 1)


@action
def older_page(status: str, page: int | None, request: gr.Request) -> tuple[Any, ...]:
    """The page of older reviews."""
    require(request, PAGE, *ROLES)
    return _queue(status or "pending", (page or 1) + 1)


@action
def open_review(review_id: int | str | None, request: gr.Request) -> tuple[Any, ...]:
    """Transcript and grade of one review, evidence highlighted, with its history."""
    require(request, PAGE, *ROLES)
    picked = _picked(review_id)
    if picked is None:
        return EMPTY_VIEW
    return _view_outputs(picked)


@action
def open_row(evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
    """A click on a queue row opens that review."""
    require(request, PAGE, *ROLES)
    row = evt.row_value or []
    if not row or row[0] in (None, ""):
        return EMPTY_VIEW
    return _view_outputs(int(row[0]))


@action
def pick_criterion(review_id: int | str | None, criterion_id: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Prefill the edit form with a criterion's current level, feedback and better line."""
    require(request, PAGE, *ROLES)
    picked = _picked(review_id)
    if picked is None or not criterion_id:
        return gr.update(value=None), "", ""
    c = ctx().reviews.get(picked).current.criterion(criterion_id)
    return gr.update(value=c.level), c.rationale, c.better_alternative


@action
def save_edit(review_id: int | str | None, version: int | None, criterion_id: str | None, level: int | str | None,
              feedback: str, better: str, reason: str, status: str, request: gr.Request,
              page: int | None = 1) -> tuple[Any, ...]:
    """Change one criterion (only what differs), with a reason; refused if someone else changed it meanwhile."""
    person = require(request, PAGE, *ROLES)
    picked = _picked(review_id)
    if picked is None:
        raise Problem("Open a review from the queue first.", title="Nothing to edit")
    if not criterion_id:
        raise Problem("Pick the criterion to change.", title="Edit not saved")
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
        raise Problem("Nothing changed: set a different level, feedback or better line first.", title="Edit not saved")
    svc.edit(picked, person.username, [edit], reason, expected_version=version)
    gr.Info("Edit saved to the review's history.")
    return (*_view_outputs(picked), "", *_queue(status, page))


def _decide(action_name: str, review_id: int | str | None, version: int | None, comment: str, status: str,
            request: gr.Request, page: int | None) -> tuple[Any, ...]:
    person = require(request, PAGE, *ROLES)
    picked = _picked(review_id)
    if picked is None:
        raise Problem("Open a review from the queue first.", title="Nothing to decide")
    svc = ctx().reviews
    if action_name == "approve":
        svc.approve(picked, person.username, (comment or "").strip() or None, expected_version=version)
        gr.Info("Approved: the learner can now see this feedback.")
    else:
        svc.reject(picked, person.username, comment, expected_version=version)
        gr.Info("Rejected: the learner sees your reason.")
    return (*_view_outputs(picked), "", *_queue(status, page))


@action
def approve(review_id: int | None, version: int | None, comment: str, status: str, request: gr.Request,
            page: int | None = 1) -> tuple[Any, ...]:
    """Approve the grade as it stands (with edits); the queue stays on its page."""
    return _decide("approve", review_id, version, comment, status, request, page)


@action
def reject(review_id: int | None, version: int | None, comment: str, status: str, request: gr.Request,
           page: int | None = 1) -> tuple[Any, ...]:
    """Reject the grade with a reason; the queue stays on its page."""
    return _decide("reject", review_id, version, comment, status, request, page)


def _ready_choices() -> list[tuple[str, str]]:
    """(label, 'learner|sprint') for every learner sprint ready for sign-off."""
    svc = ctx().certification
    names = display_names()
    out = []
    for username in svc.awaiting_sign_off():
        for s in svc.status(username).sprints:
            if s.ready_for_sign_off:
                label = f"{_who(username, names)} · {s.title} ({s.level}, {s.approved_passing} approved passing)"
                out.append((label, f"{username}|{s.sprint}"))
    return out


@action
def load_sign_offs(request: gr.Request) -> Any:
    """Learners whose sprints are ready for a facilitator's sign-off."""
    require(request, PAGE, *ROLES)
    return gr.update(choices=_ready_choices(), value=None)


@action
def sign_off(choice: str | None, comment: str, request: gr.Request) -> tuple[Any, ...]:
    """Certify a learner's sprint with a written comment; the credential is issued and drills scheduled."""
    person = require(request, PAGE, *ROLES)
    if not choice or "|" not in choice:
        raise Problem("Pick a learner and sprint that are ready for sign-off.", title="Not signed off")
    learner, sprint = choice.split("|", 1)
    cert = ctx().certification.sign_off(sprint, learner, person.username, comment)
    drills = ", ".join(f"{d.scenario_title} on {d.due_on.isoformat()}" for d in cert.drills) or "none"
    who = _who(learner, display_names())
    titles = {s.sprint: s.title for s in ctx().certification.status(learner).sprints}
    sprint_title = titles.get(sprint, sprint)
    gr.Info(f"{who} is certified in {sprint_title}.")
    return (f"**{who}** certified in **{sprint_title}** at {cert.level}; credential issued. Drills scheduled: {drills}.",
            gr.update(choices=_ready_choices(), value=None), "")


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md, body = page_frame("review")
    with body:
        with gr.Row():
            status = gr.Radio(list(STATUSES), value="pending", label="Show", elem_id="review-status", scale=3)
            refresh = gr.Button("Refresh queue", elem_id="review-refresh", scale=1)
        jobs = gr.Markdown("", elem_id="review-jobs")
        queue = gr.Dataframe(headers=HEADERS, value=[], interactive=False, elem_id="review-queue", max_height=220,
                             show_search="search")
        with gr.Row(equal_height=True):
            newer = gr.Button("← Newer", elem_id="review-newer", interactive=False, scale=0, min_width=110)
            count = gr.Markdown("", elem_id="review-queue-count")
            older = gr.Button("Older →", elem_id="review-older", interactive=False, scale=0, min_width=110)
        gr.Markdown("Click a row to open that review (search looks within the page shown).",
                    elem_id="review-queue-hint")
        header = gr.Markdown("Click a review in the queue to open it.", elem_id="review-header")
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("#### Transcript (evidence highlighted)")
                transcript = gr.HTML("", elem_id="review-transcript")
            with gr.Column(scale=1):
                gr.Markdown("#### Grade")
                grade = gr.HTML("", elem_id="review-grade")
                with gr.Accordion("Edit a criterion", open=True, elem_id="review-edit"):
                    criterion = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="Criterion", elem_id="review-criterion",
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
                ready = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="Ready for sign-off", elem_id="review-ready", scale=3)
                ready_refresh = gr.Button("Refresh", elem_id="review-ready-refresh", scale=1)
            signoff_comment = gr.Textbox(label="Written comment for the learner (required)", lines=2,
                                         elem_id="review-signoff-comment")
            signoff_btn = gr.Button("Sign off and issue credential", variant="primary", elem_id="review-signoff")
            signoff_md = gr.Markdown("", elem_id="review-signoff-result")
    # What the tab has open is held by the browser (not in this process's memory): any app process serves its events.
    version = gr.Number(None, precision=0, visible="hidden", elem_id="review-version")
    current = gr.Number(None, precision=0, visible="hidden", elem_id="review-current")  # the open review's number
    page = gr.Number(1, precision=0, visible="hidden", elem_id="review-page")  # 1 = the newest reviews

    view = [header, transcript, grade, history, version, criterion, level, feedback, better, save_btn, approve_btn,
            reject_btn, current]
    listing = [queue, count, newer, older, page, jobs]
    status.change(first_page, status, listing)
    refresh.click(refresh_page, [status, page], listing)
    newer.click(newer_page, [status, page], listing)
    older.click(older_page, [status, page], listing)
    queue.select(open_row, None, view)
    criterion.input(pick_criterion, [current, criterion], [level, feedback, better])
    save_btn.click(save_edit, [current, version, criterion, level, feedback, better, reason, status, page],
                   [*view, reason, *listing])
    approve_btn.click(approve, [current, version, comment, status, page], [*view, comment, *listing])
    reject_btn.click(reject, [current, version, comment, status, page], [*view, comment, *listing])
    ready_refresh.click(load_sign_offs, None, ready)
    signoff_btn.click(sign_off, [ready, signoff_comment], [signoff_md, ready, signoff_comment])
    return {"gate": gate_md, "body": body, "enter": (enter, [status], [gate_md, body, *listing])}
