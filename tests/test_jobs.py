"""Grading as background jobs: once per session, on the app's threads or on worker processes over Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from content import GOOD_LINES, catalog
from procs import stop

from roleplay.config import Settings
from roleplay.context import AppContext
from roleplay.errors import RoleplayError
from roleplay.jobs import GradingJobs, run_job
from roleplay.practice import start_practice
from roleplay.store import Store

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("ROLEPLAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_unreachable_reason() -> str | None:
    """Why tests of the Redis queue cannot run here, or None if they can."""
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, saying why
        return f"no Redis server at {REDIS_URL} ({type(exc).__name__}); set ROLEPLAY_TEST_REDIS_URL"
    return None


needs_redis = pytest.mark.skipif(redis_unreachable_reason() is not None, reason=str(redis_unreachable_reason()))


def ended_session(store: Store, learner: str = "ana", lines: list[str] | None = None) -> str:
    run = start_practice(store, learner, catalog().scenario("missed-deadlines"), "novice")
    run.open()
    for line in lines or GOOD_LINES[:3]:
        run.say(line)
    run.end()
    return run.session_id


def context_for(tmp_path: Path, **settings: Any) -> AppContext:
    return AppContext(Settings(data_dir=tmp_path, **settings))


def test_ending_queues_one_grade_on_the_apps_threads(tmp_path: Path) -> None:
    app = context_for(tmp_path)
    session_id = ended_session(app.store)
    first = app.jobs.submit(session_id)
    again = app.jobs.submit(session_id)  # a second tab pressing End
    assert first.status in ("queued", "running", "done") and again.session_id == session_id
    job = app.jobs.wait(session_id, timeout=30)
    assert job.status == "done" and job.attempts == 1 and job.error is None
    assert len(app.store.grades_for(session_id)) == 1
    assert app.jobs.submit(session_id).status == "done"  # a graded session is not graded again
    assert app.jobs.not_done() == []
    app.close()


def test_a_failed_grade_says_why_and_is_queued_again_when_ended_again(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    session_id = ended_session(store)
    attempts: list[str] = []

    def flaky(sid: str) -> None:
        attempts.append(sid)
        if len(attempts) == 1:
            raise RoleplayError("the model did not answer in time (120 s)")

    jobs = GradingJobs(store, flaky)
    failed = jobs.wait(jobs.submit(session_id).session_id, timeout=10)
    assert failed.status == "failed" and failed.error == "the model did not answer in time (120 s)"
    listed = jobs.not_done()
    assert [(j.session_id, j.status, j.learner, j.scenario_id) for j in listed] == [
        (session_id, "failed", "ana", "missed-deadlines")]
    done = jobs.wait(jobs.submit(session_id).session_id, timeout=10)
    assert done.status == "done" and done.attempts == 2 and done.error is None
    jobs.close()
    store.close()


def test_an_unexpected_failure_is_one_line_and_the_worker_goes_on(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    sid = ended_session(store)

    def broken(_sid: str) -> None:
        raise KeyError("criterion")

    GradingJobs(store, broken)._claim_for_queue(sid)  # queued; this test is the worker
    job = run_job(store, sid, broken)
    assert job is not None and job.status == "failed"
    assert job.error == "grading failed (KeyError); see the worker's log"
    store.close()


def test_of_two_takers_one_grades(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    sid = ended_session(store)
    graded: list[str] = []
    gate = threading.Event()

    def slow(s: str) -> None:
        gate.wait(5)
        graded.append(s)

    jobs = GradingJobs(store, slow, redis_url=None)
    jobs._claim_for_queue(sid)  # queued, not yet sent: two workers race for it
    results: list[Any] = []
    takers = [threading.Thread(target=lambda: results.append(run_job(store, sid, slow, worker=f"w{i}")))
              for i in range(2)]
    for t in takers:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in takers:
        t.join(10)
    assert graded == [sid]
    assert sorted(r is None for r in results) == [False, True]  # one took it; the other found it taken
    store.close()


def test_a_job_nobody_finished_is_sent_again(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    sid = ended_session(store)
    jobs = GradingJobs(store, lambda s: None, stale_after=0.05)
    jobs._claim_for_queue(sid)  # queued, then the process holding it died before sending it
    time.sleep(0.1)
    assert jobs.resend_stale() == 1
    assert jobs.wait(sid, timeout=10).status == "done"
    assert jobs.resend_stale() == 0
    jobs.close()
    store.close()


def test_an_unreachable_queue_is_one_line_naming_the_setting_and_the_job_says_so(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    sid = ended_session(store)
    jobs = GradingJobs(store, lambda s: None, redis_url="redis://:secret@127.0.0.1:1/0")
    with pytest.raises(RoleplayError) as caught:
        jobs.submit(sid)
    message = str(caught.value)
    assert "ROLEPLAY_REDIS_URL" in message and "\n" not in message and "secret" not in message
    job = jobs.status(sid)
    assert job.status == "failed" and job.error == message
    store.close()


def test_the_worker_command_without_redis_says_what_to_set(tmp_path: Path) -> None:
    env = {**os.environ, "ROLEPLAY_DATA_DIR": str(tmp_path)}
    env.pop("ROLEPLAY_REDIS_URL", None)
    out = subprocess.run([sys.executable, "-m", "roleplay.cli", "worker"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: ROLEPLAY_REDIS_URL is not set")
    assert "Traceback" not in out.stderr


# --- on Redis, with worker processes ----------------------------------------------------------------------------

def start_workers(env: dict[str, str], processes: int, threads: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "roleplay.cli", "worker", "--processes", str(processes),
                             "--threads", str(threads)], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc


@needs_redis
@pytest.mark.slow
def test_worker_processes_grade_every_ended_session_once(tmp_path: Path) -> None:
    namespace = f"roleplay-test-{uuid.uuid4().hex[:8]}"
    settings = {"redis_url": REDIS_URL, "redis_namespace": namespace}
    app = context_for(tmp_path, **settings)
    sessions = [ended_session(app.store, learner=f"learner{i}") for i in range(6)]
    for sid in sessions:
        assert app.jobs.submit(sid).status == "queued"  # nobody grades in this process
    assert {j.status for j in app.jobs.not_done()} == {"queued"}
    env = {**os.environ, "ROLEPLAY_DATA_DIR": str(tmp_path), "ROLEPLAY_REDIS_URL": REDIS_URL,
           "ROLEPLAY_REDIS_NAMESPACE": namespace, "ROLEPLAY_ENGINE": "offline"}
    workers = start_workers(env, processes=2, threads=2)
    try:
        jobs = [app.jobs.wait(sid, timeout=120) for sid in sessions]
    finally:
        log = stop(workers)
    assert [j.status for j in jobs] == ["done"] * 6, log
    assert all(len(app.store.grades_for(sid)) == 1 for sid in sessions)
    assert len({j.worker for j in jobs}) >= 1 and all(j.worker and ":" in j.worker for j in jobs)
    assert log.count("roleplay worker") == 2, log  # two processes said they were ready
    app.close()
