"""Stopping the processes a test started (an app, grading workers) and keeping what they printed."""

from __future__ import annotations

import subprocess


def stop(proc: subprocess.Popen[str], close_stdin: bool = False) -> str:
    """Stop `proc` (closing its stdin when that is how it stops, else SIGTERM; killed after 60 s) and return its
    output."""
    if close_stdin and proc.stdin:
        proc.stdin.close()
        proc.stdin = None
    else:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""
