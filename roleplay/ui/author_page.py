"""Author page (learning designers): edit scenario YAML with live validation, preview the persona, save when valid."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from roleplay.catalog import check_scenario_text, save_scenario_text
from roleplay.errors import RoleplayError, ScenarioError, ValidationErrors
from roleplay.persona import Conversation
from roleplay.practice import engine_notice
from roleplay.scenario import LEVELS, Scenario
from roleplay.ui import render
from roleplay.ui.common import Problem, action, ctx, gate, handler, page_frame, require

PAGE = "Author"
ROLES = ("designer",)
Messages = list[dict[str, Any]]


def scenario_files() -> list[str]:
    """YAML file names in the scenarios directory."""
    folder = ctx().settings.scenarios_dir
    return sorted(p.name for p in folder.glob("*.y*ml") if p.is_file()) if folder.is_dir() else []


def file_choices() -> list[tuple[str, str]]:
    """(label, file name) for each scenario file: the scenario's title with its file name."""
    titles = {src.name: scn.title for scn in ctx().catalog.scenarios.values()
              if (src := ctx().catalog.sources.get(f"scenario:{scn.id}")) is not None}
    return [(f"{titles[name]} ({name})" if name in titles else name, name) for name in scenario_files()]


def problems(n: int) -> str:
    """'1 problem', '2 problems'."""
    return f"{n} problem{'' if n == 1 else 's'}"


def check(text: str, file_name: str) -> tuple[Scenario | None, list[ScenarioError]]:
    """Validate scenario text as the catalog would load it."""
    return check_scenario_text(text, file_name, ctx().catalog)


def problems_html(errors: list[ScenarioError], file_name: str) -> str:
    """Validation result: a green tick or one line per problem with its line number."""
    if not errors:
        return f'<div class="rp-drift ok" id="author-valid">✓ Valid: {render.esc(file_name)} can be saved.</div>'
    rows = "".join(
        f'<li class="author-error"><b>{f"Line {e.line}" if e.line is not None else "File"}</b>'
        f'{" · <code>" + render.esc(e.field) + "</code>" if e.field else ""}: {render.esc(e.problem)}</li>'
        for e in errors)
    return (f'<div class="rp-drift bad" id="author-invalid">✗ {problems(len(errors))}; '
            f"fix {'them' if len(errors) != 1 else 'it'} to save.</div><ul id='author-errors'>{rows}</ul>")


def _first_problem(errors: list[ScenarioError]) -> str:
    first = errors[0] if errors else None
    if first is None:
        return ""
    return f" (first: line {first.line}: {first.problem})" if first.line else f" ({first.problem})"


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(request: gr.Request) -> tuple[Any, ...]:
    """Show the editor to designers, a refusal to anyone else."""
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return message, body, gr.update()
    require(request, PAGE, *ROLES)
    return "", body, gr.update(choices=file_choices())


@action
def open_file(name: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Load a scenario file into the editor."""
    require(request, PAGE, *ROLES)
    if not name:
        return gr.update(), gr.update(), "", gr.update(), None
    if name not in scenario_files():
        raise Problem(f"There is no scenario file '{name}' any more; pick another.", title="Not found")
    text = (ctx().settings.scenarios_dir / name).read_text(encoding="utf-8")
    _, errors = check(text, name)
    return text, name, problems_html(errors, name), gr.update(interactive=not errors), name


@action
def validate(text: str, file_name: str, request: gr.Request) -> tuple[Any, ...]:
    """Live validation as the designer types: problems with line numbers; Save only when valid."""
    require(request, PAGE, *ROLES)
    _, errors = check(text, file_name)
    return problems_html(errors, file_name), gr.update(interactive=not errors)


@action
def save(text: str, file_name: str, opened: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Write the scenario to the scenarios directory, only when it is valid; otherwise write nothing."""
    require(request, PAGE, *ROLES)
    try:
        scenario = save_scenario_text(text, file_name, ctx().settings.scenarios_dir, ctx().catalog, replacing=opened)
    except ValidationErrors as exc:
        raise Problem(f"Not saved: the scenario has {problems(len(exc.errors))}{_first_problem(exc.errors)}. "
                      "Nothing was written.", title="Not saved") from None
    except RoleplayError as exc:
        raise Problem(f"Not saved: {exc}", title="Not saved") from None
    ctx().reload_catalog()  # learners see the change on their next visit to Practice
    gr.Info(f"Saved “{scenario.title}” to {file_name}.")
    saved = f'<div class="rp-drift ok" id="author-saved">✓ Saved {render.esc(file_name)} (“{render.esc(scenario.title)}”).</div>'
    return saved, gr.update(choices=file_choices(), value=file_name), file_name


@action
def preview_start(text: str, file_name: str, level: str, request: gr.Request) -> tuple[Any, ...]:
    """Start a preview chat with the edited persona (not stored)."""
    require(request, PAGE, *ROLES)
    scenario, errors = check(text, file_name)
    if scenario is None:
        raise Problem(f"Fix the {problems(len(errors))} before previewing{_first_problem(errors)}.",
                      title="No preview")
    voice = ctx().voice()
    conv = Conversation(scenario, level or "intermediate", voice, reader=ctx().reader(offline=voice.name == "offline"))
    conv.open()
    cast = render.CastView(scenario)
    chat = [render.chat_bubble(t.speaker, t.text, t.who, cast) for t in conv.opening_turns()]
    return chat, conv, engine_notice(voice, ctx().settings), gr.update(interactive=True)


@action
def preview_send(message: str, chat: Messages, conv: Any, request: gr.Request) -> Iterator[tuple[Any, ...]]:
    """Stream the previewed persona's reply."""
    require(request, PAGE, *ROLES)
    if conv is None:
        raise Problem("Start the preview first.", title="No preview")
    if not (message or "").strip():
        raise Problem("Type a line first.", title="Nothing sent")
    cast = render.CastView(conv.scenario)
    chat = [*(chat or []), render.chat_bubble("learner", message.strip(), None, cast), {"role": "assistant", "content": "…"}]
    first = len(chat) - 1
    for spoken in conv.respond_scene(message):
        bubble = render.chat_bubble("persona", spoken.text, spoken.who, cast)
        if first + spoken.index < len(chat):
            chat[first + spoken.index] = bubble
        else:
            chat.append(bubble)
        yield chat, "", preview_state(conv)
    yield chat, "", preview_state(conv)


ENDINGS = {"success": "the conversation reached a good close", "walkout": "{name} ended the meeting",
           "timeout": "the time for this meeting ran out", "learner": "you ended it"}


def preview_state(conv: Any) -> str:
    """Where the previewed persona stands, in words: trust and mood, what they have told, how it ended."""
    st, scn = conv.state, conv.scenario
    facts = {f.id: f.fact for f in scn.hidden_facts}
    ended = ""
    if st.ended:
        walked = next((t.who for t in reversed(conv.transcript.turns) if t.speaker == "persona"), None)
        name = scn.member(walked).persona.name if walked else scn.persona.name
        ended = " · **ended:** " + ENDINGS.get(st.end_reason or "", st.end_reason or "").format(name=name)
    parts = []
    for m in scn.members:
        if m.id != conv.lead.id and m.id not in st.cast:
            continue
        mind = conv.mind(m.id)
        own = [i for i in st.revealed_ids if any(f.id == i for f in m.hidden_facts)]
        told = "; ".join(f"“{facts.get(i, i)}”" for i in own) or "nothing hidden yet"
        parts.append(f"{m.persona.name}: trust {mind.trust:.1f} of 5 ({mind.mood}) · **has told you:** {told}")
    return "\n\n".join(parts) + ended


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md, body = page_frame("author")
    with body, gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                files = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="Open scenario file", elem_id="author-file")
                file_name = gr.Textbox(label="Save as (file name)", placeholder="my-scenario.yaml",
                                       elem_id="author-filename")
            editor = gr.Code(value="", language="yaml", label="Scenario YAML", lines=28, max_lines=28,
                             elem_id="author-editor", interactive=True)
            problems = gr.HTML("", elem_id="author-problems")
            save_btn = gr.Button("Save", variant="primary", interactive=False, elem_id="author-save")
            saved = gr.HTML("", elem_id="author-result")
        with gr.Column(scale=2):
            gr.Markdown("#### Preview the persona\nTalk to the edited persona (nothing is stored).")
            level = gr.Radio(list(LEVELS), value="intermediate", label="Level", elem_id="author-level")
            preview_btn = gr.Button("Start preview", elem_id="author-preview-start")
            engine = gr.Markdown("", elem_id="author-engine")
            chat = gr.Chatbot(label="Preview", elem_id="author-chat", height=360)
            line = gr.Textbox(label="Your line", interactive=False, elem_id="author-input")
            state_md = gr.Markdown("", elem_id="author-preview-state")
    opened = gr.State(None)
    conv = gr.State(None)

    files.input(open_file, files, [editor, file_name, problems, save_btn, opened])
    editor.change(validate, [editor, file_name], [problems, save_btn], trigger_mode="always_last")
    file_name.input(validate, [editor, file_name], [problems, save_btn], trigger_mode="always_last")
    save_btn.click(save, [editor, file_name, opened], [saved, files, opened])
    preview_btn.click(preview_start, [editor, file_name, level], [chat, conv, engine, line])
    line.submit(preview_send, [line, chat, conv], [chat, line, state_md])
    return {"gate": gate_md, "body": body, "enter": (enter, [], [gate_md, body, files])}
