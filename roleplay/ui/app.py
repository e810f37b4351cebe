"""The Gradio application: one Blocks app with a tab per page."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from roleplay.ui import practice_page  # noqa: E402


def build_app() -> gr.Blocks:
    """Build the app (not launched)."""
    with gr.Blocks(title="roleplay: practise hard conversations") as demo:
        gr.Markdown("# roleplay\nPractise hard conversations with an AI persona; a facilitator reviews your feedback.")
        with gr.Tab("Practice", id="practice"):
            practice_page.build()
    return demo
