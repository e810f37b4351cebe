"""Progress page (learners): certification status, approved sessions, skill trend, drills and the learning buddy."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from roleplay.buddies import MAX_NOTE, BuddyService
from roleplay.errors import RoleplayError
from roleplay.review import approved_results
from roleplay.ui import render
from roleplay.ui.common import ctx, gate, handler, page_frame, require

PAGE = "Progress"
ROLES = ("learner",)
QUESTION_SLOTS = 8  # a pre-assessment has 5-8 questions
USERNAME_MAX = 100  # the length of the people.username column


def _criterion_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for r in ctx().catalog.rubrics.values():
        for c in r.criteria:
            names.setdefault(c.id, c.name)
    return names


def approved_outputs(username: str) -> tuple[Any, ...]:
    """Summary line, approved-sessions table, trend line (2+ sessions) and first-session bars (1 session)."""
    svc = ctx().reviews
    results = approved_results(svc, username)
    titles = {s.id: s.title for s in ctx().catalog.scenarios.values()}
    names = _criterion_names()
    rows, trend = [], []
    for r in results:
        rows.append([render.when(r.approved_at), titles.get(r.scenario_id, r.scenario_id), r.level,
                     round(r.grade.overall, 2), "pass" if r.grade.passed else "not yet", r.approved_by])
        for c in r.grade.criteria:
            trend.append({"approved": r.approved_at.replace(tzinfo=None), "level": c.level,
                          "criterion": names.get(c.criterion_id, c.criterion_id)})
    pending = len(svc.queue("pending", learner=username))
    count = len(rows)
    head = (f"**{count} approved session{'s' if count != 1 else ''}**"
            + (f" · {pending} awaiting facilitator review" if pending else "")
            + ("" if count else ". Practise a scenario; results appear here once a facilitator approves them."))
    line = render.frame(trend, {"approved": "datetime64[ns]", "level": "int64", "criterion": "str"})
    bars = render.frame([{"criterion": t["criterion"], "level": t["level"]} for t in trend],
                        {"criterion": "str", "level": "int64"})
    several = count >= 2
    return (head, rows, gr.update(value=line if several else None, visible=several),
            gr.update(value=bars if count == 1 else None, visible=count == 1))


def _status_md(status: Any, programme: Any) -> str:
    if not status.assessed:
        return (f"### {programme.title}\nStart with the short pre-assessment below: it sets the level you practise "
                f"and are certified at. Then choose {programme.choose} sprints.")
    out = [f"### {programme.title}",
           f"Your level: **{status.level}** (pre-assessment score {status.score}). **Next:** {status.next_step}."]
    if not status.sprints:
        out.append(f"\nChoose {status.choose} sprints below.")
    for s in status.sprints:
        if s.certified:
            state = f"**certified** by {s.signed_off_by}, {render.when(s.signed_off_at)}: “{s.comment}”"
        elif s.ready_for_sign_off:
            state = "**ready for sign-off** by a facilitator"
        else:
            state = f"{s.approved_passing} of {s.required} approved passing sessions; {s.still_needed} more needed"
        out.append(f"\n**{s.title}** ({s.level} or harder): {state}"
                   + (f" · {s.pending_reviews} awaiting review" if s.pending_reviews else ""))
        for c in s.not_counted:
            out.append(f"- not counted: {c.scenario_id} ({c.level}, {c.overall:.2f}): {c.reason}")
    return "\n".join(out)


def _credential_files(svc: Any, username: str, status: Any) -> list[str]:
    files = []
    for s in status.sprints:
        if s.certified:
            text = json.dumps(svc.certificate(username, s.sprint), indent=2)
            files.append(str(ctx().downloads.write(f"{username}-{s.sprint}-credential.json", text)))
    return files


def certification_outputs(username: str) -> tuple[Any, ...]:
    """Status, pre-assessment slots, sprint choice, credentials, drills, buddy and shared sessions."""
    svc = ctx().certification
    programme = svc.programme
    status = svc.status(username)
    questions = programme.pre_assessment.questions
    slots = []
    for i in range(QUESTION_SLOTS):
        if not status.assessed and i < len(questions):
            q = questions[i]
            slots.append(gr.update(visible=True, label=f"{i + 1}. {q.situation.strip()}", value=None,
                                   choices=[(o.text, o.id) for o in q.options]))
        else:
            slots.append(gr.update(visible=False, value=None))
    locked = any(s.certified for s in status.sprints)
    chosen = [s.sprint for s in status.sprints]
    sprint_choice = gr.update(choices=[(s.title, s.id) for s in programme.sprints], value=chosen,
                              visible=status.assessed, label=f"Choose {programme.choose} sprints",
                              interactive=status.assessed)
    drills = [[d.due_on.isoformat(), d.scenario_title, d.level, d.sprint, d.purpose] for d in svc.drills(username)]
    shared = [(f"{s.learner} · {s.scenario_id} ({s.level}) · shared {render.when(s.shared_at)}", s.session_id)
              for s in ctx().buddies.buddy_sessions(username)]
    buddy = ctx().buddies.buddy_of(username)
    return (_status_md(status, programme), *slots, gr.update(visible=not status.assessed),
            sprint_choice, gr.update(visible=status.assessed and not locked),
            gr.update(value=_credential_files(svc, username, status) or None,
                      visible=any(s.certified for s in status.sprints)),
            drills, buddy or "",
            gr.update(choices=shared, value=None))


CERT_COUNT = 1 + QUESTION_SLOTS + 1 + 2 + 1 + 1 + 1 + 1  # outputs of certification_outputs


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(request: gr.Request) -> tuple[Any, ...]:
    """The learner's progress and certification; a refusal to anyone else."""
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return (message, body, *[gr.update()] * (4 + CERT_COUNT))
    person = require(request, PAGE, *ROLES)
    try:
        cert = certification_outputs(person.username)
    except RoleplayError as exc:  # e.g. no programme file: the rest of the page still works
        cert = (f"**Certification is not available:** {exc}", *[gr.update(visible=False)] * (CERT_COUNT - 1))
    return ("", body, *approved_outputs(person.username), *cert)


@handler
def assess(q0: str | None, q1: str | None, q2: str | None, q3: str | None, q4: str | None, q5: str | None,
           q6: str | None, q7: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Score the pre-assessment; it sets the learner's level."""
    person = require(request, PAGE, *ROLES)
    svc = ctx().certification
    questions = svc.programme.pre_assessment.questions
    given = [q0, q1, q2, q3, q4, q5, q6, q7][:len(questions)]
    missing = [str(i + 1) for i, a in enumerate(given) if not a]
    if missing:
        raise gr.Error(f"Answer every question first (missing: {', '.join(missing)}).", print_exception=False)
    level = svc.pre_assessment(person.username, {q.id: a for q, a in zip(questions, given) if a})
    gr.Info(f"Your starting level is {level}.")
    return certification_outputs(person.username)


@handler
def choose(sprints: list[str] | None, request: gr.Request) -> tuple[Any, ...]:
    """Choose the sprints to be certified in."""
    person = require(request, PAGE, *ROLES)
    ctx().certification.choose_sprints(person.username, list(sprints or []))
    gr.Info("Sprints saved.")
    return certification_outputs(person.username)


@handler
def set_buddy(buddy: str, request: gr.Request) -> tuple[Any, ...]:
    """Name (or change) the learning buddy."""
    person = require(request, PAGE, *ROLES)
    name = (buddy or "").strip()
    if not name:
        raise gr.Error("Type your buddy's username first.", print_exception=False)
    if len(name) > USERNAME_MAX:
        raise gr.Error(f"A username has at most {USERNAME_MAX} characters.", print_exception=False)
    ctx().store.learner(name)  # one answer for unknown people and other roles: names are not revealed
    ctx().buddies.name_buddy(person.username, name)
    gr.Info(f"{name} is now your learning buddy; share sessions with them from the Practice page.")
    return certification_outputs(person.username)


def _shared_html(svc: BuddyService, viewer: str, session_id: str) -> tuple[str, str]:
    view = svc.shared_session(viewer, session_id)
    scn = ctx().catalog.scenarios.get(view.session.scenario_id)
    transcript = render.transcript_html(view.turns, learner=view.session.learner,
                                        persona=scn.persona.name if scn else "Persona")
    notes = "\n".join(f"- **{r.author}**, {render.when(r.created_at)}: {r.note}" for r in view.reflections)
    return transcript, notes or "_No reflections yet._"


@handler
def open_shared(session_id: str | None, request: gr.Request) -> tuple[str, str]:
    """A session a colleague shared with this learner, with its reflections."""
    person = require(request, PAGE, *ROLES)
    if not session_id:
        return "", ""
    return _shared_html(ctx().buddies, person.username, session_id)


@handler
def reflect(session_id: str | None, note: str, request: gr.Request) -> tuple[str, str, str]:
    """Add a reflection note to a shared session."""
    person = require(request, PAGE, *ROLES)
    if not session_id:
        raise gr.Error("Open a shared session first.", print_exception=False)
    svc = ctx().buddies
    svc.add_reflection(person.username, session_id, note)
    return (*_shared_html(svc, person.username, session_id), "")


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md, body = page_frame("progress")
    with body:
        with gr.Row():
            with gr.Column(scale=3):
                cert = gr.Markdown("", elem_id="progress-certification")
                questions = [gr.Radio([], value=None, visible=False, elem_id=f"progress-q-{i}")
                             for i in range(QUESTION_SLOTS)]
                assess_btn = gr.Button("Submit pre-assessment", variant="primary", visible=False,
                                       elem_id="progress-assess")
                sprints = gr.CheckboxGroup([], value=[], visible=False, label="Choose sprints", elem_id="progress-sprints")
                choose_btn = gr.Button("Save sprint choice", visible=False, elem_id="progress-choose")
            with gr.Column(scale=2):
                credentials = gr.File(label="Your credentials (Open Badges 3.0 JSON)", file_count="multiple",
                                      interactive=False, visible=False, elem_id="progress-credentials")
                gr.Markdown("#### Reinforcement drills")
                drills = gr.Dataframe(headers=["Due", "Scenario", "Level", "Sprint", "Why"], value=[],
                                      interactive=False, elem_id="progress-drills")
        gr.Markdown("### Approved sessions")
        head = gr.Markdown("", elem_id="progress-summary")
        table = gr.Dataframe(headers=["Approved", "Scenario", "Level", "Overall (1-4)", "Result", "Approved by"],
                             value=[], interactive=False, elem_id="progress-approved")
        trend = gr.LinePlot(x="approved", y="level", color="criterion", y_lim=[1, 4], height=300, visible=False,
                            title="Skill trend: level per criterion over your approved sessions",
                            elem_id="progress-trend")
        first = gr.BarPlot(x="criterion", y="level", y_lim=[0, 4], height=300, visible=False,
                           title="Your levels per criterion (the trend appears after your second approved session)",
                           elem_id="progress-levels")
        with gr.Accordion("Learning buddy", open=False, elem_id="progress-buddy-panel"):
            with gr.Row():
                buddy = gr.Textbox(label="Your learning buddy (username)", elem_id="progress-buddy", scale=3,
                                   max_length=USERNAME_MAX)
                buddy_btn = gr.Button("Save buddy", elem_id="progress-buddy-save", scale=1)
            shared = gr.Dropdown(choices=[], value=None, label="Sessions shared with you", elem_id="progress-shared")
            shared_transcript = gr.HTML("", elem_id="progress-shared-transcript")
            reflections = gr.Markdown("", elem_id="progress-reflections")
            note = gr.Textbox(label="Your reflection (what went well, what to try next)", lines=2,
                              elem_id="progress-note", max_length=MAX_NOTE)
            note_btn = gr.Button("Add reflection", elem_id="progress-reflect")
    cert_out = [cert, *questions, assess_btn, sprints, choose_btn, credentials, drills, buddy, shared]
    assess_btn.click(assess, questions, cert_out)
    choose_btn.click(choose, sprints, cert_out)
    buddy_btn.click(set_buddy, buddy, cert_out)
    shared.input(open_shared, shared, [shared_transcript, reflections])
    note_btn.click(reflect, [shared, note], [shared_transcript, reflections, note])
    return {"gate": gate_md, "body": body, "enter": (enter, [], [gate_md, body, head, table, trend, first, *cert_out])}
