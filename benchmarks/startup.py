"""How fast roleplay starts: the command line, the web app's first page and the fast test tier, as ratios against
anchors measured in the same run.

    python benchmarks/startup.py                      # everything
    python benchmarks/startup.py --no-tests           # without the fast test tier
    python benchmarks/startup.py --no-tests --no-app  # only the command line

Anchors: a bare click CLI's --help (the least any click command can cost), `python -c pass`, and a bare Gradio app
(one Markdown block) for the web app's first page. The first page is the time from starting `python app.py` to the
first HTTP 200 for `/` (the sign-in page), from a warm install: bytecode compiled and the database created by an
earlier start that is not counted. The fast tier is `python -m pytest -q -m "not slow"` (with `-n 2` when
pytest-xdist is installed). Goals: `roleplay --help`, `--version` and `validate` under 1 s each, the fast tier under
60 s on 2 cores; the first page is reported against its anchor, with no goal.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARE_CLI = """
import click

@click.group()
def main():
    "A bare CLI."

@main.command()
def hello():
    "Say hello."

main()
"""
BARE_APP = """
import os, sys
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr

with gr.Blocks() as demo:
    gr.Markdown("A bare app.")
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
"""
PAGE_TIMEOUT = 180.0  # s: give up on a first page after this long


def timed(cmd: list[str], repeats: int, env: dict[str, str] | None = None) -> float:
    """Median wall time of `cmd` in seconds."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_page(cmd: list[str], env: dict[str, str], port: int) -> float:
    """Seconds from starting `cmd` to the first HTTP 200 for / on `port`; the process is stopped afterwards."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while time.perf_counter() - start < PAGE_TIMEOUT:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace").strip().splitlines() if proc.stderr else []
                raise RuntimeError(f"{' '.join(cmd)} stopped before serving a page: {err[-1] if err else proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
                    if reply.status == 200:
                        reply.read()
                        return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.02)
        raise RuntimeError(f"{' '.join(cmd)} served no page within {PAGE_TIMEOUT:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def first_pages(repeats: int, tmp: Path) -> tuple[float, float]:
    """Median first-page times of the bare Gradio app and of `python app.py`, each after one uncounted warm-up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLEPLAY_")}
    env.update({"GRADIO_ANALYTICS_ENABLED": "False", "ROLEPLAY_DATA_DIR": str(tmp / "data"),
                "ROLEPLAY_HOST": "127.0.0.1", "GRADIO_TEMP_DIR": str(tmp / "gradio"), "TMPDIR": str(tmp)})
    bare = tmp / "bare_app.py"
    bare.write_text(BARE_APP)

    def bare_once() -> float:
        port = free_port()
        return first_page([sys.executable, str(bare), str(port)], env, port)

    def app_once() -> float:
        port = free_port()
        return first_page([sys.executable, str(ROOT / "app.py")], {**env, "ROLEPLAY_PORT": str(port)}, port)

    bare_once(), app_once()  # warm-up: bytecode, the database and its migrations
    bare_runs, app_runs = [], []
    for _ in range(repeats):  # interleaved, so a change in the machine's load touches both alike
        bare_runs.append(bare_once())
        app_runs.append(app_once())
    return statistics.median(bare_runs), statistics.median(app_runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tests", action="store_true", help="skip the fast test tier")
    parser.add_argument("--no-app", action="store_true", help="skip the web app's first page")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--app-repeats", type=int, default=3)
    args = parser.parse_args()
    exe = shutil.which("roleplay") or str(Path(sys.executable).with_name("roleplay"))
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("ROLEPLAY_")}
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_cli.py"
        bare.write_text(BARE_CLI)
        python = timed([sys.executable, "-c", "pass"], args.repeats)
        anchor = timed([sys.executable, str(bare), "--help"], args.repeats)
        cli_env["ROLEPLAY_DATA_DIR"] = str(Path(tmp) / "cli-data")
        help_s = timed([exe, "--help"], args.repeats, cli_env)
        version_s = timed([exe, "--version"], args.repeats, cli_env)
        validate_s = timed([exe, "validate"], args.repeats, cli_env)
        rows = [("python -c pass", python, python / anchor, None),
                ("bare click CLI --help (anchor)", anchor, 1.0, None),
                ("roleplay --help", help_s, help_s / anchor, None),
                ("roleplay --version", version_s, version_s / anchor, None),
                ("roleplay validate", validate_s, validate_s / anchor, None)]
        ok = max(help_s, version_s, validate_s) < 1.0
        if not args.no_app:
            bare_page, app_page = first_pages(args.app_repeats, Path(tmp))
            rows += [("bare Gradio app: first page (anchor)", bare_page, None, 1.0),
                     ("python app.py: first page (warm)", app_page, None, app_page / bare_page)]
    if not args.no_tests:
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"]
        if importlib.util.find_spec("xdist") is not None:
            cmd += ["-n", "2"]
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        tier = timed(cmd, 1, env)
        rows.append(('fast tier: pytest -m "not slow"', tier, tier / anchor, None))
        ok = ok and tier < 60
    print(f"| {'what':40} | {'seconds':>8} | {'x click anchor':>14} | {'x Gradio anchor':>15} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 16}|{'-' * 17}|")
    for what, seconds, ratio, page_ratio in rows:
        cli = f"{ratio:13.1f}x" if ratio is not None else f"{'':14}"
        app = f"{page_ratio:14.2f}x" if page_ratio is not None else f"{'':15}"
        print(f"| {what:40} | {seconds:8.3f} | {cli} | {app} |")
    print(f"\ngoals (--help, --version and validate < 1 s each; fast tier < 60 s): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
