"""Practice page (learners): pick a scenario and level, talk to the persona, end, get reviewed feedback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from roleplay.errors import RoleplayError
from roleplay.grader import transcript_of_session
from roleplay.models import Person, PracticeSession
from roleplay.practice import check_message, check_owner, engine_notice, start_practice
from roleplay.reader import MAX_TURN_CHARS
from roleplay.scenario import LEVELS, SPRINTS
from roleplay.ui import render
from roleplay.ui.common import ctx, gate, handler, page_frame, require, store

PAGE = "Practice"
ROLES = ("learner",)
Messages = list[dict[str, Any]]


def sprint_label(sprint: str) -> str:
    """'remote-team-setup' → 'Remote team setup'."""
    return sprint.replace("-", " ").capitalize()


def scenario_choices() -> list[tuple[str, str]]:
    """Scenarios grouped by sprint (programme order), as dropdown (label, id) pairs."""
    order = {s: i for i, s in enumerate(SPRINTS)}
    scenarios = sorted(ctx().catalog.scenarios.values(), key=lambda s: (order.get(s.sprint, 99), s.title))
    return [(f"{sprint_label(s.sprint)} · {s.title}", s.id) for s in scenarios]


def briefing_md(scenario_id: str | None) -> str:
    """The briefing a learner reads before starting."""
    if not scenario_id:
        return "Pick a scenario."
    s = ctx().catalog.scenario(scenario_id)
    objectives = "\n".join(f"- {o}" for o in s.objectives)
    return (f"### {s.title}\n*Sprint: {sprint_label(s.sprint)}.* {s.summary}\n\n"
            f"**You are talking to:** {s.persona.name}, {s.persona.role}\n\n"
            f"{s.briefing.strip()}\n\n**Your objectives**\n{objectives}")


def _own_session(session_id: str | None, person: Person) -> PracticeSession:
    if not session_id:
        raise gr.Error("Start a session first.", print_exception=False)
    check_owner(store(), session_id, person.username)
    return store().get_session(session_id)


def _status(run: Any) -> str:
    st = run.state
    usage = run.usage()
    tokens = ""
    if run.conversation.voice.name != "offline":
        cost = usage.get("estimated_cost")
        tokens = (f" · tokens so far: {usage['prompt_tokens'] + usage['completion_tokens']}; counting: {usage['counting']}"
                  + (f", estimated cost {cost:.4f}" if cost is not None else ""))
    if st.ended:
        why = {"success": "the conversation reached a good close", "walkout": "the persona ended the meeting",
               "timeout": "the time for this meeting ran out",
               "learner": "you ended it"}.get(st.end_reason or "", st.end_reason)
        return (f"**The conversation has ended** ({why}) after {st.learner_turns} of your turns. "
                "Press **End session & get feedback** to send it for grading." + tokens)
    return f"Turn {st.learner_turns} of {run.conversation.level.max_turns}{tokens}"


def _session_choices(person: Any) -> list[tuple[str, str]]:
    titles = {s.id: s.title for s in ctx().catalog.scenarios.values()}
    out = []
    for sess in store().sessions_for(person.id):
        label = f"{render.when(sess.started_at)} · {titles.get(sess.scenario_id, sess.scenario_id)} ({sess.level})"
        out.append((label + (" · in progress" if sess.status == "active" else ""), sess.id))
    return out


def _download_path(session_id: str) -> str:
    transcript, scenario_id = transcript_of_session(store(), session_id)
    scn = ctx().catalog.scenarios.get(scenario_id)
    persona = scn.persona.name if scn else "Persona"
    head = f"{scn.title if scn else scenario_id} ({transcript.level})\n\n"
    text = head + transcript.to_text(learner="You", persona=persona) + "\n"
    return str(ctx().downloads.write(f"transcript-{session_id}.txt", text))


def feedback_html(session_id: str) -> str:
    """What the learner may see about a session's grade: pending, rejected, or the approved feedback."""
    return _review_html(session_id) + _reflections_html(session_id)


def _reflections_html(session_id: str) -> str:
    try:
        notes = ctx().buddies.reflections(session_id)
    except RoleplayError:
        return ""  # certification not configured: no buddy reflections to show
    if not notes:
        return ""
    items = "".join(f"<li><b>{render.esc(r.author)}</b> ({render.when(r.created_at)}): {render.esc(r.note)}</li>"
                    for r in notes)
    return f'<div id="practice-reflections"><h4>Reflections from your learning buddy</h4><ul>{items}</ul></div>'


def _review_html(session_id: str) -> str:
    svc = ctx().reviews
    view = svc.for_session(session_id)
    if view is None:
        return ""
    if view.status == "pending":
        return ('<div class="rp-pending" id="practice-pending">Awaiting facilitator review. Your feedback appears '
                "here (and on the Progress page) once a facilitator approves it.</div>")
    if view.status == "rejected":
        return (f'<div class="rp-rejected">This session was not accepted by {render.esc(view.decided_by)}: '
                f"{render.esc(view.comment or '')}<br>It does not count; practise again when ready.</div>")
    transcript, scenario_id = transcript_of_session(store(), session_id)
    scn = ctx().catalog.scenario(scenario_id)
    grade = view.current
    return (f'<div id="practice-approved"><h3>Feedback approved by {render.esc(view.decided_by)}</h3>'
            + (f"<p><i>“{render.esc(view.comment)}”</i></p>" if view.comment else "")
            + render.grade_html(grade, ctx().catalog.rubric_for(scn))
            + "<h4>Your conversation (evidence highlighted)</h4>"
            + render.transcript_html(transcript.turns, render.evidence_of(grade), persona=scn.persona.name)
            + "</div>")


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(scenario_id: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Show the page to learners (with fresh scenario and session lists), a refusal to anyone else."""
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return message, body, gr.update(), gr.update(), gr.update()
    person = require(request, PAGE, *ROLES)
    choices = scenario_choices()
    ids = [sid for _, sid in choices]
    chosen = scenario_id if scenario_id in ids else (ids[0] if ids else None)
    return ("", body, gr.update(choices=choices, value=chosen), briefing_md(chosen),
            gr.update(choices=_session_choices(person)))


@handler
def show_briefing(scenario_id: str | None, request: gr.Request) -> str:
    """The briefing of the chosen scenario."""
    require(request, PAGE, *ROLES)
    return briefing_md(scenario_id)


@handler
def start(scenario_id: str | None, level: str, request: gr.Request) -> tuple[Any, ...]:
    """Start a stored session; the persona opens."""
    person = require(request, PAGE, *ROLES)
    if not scenario_id:
        raise gr.Error("Pick a scenario first.", print_exception=False)
    voice = ctx().voice()
    app = ctx()
    run = start_practice(store(), person.username, app.catalog.scenario(scenario_id), level or "intermediate", voice,
                         model_name=app.settings.model, prices=(app.settings.price_input, app.settings.price_output),
                         reader=app.reader(offline=voice.name == "offline"))
    ctx().remember(run)
    chat = [{"role": "assistant", "content": run.open()}]
    live = gr.update(interactive=True)
    return (chat, run.session_id, engine_notice(voice, ctx().settings), _status(run), gr.update(interactive=True, value=""), live, live,
            "", gr.update(visible=False), gr.update(choices=_session_choices(person), value=run.session_id))


@handler
def send(message: str, chat: Messages, session_id: str | None, request: gr.Request) -> Iterator[tuple[Any, ...]]:
    """Send the learner's line and stream the persona's reply."""
    check_message(message)  # an oversize message is refused before anything else is done
    person = require(request, PAGE, *ROLES)
    sess = _own_session(session_id, person)
    if not (message or "").strip():
        raise gr.Error("Type what you want to say first.", print_exception=False)
    run = ctx().run(sess.id)
    chat = [*(chat or []), {"role": "user", "content": message.strip()}, {"role": "assistant", "content": "…"}]
    yield chat, "", _status(run), gr.update()
    for text in run.respond(message):
        chat[-1] = {"role": "assistant", "content": text}
        yield chat, "", _status(run), gr.update()
    live = not run.state.ended
    yield chat, gr.update(value="", interactive=live), _status(run), gr.update(interactive=live)


@handler
def end(session_id: str | None, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
    """End the session, grade it (with progress) and send it for facilitator review."""
    person = require(request, PAGE, *ROLES)
    sess = _own_session(session_id, person)
    off = gr.update(interactive=False)
    progress(0.05, desc="Saving your conversation")
    run = ctx().run(sess.id)
    progress(0.3, desc="Grading against the rubric")
    run.end_and_grade(ctx().judge(), ctx().catalog)  # once, however many tabs press End
    progress(1.0, desc="Sent to your facilitator")
    status = "Session ended and graded. A facilitator reviews the grade before you see it."
    return (status, feedback_html(sess.id), off, off, off,
            gr.update(value=_download_path(sess.id), visible=True), gr.update(choices=_session_choices(person)))


@handler
def refresh_feedback(session_id: str | None, request: gr.Request) -> str:
    """Re-check the review of the current session."""
    person = require(request, PAGE, *ROLES)
    sess = _own_session(session_id, person)
    html = feedback_html(sess.id)
    if not html:
        return '<div class="rp-banner">Not graded yet: end the session to get feedback.</div>'
    return html


@handler
def open_session(session_id: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Open one of the learner's sessions: its transcript, and feedback once approved."""
    person = require(request, PAGE, *ROLES)
    if not session_id:
        return (gr.update(),) * 9
    sess = _own_session(session_id, person)
    chat = [{"role": "user" if t.speaker == "learner" else "assistant", "content": t.text} for t in sess.turns]
    graded = bool(store().grades_for(sess.id))
    active = sess.status == "active"
    if active:
        run = ctx().run(sess.id)
        ctx().remember(run)
        status = _status(run)
    else:
        status = "Graded; see the feedback below." if graded else "Ended but not graded: press End session & get feedback."
    live = gr.update(interactive=active)
    return (chat, sess.id, status, feedback_html(sess.id), live, live, gr.update(interactive=not graded),
            gr.update(value=_download_path(sess.id), visible=bool(sess.turns)), "")


@handler
def share(session_id: str | None, request: gr.Request) -> str:
    """Share the current session with the learner's buddy (who can read it and add reflections)."""
    person = require(request, PAGE, *ROLES)
    sess = _own_session(session_id, person)
    svc = ctx().buddies
    svc.share_session(person.username, sess.id)
    buddy = svc.buddy_of(person.username)
    gr.Info(f"Shared with {buddy}.")
    return f"Shared with your learning buddy **{buddy}**; their reflections appear under this session's feedback."


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md, body = page_frame("practice")
    with body, gr.Row():
        with gr.Column(scale=2):
            scenario = gr.Dropdown(choices=[], value=None, label="Scenario (grouped by sprint)",
                                   elem_id="practice-scenario")
            level = gr.Radio(list(LEVELS), value="intermediate", label="Level", elem_id="practice-level")
            brief = gr.Markdown("Pick a scenario.", elem_id="practice-briefing")
            start_btn = gr.Button("Start session", variant="primary", elem_id="practice-start")
            notice = gr.Markdown("", elem_id="practice-engine")
            with gr.Accordion("My sessions", open=False, elem_id="practice-history"):
                sessions = gr.Dropdown(choices=[], value=None, label="Open a session", elem_id="practice-sessions")
        with gr.Column(scale=3):
            status = gr.Markdown("", elem_id="practice-status")
            chat = gr.Chatbot(label="Conversation", elem_id="practice-chat", height=440, buttons=["copy_all"])
            with gr.Row():
                box = gr.Textbox(label="Your line", placeholder="Say something to the persona…", interactive=False,
                                 elem_id="practice-input", scale=5, lines=1, max_length=MAX_TURN_CHARS)
                send_btn = gr.Button("Send", interactive=False, elem_id="practice-send", scale=1)
            with gr.Row():
                end_btn = gr.Button("End session & get feedback", interactive=False, variant="stop",
                                    elem_id="practice-end")
                download = gr.DownloadButton("Download transcript", visible=False, elem_id="practice-download")
                refresh = gr.Button("Check for feedback", elem_id="practice-refresh")
                share_btn = gr.Button("Share with my buddy", elem_id="practice-share")
            share_md = gr.Markdown("", elem_id="practice-shared")
            feedback = gr.HTML("", elem_id="practice-feedback")
    session_id = gr.State(None)

    scenario.change(show_briefing, scenario, brief)
    start_btn.click(start, [scenario, level],
                    [chat, session_id, notice, status, box, send_btn, end_btn, feedback, download, sessions])
    for trigger in (box.submit, send_btn.click):
        trigger(send, [box, chat, session_id], [chat, box, status, send_btn])
    end_btn.click(end, session_id, [status, feedback, box, send_btn, end_btn, download, sessions])
    refresh.click(refresh_feedback, session_id, feedback)
    share_btn.click(share, session_id, share_md)
    sessions.input(open_session, sessions, [chat, session_id, status, feedback, box, send_btn, end_btn, download, notice])
    return {"gate": gate_md, "body": body, "enter": (enter, [scenario], [gate_md, body, scenario, brief, sessions])}
