"""The web app in its own process, as a deployment runs it: `python tests/app_process.py PORT`.

Settings come from the environment (ROLEPLAY_DATABASE_URL, ROLEPLAY_REDIS_URL, ...). Prints "READY <port>" once it
serves, then serves until stdin closes (or --max-seconds pass).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    killer = threading.Timer(args.max_seconds, lambda: os._exit(3))
    killer.daemon = True
    killer.start()
    from roleplay.context import AppContext
    from roleplay.ui import build_app
    from roleplay.ui.app import launch_options

    context = AppContext()
    context.catalog  # noqa: B018 - a broken scenario is reported before launch
    demo = build_app(context)
    demo.launch(server_name="127.0.0.1", server_port=args.port, prevent_thread_lock=True, quiet=True,
                **launch_options(context))
    print(f"READY {args.port}", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    demo.close()
    context.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
