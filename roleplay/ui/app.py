"""The Gradio application: one Blocks app, a tab per page, sign-in by the store's passwords."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from roleplay.ui import author_page, calibrate_page, practice_page, progress_page, review_page  # noqa: E402  (submodules)
from roleplay.context import AppContext  # noqa: E402
from roleplay.ui.common import auth_callable, handler, signed_in, use_context  # noqa: E402
from roleplay.ui.render import CSS  # noqa: E402

PAGES = (  # (tab id, label, module, roles that use it)
    ("practice", "Practice", practice_page, practice_page.ROLES),
    ("review", "Review", review_page, review_page.ROLES),
    ("calibrate", "Calibrate", calibrate_page, calibrate_page.ROLES),
    ("author", "Author", author_page, author_page.ROLES),
    ("progress", "Progress", progress_page, progress_page.ROLES),
)
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber")


@handler
def who(request: gr.Request) -> tuple[str, Any]:
    """The signed-in banner, and the first tab this person's role uses."""
    person = signed_in(request)
    first = next((tab for tab, _, _, roles in PAGES if person.role in roles), "practice")
    banner = (f'<div class="rp-banner" id="whoami">Signed in as <b>{person.display_name}</b> '
              f'(<span id="whoami-user">{person.username}</span>, {person.role}) · '
              f'<a href="/logout" id="signout">Sign out</a></div>')
    return banner, gr.Tabs(selected=first)


def build_app(context: AppContext | None = None) -> gr.Blocks:
    """Build the app (not launched) on `context` (built from the environment when None); launch it with
    `launch_options()`."""
    app = use_context(context or AppContext())
    with gr.Blocks(title="roleplay: practise hard conversations") as demo:
        with gr.Row():
            gr.Markdown("## roleplay\nPractise hard conversations with a persona; a facilitator reviews your "
                        "feedback before it counts.", elem_id="app-title")
            banner = gr.HTML("", elem_id="app-banner")
        with gr.Tabs(elem_id="tabs") as tabs:
            built = []
            for tab_id, label, module, _roles in PAGES:
                with gr.Tab(label, id=tab_id, elem_id=f"tab-{tab_id}") as tab:
                    page = module.build()
                built.append((tab, page))
        demo.load(who, None, [banner, tabs])
        for tab, page in built:
            fn, inputs, outputs = page["enter"]
            demo.load(fn, inputs, outputs)
            tab.select(fn, inputs, outputs)
    # Gradio runs one event per listener at a time by default: every learner's turn would wait for everyone else's.
    demo.queue(default_concurrency_limit=app.settings.concurrency)
    return demo


def launch_options() -> dict[str, Any]:
    """Keyword arguments for `demo.launch()`: sign-in, theme and styles."""
    return {"auth": auth_callable(), "auth_message": "Sign in with your roleplay account.", "theme": THEME, "css": CSS,
            "footer_links": []}
