"""The model boundary over real HTTP against the local stub server: retries, streaming, structured output."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ValidationError
from stub_openai import Delay, Malformed, Status, StubOpenAI, Truncated, fake_embedding, words

from roleplay.config import load_settings
from roleplay.errors import ConfigError, RoleplayError
from roleplay.llm import (
    ChatModel,
    GenerationSettings,
    OpenAIChatModel,
    ProviderError,
    parse_json_model,
)

USER = [{"role": "system", "content": "You are Dana, a senior engineer."},
        {"role": "user", "content": "Can we talk about the release?"}]


_open: list[OpenAIChatModel] = []


def make(stub: StubOpenAI, **overrides: object) -> OpenAIChatModel:
    options: dict = {"model": "persona-model", "base_url": stub.base_url, "timeout": 2.0, "max_retries": 2,
                     "backoff_base": 0.001}
    options.update(overrides)
    return track(OpenAIChatModel(**options))


def track(model: OpenAIChatModel) -> OpenAIChatModel:
    _open.append(model)
    return model


@pytest.fixture(autouse=True)
def close_models() -> Iterator[None]:
    """Close every client a test made, so no sockets are left to the garbage collector."""
    yield
    while _open:
        _open.pop().close()


class Verdict(BaseModel):
    score: int
    reason: str


# -- plain chat ------------------------------------------------------------------------------------------------


def test_chat_returns_text_usage_and_raw_body(stub_llm: StubOpenAI) -> None:
    stub_llm.queue("Sure, what about it?")
    reply = make(stub_llm).chat(USER)
    assert reply.text == "Sure, what about it?"
    assert reply.prompt_tokens == 12
    assert reply.completion_tokens == 4
    assert reply.model == "persona-model"
    assert json.loads(reply.raw)["choices"][0]["message"]["content"] == reply.text
    [request] = stub_llm.requests
    assert request.path == "/v1/chat/completions"
    assert request["messages"] == USER
    assert request["model"] == "persona-model"


def test_generation_settings_reach_the_request_body(stub_llm: StubOpenAI) -> None:
    model = make(stub_llm)
    model.chat(USER, GenerationSettings(temperature=0, max_tokens=50, seed=7, stop=["END"]))
    model.chat(USER)
    exact, default = stub_llm.requests
    assert exact["temperature"] == 0
    assert (exact["max_tokens"], exact["seed"], exact["stop"]) == (50, 7, ["END"])
    assert default["temperature"] == 0.7
    assert not {"max_tokens", "seed", "stop"} & set(default)


def test_generation_settings_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        GenerationSettings(temprature=0)  # type: ignore[call-arg]


def test_default_responder_answers_when_the_queue_is_empty(stub_llm: StubOpenAI) -> None:
    stub_llm.default = lambda body: "echo: " + body["messages"][-1]["content"]
    assert make(stub_llm).chat(USER).text == "echo: Can we talk about the release?"


def test_is_a_chat_model_named_llm(stub_llm: StubOpenAI) -> None:
    model = make(stub_llm)
    assert isinstance(model, ChatModel)
    assert model.name == "llm"


# -- streaming -------------------------------------------------------------------------------------------------


def test_stream_delivers_deltas_in_order_as_they_arrive(stub_llm: StubOpenAI) -> None:
    text = "I hear you, but the deadline was not mine to set."
    stub_llm.queue(text)
    stub_llm.token_delay = 0.03
    stream = make(stub_llm).stream(USER)
    arrivals: list[tuple[float, str]] = [(time.monotonic(), delta) for delta in stream]
    assert [delta for _, delta in arrivals] == words(text)
    assert stream.text == text
    assert arrivals[-1][0] - arrivals[0][0] >= 0.03 * (len(arrivals) - 2)  # incremental, not all at the end
    assert (stream.prompt_tokens, stream.completion_tokens) == (12, len(text.split()))
    [request] = stub_llm.requests
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}


def test_stream_retries_before_the_first_delta(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(503), "Fine, go on.")
    assert list(make(stub_llm).stream(USER)) == ["Fine, ", "go ", "on."]
    assert len(stub_llm.requests) == 2


@pytest.mark.parametrize("clean", [False, True], ids=["connection-reset", "clean-close"])
def test_truncated_stream_raises_after_partial_text(stub_llm: StubOpenAI, clean: bool) -> None:
    stub_llm.queue(Truncated("The review went badly and I am upset.", after=3, clean=clean), "never used")
    received: list[str] = []
    with pytest.raises(ProviderError, match="stream interrupted") as caught:
        for delta in make(stub_llm).stream(USER):
            received.append(delta)
    assert received == ["The ", "review ", "went "]
    assert caught.value.attempts == 1
    assert len(stub_llm.requests) == 1  # no retry once text was shown
    assert stub_llm.pending == 1


def test_stream_falls_back_when_stream_options_are_rejected(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(400, message="Unrecognized request argument supplied: stream_options"), "Okay.")
    model = make(stub_llm)
    assert list(model.stream(USER)) == ["Okay."]
    assert "stream_options" not in stub_llm.requests[1]
    assert model.stream_usage is False


# -- retries ---------------------------------------------------------------------------------------------------


def test_recovers_from_429_honouring_retry_after(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(429, retry_after=0.3), "Recovered.")
    started = time.monotonic()
    assert make(stub_llm).chat(USER).text == "Recovered."
    assert time.monotonic() - started >= 0.3
    assert len(stub_llm.requests) == 2


def test_retry_after_is_capped(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(429, retry_after=120), "Recovered.")
    started = time.monotonic()
    assert make(stub_llm, retry_after_max=0.05).chat(USER).text == "Recovered."
    assert time.monotonic() - started < 5


def test_recovers_from_500(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(500), "Recovered.")
    assert make(stub_llm).chat(USER).text == "Recovered."
    assert len(stub_llm.requests) == 2


@pytest.mark.slow
def test_recovers_from_a_timeout(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Delay(1.0, "Too late."), "In time.")
    started = time.monotonic()
    assert make(stub_llm, timeout=0.5).chat(USER).text == "In time."
    assert time.monotonic() - started < 1.0
    assert len(stub_llm.requests) == 2


def test_recovers_from_a_malformed_body(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Malformed(), "Recovered.")
    assert make(stub_llm).chat(USER).text == "Recovered."


@pytest.mark.parametrize(("fault", "advice"), [
    (Status(503), "check the server"),
    (Status(429), "rate limits"),
    (Delay(0.6), "ROLEPLAY_TIMEOUT"),
    (Malformed(), "ROLEPLAY_BASE_URL"),
], ids=["503", "429", "timeout", "malformed"])
@pytest.mark.slow
def test_gives_up_after_max_retries_saying_what_to_check(stub_llm: StubOpenAI, fault: object, advice: str) -> None:
    stub_llm.queue(fault, fault, "unreached")
    with pytest.raises(ProviderError, match=advice) as caught:
        make(stub_llm, max_retries=1, timeout=0.3).chat(USER)
    error = caught.value
    assert isinstance(error, RoleplayError)
    assert error.attempts == 2
    assert "2 attempts" in str(error)
    assert error.status == getattr(fault, "code", 200 if isinstance(fault, Malformed) else None)
    assert stub_llm.pending == 1


@pytest.mark.parametrize(("code", "advice"), [
    (400, "rejected the request"),
    (401, "ROLEPLAY_API_KEY"),
    (403, "ROLEPLAY_API_KEY"),
    (404, "ROLEPLAY_MODEL='persona-model'"),
])
def test_client_errors_are_not_retried(stub_llm: StubOpenAI, code: int, advice: str) -> None:
    stub_llm.queue(Status(code), "unreached")
    with pytest.raises(ProviderError, match=advice) as caught:
        make(stub_llm).chat(USER)
    assert (caught.value.attempts, caught.value.status) == (1, code)
    assert len(stub_llm.requests) == 1
    assert stub_llm.pending == 1


def test_404_names_the_base_url(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(404, message="model not found"))
    with pytest.raises(ProviderError, match="ROLEPLAY_BASE_URL") as caught:
        make(stub_llm).chat(USER)
    assert "model not found" in str(caught.value)


def test_connection_refused_is_retried_then_reported() -> None:
    stub = StubOpenAI().start()
    base_url = stub.base_url
    stub.stop()
    model = track(OpenAIChatModel(model="m", base_url=base_url, timeout=1, max_retries=1, backoff_base=0.001))
    with pytest.raises(ProviderError, match="ROLEPLAY_BASE_URL") as caught:
        model.chat(USER)
    assert caught.value.attempts == 2


# -- structured output -----------------------------------------------------------------------------------------


def test_structured_output_parses_into_the_model(stub_llm: StubOpenAI) -> None:
    stub_llm.queue({"score": 4, "reason": "acknowledged the concern"})
    reply = make(stub_llm).structured(USER, Verdict, GenerationSettings(temperature=0))
    assert reply.parsed == Verdict(score=4, reason="acknowledged the concern")
    assert json.loads(reply.text) == {"score": 4, "reason": "acknowledged the concern"}
    assert reply.prompt_tokens == 12
    assert reply.attempts == 1
    [request] = stub_llm.requests
    assert request["temperature"] == 0
    assert request["messages"] == USER
    assert request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Verdict", "schema": Verdict.model_json_schema(), "strict": False},
    }


def test_structured_output_reasks_once_with_the_problem(stub_llm: StubOpenAI) -> None:
    stub_llm.queue("Score: four out of five", {"score": 3, "reason": "ok"})
    reply = make(stub_llm).structured(USER, Verdict)
    assert reply.parsed.score == 3
    assert reply.attempts == 2
    assert reply.prompt_tokens is not None and reply.prompt_tokens > 12
    first, second = stub_llm.requests
    # a short correction naming the problem, folded into the last user turn: the bad reply is not sent back
    assert second["messages"][: len(USER) - 1] == USER[:-1]
    assert [m["role"] for m in second["messages"]] == ["system", "user"]
    correction = second["messages"][-1]["content"]
    assert correction.startswith(USER[-1]["content"]) and "not valid JSON" in correction
    assert "four out of five" not in json.dumps(second["messages"])
    assert second["response_format"] == first["response_format"]


def test_structured_output_raises_with_the_last_reply(stub_llm: StubOpenAI) -> None:
    stub_llm.queue("{not json", {"score": "high", "reason": "great"}, "unreached")
    with pytest.raises(ProviderError, match="Verdict") as caught:
        make(stub_llm).structured(USER, Verdict)
    assert json.loads(caught.value.last_reply or "") == {"score": "high", "reason": "great"}
    assert caught.value.attempts == 2
    assert "score" in stub_llm.requests[1]["messages"][-1]["content"]
    assert len(stub_llm.requests) == 2


@pytest.mark.parametrize("mode", ["json_object", "prompt"])
def test_structured_modes_for_servers_without_json_schema(stub_llm: StubOpenAI, mode: str) -> None:
    stub_llm.queue('```json\n{"score": 5, "reason": "listened"}\n```')
    reply = make(stub_llm, structured_mode=mode).structured(USER, Verdict)
    assert reply.parsed == Verdict(score=5, reason="listened")
    [request] = stub_llm.requests
    if mode == "json_object":  # the schema goes the way llama.cpp-style servers take it, and in the prompt
        assert request["response_format"] == {"type": "json_object", "schema": Verdict.model_json_schema()}
    else:
        assert "response_format" not in request
    system = request["messages"][0]
    assert system["role"] == "system" and system["content"].startswith(USER[0]["content"])
    assert "JSON" in system["content"] and '"score"' in system["content"]
    assert request["messages"][1:] == USER[1:]


LLAMA_CPP_REFUSAL = ("1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                     "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}")


@pytest.mark.parametrize(("code", "message"), [
    (500, LLAMA_CPP_REFUSAL),
    (400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."),
    (422, "json_schema is not supported"),
], ids=["llama.cpp-500", "400", "422"])
def test_a_refused_json_schema_falls_back_once_and_is_remembered(stub_llm: StubOpenAI, code: int,
                                                                 message: str) -> None:
    stub_llm.queue(Status(code, message=message), {"score": 4, "reason": "listened"}, {"score": 2, "reason": "ok"})
    model = make(stub_llm, max_retries=3)
    first = model.structured(USER, Verdict)
    assert first.parsed == Verdict(score=4, reason="listened")
    assert (first.mode, first.attempts) == ("json_object", 1)
    assert model.structured_mode == "json_object" and model.configured_structured_mode == "json_schema"
    refused, accepted = stub_llm.chat_requests()  # one refusal, never retried as if it were transient
    assert refused["response_format"]["type"] == "json_schema"
    assert accepted["response_format"] == {"type": "json_object", "schema": Verdict.model_json_schema()}
    assert '"score"' in accepted["messages"][0]["content"]  # and the schema in the prompt
    second = model.structured(USER, Verdict)  # the next call goes straight to what the endpoint accepts
    assert (second.parsed.score, second.mode) == (2, "json_object")
    assert len(stub_llm.chat_requests()) == 3
    assert stub_llm.chat_requests()[2]["response_format"]["type"] == "json_object"


def test_refusals_step_down_to_prompt_only_json(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(400, message="response_format json_schema is unsupported"),
                   Status(400, message="unknown field response_format.schema"),
                   Status(400, message="response_format is not supported"),
                   '{"score": 3, "reason": "fine"}', '{"score": 1, "reason": "cold"}')
    model = make(stub_llm)
    reply = model.structured(USER, Verdict)
    assert (reply.parsed.score, reply.mode) == (3, "prompt")
    formats = [r.get("response_format") for r in stub_llm.chat_requests()]
    assert [f and f["type"] for f in formats] == ["json_schema", "json_object", "json_object", None]
    assert "schema" in formats[1] and "schema" not in formats[2]
    assert model.structured(USER, Verdict).parsed.score == 1
    assert "response_format" not in stub_llm.chat_requests()[-1] and len(stub_llm.chat_requests()) == 5


def test_a_plain_500_is_still_retried_not_taken_for_a_refusal(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(500, message="out of memory"), {"score": 4, "reason": "listened"})
    model = make(stub_llm)
    reply = model.structured(USER, Verdict)
    assert (reply.parsed.score, reply.mode, model.structured_mode) == (4, "json_schema", "json_schema")
    assert [r["response_format"]["type"] for r in stub_llm.chat_requests()] == ["json_schema", "json_schema"]


def test_the_llm_judge_grades_after_the_endpoint_refuses_json_schema(stub_llm: StubOpenAI) -> None:
    from content import catalog

    from roleplay.llm_judge import LLMJudge
    from roleplay.transcript import Transcript, Turn

    cat = catalog()
    scenario = cat.scenario("missed-deadlines")
    rubric = cat.rubric_for(scenario)
    line = "What has been getting in the way of the Friday reports for you lately?"
    transcript = Transcript(scenario_id=scenario.id, level="novice", turns=[
        Turn(speaker="persona", text=scenario.opening_line), Turn(speaker="learner", text=line),
        Turn(speaker="persona", text="It's been a lot, honestly.")])
    criteria = [{"criterion_id": c.id, "evidence": [], "rationale": "Not shown.", "checks": [], "level": 1,
                 "better_alternative": "What would help you most right now?"} for c in rubric.criteria]
    stub_llm.queue(Status(500, message=LLAMA_CPP_REFUSAL))
    stub_llm.default = lambda body: json.dumps({"criteria": criteria})
    model = make(stub_llm, max_retries=3)
    grade = LLMJudge(model, reader=None).grade(transcript, rubric, scenario)
    assert grade.structured_mode == "json_object" and grade.calls == 1
    assert [c.level for c in grade.criteria] == [1] * len(rubric.criteria)
    assert len(stub_llm.chat_requests()) == 2  # the refusal and the accepted request: no retries of the refusal


def test_parse_json_model_tolerates_prose_around_the_object() -> None:
    assert parse_json_model('Here you go: {"score": 2, "reason": "x"} Thanks!', Verdict).score == 2
    with pytest.raises(ValueError):
        parse_json_model("no json here", Verdict)


# -- embeddings ------------------------------------------------------------------------------------------------


def test_embeddings_are_deterministic_and_ordered(stub_llm: StubOpenAI) -> None:
    vectors = make(stub_llm).embed(["listen first", "then decide", "listen first"])
    assert vectors[0] == pytest.approx(fake_embedding("listen first"))
    assert vectors[1] == pytest.approx(fake_embedding("then decide"))
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    [request] = stub_llm.requests
    assert request.path == "/v1/embeddings"
    assert request["model"] == "text-embedding-3-small"
    assert request["encoding_format"] == "float"


def test_embeddings_retry_like_chat(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(503))
    assert len(make(stub_llm, embedding_model="local-embed").embed(["a"])) == 1
    assert [r["model"] for r in stub_llm.requests] == ["local-embed", "local-embed"]
    assert make(stub_llm).embed([]) == []


def test_list_models(stub_llm: StubOpenAI) -> None:
    assert make(stub_llm).list_models() == ["stub-model"]


# -- configuration ---------------------------------------------------------------------------------------------


def test_missing_key_and_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ROLEPLAY_ENGINE=offline") as caught:
        OpenAIChatModel(model="m")
    assert "ROLEPLAY_API_KEY" in str(caught.value) and "ROLEPLAY_BASE_URL" in str(caught.value)


def test_from_settings_uses_a_placeholder_key_for_local_servers(
    stub_llm: StubOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLEPLAY_BASE_URL", stub_llm.base_url)
    monkeypatch.setenv("ROLEPLAY_MODEL", "local-model")
    monkeypatch.setenv("ROLEPLAY_STRUCTURED_MODE", "prompt")
    monkeypatch.setenv("ROLEPLAY_EMBEDDING_MODEL", "local-embed")
    model = track(OpenAIChatModel.from_settings(load_settings()))
    assert (model.model, model.structured_mode, model.embedding_model) == ("local-model", "prompt", "local-embed")
    model.chat(USER)
    assert stub_llm.requests[0].headers["authorization"] == "Bearer not-needed"


def test_invalid_structured_mode_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLEPLAY_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ROLEPLAY_STRUCTURED_MODE", "xml")
    with pytest.raises(ConfigError, match="ROLEPLAY_STRUCTURED_MODE"):
        OpenAIChatModel.from_settings(load_settings())


def test_api_version_selects_azure_routing(stub_llm: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = stub_llm.base_url.removesuffix("/v1")
    monkeypatch.setenv("ROLEPLAY_BASE_URL", endpoint)
    monkeypatch.setenv("ROLEPLAY_API_KEY", "azure-key")
    monkeypatch.setenv("ROLEPLAY_MODEL", "my-deployment")
    monkeypatch.setenv("ROLEPLAY_API_VERSION", "2024-10-21")
    track(OpenAIChatModel.from_settings(load_settings())).chat(USER)
    [request] = stub_llm.requests
    assert request.path == "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == "azure-key"


# -- limits of one call: deadline, size, max_tokens (against the fault server) ---------------------------------------

from fault_server import FaultServer, fault_server  # noqa: E402,F401  (fixture)


def limited(server: FaultServer, fault: str, **overrides: object) -> OpenAIChatModel:
    options: dict = {"model": "fault-model", "base_url": server.base_url(fault), "timeout": 1.0, "max_retries": 2,
                     "backoff_base": 0.01, "deadline": 2.0, "reply_max_tokens": 50, "structured_max_tokens": 300}
    options.update(overrides)
    return track(OpenAIChatModel(**options))


@pytest.mark.slow
@pytest.mark.parametrize("call", ["stream", "structured"])
def test_a_keep_alive_trickle_is_cut_at_the_deadline(fault_server: FaultServer, call: str) -> None:  # noqa: F811 - the fixture imported above
    fault_server.reply = {"score": 3, "reason": "fine"}
    model = limited(fault_server, "trickle")  # a keep-alive every 0.2 s: no read ever waits 1 s
    with pytest.raises(ProviderError) as info:
        if call == "stream":
            list(model.stream(USER))
        else:
            model.structured(USER, Verdict)
    assert "ROLEPLAY_DEADLINE=2s" in str(info.value) and "\n" not in str(info.value)
    event = fault_server.wait_for_events(1)[0]
    assert event.disconnected  # the client left before the reply came (it comes after 50 keep-alives)


@pytest.mark.slow
def test_a_hanging_endpoint_gets_no_attempt_after_the_deadline(fault_server: FaultServer) -> None:  # noqa: F811 - the fixture imported above
    model = limited(fault_server, "hang", timeout=1.0, max_retries=8, deadline=2.5)
    with pytest.raises(ProviderError) as info:
        model.chat(USER)
    assert "ROLEPLAY_DEADLINE=2.5s" in str(info.value)
    assert info.value.attempts <= 3  # 1 s per attempt: nine were allowed by ROLEPLAY_MAX_RETRIES alone
    assert len(fault_server.wait_for_events(info.value.attempts)) <= 3


@pytest.mark.parametrize("call", ["stream", "chat"])
def test_a_huge_reply_is_dropped_unread(fault_server: FaultServer, call: str) -> None:  # noqa: F811 - the fixture imported above
    model = limited(fault_server, "huge", deadline=60.0)
    with pytest.raises(ProviderError) as info:
        if call == "stream":
            list(model.stream(USER))
        else:
            model.chat(USER)
    assert "passed" in str(info.value) and "bytes" in str(info.value) and "50 tokens" in str(info.value)
    event = fault_server.wait_for_events(1)[0]
    assert event.disconnected and event.bytes_sent < fault_server.huge_bytes
    assert info.value.attempts == 1  # never retried


def test_a_cut_stream_is_an_error_not_a_short_reply(fault_server: FaultServer) -> None:  # noqa: F811 - the fixture imported above
    model = limited(fault_server, "cut")
    with pytest.raises(ProviderError, match="stream interrupted after"):
        list(model.stream(USER))


def test_every_call_asks_for_max_tokens_sized_to_its_task(fault_server: FaultServer) -> None:  # noqa: F811 - the fixture imported above
    fault_server.keepalives = 0
    fault_server.reply = {"score": 3, "reason": "fine"}
    model = limited(fault_server, "trickle")
    list(model.stream(USER))
    model.structured(USER, Verdict)
    model.chat(USER, GenerationSettings(max_tokens=7))
    assert [e.max_tokens for e in fault_server.wait_for_events(3)] == [50, 300, 7]


def test_the_settings_size_persona_and_grading_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLEPLAY_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ROLEPLAY_DEADLINE", "30")
    monkeypatch.setenv("ROLEPLAY_MAX_REPLY_TOKENS", "200")
    model = track(OpenAIChatModel.from_settings(load_settings()))
    assert (model.deadline, model.reply_max_tokens, model.structured_max_tokens) == (30.0, 200, 4000)
    monkeypatch.setenv("ROLEPLAY_DEADLINE", "0")
    with pytest.raises(ConfigError, match="ROLEPLAY_DEADLINE"):
        load_settings()
