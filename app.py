"""Start the roleplay web app: `python app.py [--demo]` (host and port from ROLEPLAY_HOST / ROLEPLAY_PORT)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of `python app.py`."""
    parser = argparse.ArgumentParser(prog="python app.py", description="Start the roleplay web app.")
    parser.add_argument("--demo", action="store_true",
                        help="create the demo accounts learner, facilitator and designer (password = username) for a "
                             "trial; also ROLEPLAY_DEMO=1")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Launch the app on the configured host and port; every start-up error is one line saying what to fix."""
    from roleplay.errors import RoleplayError

    args = parse_args(argv)
    port = "the configured port"
    try:
        from roleplay.context import AppContext

        app = AppContext()
        cfg = app.settings
        port = f"{cfg.host}:{cfg.port}"
        app.catalog  # noqa: B018 - a broken scenario file is reported before the app starts
        notice = app.account_notice(demo=args.demo)
        engine = "AI persona" if cfg.use_llm else "offline engine (no model configured)"
        print(f"roleplay: {engine}; data in {cfg.data_dir}; open http://{cfg.host}:{cfg.port}", flush=True)
        if notice:
            print(notice, flush=True)
        if app.start_lrs_sender():  # delivers what earlier runs left queued without waiting for an approval
            print(f"xAPI statements of approved results are sent to {cfg.lrs_url}", flush=True)
        if app.start_nudges():
            print(f"drill reminders: due drills emailed through {cfg.smtp_host} every {cfg.nudge_interval:g} s",
                  flush=True)
        from roleplay.ui import build_app
        from roleplay.ui.app import launch_options

        # SIGTERM (a service manager stopping the app) exits like Ctrl-C, so the private download folder is removed
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        build_app(app).launch(server_name=cfg.host, server_port=cfg.port, quiet=True, **launch_options())
    except RoleplayError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # the address is taken or cannot be bound
        if _debug():
            raise
        print(f"error: cannot serve on {port} ({exc.strerror or str(exc).split('.')[0]}); set ROLEPLAY_PORT to a free "
              "port or ROLEPLAY_HOST to an address of this machine", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line for users; ROLEPLAY_DEBUG=1 shows the traceback
        if _debug():
            raise
        print(f"error: the app could not start ({type(exc).__name__}); set ROLEPLAY_DEBUG=1 to see why",
              file=sys.stderr)
        return 1
    return 0


def _debug() -> bool:
    return os.environ.get("ROLEPLAY_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


if __name__ == "__main__":
    sys.exit(main())
