"""Practice page: pick a scenario and level, read the briefing, talk to the persona."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from roleplay.errors import RoleplayError
from roleplay.library import catalog
from roleplay.practice import engine_notice, get_run, make_voice, remember_run, start_practice
from roleplay.store import default_store

Messages = list[dict[str, Any]]


def _choices() -> list[tuple[str, str]]:
    scenarios = sorted(catalog().scenarios.values(), key=lambda s: (s.sprint, s.title))
    return [(f"{s.title} — {s.sprint}", s.id) for s in scenarios]


def briefing(scenario_id: str | None) -> str:
    """Markdown briefing of a scenario."""
    if not scenario_id:
        return "Pick a scenario."
    s = catalog().scenario(scenario_id)
    objectives = "\n".join(f"- {o}" for o in s.objectives)
    return (f"### {s.title}\n*{s.summary}*\n\n**You are talking to:** {s.persona.name}, {s.persona.role}\n\n"
            f"{s.briefing.strip()}\n\n**Your objectives**\n{objectives}")


def start(scenario_id: str | None, level: str, username: str) -> tuple[Messages, str | None, str, Any, Any]:
    """Start a session; returns chat, session id, status, and input/end button updates."""
    if not scenario_id:
        raise gr.Error("Pick a scenario first.")
    try:
        voice = make_voice()
        run = start_practice(default_store(), username or "learner", catalog().scenario(scenario_id), level, voice)
    except RoleplayError as exc:
        raise gr.Error(str(exc)) from None
    remember_run(run)
    chat = [{"role": "assistant", "content": run.open()}]
    return chat, run.session_id, engine_notice(voice), gr.update(interactive=True), gr.update(interactive=True)


def send(message: str, chat: Messages, session_id: str | None) -> Iterator[tuple[Messages, str, str]]:
    """Send a learner line and stream the persona's reply."""
    if not session_id:
        raise gr.Error("Start a session first.")
    if not message.strip():
        yield chat, "", ""
        return
    try:
        run = get_run(default_store(), session_id)
        chat = [*chat, {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        for text in run.respond(message):
            chat[-1] = {"role": "assistant", "content": text}
            yield chat, "", _status(run)
    except RoleplayError as exc:
        raise gr.Error(str(exc)) from None
    yield chat, "", _status(run)


def _status(run: Any) -> str:
    st = run.state
    if st.ended:
        return f"Session ended ({st.end_reason}). {len(run.conversation.transcript.turns)} turns saved."
    return f"Turn {st.learner_turns}/{run.conversation.level.max_turns}."


def end(session_id: str | None) -> str:
    """End the session."""
    if not session_id:
        return "No session running."
    try:
        run = get_run(default_store(), session_id)
        run.end()
    except RoleplayError as exc:
        raise gr.Error(str(exc)) from None
    return f"Session ended. {len(run.conversation.transcript.turns)} turns saved."


def build() -> None:
    """Lay out the practice page."""
    choices = _choices()
    with gr.Row():
        with gr.Column(scale=1):
            username = gr.Textbox(label="Your name", value="learner", elem_id="practice-user")
            scenario = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Scenario",
                                   elem_id="practice-scenario")
            level = gr.Radio(["novice", "intermediate", "expert"], value="intermediate", label="Level",
                             elem_id="practice-level")
            brief = gr.Markdown(briefing(choices[0][1]) if choices else "", elem_id="practice-briefing")
            start_btn = gr.Button("Start session", variant="primary", elem_id="practice-start")
        with gr.Column(scale=2):
            status = gr.Markdown("", elem_id="practice-status")
            chat = gr.Chatbot(label="Conversation", elem_id="practice-chat", height=480)
            box = gr.Textbox(label="Your line", placeholder="Say something…", interactive=False, elem_id="practice-input")
            end_btn = gr.Button("End session", interactive=False, elem_id="practice-end")
    session_id = gr.State(None)
    scenario.change(briefing, scenario, brief)
    start_btn.click(start, [scenario, level, username], [chat, session_id, status, box, end_btn])
    box.submit(send, [box, chat, session_id], [chat, box, status])
    end_btn.click(end, session_id, status)
