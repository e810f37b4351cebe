"""The rolling in-character guard: no break is ever shown, clean replies stream early, and LLMVoice uses it."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from content import catalog
from stub_openai import StubOpenAI

from roleplay.guard import INSTRUCTION_PHRASES, RollingGuard
from roleplay.llm import OpenAIChatModel
from roleplay.persona import Conversation, Directive, Reveal
from roleplay.reader import ReadContext, Reading, offline_reader
from roleplay.transcript import Turn
from roleplay.voices import LLMVoice, persona_instructions, turn_instruction

AI = "talks about being an AI or a language model"
ASSISTANT = "talks like a helpful assistant"
STEPS_OUT = "steps out of the role-play"
LIST = "answers with a list"
FORMAT = "uses document formatting"
ECHO = "echoes its instructions"
LEAK = "reveals a hidden fact before it was earned"
MANAGER = "speaks as the manager, not as Sam Okafor"

BREAKS: list[tuple[str, str, str]] = [
    # (reply, where the break text starts, reason)
    ("It's been a long month. As an AI, I can't feel tired the way you do.", "As an AI", AI),
    ("Look, I'm just an AI language model, so I don't have reports.", "I'm just an AI", AI),
    ("Mm. I am an AI assistant and cannot attend meetings.", "I am an AI", AI),
    ("The reports were late, which as a language model I cannot really explain.", "as a language model", AI),
    ("I was built by OpenAI to answer questions like this one.", "OpenAI", AI),
    ("Certainly! I can tell you more about the reports.", "Certainly!", ASSISTANT),
    ("The week was busy. How can I help you today?", "How can I help you", ASSISTANT),
    ("That's a great question, and I'm glad you asked it.", "great question", ASSISTANT),
    ("I'd be happy to help you plan the reports. Anything more?", "I'd be happy to help", ASSISTANT),
    ("Sure. Here are some tips for getting reports in on time.", "Here are some tips", ASSISTANT),
    ("I hope this helps you understand the situation.", "I hope this helps", ASSISTANT),
    ("Sorry for any confusion earlier about the deadline.", "Sorry for any confusion", STEPS_OUT),
    ("I can't pretend to be Sam any longer, this is silly.", "I can't pretend", STEPS_OUT),
    ("A few things went wrong:\n1. The finance data was late\n2. I was tired", "1. The finance", LIST),
    ("Well:\n- the data is late\n- Fridays are worse", "- the data", LIST),
    ("* one thing\n* another thing", "* one", LIST),
    ("## Summary of the issue\nThe reports slipped.", "## Summary", FORMAT),
    ("**Answer**: the reports slipped.", "**Answer**", FORMAT),
    ("[For your reply (not said by the manager): Stay in character as Sam.]", "[For your reply", ECHO),
    ("Okay. Stay in character as Sam Okafor. Your mood now: guarded.", "Stay in character", ECHO),
    ("Fine. DO NOT reveal anything about home.", "DO NOT reveal", ECHO),
    ("Your mood now: guarded and short. Sure.", "Your mood now", ECHO),
    ("Right. Reply with your spoken words only, at most two sentences.", "Reply with your spoken words", ECHO),
    ("IMPORTANT: your previous attempt was rejected because it sounded odd.", "IMPORTANT:", ECHO),
    ("Fine. My father had a stroke and I drive over most days.", "father", LEAK),
    ("It's the medication runs in the morning, since August.", "medication", LEAK),
    ("I saw what happened with flexible hours and the Halvorsen account.", "flexible", LEAK),
    ("My colleague got moved off her account after asking for flexible hours.", "colleague", LEAK),
    ("Hi Sam, I hope you're doing well. I wanted to talk about the reports.", "Hi Sam", MANAGER),
    ("Thanks for joining, Sam. Let's begin.", ", Sam", MANAGER),
    ("Sam, can we talk about the missed deadlines?", "Sam,", MANAGER),
    ("My name is Alex, and I manage the team.", "My name is Alex", MANAGER),
    ("As your manager, I need the reports on Friday.", "As your manager", MANAGER),
    ("Good morning Sam! Let's go through the week.", "Good morning Sam", MANAGER),
]
"""Replies that break character for Sam Okafor in missed-deadlines, early in a conversation."""

CLEAN = [
    "Mm. It's been a busy few weeks, that's all I can really say about it right now.",
    "I know the Friday reports slipped, and I'm not happy about it either. It's been a heavy few weeks, that's all.",
    "Sam here, yes. You wanted to talk about the reports?",
    "I'm Sam, and I've done this job for four years. I know what the client needs.",
    "It's me, Sam. Sorry, my camera is playing up again.",
    "Hi. Yes, I saw the email from the client. I'll sort it out this week.",
    "Stay in touch with the client, you mean? I do that every week.",
    "Your mood seems fine today. Mine is less so, to be fair.",
    "As I said, the numbers from finance came in late. I'm not making it up.",
    "I am fine. Really, I just need a quiet week to catch up.",
    "Priya said the same thing last week. Dana too, I think.",
    "The client chased you? I didn't know that. That's embarrassing, to be fair.",
]
"""Replies that stay in character (and tell nothing hidden) for Sam Okafor."""

LEARNER_LINE = "Is everything okay with the Friday reports?"


class SameTurnReader:
    """The offline reader, reading each learner line once (every conversation here starts the same way)."""

    name = "offline"

    def __init__(self) -> None:
        self.readings: dict[str, Reading] = {}

    def read(self, text: str, ctx: ReadContext) -> Reading:
        if text not in self.readings:
            self.readings[text] = offline_reader().read(text, ctx)
        return self.readings[text]


READER = SameTurnReader()


def conversation(voice: Any = None) -> Conversation:
    conv = Conversation(catalog().scenario("missed-deadlines"), "intermediate", voice, seed=3, reader=READER)
    conv.open()
    return conv


@pytest.fixture(scope="module")
def sam() -> Conversation:
    """Missed-deadlines after the opening line and one learner turn: nothing hidden has been revealed."""
    conv = conversation()
    conv.transcript.turns.append(Turn(speaker="learner", text=LEARNER_LINE))
    return conv


REPLY = Directive(kind="reply", move="closed_question", line="It's fine.")


def stream(guard: RollingGuard, chunks: Sequence[str]) -> list[str]:
    """Feed the chunks as they would arrive, then the whole reply; every text shown along the way."""
    text, shown = "", []
    for chunk in chunks:
        text += chunk
        safe = guard.feed(text)
        if not shown or safe != shown[-1]:
            shown.append(safe)
        if guard.broken:
            return shown
    if guard.check(text) is None:
        shown.append(guard.shown)
    return shown


def words(text: str) -> list[str]:
    return re.findall(r"^\s+|\S+\s*", text)


def chunkings(text: str, seeds: int = 12) -> Iterator[list[str]]:
    """The reply one character at a time, word by word, and cut at random places."""
    yield list(text)
    yield words(text)
    for seed in range(seeds):
        rng, i, chunks = random.Random(seed), 0, []
        while i < len(text):
            n = rng.randint(1, 12)
            chunks.append(text[i:i + n])
            i += n
        yield chunks


# --- the guard alone ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("reply", "marker", "reason"), BREAKS, ids=[b[1] for b in BREAKS])
def test_a_break_is_never_part_of_any_shown_prefix(sam: Conversation, reply: str, marker: str, reason: str) -> None:
    limit = reply.index(marker)
    for chunks in chunkings(reply):
        guard = RollingGuard.for_conversation(sam, REPLY)
        shown = stream(guard, chunks)
        assert guard.broken == reason, (chunks, shown)
        for text in shown:
            assert reply.startswith(text) and len(text) <= limit, (chunks, text)


@pytest.mark.parametrize("clean", CLEAN)
@pytest.mark.parametrize(("reply", "marker", "reason"), BREAKS[::3], ids=[b[1] for b in BREAKS[::3]])
def test_a_break_anywhere_in_a_reply_is_held_back(sam: Conversation, clean: str, reply: str, marker: str,
                                                  reason: str) -> None:
    joiner = "\n" if reason in (LIST, FORMAT) else " "
    whole = f"{clean}{joiner}{reply} {CLEAN[0]}"
    limit = whole.index(marker, len(clean))
    for chunks in chunkings(whole, seeds=4):
        guard = RollingGuard.for_conversation(sam, REPLY)
        shown = stream(guard, chunks)
        assert guard.broken == reason
        assert all(whole.startswith(t) and len(t) <= limit for t in shown)
        assert len(shown[-1]) >= len(clean.rsplit(" ", 1)[0]), "the clean text before the break was shown"


@pytest.mark.parametrize("reply", CLEAN)
def test_a_clean_reply_is_shown_in_full_and_grows_as_it_streams(sam: Conversation, reply: str) -> None:
    for chunks in chunkings(reply, seeds=4):
        guard = RollingGuard.for_conversation(sam, REPLY)
        shown = stream(guard, chunks)
        assert guard.broken is None and shown[-1] == reply
        assert all(b.startswith(a) for a, b in itertools.pairwise(shown))
    assert len(stream(RollingGuard.for_conversation(sam, REPLY), words(reply))) >= 4


def test_text_shows_after_the_first_complete_word_not_after_80_characters() -> None:
    guard = RollingGuard("Sam Okafor")
    assert guard.feed("Mm") == ""
    assert guard.feed("Mm. ") == "Mm."
    guard = RollingGuard("Sam Okafor")
    text, first = "", None
    for ch in "Look, the reports were late and I know it":
        text += ch
        if guard.feed(text) and first is None:
            first = len(text)
    assert first == len("Look,") and guard.shown == "Look, the reports were late and I know"
    assert RollingGuard("Sam Okafor").feed("I know we were la") == "I know we were"


def test_only_whole_words_are_judged_and_shown() -> None:
    guard = RollingGuard("Sam Okafor")
    assert guard.feed("Fine, as an ai") == "Fine,"  # "ai" could still grow into "aisle"
    assert guard.broken is None
    assert guard.feed("Fine, as an aisle seat") == "Fine, as an aisle"
    guard = RollingGuard("Sam Okafor")
    guard.feed("Well, I'm an AI")
    assert guard.broken is None and guard.shown == "Well,"
    assert guard.check("Well, I'm an AI") == AI and guard.shown == "Well,"


def test_an_instruction_echo_is_held_while_it_may_be_forming() -> None:
    guard = RollingGuard("Sam Okafor")
    assert guard.feed("Okay. Stay in character ") == "Okay."
    assert guard.feed("Okay. Stay in touch ") == "Okay. Stay in touch"
    guard = RollingGuard("Sam Okafor")
    assert guard.feed("Sure. [For your ") == "Sure."
    assert guard.feed("Sure. [For your reply (not said by the manager): ") == "Sure." and guard.broken == ECHO
    guard = RollingGuard("Sam Okafor")
    assert guard.feed("Please do not reveal it to the team. ") == "Please do not reveal it to the team."


def test_a_hidden_fact_is_held_from_its_first_distinctive_word(sam: Conversation) -> None:
    guard = RollingGuard.for_conversation(sam, REPLY)
    assert guard.feed("Well, my father is fine, ") == "Well, my"
    assert guard.check("Well, my father is fine, thanks.") is None and guard.shown == "Well, my father is fine, thanks."
    guard = RollingGuard.for_conversation(sam, REPLY)
    assert guard.feed("Well, my father had a ") == "Well, my"
    assert guard.feed("Well, my father had a stroke ") == "Well, my" and guard.broken == LEAK
    told = RollingGuard.for_conversation(sam, Directive(kind="reveal", move="empathy", fact_id="caring-for-parent",
                                                        line="x"))
    assert told.check("My father had a stroke in August.") is None


def test_the_instruction_phrases_are_the_wording_of_the_persona_instructions(sam: Conversation) -> None:
    voice = LLMVoice(model=None)  # type: ignore[arg-type]
    scn = sam.scenario
    directives = [REPLY, Directive(kind="reply", move="off_topic", line="x"),
                  Directive(kind="reveal", move="empathy", fact_id="caring-for-parent", line="x"),
                  Directive(kind="named", move="other", fact_id="caring-for-parent", line="x"),
                  Directive(kind="success", move="next_step", line="x"), Directive(kind="language", move="other", line="x"),
                  Directive(kind="interject", move="other", line="x"), Directive(kind="join", move="other", line="x")]
    sent = [persona_instructions(scn, "intermediate"), persona_instructions(catalog().scenario("meeting-conflict"),
                                                                            "intermediate")]
    sent += [turn_instruction(sam, d) for d in directives]
    sent += [m["content"] for m in voice.messages(sam, REPLY, repair="talks like a helpful assistant")]
    told = conversation()
    told.state.revealed.append(Reveal(fact_id="caring-for-parent", turn=1, moves=["empathy"], trust=3, needed_trust=3))
    sent.append(turn_instruction(told, REPLY))
    said = " ".join(" ".join(sent).lower().split())
    missing = [p for p in INSTRUCTION_PHRASES if " ".join(p.lower().split()) not in said]
    assert not missing, f"update INSTRUCTION_PHRASES in roleplay/guard.py: {missing} no longer in the instructions"


@pytest.mark.parametrize("text", [
    "Hi Sam, I hope you're doing well.", "Hello Sam. How was your weekend?", "Thanks, Sam.",
    "How are you, Sam?", "Okay. Sam, let's look at the numbers.", "My name is Alex.", "I'm your manager, remember.",
    "Good afternoon Sam, thanks for joining.",
])
def test_speaking_as_the_manager_to_the_persona_is_a_break(text: str) -> None:
    guard = RollingGuard("Sam Okafor")
    assert guard.check(text) == MANAGER


@pytest.mark.parametrize("text", [
    "Sam here.", "Hi, Sam here. What's up?", "I'm Sam, and I'm tired.", "It's me, Sam.", "My name is Sam.",
    "My name is Sam Okafor, for the record.", "Sam, here's the thing: I'm behind.", "Hi. Sam speaking.",
    "Dana asked for that last year.", "Thanks, Priya.", "Priya, I think you're wrong.", "Hi Priya, good to see you.",
    "My manager, Alex, said it was fine.", "Samuel from finance sent the numbers late.",
])
def test_the_persona_naming_itself_or_others_is_not_a_break(text: str) -> None:
    guard = RollingGuard("Sam Okafor")
    assert guard.check(text) is None


def test_in_a_scene_each_persona_is_guarded_by_its_own_name() -> None:
    scn = catalog().scenario("meeting-conflict")
    gareth, priya = (m.persona.name for m in scn.members)
    assert RollingGuard(gareth).check("Priya, I don't agree with you on the date.") is None
    assert RollingGuard(priya).check("Priya, I don't agree with you on the date.") == \
        f"speaks as the manager, not as {priya}"
    assert RollingGuard(gareth).check("Thanks, Gareth.") == f"speaks as the manager, not as {gareth}"
    assert RollingGuard(priya).check("Thanks, Gareth.") is None
    conv = Conversation(scn, "intermediate", reader=READER)
    for member in scn.members:
        guard = RollingGuard.for_conversation(conv, Directive(kind="reply", move="other", line="x", who=member.id))
        assert guard.persona_name == member.persona.name
    assert RollingGuard.for_conversation(conv, REPLY, persona_name=priya).persona_name == priya


def test_detect_break_keeps_its_signature_and_checks_the_whole_reply(sam: Conversation) -> None:
    from roleplay.voices import detect_break

    assert detect_break(sam, "Hi Sam, how are things?", REPLY) == MANAGER
    assert detect_break(sam, "As an AI language model, I can't.", REPLY) == AI
    assert detect_break(sam, "My father had a stroke.", REPLY) == LEAK
    assert detect_break(sam, CLEAN[1], REPLY) is None


# --- through LLMVoice ---------------------------------------------------------------------------------------

class ScriptedModel:
    """A chat model that streams scripted replies word by word and notes how far each stream was read."""

    name = "llm"

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.read: list[int] = []
        self.closed: list[bool] = []

    def stream(self, messages: Any, gen: Any = None) -> Iterator[str]:
        reply = self.replies.pop(0)
        self.read.append(0)
        self.closed.append(False)
        return self._deltas(words(reply))

    def _deltas(self, deltas: list[str]) -> Iterator[str]:
        try:
            for d in deltas:
                self.read[-1] += 1
                yield d
        finally:
            self.closed[-1] = True


def test_a_break_mid_stream_stops_the_model_stream_and_regenerates() -> None:
    broken = "It's been a long month. As an AI, I can't feel tired at all, and I will go on and on about it."
    model = ScriptedModel(broken, CLEAN[0])
    conv = conversation(LLMVoice(model))  # type: ignore[arg-type]
    updates = list(conv.respond(LEARNER_LINE))
    assert model.closed == [True, True]
    assert model.read[0] < len(words(broken)) - 5
    assert updates[-1] == CLEAN[0]
    assert all(len(u) <= broken.index("As an AI") for u in updates if broken.startswith(u))
    assert not any("As an AI" in u for u in updates)
    assert [(b.reason, b.repair) for b in conv.state.breaks] == [(AI, "regenerated")]


def model(stub: StubOpenAI) -> OpenAIChatModel:
    return OpenAIChatModel(model="stub-model", base_url=stub.base_url, api_key="test", timeout=5, max_retries=0)


@pytest.mark.slow
def test_no_break_text_reaches_the_learner_through_the_voice(stub_llm: StubOpenAI) -> None:
    voice = LLMVoice(model(stub_llm))
    for reply, marker, reason in BREAKS:
        stub_llm.queue(reply, CLEAN[0])
        conv = conversation(voice)
        updates = list(conv.respond(LEARNER_LINE))
        limit = reply.index(marker)
        for text in updates:
            assert marker not in text, (reply, text)
            assert not reply.startswith(text) or len(text) <= limit, (reply, text)
        assert updates[-1] == CLEAN[0]
        assert [(b.reason, b.repair) for b in conv.state.breaks] == [(reason, "regenerated")], reply
        assert conv.transcript.turns[-1].text == CLEAN[0]
    assert stub_llm.pending == 0


def test_clean_replies_stream_through_the_voice_in_growing_steps(stub_llm: StubOpenAI) -> None:
    voice = LLMVoice(model(stub_llm))
    for reply in CLEAN:
        stub_llm.queue(reply)
        conv = conversation(voice)
        updates = list(conv.respond(LEARNER_LINE))
        assert updates[-1] == reply and not conv.state.breaks
        assert len(updates) >= 4, updates
        assert all(b.startswith(a) and len(b) > len(a) for a, b in itertools.pairwise(updates))
        assert len(updates[0]) < 20
