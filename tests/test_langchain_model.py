"""One provider contract over real HTTP for every networked `ChatModel`, and the LangChain adapter in the app.

The contract runs against three clients: `OpenAIChatModel` and `LangChainChatModel("openai:...")` against the
OpenAI stub, and `LangChainChatModel("anthropic:...")` against the Anthropic Messages stub.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from content import catalog
from pydantic import BaseModel
from stub_anthropic import StubAnthropic, ToolUse, stub_anthropic  # noqa: F401 - the fixture
from stub_openai import Delay, Status, Truncated, words

from roleplay.config import load_settings
from roleplay.context import AppContext
from roleplay.errors import ConfigError, ProviderError
from roleplay.llm import ChatModel, GenerationSettings, OpenAIChatModel
from roleplay.llm_judge import LLMJudge
from roleplay.llm_langchain import LangChainChatModel, chat_model_from_settings, endpoint_label, langchain_provider
from roleplay.persona import Conversation
from roleplay.practice import engine_notice
from roleplay.transcript import Transcript, Turn
from roleplay.voices import LLMVoice

USER = [{"role": "system", "content": "You are Dana, a senior engineer."},
        {"role": "user", "content": "Can we talk about the release?"}]
PROMPT_TOKENS = 12  # both stubs count words of every message, the system prompt included


class Verdict(BaseModel):
    score: int
    reason: str


@dataclass
class Client:
    """One client under the contract and the stub it talks to."""

    kind: str
    stub: Any
    build: Callable[..., ChatModel]
    max_tokens_key: str
    overloaded: int
    mode: str

    def make(self, **overrides: Any) -> ChatModel:
        options: dict[str, Any] = {"base_url": self.stub.base_url, "api_key": "test-key", "timeout": 2.0,
                                   "max_retries": 2, "backoff_base": 0.001}
        options.update(overrides)
        model = self.build(**options)
        _open.append(model)
        return model


_open: list[Any] = []


@pytest.fixture(autouse=True)
def close_models() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def _openai(**options: Any) -> ChatModel:
    return OpenAIChatModel(model="persona-model", **options)


def _langchain(model: str) -> Callable[..., ChatModel]:
    return lambda **options: LangChainChatModel(model=model, **options)


@pytest.fixture(params=["openai-client", "langchain-openai", "langchain-anthropic"])
def client(request: pytest.FixtureRequest) -> Client:
    if request.param == "openai-client":
        return Client("openai", request.getfixturevalue("stub_llm"), _openai, "max_tokens", 503, "json_schema")
    if request.param == "langchain-openai":
        return Client("langchain-openai", request.getfixturevalue("stub_llm"), _langchain("openai:persona-model"),
                      "max_tokens", 503, "json_schema")  # (also as max_completion_tokens, which OpenAI reads)
    return Client("langchain-anthropic", request.getfixturevalue("stub_anthropic"),
                  _langchain("anthropic:claude-test"), "max_tokens", 529, "tool_calling")


def last_user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)


# -- the contract ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_is_a_chat_model_named_llm(client: Client) -> None:
    model = client.make()
    assert isinstance(model, ChatModel) and model.name == "llm"


def test_chat_returns_text_and_usage(client: Client) -> None:
    client.stub.queue("Sure, what about it?")
    reply = client.make().chat(USER)
    assert reply.text == "Sure, what about it?"
    assert (reply.prompt_tokens, reply.completion_tokens) == (PROMPT_TOKENS, 4)
    assert reply.model in ("persona-model", "claude-test")
    assert "Sure, what about it?" in reply.raw
    [request] = client.stub.chat_requests()
    assert "You are Dana, a senior engineer." in str(request)
    assert last_user_text(request) == "Can we talk about the release?"


def test_stream_delivers_deltas_in_order_and_joins_to_the_reply(client: Client) -> None:
    text = "I hear you, but the deadline was not mine to set."
    client.stub.queue(text, text)
    client.stub.token_delay = 0.02
    model = client.make()
    stream = model.stream(USER)
    arrivals = [(time.monotonic(), delta) for delta in stream]
    assert [delta for _, delta in arrivals] == words(text)
    assert arrivals[-1][0] - arrivals[0][0] >= 0.02 * (len(arrivals) - 2)  # as they arrive, not all at the end
    assert stream.text == "".join(d for _, d in arrivals) == model.chat(USER).text
    assert (stream.prompt_tokens, stream.completion_tokens) == (PROMPT_TOKENS, len(text.split()))
    assert client.stub.chat_requests()[0]["stream"] is True


def test_stream_interrupted_after_text_is_an_error_not_a_short_reply(client: Client) -> None:
    client.stub.queue(Truncated("The review went badly and I am upset.", after=3), "never used")
    received: list[str] = []
    with pytest.raises(ProviderError, match="stream interrupted") as caught:
        received.extend(client.make().stream(USER))
    assert received == ["The ", "review ", "went "]
    assert caught.value.attempts == 1 and client.stub.pending == 1


def test_structured_output_parses_into_the_pydantic_model(client: Client) -> None:
    client.stub.queue({"score": 4, "reason": "acknowledged the concern"})
    reply = client.make().structured(USER, Verdict, GenerationSettings(temperature=0))
    assert reply.parsed == Verdict(score=4, reason="acknowledged the concern")
    assert (reply.attempts, reply.mode) == (1, client.mode)
    assert reply.prompt_tokens is not None and reply.prompt_tokens >= PROMPT_TOKENS
    assert Verdict.model_validate_json(reply.text) == reply.parsed
    [request] = client.stub.chat_requests()
    assert request["temperature"] == 0
    if client.mode == "tool_calling":
        assert request["tool_choice"] == {"type": "tool", "name": "Verdict"}
        assert request["tools"][0]["input_schema"]["required"] == ["score", "reason"]
    else:
        assert request["response_format"]["type"] == "json_schema"


def test_structured_output_reasks_once_with_a_short_correction(client: Client) -> None:
    client.stub.queue("Score: four out of five", {"score": 3, "reason": "ok"})
    reply = client.make().structured(USER, Verdict)
    assert reply.parsed == Verdict(score=3, reason="ok") and reply.attempts == 2
    first, second = client.stub.chat_requests()
    correction = last_user_text(second)
    assert correction.startswith("Can we talk about the release?")
    assert "could not be used" in correction and "score, reason" in correction
    assert "four out of five" not in str(second)  # the bad reply is not sent back
    assert len(correction) < len(last_user_text(first)) + 300


def test_structured_output_gives_up_after_the_second_bad_reply(client: Client) -> None:
    client.stub.queue("Score: four out of five", {"score": "high"}, "unreached")
    with pytest.raises(ProviderError, match="did not return a valid Verdict twice") as caught:
        client.make().structured(USER, Verdict)
    assert caught.value.attempts == 2
    assert caught.value.last_reply is not None and "high" in caught.value.last_reply
    assert client.stub.pending == 1


def test_structured_output_falls_back_to_the_reply_text(client: Client) -> None:
    client.stub.queue('Here it is:\n```json\n{"score": 2, "reason": "plain text"}\n```')
    reply = client.make().structured(USER, Verdict)
    assert reply.parsed == Verdict(score=2, reason="plain text") and reply.attempts == 1


def test_bad_key_is_one_line_naming_the_fix_and_not_retried(client: Client) -> None:
    client.stub.queue(Status(401, message="invalid x-api-key"), "unreached")
    with pytest.raises(ProviderError, match="ROLEPLAY_API_KEY") as caught:
        client.make().chat(USER)
    assert "\n" not in str(caught.value) and "invalid x-api-key" in str(caught.value)
    assert (caught.value.attempts, caught.value.status) == (1, 401)
    assert len(client.stub.chat_requests()) == 1 and client.stub.pending == 1


def test_unknown_model_names_the_setting(client: Client) -> None:
    client.stub.queue(Status(404, message="model not found"), "unreached")
    with pytest.raises(ProviderError, match="ROLEPLAY_MODEL") as caught:
        client.make().chat(USER)
    assert (caught.value.attempts, caught.value.status) == (1, 404)


@pytest.mark.parametrize("fault", ["rate-limited", "overloaded"])
def test_rate_limit_and_overload_are_retried_then_succeed(client: Client, fault: str) -> None:
    code = 429 if fault == "rate-limited" else client.overloaded
    client.stub.queue(Status(code, retry_after=0.01), "Recovered.")
    assert client.make().chat(USER).text == "Recovered."
    assert len(client.stub.chat_requests()) == 2


def test_rate_limit_gives_up_after_the_retries(client: Client) -> None:
    client.stub.queue(Status(429), Status(429), Status(429), "unreached")
    with pytest.raises(ProviderError, match="rate limited") as caught:
        client.make(max_retries=2).chat(USER)
    assert (caught.value.attempts, caught.value.status) == (3, 429)
    assert "3 attempts" in str(caught.value) and client.stub.pending == 1


def test_connection_refused_names_the_url(client: Client) -> None:
    client.stub.stop()
    with pytest.raises(ProviderError, match=re.escape(client.stub.base_url)) as caught:
        client.make(max_retries=1).chat(USER)
    assert "ROLEPLAY_BASE_URL" in str(caught.value) and caught.value.attempts == 2


@pytest.mark.slow
def test_deadline_bounds_the_whole_call(client: Client) -> None:
    client.stub.queue(Delay(1.5, "late"), Delay(1.5, "late"), "unreached")
    started = time.monotonic()
    with pytest.raises(ProviderError, match="ROLEPLAY_DEADLINE"):
        client.make(deadline=0.4).chat(USER)
    assert time.monotonic() - started < 1.4


def test_max_tokens_reaches_the_request_body(client: Client) -> None:
    client.stub.queue("One.", "Two.", {"score": 1, "reason": "r"})
    model = client.make(reply_max_tokens=77, structured_max_tokens=300)
    model.chat(USER, GenerationSettings(max_tokens=50))
    model.chat(USER)
    model.structured(USER, Verdict)
    assert [r[client.max_tokens_key] for r in client.stub.chat_requests()] == [50, 77, 300]


def test_an_openai_compatible_server_refusing_json_schema_with_a_500_gets_prompt_json(stub_llm: Any) -> None:
    from stub_openai import Status

    stub_llm.queue(Status(500, message="1 validation error: response_format.type Input should be 'text' or "
                                       "'json_object'"), '{"score": 3, "reason": "fine"}')
    model = LangChainChatModel(model="openai:persona-model", base_url=stub_llm.base_url, api_key="k", timeout=2.0,
                               max_retries=2, backoff_base=0.001)
    _open.append(model)
    reply = model.structured(USER, Verdict)
    assert reply.parsed == Verdict(score=3, reason="fine") and reply.mode == "prompt"
    assert len(stub_llm.chat_requests()) == 2  # the refusal is not retried as a server fault


# -- the adapter in the app --------------------------------------------------------------------------------------

CALM = "Mm. It's been a busy few weeks, that's all I can really say about it right now, honestly."


def anthropic_model(stub: StubAnthropic, **overrides: Any) -> LangChainChatModel:
    options: dict[str, Any] = {"model": "anthropic:claude-test", "base_url": stub.base_url, "api_key": "k",
                               "timeout": 5.0, "max_retries": 1, "backoff_base": 0.001}
    options.update(overrides)
    model = LangChainChatModel(**options)
    _open.append(model)
    return model


def test_persona_plays_a_turn_through_the_anthropic_adapter(stub_anthropic: StubAnthropic) -> None:  # noqa: F811
    stub_anthropic.default = lambda body: CALM
    scenario = catalog().scenario("missed-deadlines")
    voice = LLMVoice(anthropic_model(stub_anthropic), GenerationSettings(temperature=0.8, max_tokens=120))
    conv = Conversation(scenario, "intermediate", voice)
    conv.open()
    updates = list(conv.respond("What has been going on for you lately?"))
    assert len(updates) > 1 and updates[-1] == CALM
    assert [t.speaker for t in conv.transcript.turns] == ["persona", "learner", "persona"]
    [request] = stub_anthropic.chat_requests()
    assert request["stream"] is True and request["max_tokens"] == 120 and request["temperature"] == 0.8
    assert scenario.persona.name in request["system"]
    assert [m["role"] for m in request["messages"]] == ["user"]
    assert "What has been going on for you lately?" in last_user_text(request)
    assert all(f.fact not in str(request) for f in scenario.hidden_facts)


@pytest.mark.slow
def test_llm_judge_grades_through_the_anthropic_adapter(stub_anthropic: StubAnthropic) -> None:  # noqa: F811
    cat = catalog()
    scenario = cat.scenario("missed-deadlines")
    rubric = cat.rubric_for(scenario)
    lines = {"open-questions": "What's been getting in the way lately?",
             "reflective-listening": "So the mornings have been the hard part, and you've been catching up at night.",
             "empathy": "That sounds exhausting, and I'm sorry it's been so heavy.",
             "candid-feedback": "The last two reports missed the Friday deadline and the client chased me.",
             "next-steps": "Shall we agree you send me a note by Wednesday if Friday looks at risk, and we check in "
                           "next Monday?"}
    turns = [Turn(speaker="persona", text="Hi. You wanted to talk about the reports?")]
    for line in lines.values():
        turns += [Turn(speaker="learner", text=line), Turn(speaker="persona", text="Okay.")]
    reply = {"criteria": [{"criterion_id": c.id, "evidence": [lines[c.id]], "rationale": f"Level 3 for {c.name}.",
                           "checks": [{"id": ch.id, "answer": "partial"} for ch in c.checks], "level": 3,
                           "better_alternative": "What's been making Fridays hard?"} for c in rubric.criteria]}
    stub_anthropic.queue(ToolUse(reply))
    grade = LLMJudge(anthropic_model(stub_anthropic)).grade(
        Transcript(scenario_id=scenario.id, turns=turns), rubric, scenario)
    assert [c.level for c in grade.criteria] == [3] * len(rubric.criteria)
    assert all(c.supported and c.evidence for c in grade.criteria)
    assert grade.calls == 1 and grade.structured_mode == "tool_calling" and grade.passed
    assert grade.prompt_tokens and grade.completion_tokens
    [request] = stub_anthropic.chat_requests()
    assert request["tool_choice"] == {"type": "tool", "name": "JudgeReply"}
    assert request["temperature"] == 0 and request["max_tokens"] == 4000


# -- selection, errors at start, imports -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "provider"), [
    ("anthropic:claude-sonnet-4-5", "anthropic"), ("google_genai:gemini-2.5-flash", "google_genai"),
    ("bedrock_converse:anthropic.claude-3-5-sonnet-20241022-v2:0", "bedrock_converse"),
    ("ollama:llama3.2", "ollama"), ("openai:gpt-4o", None), ("gpt-4o-mini", None), ("llama3.2:3b", None),
])
def test_a_provider_prefix_selects_the_adapter(name: str, provider: str | None) -> None:
    assert langchain_provider(name) == provider


def test_settings_build_the_client_the_model_name_asks_for(stub_anthropic: StubAnthropic) -> None:  # noqa: F811
    cfg = load_settings(model="anthropic:claude-test", base_url=stub_anthropic.base_url, api_key="k",
                        max_reply_tokens=99, deadline=30)
    assert cfg.use_llm
    model = chat_model_from_settings(cfg)
    _open.append(model)
    assert isinstance(model, LangChainChatModel)
    assert (model.provider, model.model, model.reply_max_tokens, model.deadline) == ("anthropic", "claude-test", 99, 30)
    stub_anthropic.queue("Hello.")
    assert model.chat(USER).text == "Hello."
    headers = stub_anthropic.requests[0].headers
    assert headers.get("x-api-key") == "k" or headers.get("authorization") == "Bearer k"
    assert stub_anthropic.requests[0]["max_tokens"] == 99
    plain = chat_model_from_settings(load_settings(model="openai:gpt-4o", api_key="k"))
    local = chat_model_from_settings(load_settings(model="llama3.2:3b", base_url="http://127.0.0.1:11434/v1"))
    _open.extend([plain, local])
    assert isinstance(plain, OpenAIChatModel) and plain.model == "gpt-4o"
    assert isinstance(local, OpenAIChatModel) and local.model == "llama3.2:3b"
    app = AppContext(load_settings(model="anthropic:claude-test", base_url=stub_anthropic.base_url))
    try:
        assert isinstance(app.model, LangChainChatModel)
    finally:
        app.close()


def test_the_engine_notice_names_the_provider() -> None:
    voice = LLMVoice(None)  # type: ignore[arg-type]
    cfg = load_settings(model="anthropic:claude-sonnet-4-5")
    assert engine_notice(voice, cfg) == "AI persona: claude-sonnet-4-5 (anthropic, via LangChain)."
    assert endpoint_label("ollama:llama3.2", "http://localhost:11434") == \
        "llama3.2 (ollama, via LangChain at http://localhost:11434)"
    assert endpoint_label("gpt-4o-mini", None) == "gpt-4o-mini at the OpenAI API"


def test_a_missing_provider_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_aws", None)
    with pytest.raises(ConfigError) as caught:
        LangChainChatModel(model="bedrock_converse:anthropic.claude-3-5-sonnet-20241022-v2:0")
    message = str(caught.value)
    assert 'pip install -e ".[langchain]"' in message and "pip install langchain-aws" in message
    assert "\n" not in message


def test_a_name_without_a_provider_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="anthropic:claude-sonnet-4-5"):
        LangChainChatModel(model="claude-sonnet-4-5")


@pytest.mark.slow
def test_import_and_help_do_not_import_langchain() -> None:
    code = ("import sys\nimport roleplay, roleplay.cli, roleplay.llm_langchain, roleplay.context\n"
            "from click.testing import CliRunner\n"
            "assert CliRunner().invoke(roleplay.cli.main, ['--help']).exit_code == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('langchain', 'langchain_core', 'langchain_anthropic', 'langchain_openai', 'anthropic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
