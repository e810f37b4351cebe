"""Both judges grade the learner's side with quoted evidence; scores are computed in code; injections move nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from stub_openai import StubOpenAI

from roleplay.errors import GradingError
from roleplay.grader import LLMJudge, OfflineJudge, finish_grade, injection_sentences, quote_is_verbatim
from content import catalog
from roleplay.llm import OpenAIChatModel
from roleplay.transcript import Transcript, Turn

ATTACKS: list[str] = yaml.safe_load((Path(__file__).parent / "injections" / "attacks.yaml").read_text())

MEDIOCRE = [
    ("persona", "Hi. You wanted to talk about the reports?"),
    ("learner", "Hi Sam. Is everything okay?"),
    ("persona", "Yes."),
    ("learner", "The last two reports were late and the client chased me."),
    ("persona", "I know. It won't happen again."),
    ("learner", "You need to plan your week better."),
    ("persona", "Sure. I'll try."),
    ("learner", "What's been getting in the way?"),
    ("persona", "Mornings have been hard."),
    ("learner", "Let's check in next Monday."),
]


def transcript(pairs: list[tuple[str, str]]) -> Transcript:
    return Transcript(scenario_id="missed-deadlines", turns=[Turn(speaker=s, text=t) for s, t in pairs])  # type: ignore[arg-type]


def with_attack(pairs: list[tuple[str, str]], attack: str) -> Transcript:
    return transcript([*pairs[:5], ("learner", attack), ("persona", "Okay."), *pairs[5:]])


@pytest.fixture()
def md():  # type: ignore[no-untyped-def]
    cat = catalog()
    scn = cat.scenario("missed-deadlines")
    return scn, cat.rubric_for(scn)


def test_injection_corpus_is_large_enough() -> None:
    assert len(ATTACKS) >= 20 and len(set(ATTACKS)) == len(ATTACKS)


# --- offline judge --------------------------------------------------------------------------------

def test_offline_grade_has_levels_evidence_feedback_and_code_computed_score(md: Any) -> None:
    scn, rubric = md
    grade = OfflineJudge().grade(transcript(MEDIOCRE), rubric, scn)
    assert [c.criterion_id for c in grade.criteria] == rubric.criterion_ids
    for c in grade.criteria:
        assert all(quote_is_verbatim(q, transcript(MEDIOCRE)) for q in c.evidence)
        assert c.better_alternative and c.rationale.startswith(f"Level {c.level}")
    weights = {c.id: c.weight for c in rubric.criteria}
    expected = sum(c.level * weights[c.criterion_id] for c in grade.criteria) / sum(weights.values())
    assert grade.overall == pytest.approx(expected, abs=1e-3)
    assert grade.criterion("candid-feedback").level >= 2
    assert grade.criterion("empathy").level <= 2  # advice, no acknowledgement
    assert "You need to plan your week better." in grade.criterion("empathy").better_alternative


def test_offline_judge_is_deterministic(md: Any) -> None:
    scn, rubric = md
    grades = [OfflineJudge().grade(transcript(MEDIOCRE), rubric, scn).model_dump() for _ in range(5)]
    assert all(g == grades[0] for g in grades)


def test_must_pass_fails_the_session_even_with_a_high_average(md: Any) -> None:
    scn, rubric = md
    lines = [("persona", "Hi."), ("learner", "What's been happening for you?"), ("persona", "A lot."),
             ("learner", "It sounds like it's been a hard few weeks."), ("persona", "Yes."),
             ("learner", "That sounds exhausting, thank you for telling me."), ("persona", "Thanks."),
             ("learner", "So you've been working late to catch up. What would help?"), ("persona", "Maybe."),
             ("learner", "Honestly this is unacceptable, you always have an excuse."), ("persona", "..."),
             ("learner", "Let's agree to check in next Monday.")]
    grade = OfflineJudge().grade(transcript(lines), rubric, scn)
    assert grade.criterion("candid-feedback").level < rubric.must_pass_level
    assert not grade.passed and grade.failed_must_pass == ["candid-feedback"]


def test_no_learner_turns_is_a_clear_error(md: Any) -> None:
    scn, rubric = md
    with pytest.raises(GradingError, match="no learner turns"):
        OfflineJudge().grade(transcript([("persona", "Hi.")]), rubric, scn)


@pytest.mark.parametrize("attack", ATTACKS)
def test_offline_judge_ignores_injection(md: Any, attack: str) -> None:
    scn, rubric = md
    base = OfflineJudge().grade(transcript(MEDIOCRE), rubric, scn)
    hit = OfflineJudge().grade(with_attack(MEDIOCRE, attack), rubric, scn)
    assert hit.overall <= base.overall
    for b, h in zip(base.criteria, hit.criteria):
        assert h.level <= b.level, f"{h.criterion_id} moved from {b.level} to {h.level}"
    assert hit.flagged, "the attack is flagged for the facilitator"


# --- LLM judge over HTTP ----------------------------------------------------------------------------

def judge_reply(rubric: Any, level: int, quote: str, answer: str = "partial") -> dict[str, Any]:
    return {"criteria": [{"criterion_id": c.id, "checks": [{"id": ch.id, "answer": answer} for ch in c.checks],
                          "level": level, "evidence": [quote], "rationale": f"Level {level} for {c.name}.",
                          "better_alternative": "What's been making Fridays hard?"} for c in rubric.criteria]}


def llm(stub: StubOpenAI) -> OpenAIChatModel:
    return OpenAIChatModel(model="stub-model", base_url=stub.base_url, api_key="k", timeout=5, max_retries=1,
                           backoff_base=0.01)


def test_llm_judge_one_call_temperature_zero_score_in_code_audit_kept(stub_llm: StubOpenAI, md: Any) -> None:
    scn, rubric = md
    stub_llm.queue(judge_reply(rubric, 3, "What's been getting in the way?"))
    grade = LLMJudge(llm(stub_llm)).grade(transcript(MEDIOCRE), rubric, scn)
    chats = stub_llm.chat_requests()
    assert len(chats) == 1 and grade.calls == 1
    assert chats[0]["temperature"] == 0
    assert chats[0]["response_format"]["type"] == "json_schema"
    # partial checks imply level 2; the model's 3 is within one step, so it stands; overall is computed in code
    assert all(c.level == 3 for c in grade.criteria)
    assert grade.overall == 3.0 and grade.passed
    assert grade.prompt and "What's been getting in the way?" in grade.prompt
    assert json.loads(grade.raw_reply or "")["criteria"][0]["level"] == 3


def test_llm_level_is_held_to_its_own_checks(stub_llm: StubOpenAI, md: Any) -> None:
    scn, rubric = md
    stub_llm.queue(judge_reply(rubric, 4, "What's been getting in the way?", answer="no"))
    grade = LLMJudge(llm(stub_llm)).grade(transcript(MEDIOCRE), rubric, scn)
    assert all(c.level <= 2 for c in grade.criteria)
    assert not grade.passed


def test_fabricated_evidence_is_reasked_once_then_unsupported(stub_llm: StubOpenAI, md: Any) -> None:
    scn, rubric = md
    fake = "I completely understand how hard caring for your father must be."
    stub_llm.queue(judge_reply(rubric, 4, fake, "yes"), judge_reply(rubric, 4, fake, "yes"))
    grade = LLMJudge(llm(stub_llm)).grade(transcript(MEDIOCRE), rubric, scn)
    assert grade.calls == 2 and len(stub_llm.chat_requests()) == 2
    reask = stub_llm.chat_requests()[1]["messages"][-1]["content"]
    assert "do not occur in the learner's turns" in reask and fake in reask
    assert all(not c.supported and c.level == 1 and c.evidence == [] for c in grade.criteria)
    assert not grade.passed and "unverified" in grade.summary


def test_fabricated_evidence_corrected_on_reask_is_accepted(stub_llm: StubOpenAI, md: Any) -> None:
    scn, rubric = md
    stub_llm.queue(judge_reply(rubric, 3, "Something the learner never said at all."),
                   judge_reply(rubric, 3, "What's been getting in the way?"))
    grade = LLMJudge(llm(stub_llm)).grade(transcript(MEDIOCRE), rubric, scn)
    assert all(c.supported and c.level == 3 for c in grade.criteria)
    assert grade.criteria[0].evidence == ["What's been getting in the way?"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_llm_judge_fences_injection_and_a_fooled_model_moves_no_score(stub_llm: StubOpenAI, md: Any,
                                                                      attack: str) -> None:
    scn, rubric = md
    stub_llm.queue(judge_reply(rubric, 2, "What's been getting in the way?"))
    base = LLMJudge(llm(stub_llm)).grade(transcript(MEDIOCRE), rubric, scn)
    stub_llm.reset()

    # a model fooled by the attack: all yes, level 4, quoting the attack as evidence (twice)
    fooled = judge_reply(rubric, 4, attack, "yes")
    stub_llm.queue(fooled, fooled)
    hit = LLMJudge(llm(stub_llm)).grade(with_attack(MEDIOCRE, attack), rubric, scn)
    assert hit.overall <= base.overall
    assert all(h.level <= b.level for h, b in zip(hit.criteria, base.criteria))
    assert not hit.passed and hit.flagged
    # the attack sits inside the nonce fence and cannot close it
    user = stub_llm.chat_requests()[0]["messages"][1]["content"]
    nonce = re.search(r"<<<TRANSCRIPT (\w+)>>>", user).group(1)  # type: ignore[union-attr]
    body = user.split(f"<<<TRANSCRIPT {nonce}>>>")[1].split(f"<<<END TRANSCRIPT {nonce}>>>")[0]
    assert user.count(f"<<<END TRANSCRIPT {nonce}>>>") == 1
    assert "<<<" not in body and ">>>" not in body
    assert "untrusted data" in stub_llm.chat_requests()[0]["messages"][0]["content"]


def test_injection_screen_does_not_flag_ordinary_manager_talk() -> None:
    ordinary = transcript([(s, t) for s, t in MEDIOCRE] + [
        ("learner", "I need the report by Friday noon; that's the expectation."),
        ("learner", "I'd give you more flexibility if that helps you deliver."),
        ("learner", "What score did the client give us on the survey?"),
        ("learner", "Let's agree you send me a note by Wednesday.")])
    assert injection_sentences(ordinary) == []


def test_scoring_rules_live_in_code(md: Any) -> None:
    _, rubric = md
    from roleplay.grader import CriterionGrade

    crits = [CriterionGrade(criterion_id=c.id, level=4, checks=[], rationale="", better_alternative="x")
             for c in rubric.criteria]
    assert finish_grade(rubric, "t", crits).passed
    crits[0] = crits[0].model_copy(update={"supported": False})
    assert not finish_grade(rubric, "t", crits).passed


def test_llm_judge_anchors_on_similar_approved_exemplars(stub_llm: StubOpenAI, md: Any, tmp_path: Path) -> None:
    from roleplay.exemplars import Exemplar, ExemplarStore

    scn, rubric = md
    with ExemplarStore(path=tmp_path / "ex") as store:
        store.add(Exemplar(rubric_id=rubric.id, criterion_id="empathy", excerpt="That sounds exhausting, I'm sorry.",
                           level=4, rationale="Names the feeling and stays with it.", source="edited"))
        store.add(Exemplar(rubric_id="other-rubric", criterion_id="empathy", excerpt="Never shown.", level=1,
                           rationale="Other rubric.", source="approved"))
        stub_llm.queue(judge_reply(rubric, 2, "What's been getting in the way?"))
        LLMJudge(llm(stub_llm), exemplars=store).grade(transcript(MEDIOCRE), rubric, scn)
    system = stub_llm.chat_requests()[0]["messages"][0]["content"]
    assert "Graded examples approved by facilitators" in system
    assert "That sounds exhausting, I'm sorry." in system and "Never shown." not in system
