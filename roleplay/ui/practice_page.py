"""Practice page (learners): pick a scenario and level, talk to the persona, end, get feedback and notices.

What the page keeps in step: the scenario and level pickers, the briefing and the chat always show the same session
(the pickers are locked while a conversation is open), and a learner's own slip (an empty line, a session not started,
a wrong choice) is a warning toast that hides nothing and keeps what they typed.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from roleplay.errors import NotFoundError, PermissionDenied, RoleplayError
from roleplay.grader import transcript_of_session
from roleplay.models import Person, PracticeSession
from roleplay.notices import PRELIMINARY, NoticeService, learner_feedback
from roleplay.practice import check_message, check_owner, engine_notice, start_practice
from roleplay.programme import feedback_mode
from roleplay.reader import MAX_TURN_CHARS
from roleplay.scenario import LEVELS, SPRINTS, Scenario
from roleplay.transcript import Turn
from roleplay.ui import render
from roleplay.ui.common import ctx, gate, handler, page_frame, require, store

PAGE = "Practice"
ROLES = ("learner",)
NOTICE_POLL_SECONDS = 30  # how often an open Practice page looks for a facilitator's decision
Messages = list[dict[str, Any]]
log = logging.getLogger("roleplay.ui")


class Slip(RoleplayError):
    """A learner's correctable slip on a page (an empty line, nothing chosen): shown as a warning, never an error."""


def warn(message: str) -> None:
    """A warning toast with `message` (first letter capitalised); it covers nothing on the page."""
    text = str(message).strip()
    gr.Warning(text[:1].upper() + text[1:])


def toasts(outputs: int, keep: tuple[type[Exception], ...] = (PermissionDenied, NotFoundError)) -> Callable[..., Any]:
    """Wrap a handler so a library problem the learner can fix is a warning toast and every output stays as it was.

    A `gr.Error` overlays every output of the event with a red badge (hiding the conversation or the checkboxes);
    a warning does not. Refusals (`keep`, and the role checks' `gr.Error`) stay errors.
    """
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        same = (gr.update(),) * outputs if outputs > 1 else gr.update()
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(*args: Any, **kwargs: Any) -> Any:
                try:
                    yield from fn(*args, **kwargs)
                except RoleplayError as exc:
                    if isinstance(exc, keep):
                        raise
                    warn(str(exc))
                    yield same
            return gen

        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except RoleplayError as exc:
                if isinstance(exc, keep):
                    raise
                warn(str(exc))
                return same
        return plain
    return wrap


def sprint_label(sprint: str) -> str:
    """'remote-team-setup' → 'Remote team setup'."""
    return sprint.replace("-", " ").capitalize()


def scenario_choices() -> list[tuple[str, str]]:
    """Scenarios grouped by sprint (programme order), as dropdown (label, id) pairs."""
    order = {s: i for i, s in enumerate(SPRINTS)}
    scenarios = sorted(ctx().catalog.scenarios.values(), key=lambda s: (order.get(s.sprint, 99), s.title))
    return [(f"{sprint_label(s.sprint)} · {s.title}", s.id) for s in scenarios]


def scenario_titles() -> dict[str, str]:
    """Scenario id → title, for messages a learner reads."""
    return {s.id: s.title for s in ctx().catalog.scenarios.values()}


def briefing_md(scenario_id: str | None, level: str | None = None) -> str:
    """The briefing a learner reads before starting (and while talking): scenario, level, persona, objectives."""
    if not scenario_id:
        return "Pick a scenario."
    s = ctx().catalog.scenario(scenario_id)
    objectives = "\n".join(f"- {o}" for o in s.objectives)
    lvl = ""
    if level in LEVELS:
        spec = s.levels.get(level)
        lvl = f"**Level:** {level} ({spec.resistance} resistance; up to {spec.max_turns} of your turns)\n\n"
    return (f"### {s.title}\n*Sprint: {sprint_label(s.sprint)}.* {s.summary}\n\n{lvl}"
            f"{_who_md(s)}\n\n"
            f"{s.briefing.strip()}\n\n**Your objectives**\n{objectives}")


def _who_md(s: Scenario) -> str:
    if not s.is_scene:
        return f"**You are talking to:** {s.persona.name}, {s.persona.role}"
    people = "\n".join(f"- **{m.persona.name}**, {m.persona.role}"
                       + (f" (joins after your turn {m.joins_at_turn})" if m.joins_at_turn else "") for m in s.members)
    return f"**In the meeting** (address someone by name, or speak to everyone):\n{people}"


def _cast(scenario_id: str | None) -> render.CastView:
    return render.CastView(ctx().catalog.scenarios.get(scenario_id or ""))


def _bubble(turn: Turn, cast: render.CastView) -> dict[str, str]:
    return render.chat_bubble(turn.speaker, turn.text, turn.who, cast)


def level_hint(username: str) -> str:
    """Which levels count toward certification for this learner (from their pre-assessment)."""
    try:
        status = ctx().certification.status(username)
    except RoleplayError:
        return ""  # no programme: practice only
    if not status.assessed:
        return ("Only sessions at your level or harder count toward certification: take the short pre-assessment on "
                "the Progress page to set it.")
    return f"Your level is **{status.level}**: sessions at {status.level} or harder count toward certification."


def _own_session(session_id: str | None, person: Person) -> PracticeSession:
    if not session_id:
        raise Slip("start a session first: pick a scenario and level, then press Start session")
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
    airtime = ""
    if st.meeting is not None and st.meeting.words:
        cast = render.CastView(run.conversation.scenario)
        airtime = " · airtime: " + ", ".join(f"{'you' if k == 'learner' else cast.name(k).split()[0]} {v:.0%}"
                                             for k, v in sorted(st.meeting.airtime().items(), key=lambda kv: -kv[1]))
    return f"Turn {st.learner_turns} of {run.conversation.level.max_turns}{airtime}{tokens}"


def _session_choices(person: Any) -> list[tuple[str, str]]:
    titles = scenario_titles()
    out = []
    for sess in store().sessions_for(person.id):
        label = f"{render.when(sess.started_at)} · {titles.get(sess.scenario_id, sess.scenario_id)} ({sess.level})"
        out.append((label + (" · in progress" if sess.status == "active" else ""), sess.id))
    return out


def _chat_of(sess: PracticeSession) -> Messages:
    cast = _cast(sess.scenario_id)
    return [_bubble(Turn.from_row(t), cast) for t in sess.turns]


def _download_path(session_id: str) -> str:
    transcript, scenario_id = transcript_of_session(store(), session_id)
    scn = ctx().catalog.scenarios.get(scenario_id)
    persona = scn.persona.name if scn else "Persona"
    head = f"{scn.title if scn else scenario_id} ({transcript.level})\n\n"
    text = head + transcript.to_text(learner="You", persona=persona, names=render.CastView(scn).names()) + "\n"
    return str(ctx().downloads.write(f"transcript-{session_id}.txt", text))


def _programme() -> Any:
    try:
        return ctx().programme
    except RoleplayError:
        return None  # no programme file: feedback shows at once, as by default


def feedback_html(session_id: str) -> str:
    """What the learner may see about a session's grade: preliminary or awaiting, rejected, or the approved feedback."""
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
    view = ctx().reviews.for_session(session_id)
    if view is None:
        return ""
    scn = ctx().catalog.scenarios.get(view.scenario_id)
    seen = learner_feedback(view, feedback_mode(_programme(), scn))
    if seen.state == "awaiting":
        return ('<div class="rp-pending" id="practice-pending">Awaiting facilitator review. Your feedback appears '
                "here (and on the Progress page) once a facilitator approves it.</div>")
    if seen.state == "rejected":
        return (f'<div class="rp-rejected" id="practice-rejected">This session was not accepted by '
                f"{render.esc(seen.decided_by)}: {render.esc(seen.comment or '')}<br>It does not count; practise "
                "again when ready.</div>")
    transcript, _ = transcript_of_session(store(), session_id)
    if scn is None:
        return '<div class="rp-banner">This scenario is no longer in the library, so its feedback cannot be shown.</div>'
    body = (render.grade_html(seen.grade, ctx().catalog.rubric_for(scn))
            + "<h4>Your conversation (evidence highlighted)</h4>"
            + render.transcript_html(transcript.turns, render.evidence_of(seen.grade), persona=scn.persona.name,
                                     cast=render.CastView(scn))
            + render.airtime_html(transcript.meeting, render.CastView(scn)))
    if seen.state == "preliminary":
        edited = (f" {render.esc(', '.join(seen.edited_by))} has already changed part of it."
                  if seen.edited_by else "")
        return (f'<div id="practice-preliminary"><div class="rp-preliminary" id="practice-pending">{PRELIMINARY} '
                f"Awaiting facilitator review: this AI feedback does not count until it is approved.{edited}</div>"
                f"<h3>AI feedback (preliminary)</h3>{body}</div>")
    return (f'<div id="practice-approved"><h3>Feedback approved by {render.esc(seen.decided_by)}</h3>'
            + (f"<p><i>“{render.esc(seen.comment)}”</i></p>" if seen.comment else "") + body + "</div>")


def notices_for(username: str) -> tuple[str, list[str]]:
    """The learner's notices as HTML (marked read now they are shown) and the sessions the unread ones are about."""
    notices = NoticeService(store()).show(username)
    return render.notices_html(notices, scenario_titles()), [n.session_id for n in notices if not n.read]


# --- handlers ---------------------------------------------------------------------------------------

def _learner(request: gr.Request) -> Person | None:
    """The signed-in learner, or None for anyone else (for events that must stay quiet, like the notice poll)."""
    message, _ = gate(request, PAGE, *ROLES)
    return None if message else require(request, PAGE, *ROLES)


@handler
def enter(scenario_id: str | None, request: gr.Request, level: str | None = None,
          session_id: str | None = None) -> tuple[Any, ...]:
    """Show the page to learners (fresh scenario and session lists, notices), a refusal to anyone else.

    With a session in the chat, the pickers and the briefing show that session's scenario and level.
    """
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return message, body, *[gr.update()] * 7
    person = require(request, PAGE, *ROLES)
    choices = scenario_choices()
    ids = [sid for _, sid in choices]
    linked = _linked_scenario(request, ids) if not scenario_id and not session_id else None
    if linked:  # the page was opened from a link (a drill reminder, an LMS launch), before anything was picked
        scenario_id, level = linked
    feedback: Any = gr.update()
    sess = None
    if session_id:
        try:
            sess = _own_session(session_id, person)
        except (NotFoundError, PermissionDenied):
            sess = None  # the session in this tab is gone (its learner was removed and re-added, say): start afresh
    if sess is not None:
        scenario_id, level = sess.scenario_id, sess.level
        feedback = feedback_html(sess.id) or gr.update()  # a decision may have come in meanwhile
    chosen = scenario_id if scenario_id in ids else (ids[0] if ids else None)
    notices, _ = notices_for(person.username)
    return ("", body, gr.update(choices=choices, value=chosen), briefing_md(chosen, level),
            gr.update(choices=_session_choices(person)), notices, level_hint(person.username), feedback,
            gr.update(value=level) if linked else gr.update())


def _linked_scenario(request: gr.Request, ids: list[str]) -> tuple[str, str] | None:
    """The scenario and level in the page's address (`?scenario=ID&level=LEVEL`, where links into the app lead), if
    valid."""
    query = getattr(request, "query_params", None) or {}
    scenario_id, level = query.get("scenario"), query.get("level")
    return (scenario_id, level) if scenario_id in ids and level in LEVELS else None


@handler
def pick(scenario_id: str | None, level: str | None, request: gr.Request) -> tuple[Any, ...]:
    """The learner picked another scenario or level: its briefing, and a fresh chat to start it in.

    The pickers are locked while a conversation is open, so this only ever replaces an ended session's view (which
    stays under My sessions).
    """
    require(request, PAGE, *ROLES)
    off = gr.update(interactive=False, value="")
    return (briefing_md(scenario_id, level), [], None, "Press **Start session** when you are ready.", "", off,
            gr.update(interactive=False), gr.update(interactive=False), gr.update(visible=False, value=None),
            gr.update(value=None), "")


@handler
@toasts(13)
def start(scenario_id: str | None, level: str, request: gr.Request) -> tuple[Any, ...]:
    """Start a stored session; the persona opens. The pickers lock on this session's scenario and level."""
    person = require(request, PAGE, *ROLES)
    if not scenario_id:
        raise Slip("pick a scenario first")
    voice = ctx().voice()
    app = ctx()
    level = level or "intermediate"
    run = start_practice(store(), person.username, app.catalog.scenario(scenario_id), level, voice,
                         model_name=app.settings.model, prices=(app.settings.price_input, app.settings.price_output),
                         reader=app.reader(offline=voice.name == "offline"))
    ctx().remember(run)
    run.open()
    cast = render.CastView(run.conversation.scenario)
    chat = [_bubble(t, cast) for t in run.conversation.opening_turns()]
    live = gr.update(interactive=True)
    return (chat, run.session_id, engine_notice(voice, ctx().settings), _status(run), gr.update(interactive=True, value=""),
            live, live, "", gr.update(visible=False), gr.update(choices=_session_choices(person), value=run.session_id),
            gr.update(value=scenario_id, interactive=False), gr.update(value=level, interactive=False),
            briefing_md(scenario_id, level))


STREAM_EVERY = 0.05  # seconds: a streamed reply is shown at most this often (and whenever a clause or a speaker ends)
CLAUSE_END = (".", "!", "?", ",", ";", ":", "…")
# The conversation is kept on the server: a turn sends the browser only its own exchange (the learner's line and the
# replies to it, with where in the chat they go), and the browser puts it into the chat. What a turn moves over the
# wire stays the same however long the conversation grows.
APPLY_EXCHANGE = """(chat, ex) => {
  if (!ex || !Array.isArray(ex.messages)) { return [chat]; }
  const kept = Array.isArray(chat) ? chat.slice(0, ex.base) : [];
  return [kept.concat(ex.messages)];
}"""


@functools.cache
def _chat_format() -> gr.Chatbot:
    return gr.Chatbot(render=False)


def _exchange(base: int, messages: Messages) -> dict[str, Any]:
    """A turn's exchange for the browser: its messages as the chat holds them, and the position they start at."""
    return {"base": base, "messages": _chat_format().postprocess(messages).model_dump()}


def _shown(spoken: Iterator[Any], every: float = STREAM_EVERY) -> Iterator[Any]:
    """The items of a growing reply worth showing: one at most every `every` seconds, plus the one that ends a clause,
    a speaker's turn and the reply."""
    held = None
    last_index, last_shown = None, 0.0
    for item in spoken:
        now = time.monotonic()
        if (item.index != last_index or now - last_shown >= every
                or item.text.rstrip().endswith(CLAUSE_END)):
            if held is not None and held.index != item.index:
                yield held  # the previous speaker's turn, whole
            yield item
            held, last_index, last_shown = None, item.index, now
        else:
            held = item
    if held is not None:
        yield held


@handler
def send(message: str, session_id: str | None, request: gr.Request) -> Iterator[tuple[Any, ...]]:
    """Send the learner's line and stream the persona's reply (as this turn's exchange, see `APPLY_EXCHANGE`).

    A slip (an empty line, no session yet) or a failed turn is a warning toast: the conversation stays in view, and a
    line that was not taken goes back into the box.
    """
    check_message(message)  # an oversize message (the box stops at the limit) is refused before anything else is done
    person = require(request, PAGE, *ROLES)
    if not (message or "").strip():
        warn("type what you want to say first")
        yield gr.update(), gr.update(), gr.update(), gr.update()
        return
    if not session_id:
        warn("start a session first: pick a scenario and level, then press Start session")
        yield gr.update(), gr.update(), gr.update(), gr.update()
        return
    run = ctx().run(session_id, person.username)  # one query when this process holds the session
    said = run.state.learner_turns
    base = len(run.conversation.transcript.turns)
    cast = render.CastView(run.conversation.scenario)
    messages = [{"role": "user", "content": render.chat_text(message.strip())}, {"role": "assistant", "content": "…"}]
    yield _exchange(base, messages), "", _status(run), gr.update()
    try:
        for spoken in _shown(run.respond_scene(message)):
            bubble = _bubble(Turn(speaker="persona", text=spoken.text, who=spoken.who), cast)
            if 1 + spoken.index < len(messages):
                messages[1 + spoken.index] = bubble
            else:
                messages.append(bubble)
            yield _exchange(base, messages), gr.update(), _status(run), gr.update()
    except RoleplayError as exc:  # the stored session is the truth: show it, and give back a line it did not take
        warn(str(exc))
        stored = store().get_session(session_id)
        taken = sum(1 for t in stored.turns if t.speaker == "learner") > said
        live = stored.status == "active"
        yield (_exchange(0, _chat_of(stored)), gr.update(value="" if taken else message, interactive=live),
               _status(ctx().run(session_id)) if live else gr.update(), gr.update(interactive=live))
        return
    if run.state.ended:  # the controls change only when the conversation ends
        yield gr.update(), gr.update(interactive=False), _status(run), gr.update(interactive=False)


GRADING_POLL_SECONDS = 2.0  # how often the page looks for a grade that is being made in the background


def _grading_status(job: Any) -> str:
    """One line on where the grading of the session in view is."""
    if job.status == "done":
        return "Session ended and graded. A facilitator reviews the grade before it counts."
    if job.status == "failed":
        return (f"**Grading did not finish:** {job.error} Your conversation is kept; press **End session & get "
                "feedback** to try again.")
    where = "waiting for a grader" if job.status == "queued" else "being graded"
    return (f"Session ended; your conversation is {where}. The feedback appears here when it is ready; you may leave "
            "this page, it is kept.")


@handler
@toasts(10)
def end(session_id: str | None, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
    """End the session and send it for grading; the feedback the programme allows (preliminary or after review) is
    shown at once when the grade is ready within `grading_wait` seconds, else when it is (the page looks every
    `GRADING_POLL_SECONDS`). The pickers unlock."""
    person = require(request, PAGE, *ROLES)
    if not session_id:
        raise Slip("start a session first: pick a scenario and level, then press Start session")
    app = ctx()
    progress(0.05, desc="Saving your conversation")
    run = app.run(session_id, person.username)
    run.end_and_queue(app.jobs)  # once, however many tabs (or app processes) press End
    progress(0.3, desc="Grading against the rubric")
    job = app.jobs.wait(session_id, app.settings.grading_wait)
    progress(1.0, desc="Sent to your facilitator" if job.status == "done" else "Grading goes on in the background")
    off, on = gr.update(interactive=False), gr.update(interactive=True)
    return (_grading_status(job), feedback_html(session_id) if job.status == "done" else "", off, off,
            on if job.status == "failed" else off, on, on,
            gr.update(value=_download_path(session_id), visible=True), gr.update(choices=_session_choices(person)),
            gr.update(active=job.pending))


@handler
def grading_done(session_id: str | None, request: gr.Request) -> tuple[Any, ...]:
    """While a grade is made in the background: nothing changes until it is done (then the feedback shows) or failed
    (then End can send it again)."""
    person = require(request, PAGE, *ROLES)
    job = ctx().jobs.get_in(store(), session_id) if session_id else None
    if job is None or job.pending:
        return gr.update(), gr.update(), gr.update(), gr.update(active=job is not None)
    check_owner(store(), job.session_id, person.username)
    return (_grading_status(job), feedback_html(job.session_id) if job.status == "done" else gr.update(),
            gr.update(interactive=job.status == "failed"), gr.update(active=False))


@handler
@toasts(1)
def refresh_feedback(session_id: str | None, request: gr.Request) -> str:
    """Re-check the review of the current session."""
    person = require(request, PAGE, *ROLES)
    sess = _own_session(session_id, person)
    html = feedback_html(sess.id)
    if not html:
        return '<div class="rp-banner">Not graded yet: end the session to get feedback.</div>'
    return html


def poll(session_id: str | None, request: gr.Request) -> tuple[Any, Any]:
    """Every `NOTICE_POLL_SECONDS`: show new notices (then they are read) and, when one is about the session in view,
    its updated feedback. Quiet for anyone but a learner and when nothing is new."""
    try:
        person = _learner(request)
        if person is None or not NoticeService(store()).unread(person.username):
            return gr.update(), gr.update()
        notices, about = notices_for(person.username)
        feedback = feedback_html(session_id) if session_id and session_id in about else gr.update()
        return notices, feedback
    except Exception:  # a background poll never shows an error; the next one tries again
        log.warning("notice poll failed", exc_info=True)
        return gr.update(), gr.update()


@handler
def open_session(session_id: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Open one of the learner's sessions: its transcript, feedback, and its scenario and level in the pickers."""
    person = require(request, PAGE, *ROLES)
    if not session_id:
        return (gr.update(),) * 12
    sess = _own_session(session_id, person)
    graded = bool(store().grades_for(sess.id))
    active = sess.status == "active"
    if active:
        run = ctx().run(sess.id)
        ctx().remember(run)
        status = _status(run)
    elif graded:
        status = "Graded; see the feedback below."
    else:
        job = ctx().jobs.get_in(store(), sess.id)
        status = _grading_status(job) if job is not None else "Ended but not graded: press End session & get feedback."
        graded = job is not None and job.pending  # End stays off while a grade is being made
    live = gr.update(interactive=active)
    return (_chat_of(sess), sess.id, status, feedback_html(sess.id), live, live, gr.update(interactive=not graded),
            gr.update(value=_download_path(sess.id), visible=bool(sess.turns)), "",
            gr.update(value=sess.scenario_id, interactive=not active), gr.update(value=sess.level, interactive=not active),
            briefing_md(sess.scenario_id, sess.level))


@handler
def keep_chat(session_id: str | None, request: gr.Request) -> Messages:
    """The chat was cleared in the browser: show the stored conversation again (a session ends only with End)."""
    person = require(request, PAGE, *ROLES)
    if not session_id:
        return []
    sess = _own_session(session_id, person)
    gr.Info("Your conversation is kept. To finish it, press End session & get feedback.")
    return _chat_of(sess)


@handler
@toasts(1)
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
            scenario = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="Scenario (grouped by sprint)",
                                   info="Locked while a conversation is open; end it to pick another.",
                                   elem_id="practice-scenario")
            level = gr.Radio(list(LEVELS), value="intermediate", label="Level", elem_id="practice-level")
            hint = gr.Markdown("", elem_id="practice-level-hint")
            brief = gr.Markdown("Pick a scenario.", elem_id="practice-briefing")
            start_btn = gr.Button("Start session", variant="primary", elem_id="practice-start")
            notice = gr.Markdown("", elem_id="practice-engine")
            with gr.Accordion("My sessions", open=False, elem_id="practice-history"):
                sessions = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="Open a session", elem_id="practice-sessions")
        with gr.Column(scale=3):
            notices = gr.HTML("", elem_id="practice-notices")
            status = gr.Markdown("", elem_id="practice-status")
            # Markdown off and every line escaped (render.chat_text): what people type shows as typed, never as HTML.
            # No copy button: the transcript download is the faithful copy.
            chat = gr.Chatbot(label="Conversation", elem_id="practice-chat", height=440, buttons=[],
                              render_markdown=False, sanitize_html=True, allow_tags=False)
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
    # The session in view is held by the browser (not in this process's memory), so any app process serves its turns.
    session_id = gr.Textbox(None, visible="hidden", elem_id="practice-session-id")
    timer = gr.Timer(NOTICE_POLL_SECONDS)

    for picker in (scenario, level):
        picker.input(pick, [scenario, level],
                     [brief, chat, session_id, status, feedback, box, send_btn, end_btn, download, sessions, share_md])
    start_btn.click(start, [scenario, level],
                    [chat, session_id, notice, status, box, send_btn, end_btn, feedback, download, sessions,
                     scenario, level, brief])
    exchange = gr.JSON(None, visible="hidden", elem_id="practice-exchange")
    for trigger in (box.submit, send_btn.click):
        trigger(send, [box, session_id], [exchange, box, status, send_btn])
    exchange.change(None, [chat, exchange], chat, js=APPLY_EXCHANGE)
    grading = gr.Timer(GRADING_POLL_SECONDS, active=False)
    end_btn.click(end, session_id, [status, feedback, box, send_btn, end_btn, scenario, level, download, sessions,
                                    grading])
    grading.tick(grading_done, session_id, [status, feedback, end_btn, grading], show_progress="hidden")
    refresh.click(refresh_feedback, session_id, feedback)
    share_btn.click(share, session_id, share_md)
    chat.clear(keep_chat, session_id, chat)
    timer.tick(poll, session_id, [notices, feedback], show_progress="hidden", queue=False)
    sessions.input(open_session, sessions, [chat, session_id, status, feedback, box, send_btn, end_btn, download, notice,
                                            scenario, level, brief])
    return {"gate": gate_md, "body": body,
            "enter": (enter, [scenario, level, session_id],
                      [gate_md, body, scenario, brief, sessions, notices, hint, feedback, level])}
