"""3. Grading one 30-turn transcript with LLMJudge; 4. batch grading 1,000 transcripts with bounded concurrency."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchlib import (
    ENDPOINT_TIMEOUT,
    LEARNER_LINES,
    Endpoint,
    SectionResult,
    StubProcess,
    chat_model,
    long_scenario,
    median,
    ms,
    one_line,
    pct,
    verdict,
)

EVIDENCE = LEARNER_LINES[2]  # a line every generated transcript contains, so quoted evidence always verifies
BATCH_LATENCY = 0.200


class Recording:
    """Wraps a ChatModel's `structured`: keeps the last messages and the time spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = inner.model
        self.messages: list[dict[str, str]] = []
        self.inside = 0.0

    def structured(self, messages: Any, schema: Any, gen: Any = None) -> Any:
        self.messages = [dict(m) for m in messages]
        t = time.perf_counter()
        try:
            return self.inner.structured(messages, schema, gen)
        finally:
            self.inside += time.perf_counter() - t


def judge_reply(rubric: Any) -> str:
    """A valid JudgeReply for `rubric` whose evidence quotes a line present in every benchmark transcript."""
    return json.dumps({"criteria": [{
        "criterion_id": c.id,
        "checks": [{"id": ch.id, "answer": "partial"} for ch in c.checks],
        "level": 2,
        "evidence": [EVIDENCE],
        "rationale": f"Some {c.name.lower()}, not yet consistent across the conversation.",
        "better_alternative": "What has the last month been like for you?",
    } for c in rubric.criteria]})


def configure_judge(stub: StubProcess, latency: float = 0.0) -> None:
    from benchlib import catalog

    cat = catalog()
    stub.configure(latency=latency, json_replies={f"({r.id})": judge_reply(r) for r in cat.rubrics.values()})


def transcript(scenario: Any, lines: list[str], seed: int = 0) -> Any:
    """A transcript played with the offline engine (success disabled so every line is used)."""
    from roleplay.persona import Conversation

    conv = Conversation(long_scenario(scenario), "intermediate", seed=seed)
    conv.open()
    for line in lines:
        conv.say(line)
    return conv.transcript


def run_single(stub: StubProcess, quick: bool = False) -> SectionResult:
    from benchlib import catalog

    from roleplay.llm_judge import JudgeReply, LLMJudge, fence_transcript, render_rubric
    from roleplay.tokens import counter_for

    res = SectionResult("3", "Grading one 30-turn transcript (LLMJudge)")
    configure_judge(stub)
    cat = catalog()
    scenario = cat.scenario("missed-deadlines")
    rubric = cat.rubric_for(scenario)
    tr = transcript(scenario, LEARNER_LINES[:30])
    model = Recording(chat_model(stub.base_url))
    judge = LLMJudge(model)

    judge.grade(tr, rubric, scenario)  # warm-up
    stub.reset()
    grade = judge.grade(tr, rubric, scenario)
    calls = stub.stats()["chat_requests"]

    walls, outside = [], []
    for _ in range(10 if quick else 40):
        model.inside = 0.0
        t = time.perf_counter()
        judge.grade(tr, rubric, scenario)
        wall = time.perf_counter() - t
        walls.append(wall)
        outside.append(wall - model.inside)

    counter = counter_for("gpt-4o-mini")
    prompt = counter.count_messages(model.messages)
    transcript_tokens = counter.count(tr.to_text())
    fenced_tokens = counter.count(fence_transcript(tr, "0" * 12))
    rubric_tokens = counter.count(render_rubric(rubric))
    schema_tokens = counter.count(json.dumps(JudgeReply.model_json_schema()))
    other = prompt - transcript_tokens - rubric_tokens
    exact = "exact" if not counter.estimated else "estimates"
    res.line(f"transcript: {len(tr.turns)} turns ({len(tr.learner_turns)} learner), rubric '{rubric.id}' with "
             f"{len(rubric.criteria)} criteria; exemplar anchors off (no exemplar store)")
    res.line(f"LLM calls for one grade: {calls} counted by the stub (grade.calls = {grade.calls})")
    res.line(f"token counts are {exact}: {counter.label()} (the gpt-4o-mini encoding is not in the local "
             f"tiktoken cache)" if counter.estimated else f"token counts are exact: {counter.label()}")
    res.line(f"prompt {prompt} tokens = transcript {transcript_tokens} (as fenced L/P lines: {fenced_tokens}) + "
             f"rubric {rubric_tokens} + instructions, scenario briefing and message framing {other}; the "
             f"JudgeReply JSON Schema sent as response_format adds ~{schema_tokens} more on endpoints that count it")
    res.line(f"one grade against a zero-latency stub: {ms(median(walls))} median (p95 {ms(pct(walls, 95))}); "
             f"judge work outside the model call {ms(median(outside))} (prompt, quote checks, scoring)")
    res.row("LLM calls to grade a 30-turn transcript", str(calls), "1", verdict(calls == 1))
    sampled = LLMJudge(model, samples=3).grade(tr, rubric, scenario)
    res.line(f"tokens per grade as the server reported: one call {grade.prompt_tokens} prompt + "
             f"{grade.completion_tokens} completion; self-consistency with 3 samples "
             f"(ROLEPLAY_JUDGE_SAMPLES=3) {sampled.calls} calls, {sampled.prompt_tokens} prompt + "
             f"{sampled.completion_tokens} completion")
    res.row("calls per grade, 1 sample vs 3 (self-consistency)", f"{grade.calls} vs {sampled.calls}",
            "1 by default")
    if grade.prompt_tokens and sampled.prompt_tokens:
        res.row("prompt tokens per grade, 3 samples vs 1", f"{sampled.prompt_tokens / grade.prompt_tokens:.2f}x")
    res.row(f"judge prompt tokens vs transcript + rubric ({'exact' if exact == 'exact' else 'estimate'})",
            f"{prompt} vs {transcript_tokens} + {rubric_tokens} = {transcript_tokens + rubric_tokens} "
            f"({prompt / (transcript_tokens + rubric_tokens):.2f}x)")
    return res


def run_batch(stub: StubProcess, quick: bool = False) -> SectionResult:
    from benchlib import catalog

    from roleplay.llm_judge import JudgeReply, LLMJudge

    res = SectionResult("4", "Batch grading with bounded concurrency")
    total = 100 if quick else 1000
    configure_judge(stub, latency=BATCH_LATENCY)
    cat = catalog()
    scenarios = sorted(cat.scenarios.values(), key=lambda s: s.id)
    rng = random.Random(42)
    distinct = []
    for i in range(50 if quick else 100):
        others = [ln for ln in LEARNER_LINES if ln != EVIDENCE]
        lines = rng.sample(others, rng.randint(7, 15))
        lines.insert(rng.randint(0, len(lines)), EVIDENCE)
        scn = scenarios[i % len(scenarios)]
        distinct.append((scn, transcript(scn, lines, seed=i)))
    jobs = []
    for i in range(total):
        scn, tr = distinct[i % len(distinct)]
        jobs.append((tr.model_copy(update={"session_id": f"bench-{i}"}), cat.rubric_for(scn), scn))
    res.line(f"{total} transcripts ({len(distinct)} distinct conversations of 8-16 learner turns over "
             f"{len(scenarios)} scenarios and {len(cat.rubrics)} rubrics), one shared OpenAIChatModel, "
             f"stub answers each request after {BATCH_LATENCY * 1000:.0f} ms")

    for workers in (16, 50):
        model = chat_model(stub.base_url)
        judge = LLMJudge(model)
        judge.grade(*jobs[0])  # connection warm-up
        stub.reset()
        errors: list[str] = []
        latencies: list[float] = []

        def one(job: tuple[Any, Any, Any], judge: Any = judge, errors: list[str] = errors,
                latencies: list[float] = latencies) -> int:
            t = time.perf_counter()
            try:
                return judge.grade(*job).calls
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")
                return 0
            finally:
                latencies.append(time.perf_counter() - t)

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            calls = sum(pool.map(one, jobs))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        served = stub.stats()["chat_requests"]
        model.close()
        ideal = total * BATCH_LATENCY / workers
        eff = ideal / wall
        res.line(f"N={workers}: {wall:.2f} s wall vs ideal {ideal:.2f} s -> efficiency {eff:.0%}; "
                 f"{served} requests served, {calls} judge calls, {len(errors)} errors; per grade "
                 f"p50 {ms(median(latencies), 0)} / p95 {ms(pct(latencies, 95), 0)}; client CPU "
                 f"{cpu:.2f} s ({cpu / total * 1000:.1f} ms per grade)")
        if errors:
            res.line(f"first error: {errors[0][:200]}")
        res.row(f"batch {total} grades, N={workers}: wall vs ideal {total} x 0.2 s / {workers}",
                f"{wall:.2f} s vs {ideal:.2f} s (efficiency {eff:.0%})")
        cpu_per_grade = cpu / total
    schema = []
    for _ in range(50):
        t = time.perf_counter()
        JudgeReply.model_json_schema()
        schema.append(time.perf_counter() - t)
    res.line(f"all {total} grades share one process: at N=50 the client needs {cpu_per_grade * 1000:.1f} ms CPU per "
             f"grade (openai SDK request/response handling, pydantic, quote checks) against an ideal pace of "
             f"{BATCH_LATENCY / 50 * 1000:.1f} ms per grade, so the GIL caps throughput; "
             f"building JudgeReply's JSON Schema would add {ms(median(schema))} per call, which "
             f"OpenAIChatModel.structured() avoids by caching it per class")
    return res


# --- against a real endpoint (run.py --base-url) ------------------------------------------------------------------


class _Refusals(logging.Handler):
    """Collects what `roleplay.llm` logs when the endpoint refuses a structured-output mode."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "refuses" in message:
            self.said.append(message)


def _grade_in(endpoint: Endpoint, mode: str, job: tuple[Any, Any, Any], reps: int) -> dict[str, Any]:
    """Grade `job` `reps` times in structured `mode` with a fresh client; what happened, never an exception."""
    from roleplay.errors import RoleplayError
    from roleplay.llm_judge import LLMJudge

    model = endpoint.chat_model(structured_mode=mode, deadline=ENDPOINT_TIMEOUT)
    judge = LLMJudge(model, model_name=endpoint.model, max_tokens=endpoint.max_grade_tokens)
    refusals = _Refusals()
    logger = logging.getLogger("roleplay.llm")
    logger.addHandler(refusals)
    walls: list[float] = []
    grades: list[Any] = []
    failure = ""
    try:
        for _ in range(reps):
            t = time.perf_counter()
            try:
                grades.append(judge.grade(*job))
            except RoleplayError as exc:
                failure = one_line(exc)
                break
            walls.append(time.perf_counter() - t)
    finally:
        logger.removeHandler(refusals)
        model.close()
    used = model.structured_mode
    return {"mode": mode, "used": used, "refused": used != mode, "said": refusals.said, "walls": walls,
            "grades": grades, "failure": failure}


def _mode_value(out: dict[str, Any]) -> tuple[str, str]:
    """The table cell and status of one structured mode."""
    walls, grades = out["walls"], out["grades"]
    if out["refused"]:
        status = next((m.group(1) for said in out["said"] if (m := re.search(r"\(HTTP (\d+)", said))), None)
        served = (f"; graded in {out['used']}: {median(walls):.1f} s median of {len(walls)}" if walls else
                  (f"; then failed: {out['failure'][:80]}" if out["failure"] else ""))
        return f"refused{f' (HTTP {status})' if status else ''}{served}", "refused"
    if not walls:
        return f"failed: {out['failure'][:120]}", "failed"
    calls = median([g.calls for g in grades])
    value = f"{median(walls):.1f} s median of {len(walls)} ({calls:.0f} call{'s' if calls != 1 else ''} each)"
    if out["failure"]:
        return f"{value}; the next grade failed", "partly failed"
    return value, "ok"


def run_endpoint(endpoint: Endpoint, quick: bool = False) -> SectionResult:
    """Section 3 against a real endpoint: one transcript graded by LLMJudge in each structured-output mode."""
    from benchlib import catalog

    from roleplay.llm import STRUCTURED_MODES
    from roleplay.tokens import counter_for

    res = SectionResult("3", f"Grading one transcript against {endpoint.base_url} (LLMJudge, per structured mode)")
    turns = 10 if quick else 30
    reps = 1 if quick else 3
    cat = catalog()
    scenario = cat.scenario("missed-deadlines")
    rubric = cat.rubric_for(scenario)
    tr = transcript(scenario, LEARNER_LINES[:turns])
    modes = [endpoint.structured_mode] if endpoint.structured_mode else list(STRUCTURED_MODES)
    counter = counter_for(endpoint.model)
    res.line(f"transcript: {len(tr.turns)} turns ({len(tr.learner_turns)} learner, ~{counter.count(tr.to_text())} "
             f"tokens), rubric '{rubric.id}' with {len(rubric.criteria)} criteria; {reps} grade(s) per mode, each "
             f"with a fresh client so one mode's refusal does not steer the next; temperature 0, max_tokens "
             f"{endpoint.max_grade_tokens}; one grade call may take {ENDPOINT_TIMEOUT:.0f} s in all")
    for mode in modes:
        out = _grade_in(endpoint, mode, (tr, rubric, scenario), reps)
        value, status = _mode_value(out)
        res.row(f"grade latency, structured mode {mode}", value, "", status)
        for said in out["said"][:2]:
            res.line(f"{mode}: {said[:300]}")
        for grade, wall in zip(out["grades"], out["walls"]):
            supported = sum(1 for c in grade.criteria if c.supported)
            rate = (f", {grade.completion_tokens / wall:.1f} completion tokens/s overall"
                    if grade.completion_tokens else "")
            res.line(f"{mode}: {wall:.1f} s in mode {grade.structured_mode}, {grade.calls} call(s), "
                     f"{grade.prompt_tokens} prompt + {grade.completion_tokens} completion tokens{rate}; "
                     f"overall {grade.overall:.2f}, {supported} of {len(grade.criteria)} criteria with "
                     f"verified evidence")
        if out["failure"]:
            res.line(f"{mode}: {out['failure']}")
    return res
