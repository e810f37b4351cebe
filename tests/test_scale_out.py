"""Scale-out: a session started by one app process continues on another sharing the database and chroma server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from content import catalog
from roleplay.practice import start_practice
from roleplay.store import Store

ROOT = Path(__file__).resolve().parent.parent
CONTINUE = """
import sys
from roleplay.context import AppContext
from roleplay.practice import resume_practice
from roleplay.store import Store
store = Store(sys.argv[1])
run = resume_practice(store, sys.argv[2], AppContext().catalog)
reply = run.conversation.say("That sounds exhausting. Thank you for telling me.")
print(run.state.learner_turns, "|", reply)
store.close()
"""


def test_a_session_started_here_continues_in_another_process(db_url: str) -> None:
    store = Store(db_url)
    run = start_practice(store, "ana", catalog().scenario("missed-deadlines"), "novice")
    run.open()
    for line in ("Hi Sam.", "What's been going on for you?", "It sounds like the mornings have been hard."):
        list(run.respond(line))
    env = {**os.environ, "ROLEPLAY_ENGINE": "offline"}
    out = subprocess.run([sys.executable, "-c", CONTINUE, db_url, run.session_id], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    turns, reply = out.stdout.strip().split(" | ", 1)
    assert turns == "4" and reply
    stored = store.get_session(run.session_id)
    assert len(stored.turns) == 9 and stored.turns[-1].text == reply
    assert stored.state["learner_turns"] == 4
    store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_share_exemplars_through_a_chroma_server(tmp_path: Path) -> None:
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    if not Path(chroma).exists():
        pytest.skip("the chroma server command is not installed")
    port = _free_port()
    server = subprocess.Popen([chroma, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(tmp_path / "c")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        import httpx

        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("chroma server did not start")
        add = ("from roleplay.exemplars import Exemplar, ExemplarStore\n"
               f"s = ExemplarStore(url='{url}')\n"
               "s.add(Exemplar(id='x1', rubric_id='coaching-conversation', criterion_id='empathy', "
               "excerpt='That sounds exhausting.', level=4, rationale='Names the feeling.', source='approved'))\n")
        subprocess.run([sys.executable, "-c", add], check=True, cwd=ROOT, timeout=120)
        from roleplay.exemplars import ExemplarStore

        found = ExemplarStore(url=url).similar("coaching-conversation", "empathy", "That sounds hard.", k=1)
        assert [e.id for e in found] == ["x1"]
    finally:
        server.terminate()
        server.wait(10)
