"""8. Signing in: the cost of one sign-in, and a 50-user sign-in burst against the app on loopback.

(a) In process: one argon2id verify (`roleplay.passwords.check_password`, the hash of a stored password) against
    the anchor of a trivial check (`hmac.compare_digest` of two strings); a failed sign-in for an unknown username
    (verified against the dummy hash) against one for a known username with a wrong password, which should cost the
    same; and `SignIn.check` (the throttle around the store) against `Store.authenticate` alone.
(b) Over HTTP: the real app (`build_app` with `launch_options()`: the throttle, the request guard) and a bare Gradio
    app with a trivial auth function, each in its own process on 127.0.0.1. 50 users sign in at once (`POST /login`,
    one thread each, plain httpx); the burst's wall time and each login's latency, roleplay against the bare app.

Usage inside the run: `run(quick)`; the app processes are `python bench_login.py serve KIND PORT USERS`.
"""

from __future__ import annotations

import hmac
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR, CHILD_ENV, SectionResult, free_port, median, ms, pct

USERS = 50
PASSWORD = "a long pass phrase 2026"


def _times(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _paired(first: Any, second: Any, n: int) -> tuple[list[float], list[float]]:
    """Times of two calls measured in alternating order, so load on the machine falls on both alike."""
    a: list[float] = []
    b: list[float] = []
    for i in range(n):
        for fn, out in ((first, a), (second, b)) if i % 2 == 0 else ((second, b), (first, a)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return a, b


def _in_process(res: SectionResult, quick: bool) -> float:
    """The in-process figures; returns the median argon2id verify in seconds."""
    from roleplay.config import load_settings
    from roleplay.passwords import check_password, hash_password
    from roleplay.signin import SignIn, SignInThrottle
    from roleplay.store import Store

    n = 10 if quick else 40
    stored = hash_password(PASSWORD)
    verify = _times(lambda: check_password(PASSWORD, stored), n)
    anchor = _times(lambda: hmac.compare_digest(PASSWORD, PASSWORD), n * 100)
    res.line(f"argon2id verify (argon2-cffi defaults): {ms(median(verify))} median, {ms(pct(verify, 95))} p95 "
             f"({n} runs); the trivial check (hmac.compare_digest) takes {median(anchor) * 1e6:.2f} us")

    store = Store(load_settings().database_url)
    store.add_person("bench-known", "learner", password=PASSWORD)
    known, unknown = _paired(lambda: store.authenticate("bench-known", "wrong password"),
                             lambda: store.authenticate("bench-nobody", "wrong password"), n)
    ratio = median([u / k for u, k in zip(unknown, known)])  # pairs measured back to back share the machine's load
    res.line(f"failed sign-in: known username {ms(median(known))}, unknown username {ms(median(unknown))} median; "
             f"median of the {n} paired ratios {ratio:.2f}x (the unknown one is verified against a dummy hash)")
    res.row("failed sign-in, unknown vs known username (median of paired ratios)",
            f"{ms(median(unknown))} vs {ms(median(known))} ({ratio:.2f}x)", "about 1x",
            "met" if 0.8 <= ratio <= 1.25 else "NOT met")
    signin = SignIn(store, SignInThrottle(max_failures=10**6))
    checked, direct = _paired(lambda: signin.check("bench-known", PASSWORD, "127.0.0.1"),
                              lambda: store.authenticate("bench-known", PASSWORD), n)
    res.line(f"successful sign-in: SignIn.check {ms(median(checked))} vs Store.authenticate {ms(median(direct))} "
             f"median ({median(checked) / median(direct):.2f}x: the throttle's bookkeeping is lost in the hash)")
    store.close()
    return median(verify)


# --- (b) the app processes --------------------------------------------------------------------------------------

def serve(kind: str, port: int, users: int) -> int:
    """Run one app until stdin closes: `roleplay` (the real app, `users` learners) or `bare` (trivial auth)."""
    import gradio as gr

    if kind == "roleplay":
        from roleplay.context import AppContext
        from roleplay.ui import build_app
        from roleplay.ui.app import launch_options

        context = AppContext()
        for i in range(users):
            context.store.add_person(f"user{i:02d}", "learner", password=PASSWORD)
        demo = build_app(context)
        options = launch_options()
    else:
        accounts = {f"user{i:02d}": PASSWORD for i in range(users)}

        def trivial(username: str, password: str) -> bool:
            return hmac.compare_digest(accounts.get(username, ""), password)

        with gr.Blocks() as demo:
            gr.Markdown("signed in")
        options = {"auth": trivial}
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **options)
    print(f"READY {port}", flush=True)
    sys.stdin.read()
    demo.close()
    return 0


class _App:
    def __init__(self, kind: str, users: int) -> None:
        self.port = free_port()
        env = {**os.environ, **CHILD_ENV}
        env["ROLEPLAY_DATA_DIR"] = str(Path(env.get("ROLEPLAY_DATA_DIR", "data")).with_name(f"login-{kind}"))
        self.proc = subprocess.Popen([sys.executable, str(BENCH_DIR / "bench_login.py"), "serve", kind, str(self.port),
                                      str(users)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = ""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.proc.stdout is not None:
            line = self.proc.stdout.readline()
            if not line or line.startswith("READY"):
                break
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"the {kind} app did not start")

    def stop(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def _sequential(port: int, n: int) -> list[float]:
    """`n` sign-ins one after another (one user each time, a fresh client), each one's latency."""
    import httpx

    out = []
    for i in range(n):
        with httpx.Client(timeout=120, trust_env=False) as client:
            t = time.perf_counter()
            r = client.post(f"http://127.0.0.1:{port}/login", data={"username": f"user{i % USERS:02d}",
                                                                      "password": PASSWORD})
            out.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"sign-in failed with HTTP {r.status_code}")
    return out


def _burst(port: int, users: int) -> tuple[float, list[float], int]:
    """`users` sign-ins at once; the burst's wall time, each login's latency, and how many succeeded."""
    import httpx

    url = f"http://127.0.0.1:{port}/login"
    start = threading.Barrier(users + 1)
    latencies: list[float] = []
    ok = [0]
    lock = threading.Lock()

    def one(i: int) -> None:
        with httpx.Client(timeout=120, trust_env=False) as client:
            start.wait(timeout=60)
            t = time.perf_counter()
            r = client.post(url, data={"username": f"user{i:02d}", "password": PASSWORD})
            took = time.perf_counter() - t
            with lock:
                latencies.append(took)
                ok[0] += r.status_code == 200

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(users)]
    for t in threads:
        t.start()
    start.wait(timeout=60)
    began = time.perf_counter()
    for t in threads:
        t.join(180)
    return time.perf_counter() - began, latencies, ok[0]


def _over_http(res: SectionResult, quick: bool, verify: float) -> None:
    users = 20 if quick else USERS
    rounds = 1 if quick else 3
    single = 5 if quick else 20
    figures: dict[str, tuple[list[float], list[float], list[float], int]] = {}
    for kind in ("bare", "roleplay"):
        app = _App(kind, users)
        try:
            _burst(app.port, min(users, 5))  # warm-up: first requests load the login route
            one = _sequential(app.port, single)
            walls, latencies, ok = [], [], 0
            for _ in range(rounds):
                wall, lat, good = _burst(app.port, users)
                walls.append(wall)
                latencies += lat
                ok += good
            figures[kind] = (one, walls, latencies, ok)
        finally:
            app.stop()
        res.line(f"{kind} app: one sign-in at a time {ms(median(one), 1)} median ({single} runs); {users} at once, "
                 f"{rounds} round(s): burst {ms(median(walls), 0)} median, per login {ms(median(latencies), 0)} p50 / "
                 f"{ms(pct(latencies, 95), 0)} p95; {ok} of {users * rounds} signed in")
    bare, real = figures["bare"], figures["roleplay"]
    res.row("one sign-in over HTTP: roleplay vs bare Gradio + trivial auth (median)",
            f"{ms(median(real[0]), 1)} vs {ms(median(bare[0]), 1)} ({median(real[0]) / median(bare[0]):.1f}x)")
    res.line(f"the argon2id verify alone took {ms(verify, 1)} median in this process (measured apart from the app, so "
             "under whatever load the machine had then): most of a sign-in is the hash, by design")
    res.row(f"{users}-user sign-in burst via the app: wall, roleplay vs bare",
            f"{ms(median(real[1]), 0)} vs {ms(median(bare[1]), 0)} ({median(real[1]) / median(bare[1]):.1f}x)")
    res.row(f"{users}-user burst: per-login p50 / p95, roleplay vs bare",
            f"{ms(median(real[2]), 0)} / {ms(pct(real[2], 95), 0)} vs {ms(median(bare[2]), 0)} / "
            f"{ms(pct(bare[2], 95), 0)}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    res.line(f"each verify is CPU-bound (argon2id, 64 MiB, 3 passes) in a worker thread; with {cores} cores the burst "
             f"queues behind them, which is what its wall time shows (load average {load:.1f} at the end)")


def run(quick: bool = False) -> SectionResult:
    res = SectionResult("8", "Signing in")
    _over_http(res, quick, _in_process(res, quick))
    return res


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        sys.path.insert(0, str(BENCH_DIR))
        sys.exit(serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    print("usage: python bench_login.py serve KIND PORT USERS (run it through benchmarks/run.py)", file=sys.stderr)
    sys.exit(2)
