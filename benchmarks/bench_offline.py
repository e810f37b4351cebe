"""6. The offline engine: reply time per turn on every shipped scenario, and memory per live conversation."""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from benchlib import SectionResult, median, ms, pct

TURNS = 12
GENERIC_LINES = [
    "Hi, thanks for making time to talk today.",
    "I wanted to talk about how things have been going lately.",
    "What's been on your mind over the last few weeks?",
    "It sounds like it's been a difficult stretch.",
    "Tell me more about what that has been like for you.",
    "That sounds really frustrating.",
    "So you've been carrying a lot of this on your own.",
    "I really value the work you've done here.",
    "How are you feeling about it right now?",
    "What else would help me understand?",
    "You're worried about how this will look to others.",
    "What matters most to you in all of this?",
]
"""12 learner turns that fit any shipped scenario: no blame, no next steps, so no conversation ends early."""


def _play(scenario: Any, seed: int, times: list[float] | None = None) -> Any:
    from roleplay.persona import Conversation

    conv = Conversation(scenario, "intermediate", seed=seed)
    conv.open()
    for line in GENERIC_LINES[:TURNS]:
        t = time.perf_counter()
        for _ in conv.respond(line):
            pass
        if times is not None:
            times.append(time.perf_counter() - t)
    return conv


def run(quick: bool = False) -> SectionResult:
    from benchlib import catalog

    res = SectionResult("6", "Offline engine and memory")
    cat = catalog()
    scenarios = sorted(cat.scenarios.values(), key=lambda s: s.id)
    convs_per = 10 if quick else 40
    all_times: list[float] = []
    per: list[str] = []
    for scn in scenarios:
        _play(scn, seed=0)  # warm-up
        times: list[float] = []
        for seed in range(convs_per):
            conv = _play(scn, seed=seed, times=times)
            assert conv.state.learner_turns == TURNS and not conv.state.ended, f"{scn.id} ended early"
        all_times += times
        per.append(f"{scn.id} {ms(median(times), 3)} / {ms(pct(times, 95), 3)}")
        res.line(f"{scn.id}: {ms(median(times), 3)} median, {ms(pct(times, 95), 3)} p95 per turn "
                 f"({convs_per} conversations x {TURNS} turns)")
    res.row(f"offline reply per turn, median / p95 ({len(scenarios)} scenarios x {TURNS} turns)",
            f"{ms(median(all_times), 3)} / {ms(pct(all_times, 95), 3)}")

    live = 50 if quick else 200
    gc.collect()
    tracemalloc.start()
    try:
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        keep = [_play(scenarios[i % len(scenarios)], seed=i) for i in range(live)]
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_session = (after - before) / live
    turns_kept = sum(len(c.transcript.turns) for c in keep)
    res.line(f"memory: {live} live conversations of {TURNS} learner turns ({turns_kept // live} turns each with the "
             f"opening) hold {(after - before) / 1e6:.2f} MB by tracemalloc = {per_session / 1024:.1f} KiB per "
             f"session (state, transcript, token counts; the scenario and catalog are shared and not counted)")
    res.row(f"memory per live session ({TURNS} turns, tracemalloc, {live} sessions)", f"{per_session / 1024:.1f} KiB")
    del keep
    res.line(_llm_voice_memory())
    return res


def _llm_voice_memory() -> str:
    """What an LLM session adds: its voice (AppContext.voice(); the model client itself is shared per context)."""
    from roleplay.config import load_settings
    from roleplay.context import AppContext

    cfg = load_settings().model_copy(update={"engine": "llm", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"})
    context = AppContext(cfg)
    context.voice()
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        voices = [context.voice() for _ in range(20)]
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for v in voices:
        v.model.close()
    return (f"an LLM session also holds its own voice from AppContext.voice(): +{(after - before) / 20 / 1024:.1f} "
            f"KiB of Python heap per session (its httpx pool and SSL context are mostly native memory, not counted)")
