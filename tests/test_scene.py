"""Scenes with a cast: who answers, who speaks up, what each persona's mind and model context hold, the facts counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from stub_openai import StubOpenAI

from roleplay.errors import ValidationErrors
from roleplay.gold import GoldTranscript
from roleplay.grader import meeting_capped
from roleplay.llm import OpenAIChatModel
from roleplay.meeting import MeetingFacts
from roleplay.persona import Conversation
from roleplay.practice import resume_practice, start_practice
from roleplay.rubric import load_rubric
from roleplay.scenario import Scenario, load_scenario
from roleplay.store import Store
from roleplay.voices import LLMVoice

MOVES = ["greeting", "open_question", "closed_question", "reflection", "summary", "empathy", "affirmation",
         "candid_feedback", "advice", "directive", "blame", "threat", "dismissive", "next_step", "off_topic", "other"]


def _script(name: str) -> dict[str, Any]:
    def lines(move: str) -> dict[str, list[str]]:
        return {mood: [f"({name}) {move} {mood} {k}." for k in range(4)] for mood in ("guarded", "warming", "open")}
    return {"reactions": {m: lines(m) for m in MOVES}, "fallback": lines("fallback")}


def _person(name: str, role: str) -> dict[str, Any]:
    return {"name": name, "role": role, "personality": "direct", "speaking_style": "short answers",
            "wants": "a fair hearing", "resists": ["being talked over"], "pushback": [f"({name}) Hm."]}


FACT_G = "Two senior support agents resigned last week and one leaves before the launch."
FACT_P = "Priya signed a campaign contract with a forty thousand pound cancellation penalty."
FACT_S = "Sipho already ran the same migration at his last company and it failed on the billing export."


def scene_doc() -> dict[str, Any]:
    return {
        "id": "test-scene", "title": "A test meeting", "sprint": "virtual-meetings", "summary": "Three people, one call.",
        "rubric": "meeting-facilitation", "briefing": "You chair a call with Gareth, Priya and Sipho.",
        "objectives": ["Chair it fairly."],
        "cast": [
            {"id": "gareth", "persona": _person("Gareth Lewis", "Support Lead"), "opening_line": "Let's get on with it.",
             "opposes": ["priya"], "speaks_up": {"cuts_across_every": 2},
             "interjections": ["(Gareth) Sorry, can I just come in there?", "(Gareth) With respect, that's not it."],
             "hidden_facts": [{"id": "seniors-left", "fact": FACT_G, "hint": "your team is stretched thin",
                               "reveal_line": "(Gareth) Two of my seniors have resigned.",
                               "reveal_when": {"moves_any": ["open_question", "reflection"], "min_trust": 2, "min_turn": 2}}],
             "script": _script("Gareth")},
            {"id": "priya", "persona": _person("Priya Nair", "Product Lead"), "opening_line": "The date stays.",
             "opposes": ["gareth"],
             "hidden_facts": [{"id": "penalty", "fact": FACT_P, "hint": "a commercial commitment you made",
                               "reveal_line": "(Priya) There's a penalty if we slip.",
                               "reveal_when": {"moves_any": ["open_question", "reflection"], "min_trust": 2, "min_turn": 2}}],
             "script": _script("Priya")},
            {"id": "sipho", "persona": _person("Sipho Dlamini", "Data Engineer"), "speaks_up": {"only_when_addressed": True,
             "when_sided_against": False}, "joins_at_turn": 1, "join_line": "(Sipho) Sorry I'm late, camera's off.",
             "hidden_facts": [{"id": "tried-before", "fact": FACT_S, "hint": "an experience you keep to yourself",
                               "reveal_line": "(Sipho) I've done this migration before. It failed.",
                               "reveal_when": {"moves_any": ["open_question", "reflection"], "min_trust": 2, "min_turn": 2}}],
             "script": _script("Sipho")},
        ],
        "meeting": {"max_replies": 2},
        "levels": {lvl: {"resistance": "low", "starting_trust": 2, "max_turns": 20}
                   for lvl in ("novice", "intermediate", "expert")},
        "end": {"success_line": "Agreed.", "walkout_line": "I'm off.", "timeout_line": "Out of time."},
    }


@pytest.fixture
def scene() -> Scenario:
    return Scenario.model_validate(scene_doc())


def replies(conv: Conversation, line: str) -> list[tuple[str, str]]:
    """Who spoke and what, for the persona turns after `line`."""
    before = len(conv.transcript.turns)
    conv.say(line)
    return [(t.who or "", t.text) for t in conv.transcript.turns[before + 1:]]


@pytest.mark.slow
def test_the_person_addressed_by_name_answers_first(scene: Scenario) -> None:
    conv = Conversation(scene, "novice", seed=1)
    conv.open()
    asked = [("Priya, what would moving the date cost you?", "priya"),
             ("Gareth, what does your team need to be ready?", "gareth"),
             ("Sipho, how do you see it?", "sipho"),
             ("Priya, what did the partners say?", "priya")]
    for line, who in asked:
        said = replies(conv, line)
        assert said[0][0] == who, (line, said)
        assert said[0][1].startswith(f"({scene.member(who).first_name})")  # each speaks their own lines only
    assert conv.state.meeting is not None and conv.state.meeting.asked == {"priya": 2, "gareth": 1, "sipho": 1}


@pytest.mark.slow
def test_a_question_to_everyone_is_answered_by_several_but_never_by_the_quiet_member(scene: Scenario) -> None:
    conv = Conversation(scene, "novice", seed=2)
    conv.open()
    replies(conv, "Thanks for coming. What does each of you need from today?")
    for _ in range(3):
        said = replies(conv, "What else should we all keep in mind?")
        people = [w for w, _ in said]
        assert 1 <= len(people) <= scene.meeting.max_replies
        assert "sipho" not in people
    assert "sipho" == replies(conv, "Sipho, what do you think?")[0][0]


def test_a_late_joiner_arrives_after_their_turn_and_hears_nothing_said_before(scene: Scenario) -> None:
    conv = Conversation(scene, "novice", seed=3)
    conv.open()
    assert [t.who for t in conv.opening_turns()] == ["gareth", "priya"]
    first = replies(conv, "Sipho, are you there? Let's start with purpose and time.")
    assert first[-1] == ("sipho", "(Sipho) Sorry I'm late, camera's off.")
    assert all(w != "sipho" for w, _ in first[:-1])  # not there yet: someone else answered the turn
    heard = conv.history_messages("sipho")
    assert [m["content"] for m in heard] == ["(Sipho) Sorry I'm late, camera's off."]


def test_siding_with_one_costs_the_others_trust_and_they_speak_up(scene: Scenario) -> None:
    conv = Conversation(scene, "intermediate", seed=4)
    conv.open()
    before_g, before_p = conv.state.trust, conv.state.cast["priya"].trust
    said = replies(conv, "Priya's right, the date should stay.")
    assert conv.state.trust < before_g
    assert conv.state.cast["priya"].trust >= before_p
    assert "gareth" in [w for w, _ in said]
    assert conv.state.meeting is not None and [(s.member, s.side) for s in conv.state.meeting.sides] == [("priya", 1)]
    assert conv.state.meeting.answer("no_sides") == "partial"


@pytest.mark.slow
def test_a_dominant_talker_cuts_across_until_the_floor_is_handed_back_twice(scene: Scenario) -> None:
    conv = Conversation(scene, "novice", seed=5)
    conv.open()
    facts = conv.state.meeting
    assert facts is not None
    kinds = []
    for turn in range(1, 11):
        said = replies(conv, "Priya, what matters most to you here?" if turn % 2 == 0 else "Priya, go on please.")
        kinds.append([w for w, _ in said])
    cut = [i for i in facts.interruptions]
    assert cut and all(i.by == "gareth" and i.cut_off == "priya" for i in cut)
    assert sum(i.handled for i in cut) == 2 and len(cut) == 2  # handed back twice, then he stops cutting across
    assert facts.answer("interruptions_handled") == "yes"


@pytest.mark.slow
def test_reveals_come_only_from_the_person_who_holds_the_fact(scene: Scenario) -> None:
    conv = Conversation(scene, "novice", seed=6)
    conv.open()
    for line in ["Priya, what matters most to you here?", "So for you, Priya, the partners are the worry.",
                 "Priya, what happens if the date moves?", "Priya, what else is behind that?"]:
        conv.say(line)
    assert "penalty" in conv.state.revealed_ids
    assert [r.by for r in conv.state.revealed] == ["priya"] * len(conv.state.revealed)
    assert "seniors-left" not in conv.state.revealed_ids and "tried-before" not in conv.state.revealed_ids


def _llm_voice(stub: StubOpenAI) -> LLMVoice:
    stub.default = lambda body: "Fine. Let's keep this short and to the point, please, I have another call."
    stub.token_delay = 0.0
    return LLMVoice(OpenAIChatModel(model="stub-model", base_url=stub.base_url, api_key="test", timeout=2.0,
                                    max_retries=1, backoff_base=0.01, retry_after_max=0.05))


@pytest.mark.slow
def test_no_persona_model_context_holds_another_personas_secrets_or_an_unrevealed_fact(
        scene: Scenario, stub_llm: StubOpenAI) -> None:
    conv = Conversation(scene, "novice", voice=_llm_voice(stub_llm), seed=7)
    conv.open()
    for line in ["Thanks all. Gareth, what does your team need?", "Priya, what matters most to you?",
                 "Sipho, what's your view?", "So, Priya, the partners are the worry.", "Priya, what else is behind it?",
                 "Gareth, what happened last time?"]:
        conv.say(line)
    sent = stub_llm.chat_requests()
    assert sent
    facts = {f.id: f for m in scene.members for f in m.hidden_facts}
    holder = {f.id: m for m in scene.members for f in m.hidden_facts}
    for request in sent:
        text = json.dumps(request["messages"])
        system = request["messages"][0]["content"]
        speaker = next(m for m in scene.members if system.startswith(f"You are {m.persona.name},"))
        for fid, fact in facts.items():
            if holder[fid].id != speaker.id:
                assert fact.fact not in text and fact.hint not in text, (speaker.id, fid)  # never another's secret
            elif "now tell them" not in text:
                assert fact.fact not in text  # own fact only once the code decided to reveal it
        assert all(m["role"] != "assistant" or not m["content"].startswith("(") for m in request["messages"])
    speakers = {next(m.id for m in scene.members if r["messages"][0]["content"].startswith(f"You are {m.persona.name},"))
                for r in sent}
    assert speakers == {"gareth", "priya", "sipho"}  # each persona spoke through its own context


def test_the_scene_is_stored_with_speakers_and_resumes_where_it_stopped(scene: Scenario, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'rp.db'}")
    run = start_practice(store, "ana", scene, "novice", seed=8)
    run.open()
    list(run.respond_scene("Priya, what matters most to you?"))
    list(run.respond_scene("Gareth, what does your team need?"))
    stored = store.get_session(run.session_id)
    assert [t.meta.get("who") for t in stored.turns if t.speaker == "persona"] == \
        [t.who for t in run.conversation.transcript.turns if t.speaker == "persona"]

    class One:
        def scenario(self, _id: str) -> Scenario:
            return scene

    again = resume_practice(store, run.session_id, One())  # type: ignore[arg-type]
    assert again.state.cast["priya"].trust == run.state.cast["priya"].trust
    assert again.state.meeting == run.state.meeting
    said = [s.who for s in again.respond_scene("Priya, and what would help?")]
    assert said[0] == "priya"
    text = again.conversation.transcript.to_text(names={m.id: m.persona.name for m in scene.members})
    assert "Priya Nair: (Priya)" in text and "Gareth Lewis: (Gareth)" in text


def test_a_learner_who_lets_one_person_dominate_sees_it_in_the_airtime_and_the_grade() -> None:
    rubric = load_rubric("rubrics/meeting-facilitation.yaml")
    assert rubric.criterion("frames-the-meeting").meeting_checks  # the shipped rubric caps airtime by the facts
    lopsided = MeetingFacts(words={"learner": 60, "gareth": 400, "priya": 20}, present=["gareth", "priya"])
    even = MeetingFacts(words={"learner": 60, "gareth": 200, "priya": 190}, present=["gareth", "priya"])
    assert lopsided.balance() < 0.6 <= 0.8 <= even.balance()
    from roleplay.grader import CriterionGrade

    top = [CriterionGrade(criterion_id=c.id, level=4, checks=[], evidence=[], rationale="Level 4.",
                          better_alternative="x") for c in rubric.criteria]
    capped = {g.criterion_id: g for g in meeting_capped(rubric, top, lopsided)}
    assert capped["frames-the-meeting"].level <= 2 and "airtime" in capped["frames-the-meeting"].rationale.lower()
    assert {g.criterion_id: g.level for g in meeting_capped(rubric, top, even)}["frames-the-meeting"] == 4


@pytest.mark.parametrize(("change", "says"), [
    (lambda d: d.update(cast=d["cast"][:1]), "2 to 4 members"),
    (lambda d: d.update(persona=d["cast"][0]["persona"]), "give persona inside each cast member"),
    (lambda d: d["cast"][0].update(opposes=["nobody"]), "'nobody' is not another cast member's id"),
    (lambda d: d["cast"][1]["hidden_facts"][0].update(id="seniors-left"), "duplicate id 'seniors-left'"),
    (lambda d: d["cast"][2].pop("join_line"), "needs a join_line"),
])
def test_a_bad_cast_gets_one_line_naming_the_file_line_and_field(tmp_path: Path, change: Any, says: str) -> None:
    doc = scene_doc()
    change(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ValidationErrors) as info:
        load_scenario(path)
    message = str(info.value)
    assert says in message and f"{path}:" in message


def test_gold_transcripts_name_the_persona_who_spoke(scene: Scenario) -> None:
    gold = GoldTranscript(id="g", scenario="test-scene", quality="fair", turns=[
        {"gareth": "Let's get on with it."}, {"learner": "Priya, what do you need?"}, {"priya": "The date."}],
        scores={})
    t = gold.transcript()
    assert [(x.speaker, x.who) for x in t.turns] == [("persona", "gareth"), ("learner", None), ("persona", "priya")]


def test_a_persona_that_writes_another_persons_lines_is_stopped_before_the_learner_sees_them(
        scene: Scenario, stub_llm: StubOpenAI) -> None:
    voice = _llm_voice(stub_llm)
    stub_llm.default = lambda body: ("Fine, let's hear it. [Priya Nair]: The date stays, and that's final."
                                     if body["messages"][0]["content"].startswith("You are Gareth") else
                                     "The partners have told their own customers, so the date matters.")
    conv = Conversation(scene, "novice", voice=voice, seed=9)
    conv.open()
    shown = [s.text for s in conv.respond_scene("Gareth, what does your team need?")]
    assert shown and not any("The date stays" in text for text in shown)
    assert conv.state.breaks and conv.state.breaks[0].reason == "speaks for Priya Nair"
    gareth = [t for t in conv.transcript.turns if t.who == "gareth"][-1]
    assert "[Priya" not in gareth.text


def test_the_llm_judge_is_told_the_meeting_facts_and_who_spoke(scene: Scenario) -> None:
    from roleplay.llm_judge import LLMJudge
    from roleplay.transcript import Transcript, Turn

    facts = MeetingFacts(words={"learner": 30, "gareth": 300, "priya": 15}, present=["gareth", "priya"],
                         asked={"gareth": 3})
    transcript = Transcript(scenario_id=scene.id, meeting=facts, turns=[
        Turn(speaker="persona", text="Let's get on with it.", who="gareth"),
        Turn(speaker="learner", text="Gareth, what does your team need?"),
        Turn(speaker="persona", text="Three weeks.", who="gareth")])
    rubric = load_rubric("rubrics/meeting-facilitation.yaml")
    judge = LLMJudge(model=None, model_name="stub")  # type: ignore[arg-type]
    user = judge.prompt(transcript, rubric, scene, "n0nce")[1]["content"]
    assert "Airtime (share of words): Gareth Lewis (gareth) 87%" in user
    assert "Asked by name: Gareth Lewis (gareth) 3" in user
    assert "P (gareth): Let's get on with it." in user


def test_actions_with_an_owner_or_a_time_are_counted_and_framing_is_not(scene: Scenario) -> None:
    conv = Conversation(scene, "novice", seed=10)
    conv.open()
    conv.say("Thanks for coming. We have forty-five minutes and one decision to prepare for Friday's board.")
    conv.say("So let's agree: Priya sends the cover plan by Wednesday and Gareth checks it by Thursday noon.")
    facts = conv.state.meeting
    assert facts is not None
    assert [d.turn for d in facts.decisions] == [2]
    assert set(facts.decisions[0].owners) == {"priya", "gareth"}
    assert facts.answer("owners_named") == "yes"


def test_the_meeting_facts_block_shows_the_balance_and_leaves_the_shares_to_the_bars(scene: Scenario) -> None:
    from roleplay.ui.render import CastView, airtime_html

    facts = MeetingFacts(words={"learner": 60, "gareth": 400, "priya": 20}, present=["gareth", "priya"],
                         asked={"gareth": 2})
    html = airtime_html(facts, CastView(scene))
    assert "Balance of the others&#x27; airtime" in html and "Airtime (share of words)" not in html
    assert html.count('class="rp-bar"') == 3
