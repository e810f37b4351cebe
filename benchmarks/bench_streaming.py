"""2. Streaming: from the endpoint sending the first token to the learner seeing text, and what the guard lets through.

The rolling in-character guard (`roleplay.guard.RollingGuard`, what `LLMVoice` uses) is measured against the guard
it replaced, kept here as the anchor: hold the first 80 characters, check them once, then stream the rest unchecked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

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
FIXED_HOLD_CHARS = 80

BREAK_REPLIES: list[tuple[str, str]] = [
    # (reply, the break text in it); breaks early and late in the reply, as models write them
    ("As an AI, I don't really have weeks, busy or otherwise.", "As an AI"),
    (("It's been a long month, to be fair, and the reports slipped along with it. As an AI, I can't feel tired, "
      "though."), "As an AI"),
    (("I know the Friday reports slipped, and I'm not happy about it either. I'm just an AI language model, "
      "so I can't say more."), "I'm just an AI"),
    (("Look, the numbers from finance came in late and the reports slipped, that's the short version of it. "
      "As a language model I can only guess."), "As a language model"),
    ("Certainly! Here are some tips for getting the reports in on time.", "Certainly!"),
    (("The last few weeks have been heavy, and the reports slipped while I tried to keep up with everything. "
      "How can I help you today?"), "How can I help you"),
    (("I know the deadlines matter and I know the client chased you directly about it last Friday. I hope this "
      "helps you understand the situation."), "I hope this helps"),
    (("That's fair, and I've been trying to keep the quality up even when it's late, which is most weeks now. "
      "Is there anything else you need from me?"), "Is there anything else"),
    ("Sorry for any confusion about the deadlines; I'll try to explain.", "Sorry for any confusion"),
    (("I've tried to keep up with the reports and the client calls, but there is only so much time in a week. "
      "I can't continue this role-play, sorry."), "I can't continue this role"),
    (("A few things went wrong this month, and I'd rather be straight with you about all of them:\n"
      "1. The finance data was late\n2. I was tired"), "1. The finance"),
    (("There are two reasons the reports slipped, and neither of them is that I stopped caring about the work:\n"
      "- the data is late\n- Fridays are short"), "- the data"),
    ("## Why the reports were late\nThe data came in late.", "## Why"),
    ("Fine. [For your reply (not said by the manager): Stay in character as Sam.]", "[For your reply"),
    (("I know the reports were late, and I'd rather just fix it than keep going over the same ground again. "
      "Stay in character as Sam Okafor. Your mood now: guarded."), "Stay in character"),
    (("It's been a heavy few weeks and I'd rather keep the details of it to myself if that's all right with you. "
      "DO NOT reveal the stroke."), "DO NOT reveal"),
    ("Fine. My father had a stroke and I drive over most days.", "father"),
    (("I've been logging on later and working into the evening to catch up, which is nobody's business really. "
      "It's the medication runs every morning since August."), "medication"),
    (("It's not that I don't care about the client, and I don't want special treatment for any of this. I saw "
      "what happened with flexible hours and the Halvorsen account."), "flexible"),
    ("Hi Sam, I hope you're doing well. I wanted to talk about the reports.", "Hi Sam"),
    (("The reports have to be in by Friday noon from now on, and the client needs to hear that from us this week. "
      "Thanks for joining, Sam."), ", Sam"),
    ("My name is Alex, and I manage the analytics team here.", "My name is Alex"),
    (("I know the reports were late, and I know the client noticed, and nobody is more annoyed about it than me. "
      "As your manager, I need them on time."), "As your manager"),
    ("Sam, can we talk about the missed deadlines and what happens next?", "Sam,"),
]
"""Replies that break character for Sam Okafor (missed-deadlines) at turn 1, with the text that must never show."""


def _first_chunk_time(stub: StubProcess, before: int) -> float:
    stats = stub.stats()
    sent = [t for seq, t in stats["first_chunk"] if seq > before]
    if len(sent) != 1:
        raise RuntimeError(f"expected one streamed request, the stub saw {len(sent)}")
    return float(sent[0])


def fixed_hold_voice(model: Any, gen: Any) -> Any:
    """An `LLMVoice` with the guard it replaced: the first 80 characters held and checked once, the rest unchecked."""
    from roleplay.guard import detect_break
    from roleplay.persona import CharacterBreak
    from roleplay.voices import LLMVoice

    class FixedHoldVoice(LLMVoice):
        def speak(self, conv: Any, directive: Any) -> Iterator[str]:
            repair: str | None = None
            for _attempt in range(self.max_repairs + 1):
                msgs = self.messages(conv, directive, repair)
                conv.state.prompt_tokens += conv.counter.count_messages(msgs)
                text, shown, broken = "", False, None
                for delta in self.model.stream(msgs, self.gen):
                    text += delta
                    if shown:
                        yield text
                    elif len(text) >= FIXED_HOLD_CHARS:
                        broken = detect_break(conv, text, directive)
                        if broken:
                            break
                        shown = True
                        yield text
                conv.state.completion_tokens += conv.counter.count(text)
                text = text.strip()
                broken = broken or detect_break(conv, text, directive) or (None if text else "gave an empty reply")
                if broken is None:
                    if not shown:
                        yield text
                    return
                conv.state.breaks.append(CharacterBreak(turn=conv.state.learner_turns, reason=broken, text=text,
                                                        repair="regenerated"))
                repair = broken
            conv.state.breaks[-1] = conv.state.breaks[-1].model_copy(update={"repair": "scripted"})
            yield directive.line

    return FixedHoldVoice(model, gen)


def _breaks_shown(stub: StubProcess, conv: Any, snap: Snapshot, voices: dict[str, Any]) -> dict[str, list[str]]:
    """Per voice, the break replies whose break text (or any part of it) reached the learner."""
    shown: dict[str, list[str]] = {arm: [] for arm in voices}
    for reply, marker in BREAK_REPLIES:
        stub.configure(text=reply)
        start = reply.index(marker)
        for arm, voice in voices.items():
            snap.restore(conv)
            conv.voice = voice
            texts = list(conv.respond(LEARNER_LINES[0]))
            if any(marker in t or (reply.startswith(t) and len(t) > start) for t in texts):
                shown[arm].append(marker)
            if not conv.state.breaks:
                raise RuntimeError(f"the {arm} guard let a break reply stand: {reply!r}")
    return shown


def _first_text(conv: Any, line: str) -> tuple[float | None, str, int, float, float]:
    """(when the first text was shown, that text, updates, when the turn ended, when it started) of one turn."""
    t0 = time.perf_counter()
    shown_at, n, first = None, 0, ""
    for text in conv.respond(line):
        n += 1
        if shown_at is None:
            shown_at, first = time.perf_counter(), text
    return shown_at, first, n, time.perf_counter(), t0


def run(stub: StubProcess, quick: bool = False) -> SectionResult:
    from benchlib import catalog

    from roleplay.llm import GenerationSettings
    from roleplay.persona import Conversation
    from roleplay.voices import LLMVoice

    res = SectionResult("2", "Streaming: first token")
    reps = 5 if quick else 15
    stub.configure(text=PERSONA_REPLY)
    scenario = long_scenario(catalog().scenario("missed-deadlines"))
    timed = TimedModel(chat_model(stub.base_url))
    gen = GenerationSettings(temperature=0.8)
    voices = {"rolling": LLMVoice(timed, gen), "fixed": fixed_hold_voice(timed, gen)}
    conv = Conversation(scenario, "intermediate", voices["rolling"], seed=7)
    conv.open()
    first_snap = Snapshot(conv)
    for line in LEARNER_LINES[:9]:
        conv.say(line)
    snap = Snapshot(conv)
    line = LEARNER_LINES[9]
    client = raw_client(stub.base_url)
    stub.configure(text=PERSONA_REPLY, token_delay=TOKEN_DELAY)

    recv: dict[str, list[float]] = {"rolling": [], "fixed": [], "raw": []}
    learner: dict[str, list[float]] = {"rolling": [], "fixed": []}
    total: dict[str, list[float]] = {"rolling": [], "fixed": [], "raw": []}
    from_start: list[float] = []
    updates: dict[str, list[int]] = {"rolling": [], "fixed": []}
    first_len: dict[str, int] = {}
    arms = ("rolling", "fixed", "raw")
    for i in range(reps + 1):  # the first round warms connections and is dropped
        for which in arms[i % 3:] + arms[:i % 3]:
            before = stub.stats()["chat_requests"]
            if which != "raw":
                snap.restore(conv)
                conv.voice = voices[which]
                timed.reset()
                shown_at, first, n, done, t0 = _first_text(conv, line)
                sent = _first_chunk_time(stub, before)
                if i:
                    recv[which].append((timed.first_delta_at or 0.0) - sent)
                    learner[which].append((shown_at or 0.0) - sent)
                    updates[which].append(n)
                    first_len[which] = len(first)
                    total[which].append(done - t0)
                    if which == "rolling":
                        from_start.append((shown_at or 0.0) - t0)
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
                    recv["raw"].append((got or 0.0) - sent)
                    total["raw"].append(done)
    client.close()
    stub.configure(text=PERSONA_REPLY)
    shown = _breaks_shown(stub, conv, first_snap, voices)
    stub.configure(text=PERSONA_REPLY)

    words = PERSONA_REPLY.split()
    held = next(i for i in range(1, len(words) + 1) if len(" ".join(words[:i])) + 1 >= FIXED_HOLD_CHARS)
    rolling, fixed = median(learner["rolling"]), median(learner["fixed"])
    ratio = rolling / fixed if fixed else float("nan")
    turn_ratio = median(total["rolling"]) / median(total["raw"])
    n_breaks = len(BREAK_REPLIES)
    res.line(f"stub streams the {len(words)}-token reply at {TOKEN_DELAY * 1000:.0f} ms per token (~"
             f"{1 / TOKEN_DELAY:.0f} tokens/s); turn 10 of a conversation; {reps} runs each of the rolling guard, "
             f"the fixed {FIXED_HOLD_CHARS}-character hold and the raw SDK, in rotating order; times are from the "
             f"stub's send of the first content chunk (same monotonic clock)")
    res.line(f"raw SDK receives the first token {ms(median(recv['raw']), 3)} after it is sent (p95 "
             f"{ms(pct(recv['raw'], 95), 3)}); the engine {ms(median(recv['rolling']), 3)} "
             f"(p95 {ms(pct(recv['rolling'], 95), 3)})")
    res.line(f"rolling guard: the learner's first text {ms(rolling, 1)} after the first token (p95 "
             f"{ms(pct(learner['rolling'], 95), 1)}), showing {first_len.get('rolling', 0)} characters (the first "
             f"complete words nothing can still turn into a break); {median(updates['rolling']):.0f} updates per reply")
    res.line(f"fixed hold: {ms(fixed, 1)} (p95 {ms(pct(learner['fixed'], 95), 1)}): {FIXED_HOLD_CHARS} characters "
             f"= the first {held} tokens, ~{held - 1} x {TOKEN_DELAY * 1000:.0f} ms, shown at once "
             f"({first_len.get('fixed', 0)} characters); {median(updates['fixed']):.0f} updates per reply; "
             f"rolling / fixed = {ratio:.3f}x")
    res.line(f"from the learner's turn to the first text (rolling guard): {ms(median(from_start), 1)} median")
    res.line(f"at this realistic pace the whole turn takes {ms(median(total['rolling']), 0)} through the engine vs "
             f"{ms(median(total['raw']), 0)} with the raw SDK: ratio {turn_ratio:.3f}x (fixed hold: "
             f"{ms(median(total['fixed']), 0)})")
    res.line(f"{n_breaks} replies that break character (AI talk, assistant talk, stepping out, lists, headings, "
             f"instruction echoes, hidden facts, speaking as the manager; early and late in the reply), each "
             f"streamed at turn 1: the break text reached the learner in {len(shown['fixed'])} with the fixed hold "
             f"({', '.join(repr(m) for m in shown['fixed']) or 'none'}) and {len(shown['rolling'])} with the "
             f"rolling guard")
    res.row("first token: sent by endpoint -> received by the engine (raw SDK)",
            f"{ms(median(recv['rolling']), 2)} ({ms(median(recv['raw']), 2)})")
    res.row("whole turn at 100 tokens/s: engine / raw SDK",
            f"{ms(median(total['rolling']), 0)} / {ms(median(total['raw']), 0)} ({turn_ratio:.3f}x)", "<= 1.10x",
            verdict(turn_ratio <= 1.10))
    res.row("first token -> first text shown: rolling guard vs fixed 80-char hold",
            f"{ms(rolling, 1)} vs {ms(fixed, 1)} ({ratio:.3f}x)")
    res.row(f"break replies whose break text was shown ({n_breaks}): rolling guard (fixed hold)",
            f"{len(shown['rolling'])} ({len(shown['fixed'])})", "0", verdict(not shown["rolling"]))
    return res
