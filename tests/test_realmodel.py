"""The model boundary against a real local model server (llama.cpp with SmolLM2-135M-Instruct).

A 135M model is a protocol test, not a judge of quality: these tests check that what the endpoint really sends
(streams, grammar-constrained JSON, refusals, stalls) goes through the engine, the scene, the guard, the judge, the
reader, the web app and the LangChain adapter to a sound end, never that the model plays or grades well. Every call
is bounded by a small `max_tokens` and a deadline. Tests that need a small context, or leave the server generating
for a client that gave up, run on a server of their own. Skipped, with the reason, when the realmodel extra is not
installed (see tests/realmodel.py).
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from content import catalog
from pydantic import BaseModel, Field
from realmodel import RealModel, local_server, real_model  # noqa: F401  (fixture)

from roleplay.errors import ContextTooLong, ProviderError, RoleplayError
from roleplay.llm import GenerationSettings, Message, OpenAIChatModel
from roleplay.voices import INSTRUCTION_MARK, LLMVoice, detect_break

if TYPE_CHECKING:
    from roleplay.llm_langchain import LangChainChatModel
    from roleplay.scenario import Scenario
    from roleplay.transcript import Transcript

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


# -- a scene -----------------------------------------------------------------------------------------------------

SCENE_TURNS: list[tuple[str | None, str]] = [
    ("priya", "Priya, what exactly is at stake with the partners if the date moves?"),
    ("gareth", "Gareth, what would your team need to have in place to handle launch day well?"),
    (None, "What would each of you need from the plan to feel comfortable with it?"),
]
"""Learner turns of the meeting, with the cast id each one addresses by name (None: everyone)."""


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _speaker(sent: list[dict[str, str]]) -> str:
    """The persona a request speaks as, from its system message ("You are <Name>, ...")."""
    found = re.match(r"You are ([^,]+),", sent[0]["content"])
    assert found, sent[0]["content"][:120]
    return found.group(1)


def _authored(sent: list[dict[str, str]]) -> str:
    """What the product wrote into a request: the system message and the turn instruction, not the turns quoted."""
    last = sent[-1]["content"]
    return sent[0]["content"] + "\n" + last[last.find(INSTRUCTION_MARK):]


def _public_grams(scenario: Scenario) -> set[str]:
    """Runs of four words in the scenario's own text outside its hidden facts and the lines kept for after a reveal."""

    def texts(node: object) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            if node.get("after"):
                return
            for key, value in node.items():
                if key != "hidden_facts":
                    yield from texts(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                yield from texts(value)

    return set().union(*(_grams(text) for text in texts(scenario.model_dump())))


@pytest.mark.timeout(1500)
def test_a_meeting_scene_keeps_each_speaker_and_their_secrets_apart(real_model: RealModel, tmp_path: Path) -> None:  # noqa: F811
    from roleplay.persona import Directive, Spoken
    from roleplay.practice import start_practice
    from roleplay.store import Store
    from roleplay.transcript import Turn

    scenario = catalog().scenario("meeting-conflict")
    cast = {m.id: m for m in scenario.members}
    by_name = {m.persona.name: m for m in scenario.members}
    recording = Recording(client(real_model))
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    try:
        run = start_practice(store, "ana", scenario, "novice",
                             LLMVoice(recording, GenerationSettings(temperature=0.7, max_tokens=48)))  # type: ignore[arg-type]
        run.open()
        shown: list[tuple[str, str]] = []
        for addressed, line in SCENE_TURNS:
            last: dict[int, Spoken] = {}
            for spoken in run.respond_scene(line):
                last[spoken.index] = spoken
            replies = [last[i] for i in sorted(last)]
            assert replies, f"nobody answered {line!r}"
            if addressed is not None:
                assert replies[0].who == addressed, "the person addressed by name answers first"
            assert all(r.who in cast and r.text.strip() for r in replies)
            shown += [(r.who, r.text) for r in replies]
        state = run.state
        stored = [Turn.from_row(t) for t in store.get_session(run.session_id).turns]
        assert [(t.speaker, t.who) for t in stored[:2]] == [("persona", m.id) for m in scenario.members]
        assert [t.text for t in stored if t.speaker == "learner"] == [line for _, line in SCENE_TURNS]
        assert [(t.who, t.text) for t in stored[2:] if t.speaker == "persona"] == shown, \
            "each turn is stored under its speaker exactly as it was shown"
        for brk in state.breaks:
            assert brk.repair in ("regenerated", "scripted")
        for who, text in shown:
            assert detect_break(run.conversation, text, Directive(kind="reply", who=who, move="other", line="")) is None
        assert {_speaker(sent) for sent in recording.sent} == set(by_name), "both personas were voiced"
        public = _public_grams(scenario)
        for sent in recording.sent:
            assert [m["role"] for m in sent][:2] == ["system", "user"]
            assert all(a["role"] != b["role"] for a, b in itertools.pairwise(sent[1:]))
            assert INSTRUCTION_MARK in sent[-1]["content"]
            speaker = by_name[_speaker(sent)]
            everything, authored = _norm(" ".join(m["content"] for m in sent)), _authored(sent)
            for member in scenario.members:
                own = member.id == speaker.id
                allowed = public | set().union(*(_grams(f.hint) for f in member.hidden_facts)) if own else public
                for fact in member.hidden_facts:
                    if own and fact.id in state.revealed_ids:
                        continue
                    where = (speaker.id, member.id, fact.id)
                    assert _norm(fact.fact) not in everything and _norm(fact.reveal_line) not in everything, where
                    if not own:
                        assert _norm(fact.hint) not in _norm(authored), where
                    leaked = (_grams(fact.fact) & _grams(authored)) - allowed
                    assert not leaked, (*where, leaked)  # not four words of the fact in a row beyond the card and hints
    finally:
        store.close()
        recording.model.close()


# -- the web app over HTTP ---------------------------------------------------------------------------------------

def _endpoint(server: RealModel, monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    """Point the app's settings at `server` (as an operator would, in the environment)."""
    env = {"BASE_URL": server.base_url, "MODEL": server.model, "API_KEY": "not-needed",
           "STRUCTURED_MODE": "json_object", "READER": "offline", "MAX_RETRIES": "1", **settings}
    for name, value in env.items():
        monkeypatch.setenv(f"ROLEPLAY_{name}", value)


def _bubble_text(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def test_the_web_app_streams_a_real_reply_over_http(real_model: RealModel, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from browser import PASSWORD, free_port
    from gradio_client import Client

    from roleplay.context import AppContext
    from roleplay.models import Role
    from roleplay.ui import build_app
    from roleplay.ui.app import launch_options

    _endpoint(real_model, monkeypatch, MAX_REPLY_TOKENS="48", DEADLINE=str(DEADLINE))
    context = AppContext()
    context.store.add_person("ana", Role.LEARNER, display_name="Ana")
    context.store.set_password("ana", PASSWORD)
    demo = build_app(context)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    line = "Hi Sam, thanks for making time. How have the last few weeks been for you?"
    try:
        web = Client(f"http://127.0.0.1:{port}/", auth=("ana", PASSWORD), verbose=False)
        web.predict(None, "novice", api_name="/enter")  # the page as a learner opens it: scenario choices filled
        started = web.predict("missed-deadlines", "novice", api_name="/start")
        assert f"AI persona: {real_model.model} at {real_model.base_url}" in started[2]
        job = web.submit(line, started[1], api_name="/send")  # the line and the session: the chat stays on the server
        job.result(timeout=DEADLINE * 3)
        exchanges = [out[0] for out in job.outputs() if isinstance(out[0], dict)]
        assert all(ex["base"] == 1 for ex in exchanges)  # after the opening line
        assert _bubble_text(exchanges[0]["messages"][0]) == line
        updates = [_bubble_text(ex["messages"][-1]) for ex in exchanges]
    finally:
        demo.close()
    assert len(updates) > 2, "the reply streamed to the client in several updates"
    assert updates[0] == "…" and updates[-1].strip() and updates[-1] != "…"
    [session] = context.store.sessions_for(context.store.person("ana").id)
    turns = context.store.get_session(session.id).turns
    assert [(t.speaker, t.text) for t in turns][1:2] == [("learner", line)]
    assert [t.speaker for t in turns] == ["persona", "learner", "persona"]
    assert html.unescape(updates[-1]) == turns[-1].text, "the stored persona turn is what the learner saw"


# -- a model too slow for its deadline ---------------------------------------------------------------------------

def _one_line_naming(exc: BaseException, setting: str) -> None:
    message = str(exc)
    assert "\n" not in message and setting in message, message


@pytest.mark.timeout(900)
def test_a_deadline_the_server_cannot_meet_fails_fast_and_stores_nothing_half_written(
        real_model: RealModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from roleplay.context import AppContext
    from roleplay.practice import resume_practice, start_practice

    scenario = catalog().scenario("missed-deadlines")
    first = "Hi Sam, thanks for making time. How have the last few weeks been for you?"
    second = "What has been making the Friday reports hard to finish?"
    with local_server(tmp_path) as slow:  # stopped at the end, with whatever it still generates for nobody
        _endpoint(slow, monkeypatch, DEADLINE="0.3", MAX_REPLY_TOKENS="2000", MAX_GRADE_TOKENS="4000")
        context = AppContext()
        healthy = client(real_model)
        try:
            run = start_practice(context.store, "ana", scenario, "novice", context.voice(), reader=context.reader())
            context.remember(run)
            run.open()
            began = time.monotonic()
            with pytest.raises(ProviderError) as failed:
                list(run.respond(first))
            assert time.monotonic() - began < 30
            _one_line_naming(failed.value, "ROLEPLAY_DEADLINE")
            assert run.stale
            stored = context.store.get_session(run.session_id)
            assert [t.speaker for t in stored.turns] == ["persona"], "nothing of the failed exchange kept"

            resumed = context.run(run.session_id)  # what the app does next: the stored session is the truth
            assert resumed is not run and not resumed.stale
            assert [(t.speaker, t.text) for t in resumed.conversation.transcript.turns] == \
                [(t.speaker, t.text) for t in stored.turns]
            assert resumed.state.learner_turns == 0
            again = resume_practice(context.store, run.session_id, context.catalog,
                                    LLMVoice(healthy, GenerationSettings(temperature=0.7, max_tokens=48)))
            shown = list(again.respond(second))[-1]
            turns = context.store.get_session(run.session_id).turns
            assert [(t.speaker, t.text) for t in turns][:2] == [("persona", stored.turns[0].text), ("learner", second)]
            assert [t.speaker for t in turns] == ["persona", "learner", "persona"]
            assert turns[-1].text == shown and shown.strip()

            began = time.monotonic()
            with pytest.raises(RoleplayError) as grading:
                again.end_and_grade(context.judge(), context.catalog)
            assert time.monotonic() - began < 30
            _one_line_naming(grading.value, "ROLEPLAY_DEADLINE")
            assert not context.store.grades_for(run.session_id), "no grade stored for a grading that failed"
            assert len(context.store.get_session(run.session_id).turns) == 3
        finally:
            context.close()
            healthy.close()


# -- a small context window --------------------------------------------------------------------------------------

SMALL_CONTEXT = 2048
"""Tokens of context of the second server; a grading prompt over a long transcript does not fit it whole."""
LANGCHAIN_DEADLINE = 400.0
"""Seconds one call of the LangChain adapter may take: on llama.cpp its replies run on to the end of the context."""


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealModel]:
    with local_server(tmp_path_factory.mktemp("llama-small"), n_ctx=SMALL_CONTEXT) as server:
        yield server


def _short_transcript(scenario: Scenario) -> Transcript:
    from roleplay.transcript import Transcript, Turn

    return Transcript(scenario_id=scenario.id, level="novice", turns=[
        Turn(speaker="persona", text=scenario.opening_line),
        Turn(speaker="learner", text="What has been getting in the way of the Friday reports for you lately?"),
        Turn(speaker="persona", text="It's been a lot, honestly. Mornings are hard."),
        Turn(speaker="learner", text="It sounds like the mornings have been really hard for you."),
    ])


def _long_transcript(scenario: Scenario, pairs: int) -> Transcript:
    from roleplay.transcript import Transcript, Turn

    turns = [Turn(speaker="persona", text=scenario.opening_line)]
    for i in range(pairs):
        turns.append(Turn(speaker="learner", text=f"Thanks for telling me about week {i}. What got in the way this "
                                                  f"time, and what would have helped you most?"))
        turns.append(Turn(speaker="persona", text=f"Week {i} was hard again: the client moved the deadline, I stayed "
                                                  f"late twice and still missed the Friday report."))
    return Transcript(scenario_id=scenario.id, level="novice", turns=turns)


def _grade_is_sound(grade: Any, rubric: Any, mode: str) -> None:
    from roleplay.grader import Grade

    assert isinstance(grade, Grade) and grade.structured_mode == mode
    assert [c.criterion_id for c in grade.criteria] == [c.id for c in rubric.criteria]
    for c in grade.criteria:
        assert 1 <= c.level <= 4
        assert c.supported or "facilitator" in c.rationale.lower()


def _one_criterion(scenario: Scenario) -> Any:
    full = catalog().rubric_for(scenario)
    return full.model_copy(update={"criteria": full.criteria[:1]})  # one criterion keeps the reply short


@pytest.mark.timeout(900)
def test_a_grade_longer_than_the_context_learns_the_window_from_the_refusal(
        small_server: RealModel, caplog: pytest.LogCaptureFixture) -> None:
    from roleplay.llm_judge import LLMJudge

    scenario = catalog().scenario("missed-deadlines")
    rubric = _one_criterion(scenario)
    transcript = _long_transcript(scenario, 30)
    model = client(small_server, structured_mode="json_object", structured_max_tokens=256)
    assert model.context_window is None
    try:
        with caplog.at_level(logging.INFO, logger="roleplay"):
            grade = LLMJudge(model, max_tokens=256).grade(transcript, rubric, scenario)
    except ProviderError as exc:  # the tiny model's reply stayed invalid: a clear error, never the refusal
        assert not isinstance(exc, ContextTooLong), str(exc)
        assert "\n" not in str(exc) and "did not return a valid" in str(exc)
        grade = None
    finally:
        model.close()
    assert model.context_window == SMALL_CONTEXT and model.configured_context_window is None
    refits = [r for r in caplog.records if "refused the grading prompt as too long" in r.getMessage()]
    assert len(refits) == 1 and "turns omitted" in refits[0].getMessage(), "refitted once, with turns left out"
    if grade is not None:
        _grade_is_sound(grade, rubric, "json_object")
        assert grade.fitted is not None and f"of {len(transcript.turns)} turns omitted" in grade.fitted
        assert "turns omitted to fit the model's context" in grade.prompt


# -- the LangChain adapter ---------------------------------------------------------------------------------------

def langchain(server: RealModel, **options: Any) -> LangChainChatModel:
    from roleplay.llm_langchain import LangChainChatModel

    settings: dict[str, Any] = {"model": f"openai:{server.model}", "base_url": server.base_url,
                                "api_key": "not-needed", "timeout": 60.0, "max_retries": 1, "backoff_base": 0.2,
                                "deadline": LANGCHAIN_DEADLINE, "reply_max_tokens": 48, "structured_max_tokens": 200,
                                "structured_mode": "prompt"}
    settings.update(options)
    return LangChainChatModel(**settings)


@pytest.mark.timeout(1500)
def test_the_langchain_adapter_plays_and_grades_on_the_real_server(small_server: RealModel, tmp_path: Path) -> None:
    from roleplay.llm_judge import LLMJudge
    from roleplay.practice import start_practice
    from roleplay.store import Store

    scenario = catalog().scenario("missed-deadlines")
    model = langchain(small_server)
    assert (model.provider, model.structured_mode) == ("openai", "prompt")
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    try:
        run = start_practice(store, "ana", scenario, "novice",
                             LLMVoice(model, GenerationSettings(temperature=0.7, max_tokens=48)))
        run.open()
        updates = list(run.respond("Hi Sam, thanks for making time. How have the last few weeks been for you?"))
        assert updates and updates[-1].strip(), "a reply was streamed"
        stored = store.get_session(run.session_id).turns
        assert [t.speaker for t in stored] == ["persona", "learner", "persona"]
        assert stored[-1].text == updates[-1]
        for brk in run.state.breaks:
            assert brk.repair in ("regenerated", "scripted")

        rubric = _one_criterion(scenario)
        try:
            grade = LLMJudge(model, max_tokens=200).grade(_short_transcript(scenario), rubric, scenario)
        except ProviderError as exc:  # a clear error the caller shows, with the reply kept: never a crash
            assert "\n" not in str(exc) and "did not return a valid JudgeReply" in str(exc) and "mode prompt" in str(exc)
            assert exc.last_reply is not None
        else:
            _grade_is_sound(grade, rubric, "prompt")
            assert grade.calls in (1, 2) and grade.raw_reply
    finally:
        store.close()
        model.close()


VERDICT_MESSAGES = [{"role": "system", "content": "You rate answers."},
                    {"role": "user", "content": "Rate this answer from 1 to 5: 'I listened and asked what was wrong.'"}]


def test_the_langchain_adapter_falls_back_when_json_schema_is_refused(small_server: RealModel) -> None:
    model = langchain(small_server, structured_mode="json_schema", structured_max_tokens=40)
    assert model.structured_mode == "json_schema"
    try:
        model.structured(VERDICT_MESSAGES, Verdict, GenerationSettings(temperature=0))
    except ProviderError as exc:  # the tiny model may still give no valid Verdict in the prompt
        assert "did not return a valid Verdict" in str(exc), str(exc)
    finally:
        model.close()
    assert model.structured_mode == "prompt"


def test_the_langchain_adapter_bounds_a_reply_by_max_tokens(small_server: RealModel) -> None:
    model = langchain(small_server)
    limit = 8
    stream = model.stream([{"role": "system", "content": "You are a helpful assistant."},
                           {"role": "user", "content": "Count from 1 to 100, one number per line."}],
                          GenerationSettings(temperature=0, max_tokens=limit))
    deltas = 0
    try:
        for _ in stream:
            deltas += 1
            if deltas > limit + 4:
                break
    finally:
        stream.close()
        model.close()
    assert deltas <= limit + 1, f"{deltas} deltas for max_tokens={limit}: {stream.text!r}"
