"""12. Batch grading through the job queue: stored sessions graded by `roleplay worker` processes over Redis.

The same work as section 4 (transcripts of 8-16 learner turns, the LLM judge against the stub answering after 200 ms),
but as the app runs it when several processes grade: each ended session is queued (`GradingJobs.submit`: a row in
`grading_jobs`, a message on Redis) and `roleplay worker --processes P --threads T` grades it and stores the grade.
N = P x T grades run at once; ideal wall time = sessions x 0.2 s / N, efficiency = ideal / measured (from the first
submit to the last grade stored). Run with 1 and with 4 worker processes at N = 16 and N = 50, in one run.

The database is a fresh PostgreSQL database when a server is reachable on localhost (many processes write grades at
once), else a SQLite file; Redis at ROLEPLAY_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0) under a namespace of
its own. Without Redis the section says so and measures nothing.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench_grading import BATCH_LATENCY, EVIDENCE, configure_judge, transcript
from benchlib import BENCH_DIR, CHILD_ENV, LEARNER_LINES, SectionResult, StubProcess, median, pct

ROOT = BENCH_DIR.parent
REDIS_URL = os.environ.get("ROLEPLAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN = os.environ.get("ROLEPLAY_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SHAPES = ((1, 16), (4, 16), (1, 50), (4, 50))  # (worker processes, grades at once)


def _redis_problem() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - reported, the section measures nothing
        return f"no Redis at {REDIS_URL} ({type(exc).__name__})"
    return None


def _database(tmp: Path) -> tuple[str, Any]:
    """A fresh database URL and how to drop it: PostgreSQL when reachable, else a SQLite file."""
    try:
        from sqlalchemy import create_engine

        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        name = f"roleplay_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()

        return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", drop
    except Exception:  # noqa: BLE001 - no PostgreSQL here: SQLite
        return f"sqlite:///{tmp / 'jobs.db'}", lambda: None


def _seed(store: Any, total: int) -> list[str]:
    """`total` ended sessions over every scenario, their turns played by the offline engine."""
    from benchlib import catalog

    from roleplay.models import Role
    from roleplay.store import NewTurn

    cat = catalog()
    scenarios = sorted(cat.scenarios.values(), key=lambda s: s.id)
    rng = random.Random(42)
    distinct = []
    for i in range(min(total, 60)):
        others = [ln for ln in LEARNER_LINES if ln != EVIDENCE]
        lines = rng.sample(others, rng.randint(7, 15))
        lines.insert(rng.randint(0, len(lines)), EVIDENCE)
        scn = scenarios[i % len(scenarios)]
        distinct.append((scn, transcript(scn, lines, seed=i)))
    person = store.ensure_person("bench-learner", Role.LEARNER)
    ids = []
    for i in range(total):
        scn, tr = distinct[i % len(distinct)]
        sess = store.start_session(person.id, scn.id, "intermediate", "llm")
        turns = [NewTurn(t.speaker, t.text, t.tokens, t.meta()) for t in tr.turns]
        store.add_exchange(sess.id, turns, {}, first_idx=0, end_reason="learner")
        ids.append(sess.id)
    return ids


def _clear(store: Any) -> None:
    """Forget every grade, review and job, so the sessions can be graded again."""
    from sqlalchemy import delete

    from roleplay.models import GradeRow, GradingJob, NoticeRow, ReviewEvent, ReviewRow

    with store.session() as db:
        for table in (NoticeRow, ReviewEvent, ReviewRow, GradeRow, GradingJob):
            db.execute(delete(table))


def _workers(env: dict[str, str], processes: int, threads: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "roleplay.cli", "worker", "--processes", str(processes),
                             "--threads", str(threads)], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ready = 0
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while ready < processes and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the workers stopped before they were ready (exit {proc.wait()})")
        ready += line.startswith("roleplay worker")
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def run(stub: StubProcess, quick: bool = False, tmp: Path | None = None) -> SectionResult:
    from sqlalchemy import func, select

    from roleplay.jobs import GradingJobs
    from roleplay.models import GradingJob, JobStatus
    from roleplay.store import Store

    res = SectionResult("12", "Batch grading through the job queue (worker processes on Redis)")
    problem = _redis_problem()
    if problem:
        res.line(f"not measured: {problem}; set ROLEPLAY_BENCH_REDIS_URL")
        res.row("batch grades through the queue", "not measured", "", "skipped")
        return res
    tmp = tmp or Path(os.environ.get("TMPDIR", "/tmp"))
    total = 200 if quick else 1000
    shapes = ((1, 16), (4, 16)) if quick else SHAPES
    url, drop = _database(tmp)
    configure_judge(stub, latency=BATCH_LATENCY)
    store = Store(url)
    try:
        started = time.perf_counter()
        sessions = _seed(store, total)
        res.line(f"{total} stored ended sessions seeded in {time.perf_counter() - started:.1f} s into "
                 f"{'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}; the stub answers each grading request "
                 f"after {BATCH_LATENCY * 1000:.0f} ms")
        for processes, at_once in shapes:
            _clear(store)
            namespace = f"roleplay-bench-{uuid.uuid4().hex[:8]}"
            env = {**os.environ, **CHILD_ENV, "ROLEPLAY_DATABASE_URL": url, "ROLEPLAY_DATA_DIR": str(tmp),
                   "ROLEPLAY_REDIS_URL": REDIS_URL, "ROLEPLAY_REDIS_NAMESPACE": namespace,
                   "ROLEPLAY_ENGINE": "llm", "ROLEPLAY_BASE_URL": stub.base_url, "ROLEPLAY_API_KEY": "bench",
                   "ROLEPLAY_MAX_RETRIES": "0"}
            threads = max(1, at_once // processes)
            workers = _workers(env, processes, threads)
            jobs = GradingJobs(store, lambda _s: None, redis_url=REDIS_URL, namespace=namespace)
            try:
                stub.reset()
                t0 = time.perf_counter()
                for sid in sessions:
                    jobs.submit(sid)
                submitted = time.perf_counter() - t0
                deadline = time.monotonic() + total * BATCH_LATENCY + 300
                finished = 0
                while time.monotonic() < deadline:
                    with store.session() as db:
                        finished = db.scalar(select(func.count()).select_from(GradingJob).where(
                            GradingJob.status.in_((JobStatus.DONE, JobStatus.FAILED)))) or 0
                    if finished >= total:
                        break
                    time.sleep(0.05)
                wall = time.perf_counter() - t0
            finally:
                _stop(workers)
            with store.session() as db:
                rows = list(db.scalars(select(GradingJob)))
            failed = [r for r in rows if r.status == JobStatus.FAILED]
            took = [(r.finished_at - r.started_at).total_seconds() for r in rows if r.finished_at and r.started_at]
            n = processes * threads
            ideal = total * BATCH_LATENCY / n
            eff = ideal / wall
            res.line(f"{processes} worker process(es) x {threads} threads (N={n}): {wall:.2f} s wall vs ideal "
                     f"{ideal:.2f} s -> efficiency {eff:.0%}; {finished} of {total} finished, {len(failed)} failed"
                     + (f" (first: {failed[0].error})" if failed else "")
                     + f"; submitting took {submitted:.2f} s; per grade p50 {median(took) * 1000:.0f} ms / p95 "
                       f"{pct(took, 95) * 1000:.0f} ms; {stub.stats()['chat_requests']} requests served")
            goal, verdict = ("", "")
            if processes == 4 and n == 50:
                goal, verdict = ">= 90%", "met" if eff >= 0.9 else "NOT met"
            res.row(f"batch {total} grades via the queue, {processes} worker process(es), N={n}: wall vs ideal",
                    f"{wall:.2f} s vs {ideal:.2f} s (efficiency {eff:.0%})", goal, verdict)
    finally:
        store.close()
        drop()
    return res
