"""Grading as background jobs: ending a session queues its grading, and workers grade in parallel.

With `ROLEPLAY_REDIS_URL` set the queue is on Redis (dramatiq) and `roleplay worker` processes grade, as many as you
start, on any machine that shares the database; without it the app process grades on its own threads. Either way a
job's row in the database (`grading_jobs`) is its record: queued, running (on which worker), done, or failed with a
line saying why. The queue only carries the work, so a job it lost (Redis restarted, a worker killed) is sent again
by `GradingJobs.resend_stale`, and a session is graded once however often it is sent (the store lets one grade in).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select, update

from roleplay.errors import ConfigError, RoleplayError, StoreError
from roleplay.models import GradingJob, JobStatus, Person, PracticeSession, utcnow

if TYPE_CHECKING:
    from roleplay.store import Store

log = logging.getLogger(__name__)

QUEUE = "roleplay-grading"
ACTOR = "grade_session"
TIME_LIMIT_MS = 3_600_000  # a job running longer than an hour is stopped (a grade is a few model calls)
Grader = Callable[[str], None]


class JobView(BaseModel):
    """A grading job as people see it."""

    model_config = ConfigDict(extra="forbid")
    session_id: str = Field(description="The session graded.")
    status: str = Field(description="queued, running, done or failed.")
    attempts: int = Field(description="Times a worker started it.")
    worker: str | None = Field(default=None, description="host:pid of the worker that took it last.")
    error: str | None = Field(default=None, description="Why it failed (one line).")
    queued_at: datetime = Field(description="When it was queued (last).")
    started_at: datetime | None = Field(default=None, description="When a worker started it (last).")
    finished_at: datetime | None = Field(default=None, description="When it finished.")
    learner: str | None = Field(default=None, description="Whose session (in lists).")
    scenario_id: str | None = Field(default=None, description="Scenario practised (in lists).")

    @property
    def pending(self) -> bool:
        """Queued or running: the grade is still to come."""
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)


def worker_name() -> str:
    """This process as a worker: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _view(row: GradingJob, learner: str | None = None, scenario_id: str | None = None) -> JobView:
    return JobView(session_id=row.session_id, status=row.status, attempts=row.attempts, worker=row.worker,
                   error=row.error, queued_at=row.queued_at, started_at=row.started_at, finished_at=row.finished_at,
                   learner=learner, scenario_id=scenario_id)


def run_job(store: Store, session_id: str, grade: Grader, worker: str | None = None) -> JobView | None:
    """Take a queued job (one taker wins), grade the session and record how it went.

    Returns:
        The job as it ended, or None when it was not queued (another worker has it, or it is done).
    """
    with store.session() as db:
        taken = db.execute(update(GradingJob)
                           .where(GradingJob.session_id == session_id, GradingJob.status == JobStatus.QUEUED)
                           .values(status=JobStatus.RUNNING, worker=worker or worker_name(), started_at=utcnow(),
                                   attempts=GradingJob.attempts + 1, error=None)).rowcount
    if taken != 1:
        return None
    status, error = JobStatus.DONE, None
    try:
        grade(session_id)
    except RoleplayError as exc:  # AlreadyGraded included: the store let another grade in first
        from roleplay.store import AlreadyGraded

        if not isinstance(exc, AlreadyGraded):
            status, error = JobStatus.FAILED, str(exc).splitlines()[0]
    except Exception as exc:  # noqa: BLE001 - a worker keeps working; the row says what went wrong
        log.exception("grading session %s failed", session_id)
        status, error = JobStatus.FAILED, f"grading failed ({type(exc).__name__}); see the worker's log"
    with store.session() as db:
        db.execute(update(GradingJob).where(GradingJob.session_id == session_id)
                   .values(status=status, error=error, finished_at=utcnow()))
    return GradingJobs.get_in(store, session_id)


class GradingJobs:
    """The grading queue of an app: submit an ended session, see where its job is, list the jobs not done.

    Args:
        store: The database (the jobs' record).
        grade: Grades one stored session and stores the grade (in this process, for the threads of the app).
        redis_url: The Redis server of the queue; None to grade on this process's threads.
        namespace: The prefix of the queue's keys on Redis.
        threads: Threads that grade in this process (without Redis).
        stale_after: Seconds after which a queued or running job nobody finished is sent again.
    """

    def __init__(self, store: Store, grade: Grader, *, redis_url: str | None = None, namespace: str = "roleplay",
                 threads: int = 4, stale_after: float = 900.0) -> None:
        self.store = store
        self.grade = grade
        self.redis_url = redis_url
        self.namespace = namespace
        self.stale_after = stale_after
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._actor: Any = None
        self._lock = threading.Lock()

    # -- submitting ------------------------------------------------------------------------------------------
    def submit(self, session_id: str) -> JobView:
        """Queue the grading of an ended session, once: a job already queued, running or done is left as it is; a
        failed one is queued again.

        Raises:
            RoleplayError: the queue cannot be reached (nothing is queued; the job is marked failed with why).
        """
        if not self._claim_for_queue(session_id):
            return self.status(session_id)
        self._send(session_id)
        return self.status(session_id)

    def _claim_for_queue(self, session_id: str) -> bool:
        """Record the job as queued; False when it is already queued, running or done."""
        try:
            with self.store.session() as db:
                if db.get(GradingJob, session_id) is None:
                    db.add(GradingJob(session_id=session_id, status=JobStatus.QUEUED, attempts=0))
                    db.flush()
                    return True
        except StoreError:  # queued by another tab or process at the same moment
            pass
        with self.store.session() as db:
            again = db.execute(update(GradingJob)
                               .where(GradingJob.session_id == session_id, GradingJob.status == JobStatus.FAILED)
                               .values(status=JobStatus.QUEUED, queued_at=utcnow(), error=None, finished_at=None))
        return again.rowcount == 1

    def _send(self, session_id: str) -> None:
        if self.redis_url is None:
            self._local_pool().submit(self._run_here, session_id)
            return
        try:
            self._redis_actor().send(session_id)
        except Exception as exc:  # noqa: BLE001 - the broker's errors vary; the learner gets one line
            line = (f"the grading queue at {redact(self.redis_url)} cannot be reached ({type(exc).__name__}); "
                    "check ROLEPLAY_REDIS_URL and that Redis is running, then end the session again")
            with self.store.session() as db:
                db.execute(update(GradingJob).where(GradingJob.session_id == session_id)
                           .values(status=JobStatus.FAILED, error=line, finished_at=utcnow()))
            raise RoleplayError(line) from None

    def _run_here(self, session_id: str) -> None:
        try:
            run_job(self.store, session_id, self.grade)
        except Exception:  # noqa: BLE001 - a thread of the pool never dies of one job
            log.exception("grading job of session %s could not be recorded", session_id)

    def _local_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="roleplay-grading")
            return self._pool

    def _redis_actor(self) -> Any:
        with self._lock:
            if self._actor is None:
                self._actor = declare_actor(broker_for(self.redis_url or "", self.namespace), _grade_in_worker)
            return self._actor

    # -- reading ---------------------------------------------------------------------------------------------
    @staticmethod
    def get_in(store: Store, session_id: str) -> JobView | None:
        """The job of a session in `store`, or None when it was never queued."""
        with store.session() as db:
            row = db.get(GradingJob, session_id)
            return _view(row) if row is not None else None

    def status(self, session_id: str) -> JobView:
        """The job of a session.

        Raises:
            RoleplayError: the session was never queued for grading.
        """
        job = self.get_in(self.store, session_id)
        if job is None:
            raise RoleplayError(f"session '{session_id}' has not been sent for grading; end it first")
        return job

    def wait(self, session_id: str, timeout: float, every: float = 0.05) -> JobView:
        """The job once it is done or failed, or as it is when `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        job = self.status(session_id)
        while job.pending and time.monotonic() < deadline:
            time.sleep(every)
            job = self.status(session_id)
        return job

    def not_done(self, limit: int = 50) -> list[JobView]:
        """Jobs queued, running or failed (with their learner and scenario), oldest first, at most `limit`."""
        with self.store.session() as db:
            rows = db.execute(
                select(GradingJob, Person.username, PracticeSession.scenario_id)
                .join(PracticeSession, PracticeSession.id == GradingJob.session_id)
                .join(Person, Person.id == PracticeSession.person_id)
                .where(GradingJob.status != JobStatus.DONE)
                .order_by(GradingJob.queued_at, GradingJob.session_id).limit(limit)).all()
            return [_view(job, learner, scenario) for job, learner, scenario in rows]

    # -- upkeep ----------------------------------------------------------------------------------------------
    def resend_stale(self) -> int:
        """Send again the jobs queued or running for longer than `stale_after` (the queue lost them, or their worker
        died); returns how many."""
        cutoff = utcnow() - timedelta(seconds=self.stale_after)
        with self.store.session() as db:
            ids = list(db.scalars(select(GradingJob.session_id).where(or_(
                (GradingJob.status == JobStatus.QUEUED) & (GradingJob.queued_at < cutoff),
                (GradingJob.status == JobStatus.RUNNING) & (GradingJob.started_at < cutoff)))))
            if ids:
                db.execute(update(GradingJob).where(GradingJob.session_id.in_(ids))
                           .values(status=JobStatus.QUEUED, queued_at=utcnow(), error=None))
        for session_id in ids:
            log.warning("grading job of session %s was not finished in %.0f s; sent again", session_id,
                        self.stale_after)
            self._send(session_id)
        return len(ids)

    def close(self) -> None:
        """Let this process's grading threads finish their jobs."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


# -- the queue on Redis ------------------------------------------------------------------------------------------
def redact(url: str) -> str:
    """A Redis URL without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def broker_for(url: str, namespace: str = "roleplay") -> Any:
    """The dramatiq broker on the Redis server at `url`, its keys prefixed with `namespace`."""
    from dramatiq.brokers.redis import RedisBroker

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"ROLEPLAY_REDIS_URL '{redact(url)}' is not a Redis URL; use e.g. redis://127.0.0.1:6379/0")
    return RedisBroker(url=url, namespace=namespace)


def declare_actor(broker: Any, fn: Callable[[str], None]) -> Any:
    """The grading actor on `broker` (no retries by the queue: the judge retries its model calls itself, and a job
    that failed is shown with why and queued again when the session is ended again)."""
    import dramatiq

    return dramatiq.Actor(fn, broker=broker, actor_name=ACTOR, queue_name=QUEUE, priority=0,
                          options={"max_retries": 0, "time_limit": TIME_LIMIT_MS})


_WORKER: dict[str, Any] = {}  # this worker process's app context (built from the environment on the first job)


def _grade_in_worker(session_id: str) -> None:
    """The actor's body, run by a worker process: grade with the worker's own app context."""
    context = _WORKER.get("context")
    if context is None:
        raise RoleplayError("this process is not a grading worker; start workers with `roleplay worker`")
    run_job(context.store, session_id, context.grade_stored)


def serve(threads: int, *, stop: threading.Event | None = None) -> int:
    """Run one grading worker process on the queue of `ROLEPLAY_REDIS_URL` until stopped (SIGINT, SIGTERM or `stop`).

    Returns:
        The process's exit status.
    """
    import signal

    import dramatiq

    from roleplay.context import AppContext

    context = AppContext()
    url = context.settings.redis_url
    if not url:
        raise ConfigError("ROLEPLAY_REDIS_URL is not set; workers take grading jobs from Redis "
                          "(without it the app grades on its own threads and needs no worker)")
    _WORKER["context"] = context
    context.catalog  # noqa: B018 - a broken scenario file is reported before any job is taken
    broker = broker_for(url, context.settings.redis_namespace)
    declare_actor(broker, _grade_in_worker)
    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=threads)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    worker.start()
    try:
        sent = context.jobs.resend_stale()
        print(f"roleplay worker {worker_name()}: {threads} threads on {redact(url)}"
              + (f"; {sent} unfinished jobs sent again" if sent else ""), flush=True)
        stop.wait()
    finally:
        worker.stop()
        broker.close()
        context.close()
    return 0


def serve_processes(processes: int, threads: int) -> int:
    """Run `processes` worker processes of `threads` threads each until stopped; returns the exit status."""
    if processes == 1:
        return serve(threads)
    import signal

    children = [subprocess.Popen([sys.executable, "-m", "roleplay.jobs", str(threads)]) for _ in range(processes)]
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        while not stopping.is_set() and all(c.poll() is None for c in children):
            stopping.wait(0.5)
    finally:
        for c in children:
            if c.poll() is None:
                c.terminate()
        for c in children:
            try:
                c.wait(timeout=30)
            except subprocess.TimeoutExpired:
                c.kill()
    failed = [c.returncode for c in children if c.returncode not in (0, -15)]
    return 1 if failed else 0


if __name__ == "__main__":  # one worker process of `roleplay worker --processes N`
    sys.exit(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
