"""How fast `roleplay --help` starts and the fast test tier runs, as ratios against anchors measured in the same run.

    python benchmarks/startup.py            # both figures
    python benchmarks/startup.py --no-tests # only the start-up figure

Anchors: a bare click CLI's --help (the least any click command can cost) and `python -c pass`; the fast tier is
`python -m pytest -q -m "not slow"` (with `-n 2` when pytest-xdist is installed). Goals: `roleplay --help` under
1 s, the fast tier under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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


def timed(cmd: list[str], repeats: int, env: dict[str, str] | None = None) -> float:
    """Median wall time of `cmd` in seconds."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tests", action="store_true", help="skip the fast test tier")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    exe = shutil.which("roleplay") or str(Path(sys.executable).with_name("roleplay"))
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_cli.py"
        bare.write_text(BARE_CLI)
        python = timed([sys.executable, "-c", "pass"], args.repeats)
        anchor = timed([sys.executable, str(bare), "--help"], args.repeats)
    help_s = timed([exe, "--help"], args.repeats)
    rows = [("python -c pass", python, python / anchor),
            ("bare click CLI --help (anchor)", anchor, 1.0),
            ("roleplay --help", help_s, help_s / anchor)]
    ok = help_s < 1.0
    if not args.no_tests:
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"]
        if importlib.util.find_spec("xdist") is not None:
            cmd += ["-n", "2"]
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        tier = timed(cmd, 1, env)
        rows.append(('fast tier: pytest -m "not slow"', tier, tier / anchor))
        ok = ok and tier < 60
    print(f"| {'what':40} | {'seconds':>8} | {'x anchor':>9} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 11}|")
    for what, seconds, ratio in rows:
        print(f"| {what:40} | {seconds:8.3f} | {ratio:8.1f}x |")
    print(f"\ngoals (--help < 1 s, fast tier < 60 s): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
