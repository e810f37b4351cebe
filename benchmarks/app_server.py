"""The real roleplay Gradio app in its own process, for the concurrent-sessions benchmark.

Launched by bench_sessions.py with the environment it needs (ROLEPLAY_DATA_DIR in the benchmark's temp dir,
ROLEPLAY_ENGINE, and for the LLM engine ROLEPLAY_BASE_URL pointing at the local stub). Builds the app with
`roleplay.ui.build_app(context)`, seeds the demo accounts, and launches it with `prevent_thread_lock=True` on the given
port, with `auth=` the store's password check when the UI provides one. Prints "READY <port> <auth|noauth>", then
serves until stdin closes (or --max-seconds pass).

Usage: python app_server.py PORT [--max-seconds N]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

sys.dont_write_bytecode = True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    killer = threading.Timer(args.max_seconds, lambda: os._exit(3))
    killer.daemon = True
    killer.start()
    try:
        from roleplay.context import AppContext
        from roleplay.ui import build_app

        context = AppContext()
        context.catalog  # noqa: B018 - scenario errors are reported before launch
        context.store.seed_demo_people()
        try:
            from roleplay.ui.common import auth_callable

            auth = auth_callable()
        except ImportError:
            auth = None
        app = build_app(context)
        app.launch(server_name="127.0.0.1", server_port=args.port, prevent_thread_lock=True, quiet=True,
                   auth=auth, show_error=True)
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which falls back
        print(f"FAILED {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(f"READY {args.port} {'auth' if auth else 'noauth'}", flush=True)
    sys.stdin.read()
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
