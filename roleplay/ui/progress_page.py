"""Progress page (learners): certification status, approved sessions, skill trend, drills and the learning buddy."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from roleplay.buddies import MAX_NOTE, BuddyService
from roleplay.certification import COUNTING_RULE, RETAKE_RULE
from roleplay.drills import drill_id_of, drill_state
from roleplay.errors import PermissionDenied, RoleplayError
from roleplay.nudges import reminder_choice, set_reminders
from roleplay.review import approved_results
from roleplay.ui import render
from roleplay.ui.common import ctx, gate, handler, page_frame, require
from roleplay.ui.practice_page import Slip, scenario_titles, toasts

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
    by_time = {id(r): n for n, r in enumerate(sorted(results, key=lambda r: r.approved_at), 1)}
    for r in results:
        rows.append([render.when(r.approved_at), titles.get(r.scenario_id, r.scenario_id), r.level,
                     round(r.grade.overall, 2), "pass" if r.grade.passed else "not yet", r.approved_by])
        # one tick per approved session, labelled by its number and day (a time axis ticks every few seconds)
        session = f"{by_time[id(r)]}. {r.approved_at:%d %b}"
        for c in r.grade.criteria:
            trend.append({"session": session, "level": c.level, "criterion": names.get(c.criterion_id, c.criterion_id)})
    trend.sort(key=lambda t: int(t["session"].split(".")[0]))
    pending = svc.count("pending", learner=username)
    count = len(rows)
    head = (f"**{count} approved session{'s' if count != 1 else ''}**"
            + (f" · {pending} awaiting facilitator review" if pending else "")
            + ("" if count else ". Practise a scenario; results appear here once a facilitator approves them."))
    line = render.frame(trend, {"session": "str", "level": "int64", "criterion": "str"})
    bars = render.frame([{"criterion": t["criterion"], "level": t["level"]} for t in trend],
                        {"criterion": "str", "level": "int64"})
    several = count >= 2
    return (head, rows, gr.update(value=line if several else None, visible=several),
            gr.update(value=bars if count == 1 else None, visible=count == 1))


def _status_md(status: Any, programme: Any) -> str:
    if not status.assessed:
        return (f"### {programme.title}\nStart with the short pre-assessment below: it sets the level you practise "
                f"and are certified at. Then choose {programme.choose} sprints.\n\n"
                f"{programme.pre_assessment.instructions.strip()}")
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
        titles = scenario_titles()
        for c in s.not_counted:
            out.append(f"- not counted: {titles.get(c.scenario_id, c.scenario_id)} ({c.level}, {c.overall:.2f}): "
                       f"{c.reason}")
    return "\n".join(out)


def _credential_files(svc: Any, username: str, status: Any) -> tuple[list[str], str]:
    """Per certified sprint: the signed JSON credential, a readable HTML certificate and its PDF; and the certificates
    to show on the page."""
    files, cards = [], []
    downloads = ctx().downloads
    for s in status.sprints:
        if s.certified:
            stem = f"{username}-{s.sprint}"
            files.append(str(downloads.write(f"{stem}-credential.json", json.dumps(svc.certificate(username, s.sprint),
                                                                                  indent=2))))
            view = svc.certificate_view(username, s.sprint)
            files.append(str(downloads.write(f"{stem}-certificate.html", render.certificate_page(view))))
            pdf = downloads.write(f"{stem}-certificate.pdf", "")  # the folder writes text; the PDF goes in after
            pdf.write_bytes(render.certificate_pdf(view))
            files.append(str(pdf))
            cards.append(render.certificate_card(view))
    return files, "".join(cards)


def _assessment_html(svc: Any, result: Any) -> str:
    if result is None:
        return ""
    sprints = {s.id: s.title for s in svc.programme.sprints}
    return render.assessment_html(result, scenario_titles(), sprints, COUNTING_RULE, RETAKE_RULE)


def drill_outputs(username: str) -> tuple[Any, Any, Any, Any]:
    """The drills table (each drill's due date with its state), the open drills to mark done (and their row, shown
    when there are any), and the reminder-email checkbox."""
    svc = ctx().certification
    drills = svc.drills(username)
    now = svc.clock()  # the service's UTC clock, as the reminder sender's
    rows = [[f"{d.due_on.isoformat()} · {drill_state(d, now)}", d.scenario_title, d.level,
             svc.programme.sprint_title(d.sprint), d.purpose] for d in drills]
    open_ = [(f"{d.scenario_title} ({d.level}), due {d.due_on:%d %b %Y}", d.id) for d in drills if not d.done]
    on, email = reminder_choice(ctx().store, username)
    info = f"Sent to {email}." if email else "No email address on your account yet: ask a facilitator to add one."
    return (rows, gr.update(choices=open_, value=None), gr.update(visible=bool(open_)),
            gr.update(value=on, info=info, visible=bool(drills)))


def certification_outputs(username: str, retaking: bool = False) -> tuple[Any, ...]:
    """Status, pre-assessment slots, sprint choice, credentials, drills, the explained pre-assessment result, the
    retake button, the readable certificates, buddy and shared sessions.

    Args:
        retaking: Show the questions again (the learner asked to retake the pre-assessment).
    """
    svc = ctx().certification
    programme = svc.programme
    status = svc.status(username)
    assessment = svc.assessment(username)
    can_retake = assessment is not None and assessment.can_retake
    asking = not status.assessed or (retaking and can_retake)
    questions = programme.pre_assessment.questions
    slots = []
    for i in range(QUESTION_SLOTS):
        if asking and i < len(questions):
            q = questions[i]
            slots.append(gr.update(visible=True, label=f"{i + 1}. {q.situation.strip()}", value=None,
                                   choices=[(o.text, o.id) for o in q.options]))
        else:
            slots.append(gr.update(visible=False, value=None))
    locked = any(s.certified for s in status.sprints)
    chosen = [s.sprint for s in status.sprints]
    sprint_choice = gr.update(choices=[(s.title, s.id) for s in programme.sprints], value=chosen,
                              visible=status.assessed and not asking, label=f"Choose {programme.choose} sprints",
                              interactive=status.assessed)
    titles = scenario_titles()
    drills, drill_pick, drill_row, reminders = drill_outputs(username)
    shared = [((f"{s.learner} · {titles.get(s.scenario_id, s.scenario_id)} ({s.level}) · shared "
                f"{render.when(s.shared_at)}"), s.session_id)
              for s in ctx().buddies.buddy_sessions(username)]
    buddy = ctx().buddies.buddy_of(username)
    files, cards = _credential_files(svc, username, status)
    return (_status_md(status, programme), *slots, gr.update(visible=asking),
            sprint_choice, gr.update(visible=status.assessed and not locked and not asking),
            gr.update(value=files or None, visible=bool(files)),
            drills, _assessment_html(svc, assessment),
            gr.update(visible=can_retake and not asking), gr.update(value=cards, visible=bool(cards)),
            drill_pick, drill_row, reminders, buddy or "", gr.update(choices=shared, value=None))


CERT_COUNT = 1 + QUESTION_SLOTS + 1 + 2 + 1 + 1 + 3 + 1 + 1 + 3  # outputs of certification_outputs


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
@toasts(CERT_COUNT)
def assess(q0: str | None, q1: str | None, q2: str | None, q3: str | None, q4: str | None, q5: str | None,
           q6: str | None, q7: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Score the pre-assessment; it sets the learner's level, and the result explains itself."""
    person = require(request, PAGE, *ROLES)
    svc = ctx().certification
    questions = svc.programme.pre_assessment.questions
    given = [q0, q1, q2, q3, q4, q5, q6, q7][:len(questions)]
    missing = [str(i + 1) for i, a in enumerate(given) if not a]
    if missing:
        raise Slip(f"answer every question first (missing: {', '.join(missing)}); your other answers are kept")
    level = svc.pre_assessment(person.username, {q.id: a for q, a in zip(questions, given) if a})
    result = svc.assessment(person.username)
    gr.Info(f"{result.score if result else ''} of {svc.programme.max_score} points: you start at {level}. "
            "What that means is under your status.")
    return certification_outputs(person.username)


@handler
def retake(request: gr.Request) -> tuple[Any, ...]:
    """Show the pre-assessment's questions again (until sprints are chosen)."""
    person = require(request, PAGE, *ROLES)
    return certification_outputs(person.username, retaking=True)


@handler
@toasts(CERT_COUNT)
def choose(sprints: list[str] | None, request: gr.Request) -> tuple[Any, ...]:
    """Choose the sprints to be certified in."""
    person = require(request, PAGE, *ROLES)
    ctx().certification.choose_sprints(person.username, list(sprints or []))
    gr.Info("Sprints saved.")
    return certification_outputs(person.username)


@handler
@toasts(CERT_COUNT, keep=(PermissionDenied,))
def set_buddy(buddy: str, request: gr.Request) -> tuple[Any, ...]:
    """Name (or change) the learning buddy."""
    person = require(request, PAGE, *ROLES)
    name = (buddy or "").strip()
    if not name:
        raise Slip("type your buddy's username first")
    if len(name) > USERNAME_MAX:
        raise Slip(f"a username has at most {USERNAME_MAX} characters")
    ctx().store.learner(name)  # one answer for unknown people and other roles: names are not revealed
    ctx().buddies.name_buddy(person.username, name)
    gr.Info(f"{name} is now your learning buddy; share sessions with them from the Practice page.")
    return certification_outputs(person.username)


@handler
@toasts(4)
def mark_drill_done(drill_id: int | str | None, request: gr.Request) -> tuple[Any, ...]:
    """Mark the picked reinforcement drill done."""
    person = require(request, PAGE, *ROLES)
    drill = ctx().certification.mark_drill_done(person.username, drill_id_of(drill_id))  # typed text: a warning
    gr.Info(f"{drill.scenario_title} ({drill.level}) is done; no reminder will be sent for it.")
    return drill_outputs(person.username)


@handler
def choose_reminders(on: bool, request: gr.Request) -> Any:
    """Turn drill reminder emails on or off."""
    person = require(request, PAGE, *ROLES)
    set_reminders(ctx().store, person.username, bool(on))
    gr.Info("You will get an email when a drill is due." if on else "No more drill reminder emails.")
    return gr.update(value=bool(on))


def _shared_html(svc: BuddyService, viewer: str, session_id: str) -> tuple[str, str]:
    view = svc.shared_session(viewer, session_id)
    scn = ctx().catalog.scenarios.get(view.session.scenario_id)
    transcript = render.transcript_html(view.turns, learner=view.session.learner,
                                        persona=scn.persona.name if scn else "Persona",
                                   cast=render.CastView(scn))
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
@toasts(3)
def reflect(session_id: str | None, note: str, request: gr.Request) -> tuple[str, str, str]:
    """Add a reflection note to a shared session (a problem is a warning; the note stays in its box)."""
    person = require(request, PAGE, *ROLES)
    if not session_id:
        raise Slip("open a shared session first")
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
                assessment = gr.HTML("", elem_id="progress-assessment")
                retake_btn = gr.Button("Retake the pre-assessment", visible=False, elem_id="progress-retake")
                sprints = gr.CheckboxGroup([], value=[], visible=False, label="Choose sprints", elem_id="progress-sprints")
                choose_btn = gr.Button("Save sprint choice", visible=False, elem_id="progress-choose")
            with gr.Column(scale=2):
                certificate = gr.HTML("", visible=False, elem_id="progress-certificate")
                credentials = gr.File(label="Your certificates: readable (HTML, PDF) and verifiable (Open Badges 3.0 "
                                      "JSON)", file_count="multiple", interactive=False, visible=False,
                                      elem_id="progress-credentials")
                gr.Markdown("#### Reinforcement drills")
                drills = gr.Dataframe(headers=["Due · state", "Scenario", "Level", "Sprint", "Why"], value=[],
                                      interactive=False, elem_id="progress-drills")
                with gr.Row(visible=False) as drill_row:
                    drill_pick = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="A drill you have done",
                                             elem_id="progress-drill-pick", scale=3)
                    drill_btn = gr.Button("Mark done", elem_id="progress-drill-done", scale=1)
                reminders = gr.Checkbox(value=True, label="Email me when a drill is due", visible=False,
                                        elem_id="progress-reminders")
        gr.Markdown("### Approved sessions")
        head = gr.Markdown("", elem_id="progress-summary")
        table = gr.Dataframe(headers=["Approved", "Scenario", "Level", "Overall (1-4)", "Result", "Approved by"],
                             value=[], interactive=False, elem_id="progress-approved")
        trend = gr.LinePlot(x="session", y="level", color="criterion", y_lim=[1, 4], height=300, visible=False,
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
            shared = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="Sessions shared with you", elem_id="progress-shared")
            shared_transcript = gr.HTML("", elem_id="progress-shared-transcript")
            reflections = gr.Markdown("", elem_id="progress-reflections")
            note = gr.Textbox(label="Your reflection (what went well, what to try next)", lines=2,
                              elem_id="progress-note", max_length=MAX_NOTE)
            note_btn = gr.Button("Add reflection", elem_id="progress-reflect")
    cert_out = [cert, *questions, assess_btn, sprints, choose_btn, credentials, drills, assessment, retake_btn,
                certificate, drill_pick, drill_row, reminders, buddy, shared]
    drill_btn.click(mark_drill_done, drill_pick, [drills, drill_pick, drill_row, reminders])
    reminders.input(choose_reminders, reminders, reminders)
    assess_btn.click(assess, questions, cert_out)
    retake_btn.click(retake, None, cert_out)
    choose_btn.click(choose, sprints, cert_out)
    buddy_btn.click(set_buddy, buddy, cert_out)
    shared.input(open_shared, shared, [shared_transcript, reflections])
    note_btn.click(reflect, [shared, note], [shared_transcript, reflections, note])
    return {"gate": gate_md, "body": body, "enter": (enter, [], [gate_md, body, head, table, trend, first, *cert_out])}
