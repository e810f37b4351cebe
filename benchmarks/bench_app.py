"""11. The app against a bare Gradio app: what a learner's turn costs the server, and how `roleplay --help` starts.

(a) CPU and latency per turn. The real app (`roleplay.ui.build_app()` launched with `launch_options()`, offline
    engine, sign-in, the app's queue concurrency limit) and a bare Gradio app with the components a turn touches on
    the practice page (a Chatbot built as the app builds it, opening with the scenario's first line; the line's
    Textbox, the status Markdown, the Send button and the session State; the same four outputs, both triggers, the
    yields of an offline reply: the learner's line with a placeholder, the reply, the final controls; the same
    concurrency limit and a sign-in) whose handler does no roleplay work: it echoes a fixed persona reply. It keeps
    the chat as an input and an output of `send`, Gradio's usual chat pattern. Each runs in its own process on
    127.0.0.1. Learners sign in, open a session and send turns through Gradio's queue API (`/queue/join` + the
    `/queue/data` event stream, plain httpx), all at once with no think time. The server's CPU (user + system,
    `getrusage` in the server, read over its stdin) is divided by the turns sent.
(b) Bytes per turn. One conversation of 100 turns on each app, turn by turn in alternating order: the body of each
    turn's `/queue/join` request (up) and what the browser reads back for it (the join reply and the event stream up
    to the completion, as received on the wire; down), at turns 1, 30 and 100, with the server's CPU for the turns
    around them. The shipped levels allow at most 60 turns (the scenario schema's limit), so the app server replaces
    `missed-deadlines` in its loaded catalog with `benchlib.long_scenario(..., 120)` (the same scenario, 120 turns,
    success ending off) with walk-outs off, as section 1 does in process.
(c) `roleplay --help` against a bare click CLI with one command (`startup.BARE_CLI`): the CPU (user + system) of each
    child process, median of several runs in alternating order, with bytecode cached in a temp dir after one
    uncounted run (warm), and with no bytecode written (cold, as every child of the run starts).

Inside the run: `run(quick)`. The servers are `python bench_app.py serve KIND PORT --concurrency N --max-chars N`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH_DIR,
    CHILD_ENV,
    LEARNER_LINES,
    PERSONA_REPLY,
    SectionResult,
    free_port,
    median,
    ms,
    pct,
    verdict,
)

SCENARIO = "missed-deadlines"
LEVEL = "intermediate"
LONG_TURNS = 120  # the app server's copy of the scenario allows this many learner turns
OPENING = "Hi. You wanted to talk about the reports?"  # the scenario's opening line, the chat's first bubble
REPLY = PERSONA_REPLY.split(". ")[0] + "."  # 69 characters: about the offline engine's median reply (68)
CHECKPOINTS = (1, 30, 100)
CPU_WINDOW = 10  # the server CPU at a checkpoint is the mean of the turns ending there (turn 1: turns 1-10)
HTTP_TIMEOUT = 120.0
SERVER_SECONDS = 600.0  # each server exits by itself after this long
START_SECONDS = 180.0
CLI_SECONDS = 60.0
ARMS = ("app", "bare")
LABEL = {"app": "roleplay app", "bare": "bare Gradio"}


# --- the servers --------------------------------------------------------------------------------------------------

def _bare_blocks(concurrency: int, max_chars: int) -> Any:
    """The anchor: the practice page's turn components, and a `send` that echoes a fixed reply in the app's yields."""
    import html

    import gradio as gr

    reply = html.escape(REPLY, quote=False)

    def send(message: str, chat: list[dict[str, Any]], session_id: Any) -> Any:
        line = (message or "").strip()
        chat = [*(chat or []), {"role": "user", "content": html.escape(line, quote=False)},
                {"role": "assistant", "content": "…"}]
        status = f"Turn {len(chat) // 2} of {LONG_TURNS}"
        yield chat, "", status, gr.update()  # the learner's line and a placeholder
        chat[-1] = {"role": "assistant", "content": reply}
        yield chat, "", status, gr.update()  # the reply (the offline engine says it in one piece)
        yield chat, gr.update(value="", interactive=True), status, gr.update(interactive=True)

    with gr.Blocks() as demo:
        status = gr.Markdown("", elem_id="practice-status")
        chat = gr.Chatbot([{"role": "assistant", "content": OPENING}], label="Conversation", elem_id="practice-chat",
                          height=440, buttons=[], render_markdown=False, sanitize_html=True, allow_tags=False)
        with gr.Row():
            box = gr.Textbox(label="Your line", placeholder="Say something to the persona…", interactive=True,
                             elem_id="practice-input", scale=5, lines=1, max_length=max_chars)
            send_btn = gr.Button("Send", elem_id="practice-send", scale=1)
        session_id = gr.State(None)
        for trigger in (box.submit, send_btn.click):
            trigger(send, [box, chat, session_id], [chat, box, status, send_btn])
    demo.queue(default_concurrency_limit=concurrency)
    return demo


def serve(kind: str, port: int, concurrency: int, max_chars: int, max_seconds: float = SERVER_SECONDS) -> int:
    """Run one app until stdin closes; each line `cpu` on stdin is answered with `CPU <seconds>` (user + system)."""
    import resource

    killer = threading.Timer(max_seconds, lambda: os._exit(3))
    killer.daemon = True
    killer.start()
    try:
        if kind == "app":
            from benchlib import long_scenario

            from roleplay.context import AppContext
            from roleplay.ui import build_app, launch_options

            context = AppContext()
            catalog = context.catalog
            scenario = long_scenario(catalog.scenario(SCENARIO), LONG_TURNS)
            never = {"walkout_after_blames": 10**6, "walkout_after_threats": 10**6, "walkout_after_cold_turns": 10**6}
            catalog.scenarios[SCENARIO] = scenario.model_copy(update={"end": scenario.end.model_copy(update=never)})
            context.store.seed_demo_people()
            demo = build_app(context)
            options = launch_options(context)
        else:
            import asyncio
            import hmac

            async def auth(username: str, password: str) -> bool:  # checked in a thread, as the app's is
                return await asyncio.to_thread(hmac.compare_digest, f"{username}:{password}", "learner:learner")

            demo = _bare_blocks(concurrency, max_chars)
            options = {"auth": auth}
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **options)
    except Exception as exc:  # noqa: BLE001 - reported to the driver
        print(f"FAILED {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(f"READY {port}", flush=True)
    for line in sys.stdin:
        if line.strip() == "cpu":
            ru = resource.getrusage(resource.RUSAGE_SELF)
            print(f"CPU {ru.ru_utime + ru.ru_stime:.6f}", flush=True)
    demo.close()
    return 0


class Server:
    """One of the two apps in its own process, with its CPU readable on request."""

    def __init__(self, kind: str, tmp: Path, concurrency: int, max_chars: int) -> None:
        self.kind = kind
        self.port = free_port()
        self._log_path = tmp / f"app-{kind}.log"  # a file, not a pipe: a chatty server never blocks on it
        self._log = self._log_path.open("w", encoding="utf-8")
        env = {**os.environ, **CHILD_ENV, "ROLEPLAY_DATA_DIR": str(tmp / f"app-{kind}-data"),
               "ROLEPLAY_ENGINE": "offline"}
        env.pop("GRADIO_DEFAULT_CONCURRENCY_LIMIT", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "bench_app.py"), "serve", kind, str(self.port), "--concurrency",
             str(concurrency), "--max-chars", str(max_chars)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env, cwd=str(tmp))
        self.root = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()

    def wait_ready(self) -> None:
        line = ""
        timer = threading.Timer(START_SECONDS, self.proc.kill)
        timer.start()
        try:
            while self.proc.stdout is not None:
                line = self.proc.stdout.readline()
                if not line or line.startswith(("READY", "FAILED")):
                    break
        finally:
            timer.cancel()
        if not line.startswith("READY"):
            self.stop()
            tail = [ln for ln in self._log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if ln.strip()]
            raise RuntimeError(f"the {LABEL[self.kind]} server did not start: "
                               f"{line.strip() or (tail[-1][:300] if tail else 'no output')}")

    def cpu(self) -> float:
        """CPU seconds (user + system) the server process has used so far, as it reports them."""
        with self._lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write("cpu\n")
            self.proc.stdin.flush()
            line = ""
            for _ in range(100):  # skip anything else the server printed meanwhile
                line = self.proc.stdout.readline()
                if not line or line.startswith("CPU "):
                    break
        if not line.startswith("CPU "):
            raise RuntimeError(f"the {LABEL[self.kind]} server did not report its CPU (said {line.strip()!r})")
        return float(line.split()[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


# --- a browser tab on the queue API -------------------------------------------------------------------------------

@dataclass
class Event:
    seconds: float
    updates: int  # streamed updates (process_generating messages)
    up: int  # bytes of the /queue/join request body
    down: int  # bytes received: the join reply and the event stream up to the completion
    error: str | None


class Tab:
    """One learner's tab: a cookie jar, a Gradio session hash and the component values the page holds."""

    def __init__(self, root: str, cookies: Any = None, cfg: dict[str, Any] | None = None) -> None:
        import httpx

        self.http = httpx.Client(base_url=root, trust_env=False, timeout=httpx.Timeout(HTTP_TIMEOUT))
        if cookies is not None:
            self.http.cookies.update(cookies)
        self.hash = uuid.uuid4().hex[:12]
        self.encoding = "identity"
        if cfg is not None:
            self.load(cfg)

    def login(self, username: str, password: str) -> None:
        r = self.http.post("/login", data={"username": username, "password": password})
        if r.status_code != 200:
            raise RuntimeError(f"sign-in as {username!r} failed with HTTP {r.status_code}: {r.text[:120]}")

    def load(self, cfg: dict[str, Any] | None = None) -> dict[str, Any]:
        if cfg is None:
            r = self.http.get("/config")
            r.raise_for_status()
            cfg = r.json()
        self.cfg = cfg
        self.prefix = cfg.get("api_prefix") or "/gradio_api"
        self.comps = {c["id"]: c for c in cfg["components"]}
        self.values = {cid: (c.get("props") or {}).get("value") for cid, c in self.comps.items()}
        self.deps = cfg["dependencies"]
        return cfg

    def find(self, elem_id: str, event: str) -> dict[str, Any]:
        target = self.elem(elem_id)
        for dep in self.deps:
            if [target, event] in [list(t) for t in dep.get("targets", [])]:
                return dep
        raise RuntimeError(f"the page has no {event} event on #{elem_id}")

    def page_load(self, only: str | None = None) -> None:
        """Fire every `load` event, in order, as the browser does when the page opens (with `only`, just the ones
        that update the component with that elem_id)."""
        ids = {(c.get("props") or {}).get("elem_id"): cid for cid, c in self.comps.items()}
        for dep in self.deps:
            if any(list(t)[1] == "load" for t in dep.get("targets", [])):
                if only is None or ids.get(only) in dep.get("outputs", []):
                    self.call(dep, {})

    def call(self, dep: dict[str, Any], overrides: dict[str, Any]) -> Event:
        from gradio_client.utils import apply_diff

        data = []
        for cid in dep["inputs"]:
            comp = self.comps[cid]
            elem_id = (comp.get("props") or {}).get("elem_id")
            if comp["type"] == "state":
                data.append(None)  # held on the server
            else:
                data.append(overrides[elem_id] if elem_id in overrides else self.values.get(cid))
        trigger = dep["targets"][0][0] if dep.get("targets") else None
        body = json.dumps({"data": data, "fn_index": dep["id"], "session_hash": self.hash, "event_data": None,
                           "trigger_id": trigger}).encode()
        t0 = time.perf_counter()
        r = self.http.post(f"{self.prefix}/queue/join", content=body, headers={"content-type": "application/json"})
        down = r.num_bytes_downloaded
        if r.status_code != 200:
            return Event(time.perf_counter() - t0, 0, len(body), down, f"queue/join answered HTTP {r.status_code}")
        event_id = r.json()["event_id"]
        final: dict[str, Any] = {}
        updates = 0
        partial: list[Any] | None = None
        changed: set[int] = set()
        self.logs: list[str] = []
        with self.http.stream("GET", f"{self.prefix}/queue/data", params={"session_hash": self.hash}) as s:
            self.encoding = s.headers.get("content-encoding", "identity")
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                kind = msg.get("msg")
                if kind == "process_generating" and msg.get("event_id") == event_id:
                    updates += 1  # the first carries full values, the later ones diffs against the one before
                    out = (msg.get("output") or {}).get("data") or []
                    partial = list(out) if partial is None else [apply_diff(p, d) for p, d in zip(partial, out)]
                    changed |= self._apply(dep, partial)
                elif kind == "log" and msg.get("event_id") == event_id:
                    self.logs.append(str(msg.get("log") or msg.get("title") or ""))
                elif (kind == "process_completed" and msg.get("event_id") == event_id
                      or kind in ("unexpected_error", "close_stream")):
                    final = msg
                    break
            down += s.num_bytes_downloaded
        elapsed = time.perf_counter() - t0
        error = None
        if final.get("msg") == "process_completed" and final.get("success", True):
            changed |= self._apply(dep, (final.get("output") or {}).get("data") or [])
            self._in_browser(changed)
        else:
            out = final.get("output") or {}
            error = str(out.get("error") or final.get("message") or final.get("msg") or "no completion")[:200]
        return Event(elapsed, updates, len(body), down, error)

    def _apply(self, dep: dict[str, Any], outputs: list[Any]) -> set[int]:
        """Put an event's outputs into the page's values, as the browser does; the components whose value was set."""
        changed = set()
        for cid, value in zip(dep["outputs"], outputs):
            if isinstance(value, dict) and value.get("__type__") == "update":
                if "value" not in value:
                    continue
                value = value["value"]
            self.values[cid] = value
            changed.add(cid)
        return changed

    def _in_browser(self, changed: set[int]) -> None:
        """What the practice page's own JavaScript does with a turn: when the send event answers with the turn's
        exchange (`#practice-exchange`, `{"base": n, "messages": [...]}`) instead of the whole chat, the browser keeps
        the chat's first n messages and appends the exchange's."""
        exchange = self.elem("practice-exchange")
        chat = self.elem("practice-chat")
        if exchange is None or chat is None or exchange not in changed:
            return
        ex = self.values.get(exchange)
        if isinstance(ex, dict) and isinstance(ex.get("messages"), list):
            self.values[chat] = list(self.values.get(chat) or [])[:int(ex.get("base") or 0)] + ex["messages"]

    def elem(self, elem_id: str) -> int | None:
        return next((cid for cid, c in self.comps.items() if (c.get("props") or {}).get("elem_id") == elem_id), None)

    def close(self) -> None:
        self.http.close()


class Learner:
    """A signed-in tab with a session open, sending the practice page's `send` event."""

    def __init__(self, server: Server, cookies: Any, cfg: dict[str, Any], whole_page: bool = True) -> None:
        self.tab = Tab(server.root, cookies, cfg)
        self.turns = 0
        if server.kind == "app":
            # the practice page's load event fills the scenario picker's choices, which starting is checked against
            self.tab.page_load(None if whole_page else "practice-scenario")
            ev = self.tab.call(self.tab.find("practice-start", "click"),
                               {"practice-scenario": SCENARIO, "practice-level": LEVEL})
            if ev.error:
                raise RuntimeError(f"starting a session failed: {ev.error}")
        self.send = self.tab.find("practice-input", "submit")
        self.chat = self.tab.elem("practice-chat")

    def bubbles(self) -> list[Any]:
        return list(self.tab.values.get(self.chat) or [])

    def turn(self) -> Event:
        before = len(self.bubbles())
        ev = self.tab.call(self.send, {"practice-input": LEARNER_LINES[self.turns % len(LEARNER_LINES)]})
        self.turns += 1
        if ev.error:
            raise RuntimeError(f"turn {self.turns} failed: {ev.error}")
        if len(self.bubbles()) != before + 2:  # a turn not taken ends in a warning, not an error
            raise RuntimeError(f"turn {self.turns} was not taken (the chat went from {before} to "
                               f"{len(self.bubbles())} messages): {'; '.join(self.tab.logs) or 'no message'}")
        return ev


def _sign_in(server: Server) -> tuple[Any, dict[str, Any]]:
    """One sign-in for the arm; its cookie and page config are shared by every learner of the arm."""
    tab = Tab(server.root)
    try:
        tab.login("learner", "learner")
        cfg = tab.load()
        return tab.http.cookies, cfg
    finally:
        tab.close()


def _all_at_once(fns: list[Any], timeout: float = 300.0) -> tuple[list[Any], list[str], float]:
    """Run every fn in its own thread, released together; results, errors and the wall time."""
    n = len(fns)
    barrier = threading.Barrier(n + 1)
    results: list[Any] = [None] * n
    errors: list[str] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
        except threading.BrokenBarrierError:
            return
        try:
            results[i] = fns[i]()
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait(timeout=timeout)
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        errors.append(f"some learners were still waiting after {timeout:.0f} s")
    return results, errors, time.perf_counter() - t0


def _open_learners(server: Server, n: int, cookies: Any, cfg: dict[str, Any], whole_page: bool) -> list[Learner]:
    """`n` learners with a session open, set up 8 at a time (untimed)."""
    out: list[Learner] = []
    for i in range(0, n, 8):
        batch, errors, _ = _all_at_once([lambda: Learner(server, cookies, cfg, whole_page)] * min(8, n - i))
        if errors:
            raise RuntimeError(errors[0])
        out.extend(batch)
    return out


@dataclass
class Burst:
    latencies: list[float]
    updates: list[int]
    cpu: float
    wall: float
    turns: int


def _burst(server: Server, learners: list[Learner], turns: int) -> Burst:
    """Every learner sends `turns` turns, all at once; the server CPU over the whole burst."""
    def work(learner: Learner) -> list[Event]:
        return [learner.turn() for _ in range(turns)]

    cpu0 = server.cpu()
    results, errors, wall = _all_at_once([lambda lr=lr: work(lr) for lr in learners])
    cpu = server.cpu() - cpu0
    if errors:
        raise RuntimeError(errors[0])
    events = [e for r in results if r for e in r]
    return Burst([e.seconds for e in events], [e.updates for e in events], cpu, wall, len(events))


# --- (a) CPU and latency per turn at 50 learners -------------------------------------------------------------------

def _per_turn(res: SectionResult, servers: dict[str, Server], quick: bool) -> None:
    learners_n = 20 if quick else 50
    turns = 2 if quick else 5
    rounds = 1 if quick else 2
    bursts: dict[str, list[Burst]] = {arm: [] for arm in ARMS}
    crowd: dict[str, list[Learner]] = {}
    setup = {}
    for arm in ARMS:
        t0 = time.perf_counter()
        cookies, cfg = _sign_in(servers[arm])
        warm = _open_learners(servers[arm], 2 if quick else 4, cookies, cfg, not quick)
        _burst(servers[arm], warm, 2)  # warm-up: first turns load code paths and fill caches
        for lr in warm:
            lr.tab.close()
        crowd[arm] = _open_learners(servers[arm], learners_n, cookies, cfg, not quick)
        setup[arm] = time.perf_counter() - t0
    for r in range(rounds):
        for arm in (ARMS if r % 2 == 0 else ARMS[::-1]):  # alternating order, so drift touches both alike
            bursts[arm].append(_burst(servers[arm], crowd[arm], turns))
    for arm in ARMS:
        for lr in crowd[arm]:
            lr.tab.close()
    fig = {}
    for arm in ARMS:
        bs = bursts[arm]
        n = sum(b.turns for b in bs)
        lat = [x for b in bs for x in b.latencies]
        cpu = sum(b.cpu for b in bs) / n
        fig[arm] = (cpu, median(lat), pct(lat, 95))
        res.line(f"(a) {LABEL[arm]}: {learners_n} learners x {turns} turns at once, {rounds} round(s): server CPU "
                 f"{ms(cpu, 1)} per turn ({', '.join(f'{b.cpu:.2f} s' for b in bs)} for {bs[0].turns} turns each); "
                 f"latency {ms(median(lat), 0)} p50 / {ms(pct(lat, 95), 0)} p95; "
                 f"{n / sum(b.wall for b in bs):.0f} turns/s; {median([u for b in bs for u in b.updates]):.0f} "
                 f"streamed updates per turn (setup {setup[arm]:.1f} s, untimed)")
    (acpu, a50, a95), (bcpu, b50, b95) = fig["app"], fig["bare"]
    ratio = acpu / bcpu if bcpu > 0 else float("nan")
    res.row(f"server CPU per turn at {learners_n} learners: app vs bare Gradio",
            f"{ms(acpu, 1)} vs {ms(bcpu, 1)} ({ratio:.2f}x)", "<= 1.2x", verdict(ratio <= 1.2))
    res.row(f"turn latency p50 / p95 at {learners_n} learners: app vs bare Gradio",
            f"{ms(a50, 0)} / {ms(a95, 0)} vs {ms(b50, 0)} / {ms(b95, 0)} ({a50 / b50:.2f}x / {a95 / b95:.2f}x)")


# --- (b) bytes per turn over one 100-turn conversation ---------------------------------------------------------------

def _shape(learner: Learner) -> str:
    """What a turn moves, read from the page's config: whether the chat goes up and comes back whole."""
    tab, dep = learner.tab, learner.send
    chat, exchange = tab.elem("practice-chat"), tab.elem("practice-exchange")
    ins = "the whole chat is an input of send (the browser uploads it every turn)" if chat in dep["inputs"] else \
        "the chat is not an input of send"
    if chat in dep["outputs"]:
        outs = "the whole chat is an output (sent back every turn)"
    elif exchange is not None and exchange in dep["outputs"]:
        outs = "send answers with the turn's exchange only, which the page's JavaScript adds to the chat"
    else:
        outs = "the chat is not an output of send"
    return f"{ins}; {outs}; {len(dep['inputs'])} inputs, {len(dep['outputs'])} outputs"


def _text(message: dict[str, Any]) -> str:
    """The text of a chat message as the Chatbot sends it back (a string, or a list of typed parts)."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _per_conversation(res: SectionResult, servers: dict[str, Server], quick: bool) -> None:
    last = CHECKPOINTS[-1]
    learners = {}
    for arm in ARMS:
        cookies, cfg = _sign_in(servers[arm])
        learners[arm] = Learner(servers[arm], cookies, cfg)
    events: dict[str, list[Event]] = {arm: [] for arm in ARMS}
    cpus: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for i in range(last):
        for arm in (ARMS if i % 2 == 0 else ARMS[::-1]):
            c0 = servers[arm].cpu()
            events[arm].append(learners[arm].turn())
            cpus[arm].append(servers[arm].cpu() - c0)
    held = {arm: learners[arm].bubbles() for arm in ARMS}
    for arm in ARMS:
        learners[arm].tab.close()
    enc = learners["app"].tab.encoding

    def window(arm: str, k: int) -> float:
        """Mean server CPU over the turns ending at turn k (the first CPU_WINDOW turns for turn 1)."""
        span = cpus[arm][:CPU_WINDOW] if k == 1 else cpus[arm][max(0, k - CPU_WINDOW):k]
        return sum(span) / len(span)

    for arm in ARMS:
        ev = events[arm]
        cells = []
        for k in CHECKPOINTS:
            e = ev[k - 1]
            cells.append(f"turn {k}: {e.up:,} B up / {e.down:,} B down, {ms(e.seconds, 0)}, "
                         f"CPU {ms(window(arm, k), 1)}")
        res.line(f"(b) {LABEL[arm]}, one conversation of {last} turns: " + "; ".join(cells))
    replies = {arm: [_text(m) for m in held[arm][1:] if isinstance(m, dict) and m.get("role") == "assistant"]
               for arm in ARMS}
    res.line(f"(b) after {last} turns the chat holds {len(held['app'])} messages in the app and {len(held['bare'])} in "
             f"the bare app; persona replies {median([len(t) for t in replies['app']]):.0f} characters median in the "
             f"app (offline engine), {median([len(t) for t in replies['bare']]):.0f} in the bare app (fixed)")
    a, b = events["app"], events["bare"]
    up_growth = a[last - 1].up / a[0].up
    down_growth = a[last - 1].down / a[0].down
    for arm in ARMS:
        res.line(f"(b) {LABEL[arm]}: {_shape(learners[arm])}")
    res.line(f"(b) a streamed event's first update carries full values, the later ones diffs against the one before, "
             f"and its completion the full values again; the stream's content-encoding was {enc!r}, so down is "
             + ("compressed bytes" if enc not in ("identity", "") else "the bytes as sent")
             + "; HTTP headers are not counted")
    res.line(f"(b) CPU per turn is the server's mean over turns 1-{CPU_WINDOW} and the {CPU_WINDOW} turns ending at "
             f"30 and 100 (one learner, the other app idle meanwhile): app "
             + " / ".join(ms(window("app", k), 1) for k in CHECKPOINTS) + ", bare "
             + " / ".join(ms(window("bare", k), 1) for k in CHECKPOINTS)
             + f" (app/bare at turn 1: {window('app', 1) / window('bare', 1):.2f}x, at turn {last}: "
             f"{window('app', last) / window('bare', last):.2f}x)")
    growth = max(up_growth, down_growth)
    res.row("bytes per turn up / down at turns 1 / 30 / 100: app",
            " | ".join(f"{a[k - 1].up:,} / {a[k - 1].down:,}" for k in CHECKPOINTS)
            + f" ({up_growth:.1f}x / {down_growth:.1f}x from 1 to {last})",
            "<= 2x from 1 to 100", verdict(growth <= 2.0))
    res.row("bytes per turn up / down at turns 1 / 30 / 100: bare Gradio",
            " | ".join(f"{b[k - 1].up:,} / {b[k - 1].down:,}" for k in CHECKPOINTS)
            + f" ({b[last - 1].up / b[0].up:.1f}x / {b[last - 1].down / b[0].down:.1f}x)")
    res.row("server CPU per turn at turns 1 / 30 / 100 (one learner): app vs bare Gradio",
            " / ".join(ms(window("app", k), 1) for k in CHECKPOINTS) + " vs "
            + " / ".join(ms(window("bare", k), 1) for k in CHECKPOINTS))


# --- (c) roleplay --help against a bare click CLI ------------------------------------------------------------------

def _child_cpu(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    """CPU seconds (user + system) of one child process run to its end (killed after CLI_SECONDS)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd=str(cwd))
    timer = threading.Timer(CLI_SECONDS, proc.kill)
    timer.start()
    try:
        err = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{' '.join(Path(c).name for c in cmd)} exited with {proc.returncode}: "
                           f"{tail[-1][:200] if tail else 'no output'}")
    return usage.ru_utime + usage.ru_stime


def _heaviest_imports(env: dict[str, str], cwd: Path, top: int = 4) -> str:
    """The modules whose import (with what they import) takes longest in `roleplay --help`, from -X importtime."""
    code = "import sys; from roleplay.cli import main; sys.argv = ['roleplay', '--help']; main()"
    try:
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                             env=env, timeout=CLI_SECONDS, cwd=str(cwd), check=False).stderr
    except subprocess.TimeoutExpired:
        return "not measured (timed out)"
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if name.strip().startswith("roleplay"):
                rows.append((int(parts[1]), name.strip()))
    rows.sort(reverse=True)
    return ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in rows[:top]) or "none found"


def _cli(res: SectionResult, tmp: Path, quick: bool) -> None:
    from startup import BARE_CLI

    exe = shutil.which("roleplay") or str(Path(sys.executable).with_name("roleplay"))
    bare = tmp / "bare_cli.py"
    bare.write_text(BARE_CLI, encoding="utf-8")
    cmds = {"roleplay": [exe, "--help"], "click": [sys.executable, str(bare), "--help"]}
    cold_env = {**os.environ, **CHILD_ENV}
    warm_env = {k: v for k, v in cold_env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    warm_env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")  # bytecode goes to the temp dir, never the checkout
    reps = 2 if quick else 7
    figures: dict[str, dict[str, list[float]]] = {}
    for label, env, n in (("warm", warm_env, reps), ("cold", cold_env, 0 if quick else 3)):
        if label == "warm":
            for cmd in cmds.values():
                _child_cpu(cmd, env, tmp)  # uncounted: writes the bytecode
        runs: dict[str, list[float]] = {k: [] for k in cmds}
        for i in range(n):
            for k in (cmds if i % 2 == 0 else list(cmds)[::-1]):
                runs[k].append(_child_cpu(cmds[k], env, tmp))
        figures[label] = runs
    w, c = figures["warm"], figures["cold"]
    compiled = (BENCH_DIR.parent / "roleplay" / "__pycache__").is_dir()
    ratio = median(w["roleplay"]) / median(w["click"])
    res.line(f"(c) CPU (user + system) of the child process, median of {reps} in alternating order, bytecode cached "
             f"in a temp dir after one uncounted run: roleplay --help {ms(median(w['roleplay']), 0)} "
             f"(max {ms(max(w['roleplay']), 0)}), bare click CLI --help {ms(median(w['click']), 0)} "
             f"(max {ms(max(w['click']), 0)}): {ratio:.2f}x")
    if c["roleplay"]:
        res.line("(c) cold (no bytecode written, as every child of this run; the checkout "
                 + ("has compiled roleplay modules, which are read" if compiled else
                    "holds no compiled roleplay modules, so they are compiled on each start")
                 + f"): roleplay --help {ms(median(c['roleplay']), 0)} vs {ms(median(c['click']), 0)} "
                 f"({median(c['roleplay']) / median(c['click']):.2f}x); startup.py has the wall times")
        res.line("(c) the largest imports of roleplay --help (cumulative, -X importtime): "
                 + _heaviest_imports(warm_env, tmp))
    res.row("roleplay --help CPU vs a bare click CLI (warm, median)",
            f"{ms(median(w['roleplay']), 0)} vs {ms(median(w['click']), 0)} ({ratio:.2f}x)", "<= 2x",
            verdict(ratio <= 2.0))


# --- the section -----------------------------------------------------------------------------------------------------

def run(quick: bool = False, tmp: Path | None = None) -> SectionResult:
    res = SectionResult("11", "The app against a bare Gradio app")
    tmp = tmp or Path(os.environ["ROLEPLAY_DATA_DIR"]).parent
    from roleplay.config import load_settings
    from roleplay.reader import MAX_TURN_CHARS

    concurrency = load_settings().concurrency

    def cli() -> None:
        try:
            _cli(res, tmp, quick)
        except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
            res.line(f"(c) roleplay --help could not be measured: {type(exc).__name__}: {exc}")
            res.row("roleplay --help CPU vs a bare click CLI", "not measured", "<= 2x", "reason in the notes")

    took = {}
    t = time.perf_counter()
    if not quick:
        cli()  # on a quiet machine; with --quick it runs while the servers start
    servers = {arm: Server(arm, tmp, concurrency, MAX_TURN_CHARS) for arm in ARMS}  # both start at once
    try:
        if quick:
            cli()
        took["(c)"] = time.perf_counter() - t
        for s in servers.values():
            s.wait_ready()
        took["start"] = time.perf_counter() - t - took["(c)"]
        idle0 = {arm: s.cpu() for arm, s in servers.items()}
        time.sleep(1.0)
        idle = {arm: s.cpu() - idle0[arm] for arm, s in servers.items()}
        res.line(f"both apps in their own processes on 127.0.0.1 with sign-in and a queue concurrency limit of "
                 f"{concurrency} (ROLEPLAY_CONCURRENCY); the roleplay app with launch_options() and the offline "
                 f"engine; idle CPU over 1 s: app {ms(idle['app'], 1)}, bare {ms(idle['bare'], 1)}")
        for part, key in ((_per_turn, "(a)"), (_per_conversation, "(b)")):
            t = time.perf_counter()
            try:
                part(res, servers, quick)
                took[key] = time.perf_counter() - t
            except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
                res.line(f"{part.__name__.strip('_')} could not be measured: {type(exc).__name__}: {exc}")
                res.row(part.__name__.strip("_").replace("_", " "), "not measured", "", "reason in the notes")
    finally:
        for s in servers.values():
            s.stop()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    res.line(f"{cores} cores shared by the driver (its learners' threads) and both servers; load average "
             f"{load:.1f} at the end; " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
             + (" (the servers started while (c) ran)" if quick else ""))
    return res


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "serve":
        import argparse

        sys.path.insert(0, str(BENCH_DIR))
        p = argparse.ArgumentParser()
        p.add_argument("serve")
        p.add_argument("kind", choices=ARMS)
        p.add_argument("port", type=int)
        p.add_argument("--concurrency", type=int, default=64)
        p.add_argument("--max-chars", type=int, default=4000)
        p.add_argument("--max-seconds", type=float, default=SERVER_SECONDS)
        a = p.parse_args()
        sys.exit(serve(a.kind, a.port, a.concurrency, a.max_chars, a.max_seconds))
    print("usage: python bench_app.py serve KIND PORT (run it through benchmarks/run.py --only app)", file=sys.stderr)
    sys.exit(2)
