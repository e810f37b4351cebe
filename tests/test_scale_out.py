"""Scale-out: a session started by one app process continues on another sharing the database and chroma server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from content import GOOD_LINES, catalog
from procs import stop

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
reply = run.say("That sounds exhausting. Thank you for telling me.")
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


# --- two app processes and two grading workers, as the scale-out recipe runs them ---------------------------------

def _start_app(port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "app_process.py"), str(port)], env=env, cwd=ROOT,
                            text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY"), line + proc.stdout.read()
    return proc


@pytest.mark.slow
@pytest.mark.postgres
def test_two_app_processes_and_two_workers_stay_consistent_under_alternating_requests(pg_url: str,
                                                                                     tmp_path: Path) -> None:
    from queue_client import Tab
    from test_jobs import REDIS_URL, redis_unreachable_reason

    from roleplay.models import Role

    reason = redis_unreachable_reason()
    if reason:
        pytest.skip(reason)
    store = Store(pg_url)
    store.add_person("ana", Role.LEARNER)
    store.set_password("ana", "practise-2026")
    env = {**os.environ, "ROLEPLAY_DATABASE_URL": pg_url, "ROLEPLAY_DATA_DIR": str(tmp_path),
           "ROLEPLAY_REDIS_URL": REDIS_URL, "ROLEPLAY_REDIS_NAMESPACE": f"roleplay-test-{uuid.uuid4().hex[:8]}",
           "ROLEPLAY_ENGINE": "offline", "ROLEPLAY_GRADING_WAIT": "0"}
    ports = [_free_port(), _free_port()]
    apps: list[subprocess.Popen[str]] = []
    workers = None
    try:
        apps = [_start_app(port, env) for port in ports]
        workers = subprocess.Popen([sys.executable, "-m", "roleplay.cli", "worker", "--processes", "2",
                                    "--threads", "2"], env=env, cwd=ROOT, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        roots = [f"http://127.0.0.1:{port}" for port in ports]
        tab = Tab(roots[0])
        tab.sign_in("ana", "practise-2026")  # signed in through the first process, known to both
        tab.call("practice-start", "click", root=roots[1], **{"practice-scenario": "missed-deadlines",
                                                             "practice-level": "novice"})
        session_id = tab.value("practice-session-id")
        assert session_id
        sent, shown = [], []
        for i, line in enumerate(GOOD_LINES[:6]):
            out = tab.call("practice-input", "submit", root=roots[i % 2], **{"practice-input": line})
            exchange = out[0]
            assert exchange["base"] == 1 + 2 * i  # each process knew every turn the other took
            sent.append(line)
            shown.append(exchange["messages"][-1]["content"][0]["text"])
        tab.call("practice-end", "click", root=roots[0])
        assert "being graded" in tab.value("practice-status") or "waiting for a grader" in tab.value("practice-status")
        deadline = time.time() + 120
        while time.time() < deadline and not store.grades_for(session_id):
            time.sleep(0.3)
        tab.call("practice-refresh", "click", root=roots[1])
        feedback = tab.value("practice-feedback")
    finally:
        logs = [stop(app, close_stdin=True) for app in apps]
        worker_log = stop(workers) if workers else ""
    stored = store.get_session(session_id)
    assert [t.idx for t in stored.turns] == list(range(13))
    assert [t.speaker for t in stored.turns] == ["persona"] + ["learner", "persona"] * 6
    assert [t.text for t in stored.turns if t.speaker == "learner"] == sent
    assert [t.text for t in stored.turns if t.speaker == "persona"][1:] == [" ".join(s.split()) for s in shown]
    assert len(store.grades_for(session_id)) == 1, (logs, worker_log)
    from roleplay.jobs import GradingJobs

    job = GradingJobs.get_in(store, session_id)
    app_pids = {str(app.pid) for app in apps}
    assert job is not None and job.status == "done" and job.worker.split(":")[1] not in app_pids
    assert "Awaiting facilitator review" in feedback or "Preliminary" in feedback
    store.close()


def test_how_each_turn_was_read_is_stored_with_the_turn_so_the_state_stays_small(tmp_path: Path) -> None:
    from roleplay.persona import PersonaState
    from roleplay.practice import resume_practice

    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    run = start_practice(store, "ana", catalog().scenario("missed-deadlines"), "novice")
    run.open()
    for line in GOOD_LINES[:4]:
        run.say(line)
    stored = store.get_session(run.session_id)
    learner = [t for t in stored.turns if t.speaker == "learner"]
    assert [t.meta["reading"] for t in learner] == run.conversation.readings and len(learner) == 4
    assert "readings" not in stored.state
    again = resume_practice(store, run.session_id, catalog())
    assert again.conversation.readings == run.conversation.readings  # resumed on another process, nothing lost
    legacy = {**stored.state, "readings": [{"moves": ["open_question"]}]}  # a state stored before the move
    assert PersonaState.model_validate(legacy).learner_turns == 4
    store.close()
