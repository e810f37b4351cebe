"""1. A persona turn through the engine vs the same request with the raw openai SDK (streaming, A/B interleaved)."""

from __future__ import annotations

import gc
import math
import time
from typing import Any

from benchlib import (
    LEARNER_LINES,
    PERSONA_REPLY,
    Endpoint,
    SectionResult,
    Snapshot,
    StubProcess,
    TimedModel,
    chat_model,
    long_scenario,
    median,
    ms,
    one_line,
    pct,
    raw_client,
    verdict,
)

CHECKPOINTS = (1, 10, 30)
RATIO_GOAL = 1.10
OVERHEAD_GOAL = 0.005


def _conversation(scenario: Any, model: TimedModel) -> Any:
    from roleplay.llm import GenerationSettings
    from roleplay.persona import Conversation
    from roleplay.voices import LLMVoice

    # the same generation settings the app uses (roleplay.context.AppContext.voice)
    voice = LLMVoice(model, GenerationSettings(temperature=0.8))
    conv = Conversation(scenario, "intermediate", voice, seed=7)
    conv.open()
    return conv


def _engine_turn(conv: Any, model: TimedModel, line: str) -> tuple[float, float, str]:
    """(wall seconds, seconds outside the model stream, reply) of one learner turn through the engine."""
    model.reset()
    reply = ""
    t0 = time.perf_counter()
    for reply in conv.respond(line):
        pass
    wall = time.perf_counter() - t0
    return wall, wall - model.inside, reply


def _raw_turn(client: Any, messages: list[dict[str, str]]) -> float:
    """Seconds for the same request with the raw SDK, consuming every chunk."""
    t0 = time.perf_counter()
    stream = client.chat.completions.create(model="stub-model", messages=messages, stream=True,
                                            stream_options={"include_usage": True}, temperature=0.8)
    parts = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    stream.close()
    return time.perf_counter() - t0


def _wrapper_turn(model: Any, messages: list[dict[str, str]]) -> float:
    """Seconds for the same request through OpenAIChatModel.stream() alone (llm.py, no persona engine)."""
    from roleplay.llm import GenerationSettings

    t0 = time.perf_counter()
    for _ in model.stream(messages, GenerationSettings(temperature=0.8)):
        pass
    return time.perf_counter() - t0


def _tests_stub_comparison(res: SectionResult, lean: StubProcess, reps: int) -> None:
    """Measure what the tests' in-process stub would add, to justify the lean stub (printed, not tabled)."""
    import sys

    from benchlib import ROOT

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from stub_openai import StubOpenAI
    except Exception as exc:  # noqa: BLE001 - only a side note
        res.line(f"(tests/stub_openai.py not importable: {exc}; comparison skipped)")
        return
    finally:
        sys.path.pop(0)
    msgs = [{"role": "user", "content": LEARNER_LINES[2]}]
    test_stub = StubOpenAI().start()
    try:
        test_stub.default = lambda body: PERSONA_REPLY
        a, b = raw_client(test_stub.base_url), raw_client(lean.base_url)
        for _ in range(5):
            _raw_turn(a, msgs), _raw_turn(b, msgs)
        ta, tb = [], []
        for i in range(reps):
            if i % 2:
                ta.append(_raw_turn(a, msgs)); tb.append(_raw_turn(b, msgs))
            else:
                tb.append(_raw_turn(b, msgs)); ta.append(_raw_turn(a, msgs))
        a.close(), b.close()
    finally:
        test_stub.stop()
    res.line(f"stub choice: the same streamed reply read with the raw SDK takes {ms(median(ta))} median from "
             f"tests/stub_openai.py (in-process thread, json.dumps per chunk, Nagle on) vs {ms(median(tb))} from "
             f"benchmarks/stub_server.py (own process, pre-encoded, TCP_NODELAY); the lean stub is used throughout")


def run(stub: StubProcess, quick: bool = False, profile: bool = False) -> SectionResult:
    from benchlib import catalog

    from roleplay.persona import Directive
    from roleplay.voices import detect_break

    res = SectionResult("1", "Persona turn: engine vs raw openai SDK (streaming)")
    reps = 30 if quick else 200
    base = catalog().scenario("missed-deadlines")
    scenario = long_scenario(base)
    stub.configure(text=PERSONA_REPLY)

    probe = _conversation(scenario, TimedModel(chat_model(stub.base_url)))
    assert detect_break(probe, PERSONA_REPLY, Directive(kind="reply", move="other", line="x")) is None, \
        "the benchmark reply must pass the in-character guard"

    timed = TimedModel(chat_model(stub.base_url))
    client = raw_client(stub.base_url)
    plain = chat_model(stub.base_url)
    conv = _conversation(scenario, timed)
    counter = conv.counter
    res.line(f"stub reply: {len(PERSONA_REPLY)} characters, {len(PERSONA_REPLY.split())} words streamed as "
             f"{len(PERSONA_REPLY.split())} deltas with no token delay (the worst case for the ratio: the endpoint "
             f"costs almost nothing, so all client work shows); {reps} repetitions per checkpoint of engine, raw SDK "
             f"and OpenAIChatModel.stream() alone, interleaved in rotating order")
    res.line(f"token counting: {counter.label()}")

    summary: dict[int, dict[str, float]] = {}
    played = 0
    for k in CHECKPOINTS:
        while played < k - 1:  # play up to the turn before the checkpoint
            conv.say(LEARNER_LINES[played])
            played += 1
        snap = Snapshot(conv)
        line = LEARNER_LINES[k - 1]
        # warm-up (connections, caches) outside the measurement
        for _ in range(5):
            snap.restore(conv)
            _engine_turn(conv, timed, line)
            _raw_turn(client, timed.last_messages or [])
        msgs = timed.last_messages or []
        eng, own, raw, wrap = [], [], [], []
        arms = {
            "engine": lambda line=line: _engine_turn(conv, timed, line),
            "raw": lambda msgs=msgs: _raw_turn(client, msgs),
            "wrapper": lambda msgs=msgs: _wrapper_turn(plain, msgs),
        }
        orders = (("engine", "raw", "wrapper"), ("raw", "wrapper", "engine"), ("wrapper", "engine", "raw"))
        gc.collect()
        for i in range(reps):
            snap.restore(conv)
            for arm in orders[i % 3]:  # a Latin square of orders: drift and warm caches cancel out
                out = arms[arm]()
                if arm == "engine":
                    w, o, reply = out
                    eng.append(w), own.append(o)
                elif arm == "raw":
                    raw.append(out)
                else:
                    wrap.append(out)
        assert timed.last_messages == msgs, "the engine must send the same request on every repetition"
        assert reply == PERSONA_REPLY, f"unexpected reply at turn {k}: {reply[:60]!r}"
        sent = timed.last_messages or []
        snap.restore(conv)
        st = conv.state
        summary[k] = {
            "engine": median(eng), "raw": median(raw), "ratio": median(eng) / median(raw),
            "overhead": median(eng) - median(raw), "own": median(own), "own_p95": pct(own, 95),
            "wrapper": median(wrap) - median(raw),
            "messages": len(sent), "prompt": counter.count_messages(sent), "trimmed": st.trimmed_turns,
        }
        res.line(f"turn {k:>2}: request has {len(sent)} messages, ~{summary[k]['prompt']} prompt tokens "
                 f"(budget {scenario.token_budget}, {st.trimmed_turns} turns trimmed); engine {ms(median(eng))} vs "
                 f"raw {ms(median(raw))} (p95 {ms(pct(eng, 95))} vs {ms(pct(raw, 95))}); of the difference, "
                 f"{ms(median(own), 3)} is persona work outside the model stream (p95 {ms(pct(own, 95), 3)}) and "
                 f"{ms(summary[k]['wrapper'], 3)} is OpenAIChatModel.stream() vs the raw SDK "
                 f"({ms(median(wrap))} median)")

    _tests_stub_comparison(res, stub, reps=20 if quick else 60)

    # the same turn 30 with a budget small enough that the history must be trimmed
    tight = long_scenario(base, budget=1000)
    conv.scenario = tight
    snap = Snapshot(conv)
    own_tight = []
    for _ in range(max(10, reps // 4)):
        snap.restore(conv)
        _, o, _ = _engine_turn(conv, timed, LEARNER_LINES[29])
        own_tight.append(o)
    trimmed = conv.state.trimmed_turns
    conv.scenario = scenario
    res.line(f"turn 30 with the token budget cut to 1,000 (forces trimming, {trimmed} turns dropped): engine work "
             f"outside the HTTP call {ms(median(own_tight), 3)} median")

    # what the SQLite store adds per turn when the conversation runs inside a practice session
    res.line(_store_cost(scenario, stub, reps=20 if quick else 60))
    res.line(_client_construction())

    label = " / ".join(str(k) for k in CHECKPOINTS)
    def vals(key: str, fmt: Any) -> str:
        return " / ".join(fmt(summary[k][key]) for k in CHECKPOINTS)
    worst_ratio = max(summary[k]["ratio"] for k in CHECKPOINTS)
    worst_over = max(summary[k]["overhead"] for k in CHECKPOINTS)
    res.row(f"engine turn, median (turn {label})", vals("engine", ms))
    res.row(f"raw SDK stream, same request, median (turn {label})", vals("raw", ms))
    res.row(f"ratio engine / raw (turn {label})", vals("ratio", lambda x: f"{x:.2f}x"), f"<= {RATIO_GOAL:.2f}x",
            verdict(worst_ratio <= RATIO_GOAL))
    res.row(f"engine overhead = engine - raw (turn {label})", vals("overhead", ms), "<= 5 ms",
            verdict(worst_over <= OVERHEAD_GOAL))
    res.row(f"engine CPU outside the HTTP call (turn {label})", vals("own", lambda x: ms(x, 3)), "<= 5 ms",
            verdict(max(summary[k]["own"] for k in CHECKPOINTS) <= OVERHEAD_GOAL))
    client.close()
    plain.close()

    if profile:
        _profile(conv, timed, snap_turn=30)
    return res


def _store_cost(scenario: Any, stub: StubProcess, reps: int) -> str:
    import os
    from pathlib import Path

    from roleplay.llm import GenerationSettings
    from roleplay.practice import start_practice
    from roleplay.store import Store
    from roleplay.voices import LLMVoice

    store = Store(f"sqlite:///{Path(os.environ['ROLEPLAY_DATA_DIR']) / 'persona-bench.db'}")
    timed = TimedModel(chat_model(stub.base_url))
    run = start_practice(store, "bench", scenario, "intermediate", LLMVoice(timed, GenerationSettings(temperature=0.8)))
    run.open()
    conv = run.conversation
    sink = conv.on_turn
    spent: list[float] = []

    def timed_sink(*args: Any) -> None:
        t = time.perf_counter()
        sink(*args)
        spent.append(time.perf_counter() - t)

    conv.on_turn = timed_sink
    per_turn = []
    for i in range(reps):
        spent.clear()
        for _ in run.respond(LEARNER_LINES[i % len(LEARNER_LINES)]):
            pass
        per_turn.append(sum(spent))
    store.close()
    return (f"inside a stored practice session (roleplay.practice + SQLite) each turn also spends "
            f"{ms(median(per_turn))} median (p95 {ms(pct(per_turn, 95))}) in the two store.add_turn commits "
            f"(learner + persona, each with the full state as JSON), on top of the figures above")


def _client_construction() -> str:
    from roleplay.config import load_settings
    from roleplay.llm import OpenAIChatModel

    cfg = load_settings().model_copy(update={"engine": "llm", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"})
    times = []
    for _ in range(10):
        t = time.perf_counter()
        OpenAIChatModel.from_settings(cfg).close()
        times.append(time.perf_counter() - t)
    return (f"building an OpenAIChatModel (openai client and connection pool) costs {ms(median(times))} median; "
            f"the app context builds one and its voice and judge share it (AppContext.model), so sessions "
            f"reuse its connections")


class _CannedModel:
    """Streams the benchmark reply from memory: isolates the engine's own per-turn path for the profiler."""

    name = "llm"
    model = "canned"

    def stream(self, messages: Any, gen: Any = None) -> Any:
        import re

        return iter(re.findall(r"\S+\s*", PERSONA_REPLY))


def _profile(conv: Any, timed: TimedModel, snap_turn: int) -> None:
    import cProfile
    import io
    import pstats

    from roleplay.voices import LLMVoice

    voice = conv.voice
    conv.voice = LLMVoice(_CannedModel(), voice.gen)
    snap = Snapshot(conv)
    prof = cProfile.Profile()
    line = LEARNER_LINES[snap_turn - 1]
    turns = 300
    t0 = time.perf_counter()
    for _ in range(turns):
        snap.restore(conv)
        prof.enable()
        for _ in conv.respond(line):
            pass
        prof.disable()
    conv.voice = voice
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(r"roleplay", 15)
    print(f"\n--- cProfile: {turns} engine turns at turn {snap_turn}, the model replaced by an in-memory stream so "
          f"only the engine's own work shows ({(time.perf_counter() - t0) / turns * 1000:.2f} ms per turn under the "
          f"profiler) ---")
    print(out.getvalue())


# --- against a real endpoint (run.py --base-url) ------------------------------------------------------------------

ENDPOINT_REPLY_TOKENS = 96
"""max_tokens of a persona reply against a real endpoint: room for the two to four sentences a persona says."""
ENDPOINT_SEED = 7


class _Recorder(TimedModel):
    """A TimedModel that also keeps each request and stream of a turn (for its usage) and counts the deltas."""

    def reset(self) -> None:
        super().reset()
        self.sent: list[list[dict[str, str]]] = []
        self.streams: list[Any] = []
        self.deltas = 0
        self.last_delta_at: float | None = None

    def stream(self, messages: Any, gen: Any = None) -> Any:
        self.calls += 1
        self.last_messages = [dict(m) for m in messages]
        self.sent.append(self.last_messages)
        t = time.perf_counter()
        inner = self.inner.stream(messages, gen)
        self.inside += time.perf_counter() - t
        self.streams.append(inner)
        return self._counted(inner)

    def _counted(self, inner: Any) -> Any:
        for delta in self._iterate(inner):
            self.deltas += 1
            self.last_delta_at = time.perf_counter()
            yield delta

    def completion_tokens(self) -> int:
        """Tokens of this turn's replies: the server's usage where it reported one, else the deltas counted."""
        reported = [s.completion_tokens for s in self.streams]
        if reported and all(n is not None for n in reported):
            return sum(reported)
        return self.deltas


def _endpoint_engine_turn(conv: Any, model: _Recorder, line: str) -> dict[str, Any]:
    """One learner turn through the engine against the endpoint: times, tokens and the reply."""
    model.reset()
    reply = ""
    shown_at: float | None = None
    t0 = time.perf_counter()
    for reply in conv.respond(line):
        if shown_at is None and reply:
            shown_at = time.perf_counter()
    end = time.perf_counter()
    first = model.first_delta_at
    last = model.last_delta_at or end
    return {"wall": end - t0, "own": end - t0 - model.inside, "calls": model.calls, "reply": reply.strip(),
            "first": None if first is None else first - t0, "shown": None if shown_at is None else shown_at - t0,
            "tokens": model.completion_tokens(), "generating": None if first is None else last - first}


def _endpoint_raw_turn(client: Any, endpoint: Endpoint, messages: list[dict[str, str]], gen: Any,
                       usage: bool) -> dict[str, Any]:
    """The same request with the raw openai SDK: streamed with the engine's parameters, every chunk consumed."""
    params: dict[str, Any] = {"temperature": gen.temperature, "max_tokens": gen.max_tokens, "seed": gen.seed}
    if usage:
        params["stream_options"] = {"include_usage": True}
    parts: list[str] = []
    first: float | None = None
    last: float | None = None
    tokens: int | None = None
    t0 = time.perf_counter()
    stream = client.chat.completions.create(model=endpoint.model, messages=messages, stream=True, **params)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            if first is None:
                first = last
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    stream.close()
    end = time.perf_counter()
    return {"wall": end - t0, "first": None if first is None else first - t0, "reply": "".join(parts).strip(),
            "tokens": tokens if tokens is not None else len(parts),
            "generating": None if first is None else (last or end) - first}


def _rate(turns: list[dict[str, Any]]) -> float:
    """Median tokens per second from the first delta to the last, over single-call turns of more than one token."""
    rates = [(t["tokens"] - 1) / t["generating"] for t in turns
             if t["generating"] and t["tokens"] > 1 and t.get("calls", 1) == 1]
    return median(rates) if rates else float("nan")


def _med(turns: list[dict[str, Any]], key: str) -> float:
    values = [t[key] for t in turns if t[key] is not None]
    return median(values) if values else float("nan")


def _secs(value: float) -> str:
    return "n/a" if math.isnan(value) else (f"{value:.2f} s" if value >= 1 else ms(value, 0))


def run_endpoint(endpoint: Endpoint, quick: bool = False) -> SectionResult:
    """Section 1 against a real endpoint: an engine turn vs the same request with the raw SDK, first token, tokens/s."""
    import openai
    from benchlib import catalog

    from roleplay.errors import RoleplayError
    from roleplay.llm import GenerationSettings
    from roleplay.persona import Conversation, OfflineVoice
    from roleplay.voices import LLMVoice

    res = SectionResult("1", f"Persona turn against {endpoint.base_url}: engine vs raw openai SDK (streaming)")
    reps = 2 if quick else 5
    scenario = long_scenario(catalog().scenario("missed-deadlines"))
    gen = GenerationSettings(temperature=0.0, max_tokens=ENDPOINT_REPLY_TOKENS, seed=ENDPOINT_SEED)
    model = endpoint.chat_model()
    timed = _Recorder(model)
    client = endpoint.raw_client()
    voice = LLMVoice(timed, gen)
    conv = Conversation(scenario, "intermediate", voice, seed=7)
    conv.open()
    res.line(f"model {endpoint.model!r}; temperature 0, seed {ENDPOINT_SEED}, max_tokens {ENDPOINT_REPLY_TOKENS} for "
             f"both arms; {reps} repetitions per checkpoint of engine and raw SDK, alternating which goes first; the "
             f"history before each checkpoint is played with the offline voice (same request size, no model calls)")

    summary: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    played = 0
    for k in CHECKPOINTS:
        conv.voice = OfflineVoice()
        while played < k - 1:
            conv.say(LEARNER_LINES[played])
            played += 1
        conv.voice = voice
        snap = Snapshot(conv)
        line = LEARNER_LINES[k - 1]
        eng: list[dict[str, Any]] = []
        raw: list[dict[str, Any]] = []
        messages: list[dict[str, str]] | None = None
        for i in range(reps + 1):  # the first pair warms the connection and the server's prompt cache
            order = ("engine", "raw") if i % 2 else ("raw", "engine")
            if messages is None:
                order = ("engine", "raw")
            for arm in order:
                try:
                    if arm == "engine":
                        snap.restore(conv)
                        out = _endpoint_engine_turn(conv, timed, line)
                        if messages is None and timed.sent:
                            messages = timed.sent[0]  # the first request, before any regeneration
                        if i:
                            eng.append(out)
                    elif messages is not None:
                        out = _endpoint_raw_turn(client, endpoint, messages, gen, model.stream_usage)
                        if i:
                            raw.append(out)
                except (RoleplayError, openai.OpenAIError) as exc:
                    errors.append(f"turn {k} {arm}: {one_line(exc)}")
        snap.restore(conv)
        if not eng or not raw:
            summary[k] = {}
            res.line(f"turn {k:>2}: no complete pair of turns ({len(eng)} engine, {len(raw)} raw)")
            if not eng and not raw:
                res.line("every request at this checkpoint failed; the later checkpoints are skipped")
                summary.update({later: {} for later in CHECKPOINTS if later > k})
                break
            continue
        same = sum(1 for e, r in zip(eng, raw) if e["reply"] == r["reply"])
        calls = sum(e["calls"] for e in eng)
        summary[k] = {"engine": _med(eng, "wall"), "raw": _med(raw, "wall"), "eng": eng, "raws": raw,
                      "first_raw": _med(raw, "first"), "first_eng": _med(eng, "first"), "shown": _med(eng, "shown")}
        summary[k]["ratio"] = summary[k]["engine"] / summary[k]["raw"]
        res.line(f"turn {k:>2}: request of {len(messages or [])} messages, ~{conv.counter.count_messages(messages or [])} "
                 f"prompt tokens; engine {_secs(summary[k]['engine'])} vs raw {_secs(summary[k]['raw'])} median "
                 f"({summary[k]['ratio']:.2f}x); first token raw {_secs(summary[k]['first_raw'])}, engine "
                 f"{_secs(summary[k]['first_eng'])}, shown to the learner {_secs(summary[k]['shown'])}; engine work "
                 f"outside the model stream {ms(_med(eng, 'own'), 1)}; {calls} model calls for {len(eng)} turns "
                 f"(more than one: the guard regenerated a reply); reply tokens {_med(eng, 'tokens'):.0f} engine / "
                 f"{_med(raw, 'tokens'):.0f} raw; same text in {same} of {min(len(eng), len(raw))} pairs")
        res.line(f"turn {k:>2} reply: {eng[-1]['reply'][:100]!r}")
    distinct = {err: errors.count(err) for err in errors}
    for err, times in list(distinct.items())[:5]:
        res.line(f"error{f' ({times}x)' if times > 1 else ''}: {err}")
    if len(distinct) > 5:
        res.line(f"... {len(distinct) - 5} more distinct errors")
    client.close()
    model.close()

    done = [k for k in CHECKPOINTS if summary[k]]
    label = " / ".join(str(k) for k in done)
    if not done:
        res.row("engine turn vs raw SDK against the endpoint", "failed: " + (errors[0] if errors else "no turns"),
                "", "failed")
        return res

    def vals(key: str, fmt: Any) -> str:
        return " / ".join(fmt(summary[k][key]) for k in done)

    every_eng = [t for k in done for t in summary[k]["eng"]]
    every_raw = [t for k in done for t in summary[k]["raws"]]
    worst = max(summary[k]["ratio"] for k in done)
    res.row(f"endpoint turn, engine vs raw SDK, median (turn {label})",
            " / ".join(f"{_secs(summary[k]['engine'])} vs {_secs(summary[k]['raw'])}" for k in done))
    res.row(f"ratio engine / raw, endpoint (turn {label})", vals("ratio", lambda x: f"{x:.2f}x"),
            f"<= {RATIO_GOAL:.2f}x", verdict(worst <= RATIO_GOAL))
    res.row(f"first token, raw SDK vs engine, endpoint (turn {label})",
            " / ".join(f"{_secs(summary[k]['first_raw'])} vs {_secs(summary[k]['first_eng'])}" for k in done))
    res.row(f"first text shown to the learner, endpoint (turn {label}; the guard holds text back)",
            vals("shown", _secs))
    res.row("tokens/s while generating, raw SDK vs engine, endpoint",
            f"{_rate(every_raw):.1f} vs {_rate(every_eng):.1f}")
    return res
