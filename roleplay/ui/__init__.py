"""The Gradio web app: `build_app(context)` and `launch_options()` (imported on first use)."""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "launch_options"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from roleplay.ui import app

        return getattr(app, name)
    raise AttributeError(f"module 'roleplay.ui' has no attribute {name!r}")
