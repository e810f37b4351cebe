"""The model boundary against a real local model server (llama.cpp with SmolLM2-135M-Instruct).

A 135M model is a protocol test, not a judge of quality: these tests check that what the endpoint really sends
(streams, grammar-constrained JSON, refusals) goes through the engine, the guard, the judge and the reader to a sound
end, never that the model plays or grades well. Every call is bounded by a small `max_tokens` and a deadline.
Skipped, with the reason, when the realmodel extra is not installed (see tests/realmodel.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from content import catalog
from pydantic import BaseModel, Field
from realmodel import RealModel, real_model  # noqa: F401  (fixture)

from roleplay.errors import ProviderError
from roleplay.llm import GenerationSettings, Message, OpenAIChatModel
from roleplay.voices import INSTRUCTION_MARK, LLMVoice, detect_break

pytestmark = [pytest.mark.realmodel, pytest.mark.slow, pytest.mark.timeout(600)]

DEADLINE = 120.0  # seconds one model call may take in all, on a loaded 2-core machine


def client(server: RealModel, **options: Any) -> OpenAIChatModel:
    settings: dict[str, Any] = {"model": server.model, "base_url": server.base_url, "timeout": 60.0,
                                "max_retries": 1, "backoff_base": 0.2, "deadline": DEADLINE,
                                "reply_max_tokens": 48, "structured_max_tokens": 160}
    settings.update(options)
    return OpenAIChatModel(**settings)


class Recording:
    """A chat model that records the exact messages of every streamed request before the client sends them."""

    def __init__(self, model: OpenAIChatModel) -> None:
        self.model = model
        self.sent: list[list[dict[str, str]]] = []

    def stream(self, messages: Sequence[Message], gen: GenerationSettings | None = None) -> Iterator[str]:
        self.sent.append([dict(m) for m in messages])
        return self.model.stream(messages, gen)


def test_a_practice_turn_streams_through_the_engine_and_guard(real_model: RealModel, tmp_path: Any) -> None:  # noqa: F811
    from roleplay.practice import start_practice
    from roleplay.store import Store

    scenario = catalog().scenario("missed-deadlines")
    recording = Recording(client(real_model))
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    try:
        run = start_practice(store, "ana", scenario, "novice",
                             LLMVoice(recording, GenerationSettings(temperature=0.7, max_tokens=48)))  # type: ignore[arg-type]
        run.open()
        learner = ["Hi Sam, thanks for making time. How have the last few weeks been for you?",
                   "That sounds like a lot. What has been making the mornings hard?"]
        for line in learner:
            updates = list(run.respond(line))
            assert updates and updates[-1].strip(), "a reply was shown"
            shown = updates[-1]
        state = run.state
        stored = store.get_session(run.session_id)
        assert [t.speaker for t in stored.turns] == ["persona", "learner", "persona", "learner", "persona"]
        assert stored.turns[-1].text == shown  # what is stored is what was shown in full: nothing half-written
        for brk in state.breaks:  # in character, or repaired by regenerating or by the scripted line
            assert brk.repair in ("regenerated", "scripted")
        last = [b for b in state.breaks if b.turn == state.learner_turns]
        if not (last and last[-1].repair == "scripted"):  # the model's own words were shown: they are in character
            from roleplay.persona import Directive

            assert detect_break(run.conversation, shown, Directive(kind="reply", line="", move="other")) is None
        # the messages sent suit a strict chat template
        for sent in recording.sent:
            assert [m["role"] for m in sent][:2] == ["system", "user"]
            assert sum(m["role"] == "system" for m in sent) == 1
            assert all(a["role"] != b["role"] for a, b in itertools.pairwise(sent[1:]))
            assert INSTRUCTION_MARK in sent[-1]["content"]
        # no hidden fact the engine has not revealed reaches the model: at most its vague hint
        assert recording.sent
        for sent in recording.sent:
            text = " ".join(m["content"] for m in sent)
            for fact in scenario.hidden_facts:
                if fact.id in state.revealed_ids:
                    continue
                assert fact.fact not in text and fact.reveal_line not in text
                leaked = _grams(fact.fact) & _grams(text)
                assert not leaked, (fact.id, leaked)  # not even four words of the fact in a row
        secret = scenario.fact("caring-for-parent")
        if secret.id not in state.revealed_ids:
            assert not any("stroke" in m["content"] for sent in recording.sent for m in sent)
    finally:
        store.close()
        recording.model.close()


def _grams(text: str, n: int = 4) -> set[str]:
    """Every run of `n` words, lower-cased, within one clause (a "/" separates texts)."""
    out: set[str] = set()
    for part in text.lower().split("/"):
        words = re.findall(r"[a-z']+", part)
        out |= {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
    return out


@pytest.mark.parametrize("mode", ["json_object", "prompt"])
def test_a_grade_ends_valid_or_for_a_facilitator(real_model: RealModel, mode: str) -> None:  # noqa: F811
    from roleplay.grader import Grade
    from roleplay.llm_judge import LLMJudge
    from roleplay.transcript import Transcript, Turn

    cat = catalog()
    scenario = cat.scenario("missed-deadlines")
    full = cat.rubric_for(scenario)
    rubric = full.model_copy(update={"criteria": full.criteria[:1]})  # one criterion keeps the reply short
    transcript = Transcript(scenario_id=scenario.id, level="novice", turns=[
        Turn(speaker="persona", text=scenario.opening_line),
        Turn(speaker="learner", text="What has been getting in the way of the Friday reports for you lately?"),
        Turn(speaker="persona", text="It's been a lot, honestly. Mornings are hard."),
        Turn(speaker="learner", text="It sounds like the mornings have been really hard for you."),
    ])
    model = client(real_model, structured_mode=mode, structured_max_tokens=200)
    try:
        grade = LLMJudge(model, max_tokens=200).grade(transcript, rubric, scenario)
    except ProviderError as exc:  # a clear error the caller shows, with the reply kept: never a crash
        message = str(exc)
        assert "\n" not in message and "did not return a valid JudgeReply" in message and f"mode {mode}" in message
        assert exc.last_reply is not None
        return
    finally:
        model.close()
    assert isinstance(grade, Grade) and grade.structured_mode == mode
    assert [c.criterion_id for c in grade.criteria] == [c.id for c in rubric.criteria]
    for c in grade.criteria:
        assert 1 <= c.level <= 4
        assert c.supported or "facilitator" in c.rationale.lower()  # unverifiable evidence: a facilitator decides
    assert grade.calls in (1, 2) and grade.raw_reply


class Verdict(BaseModel):
    score: int = Field(description="1 to 5.")
    reason: str = Field(description="A few words.")


def test_structured_mode_negotiation_from_json_schema(real_model: RealModel, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    model = client(real_model, structured_mode="json_schema", structured_max_tokens=40)
    messages = [{"role": "system", "content": "You rate answers."},
                {"role": "user", "content": "Rate this answer from 1 to 5: 'I listened and asked what was wrong.'"}]
    outcomes: list[str] = []
    try:
        with caplog.at_level(logging.INFO, logger="roleplay.llm"):
            for _ in range(2):
                try:
                    reply = model.structured(messages, Verdict, GenerationSettings(temperature=0))
                except ProviderError as exc:  # the tiny model may run out of tokens inside a string
                    assert "did not return a valid Verdict" in str(exc) and "mode json_object" in str(exc)
                    outcomes.append("invalid")
                else:
                    assert reply.mode == "json_object" and 1 <= reply.attempts <= 2
                    assert isinstance(reply.parsed.score, int)
                    json.loads(reply.text[reply.text.find("{"):reply.text.rfind("}") + 1])
                    outcomes.append("valid")
    finally:
        model.close()
    assert model.structured_mode == "json_object" and model.configured_structured_mode == "json_schema"
    refusals = [r for r in caplog.records if "refuses structured mode json_schema" in r.getMessage()]
    assert len(refusals) == 1, "one refusal, remembered: the second call goes straight to json_object"
    assert "HTTP 500" in refusals[0].getMessage()
    assert not [r for r in caplog.records if "retry" in r.getMessage()], "a refusal is never retried"


def test_the_llm_reader_falls_back_cleanly(real_model: RealModel) -> None:  # noqa: F811
    from roleplay.llm_reader import LLMReader
    from roleplay.reader import ReadContext

    scenario = catalog().scenario("missed-deadlines")
    model = client(real_model, structured_mode="json_schema")
    try:
        reader = LLMReader(model, max_tokens=64)
        reading = reader.read("What has been going on for you lately?",
                              ReadContext(scenario=scenario, persona_lines=[scenario.opening_line]))
    finally:
        model.close()
    assert reading.reader == "llm" or reading.reader.startswith("offline (llm failed")
    assert reading.moves
    assert model.structured_mode == "json_object"  # the reader's call negotiated past json_schema too
