"""Start the roleplay web app: `python app.py` (host and port from ROLEPLAY_HOST / ROLEPLAY_PORT)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> int:
    """Launch the app on the configured host and port; errors are one-line messages."""
    from roleplay.errors import RoleplayError

    try:
        from roleplay.context import AppContext

        app = AppContext()
        cfg = app.settings
        app.catalog  # noqa: B018 - a broken scenario file is reported before the app starts
        seeded = app.store.seed_demo_people()
        engine = "AI persona" if cfg.use_llm else "offline engine (no model configured)"
        print(f"roleplay: {engine}; data in {cfg.data_dir}; open http://{cfg.host}:{cfg.port}", flush=True)
        if seeded:
            print(f"demo accounts created (password = username): {', '.join(seeded)}; "
                  "set real passwords with `roleplay people password NAME`", flush=True)
        from roleplay.ui import build_app
        from roleplay.ui.app import launch_options

        build_app(app).launch(server_name=cfg.host, server_port=cfg.port, quiet=True, **launch_options())
    except RoleplayError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
