"""Token counts with a real tiktoken Encoding built offline, budget trimming, and the labelled estimate."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiktoken

from content import catalog
from roleplay.persona import Conversation, OfflineVoice
from roleplay.voices import LLMVoice
from roleplay.tokens import TokenCounter, counter_for, trim_to_budget


def byte_encoding() -> tiktoken.Encoding:
    """A real tiktoken Encoding (byte-level BPE with a few merges), built without any download."""
    ranks = {bytes([i]): i for i in range(256)}
    for pair in (b"th", b"he", b"in", b"er", b"an", b" t", b"the", b" the"):
        ranks[pair] = len(ranks)
    return tiktoken.Encoding(name="test_bytes", pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\w+| ?\d+| ?[^\s\w]+|\s+""",
                             mergeable_ranks=ranks, special_tokens={})


def test_exact_counts_come_from_the_encoding() -> None:
    enc = byte_encoding()
    counter = TokenCounter(enc, "test_bytes")
    assert not counter.estimated and counter.label() == "exact (test_bytes)"
    assert counter.count("the") == len(enc.encode("the")) == 1
    assert counter.count("xyz") == 3


def test_trimming_keeps_instructions_and_recent_turns() -> None:
    counter = TokenCounter(byte_encoding(), "test_bytes")
    system = {"role": "system", "content": "You are Sam."}
    history = [{"role": "user" if i % 2 else "assistant", "content": f"turn {i} " + "words " * 20} for i in range(30)]
    final = {"role": "system", "content": "Stay in character."}
    messages = [system, *history, final]
    budget = counter.count_messages(messages) // 3
    trimmed, dropped = trim_to_budget(messages, budget, counter)
    assert dropped > 0
    assert counter.count_messages(trimmed) <= budget
    assert trimmed[0] == system and trimmed[-1] == final
    assert trimmed[-2] == history[-1] and trimmed[-5] == history[-4]
    assert trimmed[1]["content"] == f"[{dropped} earlier turns omitted to fit the context budget]"
    assert history[0] not in trimmed


def test_under_budget_nothing_is_trimmed() -> None:
    counter = TokenCounter(byte_encoding(), "test_bytes")
    msgs = [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]
    assert trim_to_budget(msgs, 1000, counter) == (msgs, 0)


def test_long_llm_session_is_trimmed_to_the_scenario_budget() -> None:
    scenario = catalog().scenario("missed-deadlines").model_copy(update={"token_budget": 4000})
    counter = TokenCounter(byte_encoding(), "test_bytes")
    sent: list[list[dict[str, str]]] = []

    class Echo:
        def stream(self, messages, gen=None):  # type: ignore[no-untyped-def]
            sent.append(messages)
            yield "Mm. It has been a busy stretch, that's all, and I'd rather not get into it today."

    conv = Conversation(scenario, "expert", LLMVoice(Echo()), counter=counter)
    conv.open()
    for i in range(30):
        conv.say(f"Could you tell me about week {i}, and what happened with the reports in that week?")
        if conv.state.ended:
            break
    assert conv.state.trimmed_turns > 0
    assert counter.count_messages(sent[-1]) <= 4000
    assert "Could you tell me about week" in sent[-1][-1]["content"]  # the learner's last line, instruction folded in


def test_without_a_cached_encoding_counts_are_a_labelled_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    counter_for.cache_clear()
    counter = counter_for("gpt-4o-mini")
    counter_for.cache_clear()
    assert counter.estimated and "estimate" in counter.label()
    assert counter.count("abcdefgh") == 2
    conv = Conversation(catalog().scenario("missed-deadlines"), "novice", OfflineVoice(), counter=counter)
    conv.open()
    conv.say("What's been going on?")
    assert conv.state.tokens_estimated
    assert all(t.tokens for t in conv.transcript.turns)
