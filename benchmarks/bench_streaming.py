"""2. Streaming: from the endpoint sending the first token to the engine receiving it and the learner seeing text."""

from __future__ import annotations

import time

from benchlib import (
    LEARNER_LINES,
    PERSONA_REPLY,
    SectionResult,
    Snapshot,
    StubProcess,
    TimedModel,
    chat_model,
    long_scenario,
    median,
    ms,
    pct,
    raw_client,
    verdict,
)

TOKEN_DELAY = 0.010  # 100 tokens/s, a typical hosted-model speed


def _first_chunk_time(stub: StubProcess, before: int) -> float:
    stats = stub.stats()
    sent = [t for seq, t in stats["first_chunk"] if seq > before]
    if len(sent) != 1:
        raise RuntimeError(f"expected one streamed request, the stub saw {len(sent)}")
    return float(sent[0])


def run(stub: StubProcess, quick: bool = False) -> SectionResult:
    from benchlib import catalog
    from roleplay.llm import GenerationSettings
    from roleplay.persona import Conversation
    from roleplay.voices import GUARD_PREFIX_CHARS, LLMVoice

    res = SectionResult("2", "Streaming: first token")
    reps = 5 if quick else 15
    stub.configure(text=PERSONA_REPLY)
    scenario = long_scenario(catalog().scenario("missed-deadlines"))
    timed = TimedModel(chat_model(stub.base_url))
    conv = Conversation(scenario, "intermediate", LLMVoice(timed, GenerationSettings(temperature=0.8)), seed=7)
    conv.open()
    for line in LEARNER_LINES[:9]:
        conv.say(line)
    snap = Snapshot(conv)
    line = LEARNER_LINES[9]
    client = raw_client(stub.base_url)
    stub.configure(text=PERSONA_REPLY, token_delay=TOKEN_DELAY)

    engine_recv, learner_recv, raw_recv, learner_from_start, updates = [], [], [], [], []
    engine_total, raw_total = [], []
    first_len = 0
    for i in range(reps + 1):  # the first pair warms connections and is dropped
        order = ("engine", "raw") if i % 2 == 0 else ("raw", "engine")
        for which in order:
            before = stub.stats()["chat_requests"]
            if which == "engine":
                snap.restore(conv)
                timed.reset()
                t0 = time.perf_counter()
                shown_at, n, first = None, 0, ""
                for text in conv.respond(line):
                    n += 1
                    if shown_at is None:
                        shown_at, first = time.perf_counter(), text
                done = time.perf_counter() - t0
                sent = _first_chunk_time(stub, before)
                if i:
                    engine_recv.append((timed.first_delta_at or 0.0) - sent)
                    learner_recv.append((shown_at or 0.0) - sent)
                    learner_from_start.append((shown_at or 0.0) - t0)
                    updates.append(n)
                    first_len = len(first)
                    engine_total.append(done)
            else:
                msgs = timed.last_messages or []
                got = None
                t0 = time.perf_counter()
                stream = client.chat.completions.create(model="stub-model", messages=msgs, stream=True,
                                                        stream_options={"include_usage": True}, temperature=0.8)
                for chunk in stream:
                    if got is None and chunk.choices and chunk.choices[0].delta.content:
                        got = time.perf_counter()
                stream.close()
                done = time.perf_counter() - t0
                sent = _first_chunk_time(stub, before)
                if i:
                    raw_recv.append((got or 0.0) - sent)
                    raw_total.append(done)
    client.close()
    stub.configure(text=PERSONA_REPLY)

    words = PERSONA_REPLY.split()
    held = next(i for i in range(1, len(words) + 1) if len(" ".join(words[:i])) + 1 >= GUARD_PREFIX_CHARS)
    res.line(f"stub streams the {len(words)}-token reply at {TOKEN_DELAY * 1000:.0f} ms per token (~"
             f"{1 / TOKEN_DELAY:.0f} tokens/s); turn 10 of a conversation; {reps} runs each, engine and raw SDK "
             f"alternated; times are from the stub's send of the first content chunk (same monotonic clock)")
    res.line(f"raw SDK receives the first token {ms(median(raw_recv), 3)} after it is sent (p95 "
             f"{ms(pct(raw_recv, 95), 3)}); the engine {ms(median(engine_recv), 3)} (p95 {ms(pct(engine_recv, 95), 3)})")
    res.line(f"the in-character guard holds text back until {GUARD_PREFIX_CHARS} characters have arrived "
             f"(GUARD_PREFIX_CHARS), here the first {held} tokens, so the learner's first text comes "
             f"~{held - 1} x {TOKEN_DELAY * 1000:.0f} ms after the first token: {ms(median(learner_recv), 1)} "
             f"median (p95 {ms(pct(learner_recv, 95), 1)}); the first update shows {first_len} characters at once; "
             f"{median(updates):.0f} updates per reply")
    res.line(f"from the learner's turn to the first text: {ms(median(learner_from_start), 1)} median")
    res.line(f"at this realistic pace the whole turn takes {ms(median(engine_total), 0)} through the engine vs "
             f"{ms(median(raw_total), 0)} with the raw SDK: ratio {median(engine_total) / median(raw_total):.3f}x")
    res.row("first token: sent by endpoint -> received by the engine (raw SDK)",
            f"{ms(median(engine_recv), 2)} ({ms(median(raw_recv), 2)})")
    res.row("whole turn at 100 tokens/s: engine / raw SDK",
            f"{ms(median(engine_total), 0)} / {ms(median(raw_total), 0)} "
            f"({median(engine_total) / median(raw_total):.3f}x)", "<= 1.10x",
            verdict(median(engine_total) / median(raw_total) <= 1.10))
    res.row("first token: sent by endpoint -> first text delivered to the learner",
            f"{ms(median(learner_recv), 1)} (guard holds {GUARD_PREFIX_CHARS} chars = {held} tokens)")
    return res
