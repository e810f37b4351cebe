"""The LLM persona over real HTTP to the local stub: streaming, storage, faults, repairs and earned reveals."""

from __future__ import annotations

from typing import Any

import pytest
from content import catalog
from stub_openai import Delay, Status, StubOpenAI

from roleplay.errors import ProviderError
from roleplay.llm import OpenAIChatModel
from roleplay.practice import resume_practice, start_practice
from roleplay.store import Store
from roleplay.voices import LLMVoice

CALM = "Mm. It's been a busy few weeks, that's all I can really say about it right now, honestly."


def model(stub: StubOpenAI, timeout: float = 2.0) -> OpenAIChatModel:
    return OpenAIChatModel(model="stub-model", base_url=stub.base_url, api_key="test", timeout=timeout,
                           max_retries=3, backoff_base=0.01, retry_after_max=0.05)


def persona_reply(body: dict[str, Any]) -> str:
    """Answer like a model that follows the turn instruction: reveal only when told to."""
    final = body["messages"][-1]["content"]
    if "now tell them" in final:
        return "Okay... my dad had a stroke in August, and most mornings I drive over to help him. I'm sorry I didn't say."
    return CALM


LEARNER = [
    "Hi Sam, thanks for making time.",
    "What has been going on for you lately?",
    "It sounds like the mornings have been really hard.",
    "That sounds exhausting. Thank you for telling me.",
    "Tell me more about what a typical morning looks like.",
    "So you've been working evenings to catch up.",
    "I really value the work you do on this account.",
    "What else would help me understand?",
    "How are you feeling about the reports now?",
    "What would make Fridays work for you?",
]


def test_ten_turn_llm_session_streams_persists_recovers_and_reveals_when_earned(stub_llm: StubOpenAI,
                                                                                tmp_path: Any) -> None:
    stub_llm.default = persona_reply
    stub_llm.token_delay = 0.0
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    scenario = catalog().scenario("missed-deadlines")
    voice = LLMVoice(model(stub_llm, timeout=0.5))
    run = start_practice(store, "ana", scenario, "intermediate", voice)
    run.open()
    streamed_updates = []
    for i, line in enumerate(LEARNER, 1):
        if i == 2:
            stub_llm.queue(Status(429, retry_after=0.01))          # rate limited once
        if i == 3:
            stub_llm.queue(Delay(1.5, CALM))                       # one timeout
        if i == 5:
            stub_llm.queue("As an AI language model, I can't share personal details, but here are some tips.")
        updates = list(run.respond(line))
        streamed_updates.append(len(updates))
        assert updates[-1] and "AI language model" not in updates[-1]
    st = run.state
    # streamed: long replies arrive in more than one update
    assert max(streamed_updates) > 1
    # the scripted break was caught, recorded and repaired by regenerating
    assert [b.reason for b in st.breaks] == ["talks about being an AI or a language model"]
    assert st.breaks[0].turn == 5 and st.breaks[0].repair == "regenerated"
    # reveal only once its condition held, per the recorded state
    fact = scenario.fact("caring-for-parent")
    assert st.revealed, "the learner earned the fact"
    reveal = st.revealed[0]
    assert reveal.fact_id == "caring-for-parent"
    assert reveal.turn >= fact.reveal_when.min_turn
    assert reveal.trust >= fact.reveal_when.min_trust + scenario.levels.intermediate.reveal_trust_offset
    chats = stub_llm.chat_requests()
    told = [i for i, r in enumerate(chats) if "now tell them" in r["messages"][-1]["content"]]
    assert told, "the model is told to reveal once the condition holds"
    assert "stroke" in chats[told[0]]["messages"][-1]["content"]
    assert len(told) <= len(st.revealed) + len(st.breaks), "one reveal instruction per reveal (plus repairs)"
    secret = scenario.fact("caring-for-parent")
    other = scenario.fact("afraid-to-ask")
    for r in chats[: told[0]]:
        sent = " ".join(m["content"] for m in r["messages"])
        # an unrevealed fact's text never reaches the model; at most its vague hint does
        assert "stroke" not in sent and secret.fact not in sent and secret.hint in r["messages"][-1]["content"]
    for r in chats:
        assert other.fact not in " ".join(m["content"] for m in r["messages"]) or "afraid-to-ask" in st.revealed_ids
    # instructions sit before the history and after it, folded into the learner's last turn
    last = chats[-1]["messages"]
    assert last[0]["role"] == "system" and [m["role"] for m in last[1:]] == ["user", "assistant"] * 9 + ["user"]
    assert last[-1]["content"].startswith(LEARNER[-1] + "\n\n[For your reply (not said by the manager):")
    # every turn is stored, in order, with the state
    stored = store.get_session(run.session_id)
    assert len(stored.turns) == 1 + 2 * len(LEARNER)
    assert [t.speaker for t in stored.turns[:3]] == ["persona", "learner", "persona"]
    assert stored.state["revealed"][0]["fact_id"] == "caring-for-parent"
    assert stored.engine == "llm"
    store.close()


def test_persistent_break_falls_back_to_the_scripted_line(stub_llm: StubOpenAI, tmp_path: Any) -> None:
    stub_llm.default = lambda body: "Certainly! Here are some tips to help you manage your time better:\n1. Plan\n2. Do"
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    scenario = catalog().scenario("missed-deadlines")
    run = start_practice(store, "ana", scenario, "novice", LLMVoice(model(stub_llm)))
    run.open()
    reply = list(run.respond("Is everything okay?"))[-1]
    lines = scenario.script.reactions["closed_question"]
    assert reply in lines.guarded + lines.warming + lines.open
    assert [b.repair for b in run.state.breaks] == ["regenerated", "regenerated", "scripted"]
    assert len(stub_llm.chat_requests()) == 3
    store.close()


def test_a_hidden_fact_leaked_early_is_rejected(stub_llm: StubOpenAI, tmp_path: Any) -> None:
    stub_llm.queue("Fine. My father had a stroke and I drive over most mornings for his medication, okay?", CALM)
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    run = start_practice(store, "ana", catalog().scenario("missed-deadlines"), "expert", LLMVoice(model(stub_llm)))
    run.open()
    reply = list(run.respond("Is everything okay?"))[-1]
    assert reply == CALM
    assert run.state.breaks[0].reason == "reveals a hidden fact before it was earned"
    assert run.state.revealed == []
    store.close()


def test_endpoint_down_is_a_clear_error_and_the_line_can_be_sent_again(stub_llm: StubOpenAI, tmp_path: Any) -> None:
    stub_llm.queue(*[Status(503)] * 4, CALM)
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    run = start_practice(store, "ana", catalog().scenario("missed-deadlines"), "novice", LLMVoice(model(stub_llm)))
    run.open()
    with pytest.raises(ProviderError, match="after 4 attempts"):
        list(run.respond("What's been going on?"))
    # an exchange is stored whole or not at all: no learner line without its reply, so the line can be sent again
    assert [t.speaker for t in store.get_session(run.session_id).turns] == ["persona"]
    assert run.stale
    again = resume_practice(store, run.session_id, catalog(), LLMVoice(model(stub_llm)))
    assert again.say("What's been going on?") == CALM
    assert [t.speaker for t in store.get_session(run.session_id).turns] == ["persona", "learner", "persona"]
    store.close()


def test_a_session_continues_in_another_process_from_the_store(stub_llm: StubOpenAI, tmp_path: Any) -> None:
    stub_llm.default = persona_reply
    url = f"sqlite:///{tmp_path / 'rp.db'}"
    first = Store(url)
    run = start_practice(first, "ana", catalog().scenario("missed-deadlines"), "novice", LLMVoice(model(stub_llm)))
    run.open()
    for line in LEARNER[:3]:
        list(run.respond(line))
    first.close()
    second = Store(url)
    resumed = resume_practice(second, run.session_id, catalog(), LLMVoice(model(stub_llm)))
    assert resumed.state.learner_turns == 3
    list(resumed.respond(LEARNER[3]))
    history = stub_llm.chat_requests()[-1]["messages"]
    assert {"role": "user", "content": LEARNER[0]} in history
    assert len(second.get_session(run.session_id).turns) == 9
    second.close()


def test_the_messages_sent_suit_a_strict_chat_template(stub_llm: StubOpenAI, tmp_path: Any) -> None:
    """One system message, then turns alternating from a user turn; the turn instruction in the last user turn."""
    stub_llm.default = persona_reply
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    scenario = catalog().scenario("missed-deadlines")
    run = start_practice(store, "ana", scenario, "novice", LLMVoice(model(stub_llm)))
    run.open()
    list(run.respond(LEARNER[0]))
    list(run.respond(LEARNER[1]))
    first, second = (r["messages"] for r in stub_llm.chat_requests())
    assert [m["role"] for m in first] == ["system", "user"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    for sent in (first, second):
        assert scenario.opening_line in sent[0]["content"]  # the opening line is told, not an assistant turn
        assert sum(m["role"] == "system" for m in sent) == 1
    assert first[1]["content"].startswith(LEARNER[0] + "\n\n[For your reply (not said by the manager): Stay in "
                                          f"character as {scenario.persona.name}.")
    assert second[1] == {"role": "user", "content": LEARNER[0]}  # earlier turns carry no instruction
    assert second[2] == {"role": "assistant", "content": CALM}
    assert second[3]["content"].startswith(LEARNER[1] + "\n\n[For your reply")
    store.close()


def test_strict_roles_joins_what_trimming_and_a_failed_turn_leave() -> None:
    from roleplay.voices import strict_roles

    messages = [{"role": "system", "content": "You are Sam."},
                {"role": "system", "content": "[4 earlier turns omitted to fit the context budget]"},
                {"role": "assistant", "content": "Fine."},
                {"role": "user", "content": "Hello?"}, {"role": "user", "content": "Are you there?"},
                {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "Good."}]
    assert strict_roles(messages) == [
        {"role": "system", "content": "You are Sam.\n\n[4 earlier turns omitted to fit the context budget]\n\n"
                                      "Earlier in the conversation you said: \"Fine.\""},
        {"role": "user", "content": "Hello?\n\nAre you there?"},
        {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "Good."}]
