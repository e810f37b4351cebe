"""Rubric grading of the learner's side of a transcript: the grade, scoring in code, and the one interface.

Two judges sit behind `Judge`: the offline judge (`roleplay.offline_judge`, decided on each turn's `Reading`) and the
LLM judge (`roleplay.llm_judge`, one structured call). Both end in `finish_grade`, which applies weights, the
threshold and must-pass rules in code; evidence rules are in `roleplay.evidence`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from roleplay.errors import GradingError
from roleplay.meeting import MeetingFacts
from roleplay.rubric import Criterion, Rubric
from roleplay.scenario import Scenario
from roleplay.transcript import Transcript

if TYPE_CHECKING:
    from roleplay.catalog import Catalog
    from roleplay.store import Store

_MOVED = {"OfflineJudge": "roleplay.offline_judge", "LLMJudge": "roleplay.llm_judge", "JudgeReply": "roleplay.llm_judge",
          "fence_transcript": "roleplay.llm_judge", "render_rubric": "roleplay.llm_judge",
          "quote_is_verbatim": "roleplay.evidence"}


def __getattr__(name: str) -> Any:
    """The judges live in their own modules; `roleplay.grader.OfflineJudge` and friends still resolve."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'roleplay.grader' has no attribute {name!r}")


Answer = Literal["yes", "partial", "no"]
ANSWER_VALUE = {"yes": 1.0, "partial": 0.5, "no": 0.0}


class CheckResult(BaseModel):
    """The answer to one yes / partial / no check."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Check id from the rubric.")
    answer: Answer = Field(description="yes, partial or no.")


class CriterionGrade(BaseModel):
    """The grade of one criterion, with evidence quoted from the learner's turns."""

    model_config = ConfigDict(extra="forbid")
    criterion_id: str = Field(description="Criterion id from the rubric.")
    level: int = Field(ge=1, le=4, description="Level 1-4 after the code's consistency rules.")
    checks: list[CheckResult] = Field(description="Answers to the criterion's checks.")
    evidence: list[str] = Field(default_factory=list, description="Verbatim quotes from learner turns.")
    rationale: str = Field(description="Why this level, in a sentence or two.")
    better_alternative: str = Field(description="A line the learner could have said instead.")
    supported: bool = Field(default=True, description="False when the evidence could not be verified: a facilitator "
                            "must confirm the level (the grade cannot pass until then).")
    judge_level: int | None = Field(default=None, ge=1, le=4, description="The level the model proposed, before the "
                                    "code's rules (LLM judge); kept beside `level` for the facilitator.")
    sample_levels: list[int] = Field(default_factory=list, description="Levels of each sample when the judge graded "
                                     "several times (self-consistency); `level` is their median.")


class Grade(BaseModel):
    """A graded transcript; computed in code from criterion levels, checks and weights."""

    model_config = ConfigDict(extra="forbid")
    rubric_id: str = Field(description="Rubric used.")
    judge: str = Field(description="'offline' or 'llm:<model>'.")
    criteria: list[CriterionGrade] = Field(description="One grade per rubric criterion, in rubric order.")
    overall: float = Field(description="Weighted mean level, 1-4.")
    scaled: float = Field(description="Overall mapped to 0-1 ((overall - 1) / 3).")
    passed: bool = Field(description="Overall >= threshold, every must-pass criterion at its level, all supported.")
    failed_must_pass: list[str] = Field(default_factory=list, description="Must-pass criteria below their level.")
    summary: str = Field(description="Two-line feedback summary for the learner.")
    prompt: str | None = Field(default=None, description="Exact prompt sent (LLM judge), for audit.")
    raw_reply: str | None = Field(default=None, description="Raw model reply (LLM judge), for audit.")
    calls: int = Field(default=0, description="Model calls made for this grade.")
    flagged: list[str] = Field(default_factory=list, description="Learner sentences that seem to address the grader "
                               "(advisory, for the facilitator; they are graded like any other sentence).")
    samples: int = Field(default=1, description="Times the transcript was graded (self-consistency).")
    prompt_tokens: int | None = Field(default=None, description="Prompt tokens of all calls, as the server reported.")
    completion_tokens: int | None = Field(default=None, description="Completion tokens of all calls, as reported.")
    structured_mode: str | None = Field(default=None, description="Structured-output mode used (LLM judge).")
    fitted: str | None = Field(default=None, description="How the prompt was shortened to fit the model's context "
                               "window (LLM judge), e.g. 'compact schema; 14 of 40 turns omitted'; None when it was "
                               "sent whole.")

    meeting_facts: list[str] = Field(default_factory=list, description="In a meeting with several personas: what the "
                                     "meeting counted (airtime, sides, interruptions, owners), as given to the grader.")

    def criterion(self, criterion_id: str) -> CriterionGrade:
        """The grade of one criterion."""
        return next(c for c in self.criteria if c.criterion_id == criterion_id)


class Judge(Protocol):
    """Grades a transcript against a rubric."""

    name: str

    def grade(self, transcript: Transcript, rubric: Rubric, scenario: Scenario | None = None) -> Grade:
        """Grade the learner's side of `transcript`."""
        ...


# --- scoring, shared by both judges -----------------------------------------------------------

def level_from_checks(criterion: Criterion, answers: Mapping[str, Answer]) -> int:
    """Level implied by the checks: present-checks set it, absent-checks (e.g. no blame) cap it."""
    present = [c for c in criterion.checks if c.expect == "present"]
    absent = [c for c in criterion.checks if c.expect == "absent"]
    if present:
        s = sum(ANSWER_VALUE[answers.get(c.id, "no")] for c in present) / len(present)
        level = 1 if s == 0 else 2 if s <= 0.5 else 3 if s < 1 else 4
    else:
        s = sum(ANSWER_VALUE[answers.get(c.id, "no")] for c in absent) / max(1, len(absent))
        level = 1 if s == 0 else 2 if s <= 0.5 else 3 if s < 1 else 4
    for c in absent:
        if answers.get(c.id) == "no":
            level = min(level, 2)
        elif answers.get(c.id) == "partial":
            level = min(level, 3)
    return level


def cast_names(scenario: Scenario | None) -> dict[str, str]:
    """Cast id -> name of a scenario's personas."""
    return {m.id: m.persona.name for m in scenario.members} if scenario is not None else {}


def meeting_capped(rubric: Rubric, criteria: list[CriterionGrade], meeting: MeetingFacts) -> list[CriterionGrade]:
    """Criterion grades with the rubric's meeting checks answered from the counted facts: a 'no' caps the level at the
    check's cap, a 'partial' one higher; the answers and caps are told in the rationale."""
    out = []
    for g in criteria:
        crit = rubric.criterion(g.criterion_id)
        notes, level = [], g.level
        for check in crit.meeting_checks:
            answer = meeting.answer(check.fact)
            cap = check.cap if answer == "no" else check.cap + 1 if answer == "partial" else 4
            if level > cap:
                notes.append(f"{check.question.rstrip('?')}: {answer}, so at most level {cap}")
                level = cap
            else:
                notes.append(f"{check.question.rstrip('?')}: {answer}")
        if notes:
            g = g.model_copy(update={"level": level, "rationale": f"{g.rationale} Meeting facts: {'; '.join(notes)}."})
        out.append(g)
    return out


def finish_grade(rubric: Rubric, judge: str, criteria: list[CriterionGrade], *, meeting: MeetingFacts | None = None,
                 names: dict[str, str] | None = None, **extra: Any) -> Grade:
    """Apply the meeting's counted facts, weights, the threshold and must-pass rules in code.

    Args:
        meeting: The facts a meeting with several personas counted; the rubric's meeting checks cap levels by them.
        names: Cast id -> name, for the facts as told in the grade.
    """
    if meeting is not None:
        criteria = meeting_capped(rubric, criteria, meeting)
        extra["meeting_facts"] = meeting.summary_lines(names or {})
    weights = {c.id: c.weight for c in rubric.criteria}
    total = sum(weights[g.criterion_id] for g in criteria)
    overall = round(sum(g.level * weights[g.criterion_id] for g in criteria) / total, 3)
    failed = [c.id for c in rubric.criteria if c.must_pass
              and next(g for g in criteria if g.criterion_id == c.id).level < rubric.must_pass_level]
    unsupported = [g.criterion_id for g in criteria if not g.supported]
    passed = overall >= rubric.pass_threshold and not failed and not unsupported
    strongest = max(criteria, key=lambda g: (g.level, weights[g.criterion_id]))
    weakest = min(criteria, key=lambda g: (g.level, -weights[g.criterion_id]))
    name = {c.id: c.name for c in rubric.criteria}
    spread = (f"All criteria at level {strongest.level}." if strongest.level == weakest.level else
              f"Strongest: {name[strongest.criterion_id]} (level {strongest.level}). "
              f"Work on: {name[weakest.criterion_id]} (level {weakest.level}).")
    summary = (f"{'Pass' if passed else 'Not yet'}: {overall:.2f} of 4 (pass at {rubric.pass_threshold:g}). {spread}"
               + (f" Must-pass not met: {', '.join(name[f] for f in failed)}." if failed else "")
               + (f" Needs your facilitator: the evidence for {', '.join(name[u] for u in unsupported)} "
                  "could not be verified." if unsupported else ""))
    return Grade(rubric_id=rubric.id, judge=judge, criteria=criteria, overall=overall,
                 scaled=round((overall - 1) / 3, 4), passed=passed, failed_must_pass=failed, summary=summary, **extra)


def injection_sentences(transcript: Transcript) -> list[str]:
    """Learner sentences that seem to address the grader (advisory: shown to facilitators, still graded)."""
    from roleplay.injection import flag_sentences
    from roleplay.moves import split_sentences

    return [f.text for f in flag_sentences(s for t in transcript.learner_turns for s in split_sentences(t.text))]


def require_learner_turns(transcript: Transcript) -> None:
    """Refuse to grade a transcript in which the learner said nothing."""
    if not any(t.text.strip() for t in transcript.learner_turns):
        raise GradingError("the transcript has no learner turns; there is nothing to grade")


def _alternatives(criterion: Criterion, scenario: Scenario | None) -> list[str]:
    if scenario is not None and scenario.model_lines.get(criterion.id):
        return scenario.model_lines[criterion.id]
    return criterion.example_lines


_SHORT_COMMON = set("the and you your his him her she for not had has was but are our get got one two its it's can "
                    "did didn't don't all any out own way day too now new old off see say put let may who why how "
                    "what when this that with from they them then than here there just like into over about".split())


def line_words(text: str) -> set[str]:
    """The words of a line that can carry content (three letters or more, not the commonest)."""
    import re

    return {w for w in re.findall(r"[a-z']{3,}", text.lower()) if w not in _SHORT_COMMON}


def unearned_words(scenario: Scenario | None, transcript: Transcript) -> set[str]:
    """Words of hidden facts (as stated, revealed or reacted to) that the persona never said in `transcript` and the
    briefing does not give: a better line must not use them."""
    if scenario is None:
        return set()
    known = line_words(" ".join([scenario.briefing, scenario.summary, scenario.persona.background,
                                 *scenario.objectives, *(t.text for t in transcript.turns if t.speaker != "learner")]))
    secret = set()
    for f in scenario.hidden_facts:
        secret |= line_words(" ".join(x for x in (f.fact, f.reveal_line, f.when_named or "") if x))
    return secret - known


def safe_alternatives(criterion: Criterion, scenario: Scenario | None, transcript: Transcript) -> list[str]:
    """The criterion's model lines the learner could have said: none that gives away a fact the persona never told,
    none the learner already said."""
    from roleplay.evidence import normalise

    secret = unearned_words(scenario, transcript)
    said = {normalise(t.text) for t in transcript.learner_turns}
    lines = [line for line in _alternatives(criterion, scenario)
             if not (line_words(line) & secret) and normalise(line) not in said]
    if not lines and scenario is not None:  # every scenario line leaks: the rubric's general lines
        lines = [line for line in criterion.example_lines
                 if not (line_words(line) & secret) and normalise(line) not in said]
    return lines or [criterion.tip]


def pick_alternative(criterion: Criterion, scenario: Scenario | None, transcript: Transcript) -> str:
    """A deterministic better-alternative line for this criterion, from what the learner could know at the time."""
    lines = safe_alternatives(criterion, scenario, transcript)
    digest = hashlib.sha256((criterion.id + transcript.to_text()).encode()).digest()
    return lines[digest[0] % len(lines)]


# --- wiring ---------------------------------------------------------------------------------------

def transcript_of_session(store: Store, session_id: str) -> tuple[Transcript, str]:
    """A stored session as a Transcript, with its scenario id."""
    from roleplay.transcript import Turn

    sess = store.get_session(session_id)
    turns = [Turn.from_row(t) for t in sess.turns]
    meeting = (sess.state or {}).get("meeting")
    return Transcript(scenario_id=sess.scenario_id, level=sess.level, session_id=sess.id, turns=turns,
                      meeting=MeetingFacts.model_validate(meeting) if meeting else None), sess.scenario_id


def grade_session(store: Store, session_id: str, judge: Judge, catalog: Catalog) -> tuple[Grade, str]:
    """Grade a stored session and store the grade (which opens its facilitator review).

    Returns:
        The grade and the stored grade id.
    """
    transcript, scenario_id = transcript_of_session(store, session_id)
    scenario = catalog.scenario(scenario_id)
    grade = judge.grade(transcript, catalog.rubric_for(scenario), scenario)
    row = store.add_grade(session_id, grade.judge, grade.rubric_id,
                          grade.model_dump(mode="json", exclude={"prompt", "raw_reply"}),
                          grade.overall, grade.passed, prompt=grade.prompt, raw_reply=grade.raw_reply)
    return grade, row.id


def format_grade(grade: Grade, rubric: Rubric) -> str:
    """Plain-text feedback for the terminal."""
    names = {c.id: c.name for c in rubric.criteria}
    out = [grade.summary, ""]
    for c in grade.criteria:
        out.append(f"{names[c.criterion_id]}: level {c.level}/4" + ("" if c.supported else " (UNSUPPORTED)"))
        for q in c.evidence:
            out.append(f'  evidence: "{q}"')
        out.append(f"  {c.rationale}")
        out.append(f"  better: {c.better_alternative}")
    return "\n".join(out)
