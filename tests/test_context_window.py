"""Prompts fit the model's context window: configured or learned from the server's refusal, and said when trimmed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from content import catalog
from stub_openai import Status, StubOpenAI

from roleplay.config import load_settings
from roleplay.context import AppContext
from roleplay.errors import ConfigError, ContextTooLong, GradingError, ProviderError
from roleplay.grader import Grade
from roleplay.llm import OpenAIChatModel
from roleplay.llm_judge import LLMJudge
from roleplay.persona import Conversation
from roleplay.review import CriterionEdit, apply_edits
from roleplay.tokens import counter_for, persona_budget
from roleplay.transcript import Transcript, Turn
from roleplay.ui.render import grade_html

COUNTER = counter_for("stub-model")
OMITTED = "turns omitted to fit the model's context"
QUOTES = {"open-questions": "What would make the Friday report easier for you to deliver on time?",
          "reflective-listening": "So the client keeps moving the deadline and you end up working late to catch up.",
          "empathy": "That sounds exhausting, and I'm sorry it has landed on you like this.",
          "candid-feedback": "The last two Friday reports were late, and the client noticed each time.",
          "next-steps": "Shall we agree you flag any risk by Wednesday, and we check in together next Monday?"}


def long_transcript(pairs: int) -> Transcript:
    """A long conversation whose last learner turns carry the quotes the judge cites."""
    turns = [Turn(speaker="persona", text="Hi. You wanted to talk about the reports?"),
             Turn(speaker="learner", text="Yes, thanks for making time. How has this month been for you so far?")]
    for i in range(pairs):
        turns.append(Turn(speaker="persona", text=f"Week {i} was hard again: the client moved the deadline, I stayed "
                                                  f"late twice and still missed the Friday report."))
        turns.append(Turn(speaker="learner", text=f"Thanks for telling me about week {i}. What got in the way this "
                                                  f"time, and what would have helped you most?"))
    for quote in QUOTES.values():
        turns.append(Turn(speaker="persona", text="Mm."))
        turns.append(Turn(speaker="learner", text=quote))
    return Transcript(scenario_id="missed-deadlines", turns=turns)


SHORT = Transcript(scenario_id="missed-deadlines", turns=[
    Turn(speaker="persona", text="Hi. You wanted to talk about the reports?"),
    *[t for q in QUOTES.values() for t in (Turn(speaker="learner", text=q), Turn(speaker="persona", text="Okay."))],
])


def judge_reply(rubric: Any) -> dict[str, Any]:
    return {"criteria": [{"criterion_id": c.id, "evidence": [QUOTES[c.id]], "rationale": "Clear evidence.",
                          "checks": [{"id": ch.id, "answer": "yes"} for ch in c.checks], "level": 3,
                          "better_alternative": "What would help most this week?"} for c in rubric.criteria]}


@pytest.fixture()
def md() -> tuple[Any, Any]:
    cat = catalog()
    scn = cat.scenario("missed-deadlines")
    return scn, cat.rubric_for(scn)


def model(stub: StubOpenAI, **options: Any) -> OpenAIChatModel:
    return OpenAIChatModel(model="stub-model", base_url=stub.base_url, api_key="k", timeout=5,
                           backoff_base=0.01, **{"max_retries": 3, **options})


def sent_tokens(request: dict[str, Any]) -> int:
    """Prompt tokens of a request exactly as it was sent (its messages, which carry the schema in prompt modes)."""
    return COUNTER.count_messages(request["messages"])


def context(stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch, **env: str) -> AppContext:
    monkeypatch.setenv("ROLEPLAY_BASE_URL", stub.base_url)
    monkeypatch.setenv("ROLEPLAY_API_KEY", "k")
    monkeypatch.setenv("ROLEPLAY_MODEL", "stub-model")
    for name, value in env.items():
        monkeypatch.setenv(f"ROLEPLAY_{name.upper()}", value)
    return AppContext()


# --- a configured window ------------------------------------------------------------------------------------

def test_the_window_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().context_window is None
    monkeypatch.setenv("ROLEPLAY_CONTEXT_WINDOW", "8192")
    assert load_settings().context_window == 8192
    monkeypatch.setenv("ROLEPLAY_CONTEXT_WINDOW", "0")
    with pytest.raises(ConfigError, match="ROLEPLAY_CONTEXT_WINDOW='0'"):
        load_settings()


@pytest.mark.parametrize("mode", ["json_schema", "json_object"])
def test_a_long_transcript_is_fitted_into_a_configured_window_and_the_grade_says_so(
        stub_llm: StubOpenAI, monkeypatch: pytest.MonkeyPatch, md: Any, mode: str) -> None:
    scn, rubric = md
    ctx = context(stub_llm, monkeypatch, context_window="2048", max_grade_tokens="256", structured_mode=mode)
    transcript = long_transcript(18)
    stub_llm.queue(judge_reply(rubric))
    try:
        grade = ctx.judge().grade(transcript, rubric, scn)
    finally:
        ctx.close()
    [request] = stub_llm.chat_requests()
    assert request["max_tokens"] == 256
    assert sent_tokens(request) <= 2048 - 256
    assert grade.fitted is not None and f"of {len(transcript.turns)} turns omitted" in grade.fitted
    assert "shorter rubric and scenario text" in grade.fitted
    user = request["messages"][-1]["content"]
    lines = user.split("<<<TRANSCRIPT", 1)[1].split("<<<END TRANSCRIPT", 1)[0].splitlines()[1:]
    assert lines[0] == "P (persona): Hi. You wanted to talk about the reports?"
    assert lines[1].startswith("L1 (learner): Yes, thanks for making time.")
    omitted = int(grade.fitted.split(" of ")[0].rsplit(" ", 1)[-1])
    assert lines[2] == f"[… {omitted} {OMITTED} …]"
    assert lines[-1] == f"L{len(transcript.learner_turns)} (learner): {QUOTES['next-steps']}"
    system = request["messages"][0]["content"]
    if mode == "json_object":
        assert grade.fitted.startswith("compact schema")
        schema = json.loads(system.split("JSON Schema:\n", 1)[1])
        assert "description" not in json.dumps(schema) and "title" not in json.dumps(schema)
        assert schema["$defs"]["JudgedCheck"]["properties"]["answer"]["enum"] == ["yes", "partial", "no"]
    else:
        assert "compact schema" not in grade.fitted
    assert all(c.evidence for c in grade.criteria), "quotes from the kept end of the transcript still count"
    assert f"[… {omitted} {OMITTED} …]" in grade.prompt


def test_a_short_transcript_is_sent_whole_without_a_note(stub_llm: StubOpenAI, md: Any) -> None:
    scn, rubric = md
    stub_llm.queue(judge_reply(rubric))
    grade = LLMJudge(model(stub_llm, context_window=8192), max_tokens=1000).grade(SHORT, rubric, scn)
    [request] = stub_llm.chat_requests()
    user = request["messages"][-1]["content"]
    assert grade.fitted is None and OMITTED not in user
    assert all(f"(learner): {q}" in user for q in QUOTES.values())
    assert rubric.description.strip() in request["messages"][0]["content"]
    assert "shortened prompt" not in grade_html(grade, rubric)


def test_the_note_is_stored_shown_and_kept_through_facilitator_edits(md: Any) -> None:
    _, rubric = md
    stub = {"criteria": [{"criterion_id": c.id, "evidence": [], "rationale": "r", "checks": [], "level": 2,
                          "better_alternative": "b", "supported": True} for c in rubric.criteria]}
    old = {"rubric_id": rubric.id, "judge": "llm:m", "overall": 2.0, "scaled": 0.33, "passed": False, "summary": "s",
           **stub}
    assert Grade.model_validate(old).fitted is None, "grades stored before the field load unchanged"
    grade = Grade.model_validate({**old, "fitted": "compact schema; 14 of 40 turns omitted"})
    assert Grade.model_validate(json.loads(grade.model_dump_json())).fitted == grade.fitted
    edited = apply_edits(grade, [CriterionEdit(criterion_id=rubric.criteria[0].id, level=3)], rubric)
    assert edited.fitted == grade.fitted
    assert "compact schema; 14 of 40 turns omitted" in grade_html(edited, rubric, ai_grade=grade, show_checks=True)


def test_a_window_too_small_for_any_prompt_is_a_clear_error(stub_llm: StubOpenAI, md: Any) -> None:
    scn, rubric = md
    with pytest.raises(GradingError, match="ROLEPLAY_MAX_GRADE_TOKENS"):
        LLMJudge(model(stub_llm, context_window=1024), max_tokens=900).grade(long_transcript(4), rubric, scn)
    assert not stub_llm.chat_requests()


# --- a window learned from the server's refusal --------------------------------------------------------------

WINDOW = 4096
STYLES: dict[str, Callable[[int, int], str]] = {
    "llama.cpp": lambda prompt, reply: "the request exceeds the available context size, try increasing it",
    "llama.cpp numbered": lambda prompt, reply: f"Requested tokens ({prompt}) exceed context window of {WINDOW}",
    "openai": lambda prompt, reply: (f"This model's maximum context length is {WINDOW} tokens. However, your messages "
                                     f"resulted in {prompt} tokens. Please reduce the length of the messages."),
    "vllm": lambda prompt, reply: (f"This model's maximum context length is {WINDOW} tokens. However, you requested "
                                   f"{prompt + reply} tokens ({prompt} in the messages, {reply} in the completion). "
                                   f"Please reduce the length of the messages or completion."),
}


def server(style: str, reply: Any, status: int = 400) -> Callable[[dict[str, Any]], Any]:
    """A server with a 4096-token context: llama.cpp counts the prompt, OpenAI and vLLM the prompt and the reply."""

    def answer(body: dict[str, Any]) -> Any:
        prompt = sent_tokens(body)
        needed = prompt if style.startswith("llama") else prompt + int(body.get("max_tokens") or 0)
        if needed >= WINDOW if style.startswith("llama") else needed > WINDOW:
            return Status(status, message=STYLES[style](prompt, int(body.get("max_tokens") or 0)))
        return reply

    return answer


@pytest.mark.slow
@pytest.mark.parametrize("style", list(STYLES))
def test_a_refusal_teaches_the_window_and_the_grading_is_refitted_once(stub_llm: StubOpenAI, md: Any,
                                                                       style: str) -> None:
    scn, rubric = md
    stub_llm.default = server(style, judge_reply(rubric))
    llm = model(stub_llm, structured_max_tokens=512)
    judge = LLMJudge(llm, max_tokens=None)
    transcript = long_transcript(50)
    grade = judge.grade(transcript, rubric, scn)
    first, retry = stub_llm.chat_requests()
    assert WINDOW < sent_tokens(first) < 2 * WINDOW, "the whole prompt is too long for the server"
    assert llm.context_window == WINDOW and llm.configured_context_window is None
    assert sent_tokens(retry) + 512 <= WINDOW
    assert grade.fitted is not None and "turns omitted" in grade.fitted
    again = judge.grade(transcript, rubric, scn)
    assert len(stub_llm.chat_requests()) == 3, "the next grading fits at once"
    assert sent_tokens(stub_llm.chat_requests()[-1]) + 512 <= WINDOW
    assert again.fitted == grade.fitted


@pytest.mark.parametrize("status", [400, 500])
def test_a_refusal_is_never_retried_as_transient(stub_llm: StubOpenAI, status: int) -> None:
    llm = model(stub_llm, max_retries=3)
    stub_llm.queue(Status(status, message=STYLES["openai"](9000, 0)))
    with pytest.raises(ContextTooLong) as refused:
        llm.chat([{"role": "user", "content": "hello"}])
    assert len(stub_llm.chat_requests()) == 1
    assert (refused.value.window, refused.value.prompt_tokens, refused.value.status) == (WINDOW, 9000, status)
    assert "ROLEPLAY_CONTEXT_WINDOW" in str(refused.value)
    assert llm.context_window == WINDOW


def test_a_streamed_refusal_is_learned_and_not_retried(stub_llm: StubOpenAI) -> None:
    llm = model(stub_llm, max_retries=3)
    stub_llm.queue(Status(400, message=STYLES["llama.cpp numbered"](5000, 0)))
    with pytest.raises(ContextTooLong):
        list(llm.stream([{"role": "user", "content": "hello"}]))
    assert len(stub_llm.chat_requests()) == 1 and llm.context_window == WINDOW


def test_other_client_errors_are_not_taken_for_a_refusal(stub_llm: StubOpenAI) -> None:
    llm = model(stub_llm, max_retries=0)
    stub_llm.queue(Status(400, message="max_tokens is too large: 20000. This model supports at most 16384 completion "
                                       "tokens."),
                   Status(429, message="Request too large for stub-model: maximum context length is 100 per minute"))
    for _ in range(2):
        with pytest.raises(ProviderError) as failed:
            llm.chat([{"role": "user", "content": "hello"}])
        assert not isinstance(failed.value, ContextTooLong)
    assert llm.context_window is None


def test_a_grading_refused_again_after_refitting_gives_up(stub_llm: StubOpenAI, md: Any) -> None:
    scn, rubric = md
    stub_llm.default = lambda body: Status(400, message=STYLES["llama.cpp"](0, 0))
    with pytest.raises(ContextTooLong):
        LLMJudge(model(stub_llm), max_tokens=512).grade(long_transcript(50), rubric, scn)
    assert len(stub_llm.chat_requests()) == 2, "one refit and retry, never more"


# --- the persona ------------------------------------------------------------------------------------------------

def test_persona_budget_is_the_scenario_budget_lowered_to_the_window() -> None:
    assert persona_budget(6000, None, 400) == 6000
    assert persona_budget(6000, 100_000, 400) == 6000
    assert persona_budget(6000, 2048, 400) < 2048 - 400


@pytest.mark.slow
def test_the_persona_request_fits_the_window(stub_llm: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(stub_llm, monkeypatch, context_window="1536", max_reply_tokens="200")
    stub_llm.default = lambda body: "Mm. It has been a busy stretch, that's all, and I'd rather not get into it."
    scenario = catalog().scenario("missed-deadlines")
    try:
        conv = Conversation(scenario, "expert", ctx.voice(), counter=COUNTER)
        conv.open()
        for i in range(12):
            conv.say(f"Could you tell me about week {i}, and what happened with the reports in that week? I would "
                     f"like to understand how the client changes, the late evenings and the handovers fit together, "
                     f"and what part of it felt hardest for you at the time.")
            if conv.state.ended:
                break
    finally:
        ctx.close()
    requests = stub_llm.chat_requests()
    assert len(requests) >= 6 and conv.state.trimmed_turns > 0
    for request in requests:
        assert request["stream"] and request["max_tokens"] == 200
        assert sent_tokens(request) <= 1536 - 200


def test_an_empty_stream_says_the_prompt_may_be_longer_than_the_servers_context(stub_llm: StubOpenAI) -> None:
    from stub_openai import EmptyStream

    stub_llm.queue(EmptyStream(), EmptyStream())
    model = OpenAIChatModel(model="m", base_url=stub_llm.base_url, api_key="k", timeout=2.0, max_retries=1,
                            backoff_base=0.001)
    with pytest.raises(ProviderError) as caught:
        "".join(model.stream([{"role": "user", "content": "hello"}]))
    assert "ROLEPLAY_CONTEXT_WINDOW" in str(caught.value) and "\n" not in str(caught.value)
