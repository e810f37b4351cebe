"""The offline judge scores what the learner did in reply to the persona, not the words used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from content import catalog
from roleplay.gold import EvalError, load_gold
from roleplay.offline_judge import OfflineJudge
from roleplay.robustness import FILLER, STOCK_LINES, load_paraphrases, replaced, with_filler
from roleplay.transcript import Transcript, Turn

ROOT = Path(__file__).resolve().parent.parent
PERSONA = [
    "Hi. You wanted to talk about the reports?",
    "I know they were late. It won't happen again.",
    "I've just had a lot on, that's all.",
    "Mornings have been hard lately. I start later and catch up at night.",
    "It's family stuff. My dad's not been well since August.",
    "I could send you a note on Wednesday if Friday looks tight.",
    "Okay. Monday works.",
    "Thanks for listening, honestly.",
]
STRONG = [
    "Thanks for making the time, Sam. The last two reports missed the Friday deadline and the client chased me directly.",
    "You've been solid for four years, so this isn't like you. What's been going on?",
    "A lot on at work, or outside work too?",
    "So the mornings are where it slips, and you're making it up late at night. That's a long day.",
    "I'm sorry about your dad. That's a lot to carry on top of the job. How is he doing?",
    "I still need the report by Friday noon for the client. What would make that workable with your mornings?",
    "A note on Wednesday if Friday is at risk works for me. Shall we check in next Monday to see how it went?",
    "Good. Tell me if anything changes before then.",
]
POOR = ["You need to sort the reports out.", "That's not good enough, Sam.", "Just plan your week better.",
        "I don't want excuses.", "Have it in by Friday.", "Fine."]


def conversation(lines: list[str]) -> Transcript:
    turns = []
    for i, line in enumerate(lines):
        turns += [Turn(speaker="persona", text=PERSONA[i % len(PERSONA)]), Turn(speaker="learner", text=line)]
    return Transcript(scenario_id="missed-deadlines", turns=[*turns, Turn(speaker="persona", text="Okay.")])


@pytest.fixture(scope="module")
def judged() -> Any:
    cat = catalog()
    scn = cat.scenario("missed-deadlines")
    rubric = cat.rubric_for(scn)
    judge = OfflineJudge()
    return lambda t: judge.grade(t, rubric, scn)


@pytest.mark.slow
def test_a_strong_conversation_passes_and_stock_lines_do_not(judged: Any) -> None:
    strong = judged(conversation(STRONG))
    stock = judged(conversation(list(STOCK_LINES) * 2))
    assert strong.passed and strong.overall >= 2.5
    assert not stock.passed and stock.overall < 2.0
    assert stock.criterion("candid-feedback").level == 1


@pytest.mark.slow
def test_repeating_a_good_line_earns_nothing_more(judged: Any) -> None:
    once = judged(conversation(STRONG))
    again = judged(conversation(STRONG + [STRONG[3], STRONG[3], STRONG[4], STRONG[4]]))
    assert again.overall <= once.overall


@pytest.mark.slow
def test_filler_turns_add_nothing_to_a_poor_conversation(judged: Any) -> None:
    poor = judged(conversation(POOR))
    padded = judged(conversation(POOR + [FILLER] * 12))
    assert padded.overall - poor.overall <= 0.1
    assert not padded.passed


@pytest.mark.slow
def test_a_dictated_plan_is_not_an_agreed_next_step(judged: Any) -> None:
    dictated = judged(conversation(STRONG[:6] + ["You will send me the report by Thursday 5pm from now on, no exceptions.",
                                                 "I'll check it every Friday morning."]))
    agreed = judged(conversation(STRONG))
    assert dictated.criterion("next-steps").level < agreed.criterion("next-steps").level


@pytest.mark.slow
def test_blame_caps_candid_feedback_even_when_the_facts_are_clear(judged: Any) -> None:
    blunt = STRONG[:1] + ["Honestly, you've become lazy and careless, and everyone can see it."] + STRONG[2:]
    assert judged(conversation(blunt)).criterion("candid-feedback").level <= 2


def test_stock_and_filler_variants_of_the_gold_set() -> None:
    cat = catalog()
    gold = load_gold(ROOT / "evals" / "gold", cat)
    g = gold[0]
    stock = replaced(g, STOCK_LINES)
    assert [t.text for t in stock.learner_turns][:2] == list(STOCK_LINES[:2])
    assert [t.text for t in stock.turns if t.speaker == "persona"] == [t.text for t in g.transcript().turns
                                                                       if t.speaker == "persona"]
    padded = with_filler(g)
    assert sum(t.text == FILLER for t in padded.learner_turns) == 12
    assert padded.turns[-1] == g.transcript().turns[-1]


def test_paraphrase_pairs_load_and_keep_the_persona_turns(tmp_path: Path) -> None:
    cat = catalog()
    pairs = load_paraphrases(ROOT / "evals" / "grader-sets" / "paraphrase", cat)
    assert len(pairs) >= 10
    for p in pairs:
        a, b = p.transcripts()
        assert [t.text for t in a.turns if t.speaker == "persona"] == [t.text for t in b.turns if t.speaker == "persona"]
        assert len(a.learner_turns) == len(b.learner_turns)
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nscenario: missed-deadlines\noriginal:\n  - persona: a\n  - learner: b\n"
                   "paraphrase:\n  - persona: CHANGED\n  - learner: c\n")
    with pytest.raises(EvalError, match="persona turns"):
        load_paraphrases(tmp_path, cat)


def test_gold_set_is_large_and_partly_scored_twice() -> None:
    gold = load_gold(ROOT / "evals" / "gold", catalog())
    assert len(gold) >= 60 and len({g.scenario for g in gold}) == 5
    assert sum(g.second_scores is not None for g in gold) >= 20
    assert {g.split for g in gold} == {"dev", "test"}


@pytest.mark.slow
def test_better_lines_never_give_away_what_the_persona_never_told(judged: Any) -> None:
    guarded = ["Hi. You wanted to talk about the reports?", "I know. It won't happen again.", "I've just had a lot on.",
               "Fine.", "Okay.", "If you say so."]
    turns = [t for persona, line in zip(guarded, POOR) for t in (Turn(speaker="persona", text=persona),
                                                                 Turn(speaker="learner", text=line))]
    grade = judged(Transcript(scenario_id="missed-deadlines", turns=turns))
    for c in grade.criteria:
        assert not {"dad", "father", "stroke", "dana"} & set(c.better_alternative.lower().replace(",", " ").split()), c
    told = judged(conversation(STRONG))  # "My dad's not been well since August" was said: lines may draw on it
    assert all(c.better_alternative for c in told.criteria)


@pytest.mark.slow
def test_a_better_line_is_never_the_learners_own_and_answers_a_line_of_that_criterion(judged: Any) -> None:
    from roleplay.evidence import normalise
    from roleplay.offline_judge import read_transcript
    from roleplay.reader import offline_reader

    cat = catalog()
    scn = cat.scenario("missed-deadlines")
    rubric = cat.rubric_for(scn)
    lines = STRONG[:6] + ["Have I got that right?", "You will send me the report by Thursday 5pm from now on."]
    transcript = conversation(lines)
    grade = judged(transcript)
    units = {u.text: u for turn in read_transcript(transcript, scn, offline_reader()) for u in turn}
    own = {normalise(line) for line in lines}
    for c in grade.criteria:
        assert normalise(c.better_alternative) not in own
        if c.better_alternative.startswith('Instead of "'):
            quoted = c.better_alternative[len('Instead of "'):].split('", try')[0]
            checks = rubric.criterion(c.criterion_id).checks
            main = next(ch for ch in checks if ch.expect == "present").moves
            against = {m for ch in checks if ch.expect == "absent" for m in ch.moves}
            assert set(units[quoted].moves) & (set(main) | against), (c.criterion_id, quoted)


def test_reading_goes_on_after_the_cache_of_persona_lines_fills() -> None:
    from roleplay.reader import ReadContext, offline_reader

    reader = offline_reader()
    scenario = catalog().scenario("missed-deadlines")
    first = "Mornings have been hard lately."
    reader.read("What's been going on?", ReadContext(scenario=scenario, persona_lines=[first]))  # caches `first`
    reader._lines.update({f"a line from another session {i}": None for i in range(4100)})  # type: ignore[attr-defined]
    # `first` is known, the new line is not: the full cache is emptied while this turn is read
    reading = reader.read("So the mornings are the hard part.",
                          ReadContext(scenario=scenario, persona_lines=[first, "I start later and catch up at night."]))
    assert reading.moves
    reader._lines.clear()  # type: ignore[attr-defined]
