"""9. Scenes: a learner turn in a three-person meeting against a one-person conversation, offline and over the stub.

The anchor is the one-person scenario measured in the same run with the same learner lines: the ratio is what a
scene costs per learner turn (it reads the turn once, then up to `meeting.max_replies` people answer, each a model
call on the LLM engine).
"""

from __future__ import annotations

import time
from typing import Any

from benchlib import SectionResult, StubProcess, chat_model, median, ms, pct

ONE, THREE = "missed-deadlines", "team-meeting-silent-expert"
LINES = {
    ONE: ["Thanks for making time today.", "How have the last few weeks been for you?",
          "It sounds like a lot has landed on you at once.", "What would help most right now?",
          "Tell me more about the mornings.", "So the timing is the hard part."],
    THREE: ["Thanks for joining, all. We have thirty minutes and one decision to prepare.",
            "Tomasz, what is your read of the weekend plan?", "Hannah, welcome. We were on the two options.",
            "What does each of you need from the move?", "Callum, what worries you about the staged move?",
            "So the risk is the copy time, and the cost is six weeks of double running."],
}
REPLY = "Fine. Let's keep it short: the copy time worries me, and I'd like the numbers before Thursday."


def _turns(scenario: Any, voice: Any, lines: list[str], seed: int) -> tuple[list[float], int]:
    """Seconds per learner turn (read, decide, every persona turn spoken) and the persona turns said."""
    from roleplay.persona import Conversation

    conv = Conversation(scenario, "novice", voice=voice, seed=seed)
    conv.open()
    opening = len(conv.transcript.turns)
    out = []
    for line in lines:
        t = time.perf_counter()
        for _ in conv.respond_scene(line):
            pass
        out.append(time.perf_counter() - t)
    return out, sum(1 for t in conv.transcript.turns[opening:] if t.speaker == "persona")


def _compare(res: SectionResult, label: str, voice: Any, reps: int) -> None:
    from benchlib import catalog

    cat = catalog()
    times: dict[str, list[float]] = {ONE: [], THREE: []}
    said: dict[str, int] = {ONE: 0, THREE: 0}
    for scn_id in (ONE, THREE):  # warm-up: encoder, caches, connections
        _turns(cat.scenario(scn_id), voice, LINES[scn_id][:2], 0)
    for rep in range(reps):
        for scn_id in ((ONE, THREE) if rep % 2 == 0 else (THREE, ONE)):  # interleaved, alternating order
            t, n = _turns(cat.scenario(scn_id), voice, LINES[scn_id], rep)
            times[scn_id] += t
            said[scn_id] += n
    one, three = median(times[ONE]), median(times[THREE])
    per_one = said[ONE] / (reps * len(LINES[ONE]))
    per_three = said[THREE] / (reps * len(LINES[THREE]))
    res.line(f"{label}: one person {ms(one, 1)} median / {ms(pct(times[ONE], 95), 1)} p95 per learner turn "
             f"({per_one:.2f} persona turns each); three people {ms(three, 1)} / {ms(pct(times[THREE], 95), 1)} "
             f"({per_three:.2f} persona turns each); {reps} conversations of {len(LINES[ONE])} turns each")
    res.row(f"scene turn, 3 people vs 1 ({label}), median", f"{three / one:.2f}x",
            "reported, not a goal")
    res.row(f"scene turn per persona turn said, 3 people vs 1 ({label})",
            f"{(three / per_three) / (one / per_one):.2f}x", "reported, not a goal")


def run(stub: StubProcess, quick: bool = False) -> SectionResult:
    from roleplay.persona import OfflineVoice
    from roleplay.voices import LLMVoice

    res = SectionResult("9", "Scenes: three people vs one")
    reps = 4 if quick else 20
    _compare(res, "offline engine", OfflineVoice(), reps)
    stub.configure(text=REPLY)
    model = chat_model(stub.base_url)
    try:
        _compare(res, "LLM voice over the stub", LLMVoice(model), max(2, reps // 2))
    finally:
        model.close()
    return res
