"""Gradio pages; they call library functions and hold no business logic."""

from __future__ import annotations

from roleplay.ui.app import build_app, launch_options

__all__ = ["build_app", "launch_options"]
