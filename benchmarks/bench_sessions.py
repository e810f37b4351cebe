"""5. Concurrent practice sessions: through the running Gradio app, and through roleplay.practice in threads.

(a) The real app: `roleplay.ui.build_app()` launched in its own process (`app_server.py`, prevent_thread_lock=True,
    free port, the UI's own launch options with sign-in when it has them). Each simulated learner signs in, loads the
    page the way a browser does (every `load` event), starts a session and sends turns through Gradio's queue API
    (`/queue/join` + `/queue/data` SSE, the browser's protocol) with plain httpx; gradio_client is not used because
    it polls for messages every 50 ms, which would swamp the figure. The same handler called in-process (no HTTP,
    no queue) is the baseline; "added latency" is the difference per turn.
(b) The library: the same sessions through `roleplay.practice` in threads against one shared SQLite store, which
    measures store contention. It is always run, and it is the section's figure whenever (a) cannot be measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types
import uuid
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH_DIR,
    CHILD_ENV,
    LEARNER_LINES,
    PERSONA_REPLY,
    SectionResult,
    StubProcess,
    free_port,
    median,
    ms,
    pct,
)

SCENARIO = "missed-deadlines"
LEVEL = "intermediate"
LLM_TOKEN_DELAY = 0.008  # ~0.3 s per streamed reply in the LLM-engine run


class UIUnavailable(Exception):
    """The app could not be driven; the reason is reported and the library-level figure is used."""


# --- the app process and a browser-like client --------------------------------------------------------------

class AppProcess:
    def __init__(self, tmp: Path, engine: str, stub: StubProcess | None = None, concurrency: str | None = None,
                 tag: str = "app") -> None:
        self.port = free_port()
        env = {**os.environ, **CHILD_ENV, "ROLEPLAY_DATA_DIR": str(tmp / f"{tag}-data"), "ROLEPLAY_ENGINE": engine}
        env.pop("GRADIO_DEFAULT_CONCURRENCY_LIMIT", None)
        if concurrency is not None:
            env["ROLEPLAY_CONCURRENCY"] = concurrency
        if stub is not None:
            env.update({"ROLEPLAY_BASE_URL": stub.base_url, "ROLEPLAY_API_KEY": "bench",
                        "ROLEPLAY_MODEL": "stub-model", "ROLEPLAY_MAX_RETRIES": "0",
                        # prices, so the page's status line can show a cost estimate as it would in production
                        "ROLEPLAY_PRICE_INPUT": "0.15", "ROLEPLAY_PRICE_OUTPUT": "0.60"})
        self.proc = subprocess.Popen([sys.executable, str(BENCH_DIR / "app_server.py"), str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=str(tmp))
        line = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            if not line or line.startswith(("READY", "FAILED")):
                break
        if not line.startswith("READY"):
            err = self._stderr_tail()
            self.stop()
            raise UIUnavailable(f"the app did not start: {line.strip() or err or 'no output'}")
        self.auth = line.split()[2] == "auth"
        self.root = f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        """CPU seconds (user + system) the app process has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return float("nan")

    def _stderr_tail(self) -> str:
        try:
            self.proc.terminate()
            _, err = self.proc.communicate(timeout=5)
        except Exception:  # noqa: BLE001
            return ""
        lines = [ln for ln in (err or "").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=5)


class Browser:
    """One learner's tab: a cookie jar, a Gradio session hash, and the component values the page holds."""

    def __init__(self, root: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=root, trust_env=False, timeout=httpx.Timeout(120.0))
        self.hash = uuid.uuid4().hex[:12]
        self.cfg: dict[str, Any] = {}
        self.updates = 0  # streamed updates (process_generating messages) of the last event

    def login(self, username: str, password: str) -> float:
        t = time.perf_counter()
        r = self.http.post("/login", data={"username": username, "password": password})
        if r.status_code != 200:
            raise UIUnavailable(f"sign-in as {username!r} failed with HTTP {r.status_code}: {r.text[:120]}")
        return time.perf_counter() - t

    def load(self, cfg: dict[str, Any] | None = None) -> None:
        if cfg is None:
            r = self.http.get("/config")
            if r.status_code != 200:
                raise UIUnavailable(f"GET /config answered HTTP {r.status_code}")
            cfg = r.json()
        self.cfg = cfg
        self.prefix = cfg.get("api_prefix") or "/gradio_api"
        self.comps = {c["id"]: c for c in cfg["components"]}
        self.values = {cid: (c.get("props") or {}).get("value") for cid, c in self.comps.items()}
        self.deps = cfg["dependencies"]

    def elem(self, elem_id: str) -> int | None:
        return next((cid for cid, c in self.comps.items() if (c.get("props") or {}).get("elem_id") == elem_id), None)

    def find(self, api_name: str, trigger_elem: str, event: str) -> dict[str, Any]:
        target = self.elem(trigger_elem)
        for dep in self.deps:
            if [target, event] in [list(t) for t in dep.get("targets", [])]:
                return dep
        for dep in self.deps:
            if dep.get("api_name") == api_name:
                return dep
        raise UIUnavailable(f"the app has no '{api_name}' event on #{trigger_elem}")

    def page_load(self) -> None:
        """Fire every `load` event, in order, as the browser does when the page opens."""
        for dep in self.deps:
            if any(list(t)[1] == "load" for t in dep.get("targets", [])):
                self.call(dep, {})

    def call(self, dep: dict[str, Any], overrides: dict[str, Any]) -> tuple[float, float | None, dict[str, Any]]:
        """Run one event; returns (seconds to completion, seconds to the first streamed update, final message)."""
        from gradio_client.utils import apply_diff

        data = []
        for cid in dep["inputs"]:
            comp = self.comps[cid]
            elem_id = (comp.get("props") or {}).get("elem_id")
            if comp["type"] == "state":
                data.append(None)
            elif elem_id in overrides:
                data.append(overrides[elem_id])
            else:
                data.append(self.values.get(cid))
        trigger = dep["targets"][0][0] if dep.get("targets") else None
        t0 = time.perf_counter()
        r = self.http.post(f"{self.prefix}/queue/join", json={
            "data": data, "fn_index": dep["id"], "session_hash": self.hash, "event_data": None, "trigger_id": trigger})
        if r.status_code != 200:
            raise UIUnavailable(f"queue/join for fn {dep['id']} answered HTTP {r.status_code}: {r.text[:120]}")
        event_id = r.json()["event_id"]
        first: float | None = None
        final: dict[str, Any] = {}
        partial: list[Any] | None = None
        self.updates = 0
        with self.http.stream("GET", f"{self.prefix}/queue/data", params={"session_hash": self.hash}) as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                kind = msg.get("msg")
                if kind == "process_generating" and msg.get("event_id") == event_id:
                    self.updates += 1
                    if first is None:
                        first = time.perf_counter() - t0
                    out = (msg.get("output") or {}).get("data") or []
                    partial = list(out) if partial is None else [apply_diff(p, d) for p, d in zip(partial, out)]
                elif kind == "process_completed" and msg.get("event_id") == event_id or kind in ("unexpected_error", "close_stream"):
                    final = msg
                    break
        elapsed = time.perf_counter() - t0
        if final.get("msg") == "process_completed" and final.get("success", True):
            outputs = (final.get("output") or {}).get("data") or partial or []
            for cid, value in zip(dep["outputs"], outputs):
                if isinstance(value, dict) and value.get("__type__") == "update":
                    if "value" in value:
                        self.values[cid] = value["value"]
                    if "choices" in value and (self.comps[cid].get("props") or {}) is not None:
                        self.comps[cid].setdefault("props", {})["choices"] = value["choices"]
                else:
                    self.values[cid] = value
        return elapsed, first, final

    def close(self) -> None:
        self.http.close()


def _error_of(final: dict[str, Any]) -> str | None:
    if final.get("msg") == "process_completed" and final.get("success", True):
        return None
    out = final.get("output") or {}
    return str(out.get("error") or final.get("message") or final.get("msg") or "no completion")[:200]


class UIDriver:
    """Signs a learner in, opens the practice page, starts a session, and times `send` turns."""

    def __init__(self, app: AppProcess, cookies: Any = None, cfg: dict[str, Any] | None = None) -> None:
        self.b = Browser(app.root)
        self.login_seconds = 0.0
        self.updates: list[int] = []
        if app.auth and cookies is None:
            self.login_seconds = self.b.login("learner", "learner")
        elif cookies is not None:
            self.b.http.cookies.update(cookies)
        self.b.load(cfg)

    def open_and_start(self) -> None:
        b = self.b
        b.page_load()
        start = b.find("start", "practice-start", "click")
        _, _, final = b.call(start, {"practice-scenario": SCENARIO, "practice-level": LEVEL})
        err = _error_of(final)
        if err:
            raise UIUnavailable(f"starting a session through the app failed: {err}")
        self.send = b.find("send", "practice-input", "submit")
        self.chat_id = b.elem("practice-chat")

    def turn(self, line: str) -> tuple[float, float | None]:
        elapsed, first, final = self.b.call(self.send, {"practice-input": line})
        err = _error_of(final)
        if err:
            raise UIUnavailable(f"a turn through the app failed: {err}")
        self.updates.append(self.b.updates)
        return elapsed, first


# --- in-process baselines ------------------------------------------------------------------------------------

def _inprocess_ui_turns(turns: int, reps: int) -> tuple[list[list[float]], str]:
    """Per turn index, in-process times of the practice page's own handlers (no HTTP, no queue)."""
    from benchlib import app_context

    app_context().store.seed_demo_people()
    try:
        from roleplay.ui import practice_page
    except Exception as exc:  # noqa: BLE001
        raise UIUnavailable(f"roleplay.ui.practice_page does not import: {type(exc).__name__}: {exc}") from None
    request = types.SimpleNamespace(username="learner", session_hash="inproc", headers={}, client=None)
    times: list[list[float]] = [[] for _ in range(turns)]
    for _ in range(reps):
        out = practice_page.start(SCENARIO, LEVEL, request)
        chat, session_id = out[0], out[1]
        for i in range(turns):
            t = time.perf_counter()
            for update in practice_page.send(LEARNER_LINES[i], chat, session_id, request):
                pass
            times[i].append(time.perf_counter() - t)
            chat = update[0]
    return times, "roleplay.ui.practice_page.start/send called directly"


def _library_turns(store: Any, user: str, turns: int, voice: Any = None,
                   in_store: list[float] | None = None, cpu: list[float] | None = None) -> list[float]:
    from benchlib import catalog
    from roleplay.persona import OfflineVoice
    from roleplay.practice import start_practice

    run = start_practice(store, user, catalog().scenario(SCENARIO), LEVEL, voice or OfflineVoice())
    runs = {run.session_id: run}
    run.open()
    if in_store is not None:
        sink = run.conversation.on_turn

        def timed_sink(*args: Any) -> None:
            t = time.perf_counter()
            sink(*args)  # type: ignore[misc]
            in_store.append(time.perf_counter() - t)

        run.conversation.on_turn = timed_sink
    out = []
    for i in range(turns):
        t, c = time.perf_counter(), time.thread_time()
        for _ in runs[run.session_id].respond(LEARNER_LINES[i]):
            pass
        out.append(time.perf_counter() - t)
        if cpu is not None:
            cpu.append(time.thread_time() - c)
    return out


# --- the measurements ------------------------------------------------------------------------------------------

class Meter:
    """CPU used by the app process and by this (driver) process while the timed work runs."""

    def __init__(self, app: AppProcess | None = None) -> None:
        self.app = app
        self.app_cpu = self.driver_cpu = 0.0

    def start(self) -> None:
        self._app0 = self.app.cpu() if self.app else 0.0
        self._drv0 = time.process_time()

    def stop(self) -> None:
        self.app_cpu = (self.app.cpu() - self._app0) if self.app else 0.0
        self.driver_cpu = time.process_time() - self._drv0


def _concurrently(n: int, setup: Any, work: Any, meter: Meter | None = None) -> tuple[list[Any], list[str], float]:
    """Run setup(i) in n threads, then work(state) in all of them at once; returns results, errors and wall time."""
    barrier = threading.Barrier(n + 1)
    results: list[Any] = [None] * n
    errors: list[str] = []

    def body(i: int) -> None:
        state = None
        try:
            state = setup(i)
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"{type(exc).__name__}: {exc}")
        try:
            barrier.wait(timeout=300)
        except threading.BrokenBarrierError:
            return
        if state is None:
            return
        try:
            results[i] = work(state)
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:
        pass
    if meter:
        meter.start()
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=300)
    wall = time.perf_counter() - t0
    if meter:
        meter.stop()
    return results, errors, wall


def _added(latencies: list[list[float]], baseline: list[list[float]]) -> list[float]:
    base = [median(b) for b in baseline]
    return [lat - base[i] for per in latencies if per for i, lat in enumerate(per)]


def _ui_offline(res: SectionResult, tmp: Path, sessions: int, turns: int) -> bool:
    baseline, how = _inprocess_ui_turns(turns, reps=5)
    app = AppProcess(tmp, "offline", tag="app-offline")
    try:
        cfg_browser = Browser(app.root)
        if app.auth:
            cfg_browser.login("learner", "learner")
        cfg_browser.load()
        cfg = cfg_browser.cfg
        cfg_browser.close()
        drivers: list[UIDriver | None] = [None] * sessions
        logins: list[float] = []

        def sign_in(i: int) -> UIDriver:
            d = UIDriver(app, cfg=cfg)
            logins.append(d.login_seconds)
            drivers[i] = d
            return d

        t0 = time.perf_counter()
        _, errors, _ = _concurrently(sessions, sign_in, lambda d: None)
        login_wall = time.perf_counter() - t0
        if errors:
            raise UIUnavailable(errors[0])

        def setup(i: int) -> UIDriver:
            d = drivers[i]
            assert d is not None
            d.open_and_start()
            return d

        def work(d: UIDriver) -> list[tuple[float, float | None]]:
            return [d.turn(LEARNER_LINES[i]) for i in range(turns)]

        meter = Meter(app)
        results, errors, wall = _concurrently(sessions, setup, work, meter)
        if errors:
            raise UIUnavailable(errors[0])
        for d in drivers:
            if d:
                d.b.close()
    finally:
        app.stop()
    lat = [[t for t, _ in r] for r in results if r]
    first = [f for r in results if r for _, f in r if f is not None]
    added = _added(lat, baseline)
    flat = [x for per in lat for x in per]
    base_all = [x for per in baseline for x in per]
    from roleplay.store import check_password, hash_password

    h = hash_password("learner")
    t = time.perf_counter()
    check_password("learner", h)
    one_check = time.perf_counter() - t
    res.line(f"(a) measured: the real Gradio app (roleplay.ui.build_app(), {'sign-in required' if app.auth else 'no sign-in'}"
             f", offline engine) in its own process; {sessions} learners signed in, each opened the page (every load "
             f"event), started '{SCENARIO}' and then all sent {turns} turns at once with no think time")
    res.line(f"(a) baseline: {how}: {ms(median(base_all))} median per turn")
    res.line(f"(a) per turn through the app: {ms(median(flat), 0)} p50 / {ms(pct(flat, 95), 0)} p95 (first streamed "
             f"update {ms(median(first), 0)} p50); added vs in-process {ms(pct(added, 50), 0)} p50 / "
             f"{ms(pct(added, 95), 0)} p95; {sessions * turns} turns in {wall:.1f} s = "
             f"{sessions * turns / wall:.0f} turns/s")
    ups = [u for d in drivers if d for u in d.updates]
    res.line(f"(a) CPU during the turns: app process {meter.app_cpu / (sessions * turns) * 1000:.1f} ms per turn "
             f"with {median(ups):.0f} streamed updates each (the handler itself needs {ms(median(base_all), 1)}), "
             f"driver {meter.driver_cpu:.1f} s; the app sets the queue's default concurrency limit to "
             f"ROLEPLAY_CONCURRENCY (64) so learners' turns do not queue behind each other")
    res.line(f"(a) {sessions} concurrent sign-ins took {login_wall:.1f} s wall (each {ms(median(logins), 0)} p50, "
             f"{ms(max(logins), 0)} max); one PBKDF2 password check costs {ms(one_check, 0)} of CPU, run in a worker "
             f"thread (the app's auth check is async) so the event loop keeps serving other requests")
    res.row(f"{sessions} sessions via the Gradio app: added latency per turn p50 / p95",
            f"{ms(pct(added, 50), 0)} / {ms(pct(added, 95), 0)}", "", "measured: app")
    return True


def _ui_llm(res: SectionResult, tmp: Path, stub: StubProcess, sessions: int) -> None:
    """One turn per session with the LLM engine: one event at a time (Gradio's own default) vs the app's limit of 64."""
    stub.configure(text=PERSONA_REPLY, token_delay=LLM_TOKEN_DELAY)
    # the same turn in-process (engine + store + the stub's streaming time), for reference
    from benchlib import chat_model

    from roleplay.llm import GenerationSettings
    from roleplay.voices import LLMVoice
    from roleplay.store import Store

    store = Store(f"sqlite:///{tmp / 'llm-inproc.db'}")
    lib_cpu: list[float] = []
    single = [_library_turns(store, f"solo{i}", 1, LLMVoice(chat_model(stub.base_url),
                                                            GenerationSettings(temperature=0.8)), cpu=lib_cpu)[0]
              for i in range(5)]
    store.close()
    res.line(f"(a) the same LLM turn in-process (engine + openai SDK + store, no Gradio): {ms(median(single), 0)} "
             f"wall, {ms(median(lib_cpu), 1)} CPU")
    figures = {}
    for label, limit in (("ROLEPLAY_CONCURRENCY=1 (Gradio's default)", "1"), ("ROLEPLAY_CONCURRENCY=64 (the app's default)", None)):
        app = AppProcess(tmp, "llm", stub=stub, concurrency=limit, tag=f"app-llm-{limit or 'default'}")
        try:
            first = Browser(app.root)
            if app.auth:
                first.login("learner", "learner")
            first.load()
            cookies, cfg = first.http.cookies, first.cfg

            def setup(i: int, app: AppProcess = app, cookies: Any = cookies, cfg: Any = cfg) -> UIDriver:
                d = UIDriver(app, cookies=cookies, cfg=cfg)
                d.open_and_start()
                return d

            meter = Meter(app)
            drivers: list[UIDriver] = []

            def work(d: UIDriver, drivers: list[UIDriver] = drivers) -> tuple[float, float | None]:
                drivers.append(d)
                return d.turn(LEARNER_LINES[2])

            results, errors, wall = _concurrently(sessions, setup, work, meter)
            first.close()
        finally:
            app.stop()
        if errors:
            raise UIUnavailable(errors[0])
        lat = [r[0] for r in results if r]
        figures[label] = (median(lat), pct(lat, 95), wall)
        res.line(f"(a) LLM engine, {label}: {sessions} learners send one turn at once (reply streamed over "
                 f"~{ms(median(single), 0)}): turn latency p50 {ms(median(lat), 0)} / p95 {ms(pct(lat, 95), 0)}, "
                 f"all done in {wall:.1f} s; app CPU {meter.app_cpu / sessions * 1000:.0f} ms per turn with "
                 f"{median([u for d in drivers for u in d.updates]):.0f} streamed updates each, driver CPU "
                 f"{meter.driver_cpu:.1f} s")
    stub.configure(text=PERSONA_REPLY)
    d50, d95, _ = figures["ROLEPLAY_CONCURRENCY=1 (Gradio's default)"]
    u50, u95, _ = figures["ROLEPLAY_CONCURRENCY=64 (the app's default)"]
    res.row(f"{sessions} LLM sessions, 1 turn each: p50 / p95 turn latency, concurrency 1 vs 64 (default)",
            f"{ms(d50, 0)} / {ms(d95, 0)} vs {ms(u50, 0)} / {ms(u95, 0)}", "", "measured: app")


def _library(res: SectionResult, tmp: Path, sessions: int, turns: int) -> None:
    from roleplay.store import Store

    store = Store(f"sqlite:///{tmp / 'sessions-shared.db'}")
    try:
        baseline: list[list[float]] = [[] for _ in range(turns)]
        for r in range(5):
            for i, t in enumerate(_library_turns(store, f"solo{r}", turns)):
                baseline[i].append(t)

        solo_store: list[float] = []
        _library_turns(store, "solo-store", turns, in_store=solo_store)
        shared_store: list[float] = []
        results, errors, wall = _concurrently(sessions, lambda i: i,
                                              lambda i: _library_turns(store, f"learner{i}", turns,
                                                                       in_store=shared_store))
    finally:
        store.close()
    lat = [r for r in results if r]
    flat = [x for per in lat for x in per]
    added = _added(lat, baseline)
    base_all = [x for per in baseline for x in per]
    res.line(f"(b) measured: {sessions} sessions through roleplay.practice (offline engine) in {sessions} threads "
             f"of one process against one shared SQLite store, {turns} turns each, all at once; baseline: the same "
             f"turns in one thread, {ms(median(base_all))} median per turn (two store commits each)")
    res.line(f"(b) per turn: {ms(median(flat), 1)} p50 / {ms(pct(flat, 95), 1)} p95; added vs one thread "
             f"{ms(pct(added, 50), 1)} p50 / {ms(pct(added, 95), 1)} p95; {len(flat)} turns in {wall:.2f} s = "
             f"{len(flat) / wall:.0f} turns/s; {len(errors)} errors" + (f" (first: {errors[0][:160]})" if errors else ""))
    res.line(f"(b) one store.add_turn commit: {ms(median(solo_store))} p50 alone vs {ms(median(shared_store))} p50 / "
             f"{ms(pct(shared_store, 95))} p95 with {sessions} sessions writing (SQLite allows one writer at a time; "
             f"the rest of the spread is {sessions} threads sharing the GIL on 2 cores)")
    res.row(f"{sessions} sessions via roleplay.practice threads, shared SQLite: added latency per turn p50 / p95",
            f"{ms(pct(added, 50), 1)} / {ms(pct(added, 95), 1)}", "", "measured: library")


def run(stub: StubProcess, quick: bool = False, tmp: Path | None = None) -> SectionResult:
    res = SectionResult("5", "Concurrent practice sessions")
    tmp = tmp or Path(os.environ["ROLEPLAY_DATA_DIR"]).parent
    sessions = 10 if quick else 50
    turns = 2 if quick else 5
    ui_ok = False
    try:
        ui_ok = _ui_offline(res, tmp, sessions, turns)
    except Exception as exc:  # noqa: BLE001 - if the app cannot be driven, the reason is reported and (b) stands in
        reason = str(exc) if isinstance(exc, UIUnavailable) else f"{type(exc).__name__}: {exc}"
        res.line(f"(a) the Gradio app could not be measured: {reason}")
        res.row(f"{sessions} sessions via the Gradio app", "not measured", "", "reason in the notes")
    if ui_ok and not quick:
        try:
            _ui_llm(res, tmp, stub, sessions)
        except Exception as exc:  # noqa: BLE001 - reported with the reason
            reason = str(exc) if isinstance(exc, UIUnavailable) else f"{type(exc).__name__}: {exc}"
            res.line(f"(a) the LLM-engine app run could not be measured: {reason}")
            res.row(f"{sessions} LLM sessions via the Gradio app", "not measured", "", "reason in the notes")
    elif ui_ok:
        res.line("(a) the LLM-engine app comparison (concurrency 1 vs 64) is skipped in --quick")
    _library(res, tmp, sessions, turns)
    if not ui_ok:
        res.line("the library-level figure (b) stands in for the app figure (a) in this run")
    return res
