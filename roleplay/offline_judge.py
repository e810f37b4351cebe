"""The offline judge: rubric checks decided on what each learner turn does in reply to the persona.

Every learner turn is read in context by the turn reader (moves by meaning, how closely each sentence relates to
what the persona just said, relevance to the scenario). A sentence earns credit for a check only when it is:

* the right move (the rubric check's `moves`);
* not a repeat of something the learner already said (repeating earns nothing);
* specific: it takes up what the persona said (by meaning, or by sharing its content words; a summary may take up
  anything said so far; an acknowledgement may answer a persona turn that just told something), or, for feedback
  and next steps, the facts of the situation. Generic lines ("I hear you", "How do you feel about that?") earn credit
  only as far as the learner has also been specific elsewhere: a conversation of stock phrases earns nothing;
* for feedback: stated without blame in the same turn (blame is counted by the rubric's no-blame check);
* for next steps: concrete (what, or by when) and agreed rather than dictated (a sentence read as a directive
  counts against, never for, next steps).

Credit is counted per turn (one turn counts once per check however long it is), so length earns nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from roleplay.grader import (
    Answer,
    CheckResult,
    CriterionGrade,
    Grade,
    cast_names,
    finish_grade,
    injection_sentences,
    level_from_checks,
    pick_alternative,
    require_learner_turns,
)
from roleplay.level_model import CheckFigures, LevelModel, criterion_features
from roleplay.reader import ReadContext, content_words
from roleplay.rubric import Criterion, Rubric
from roleplay.transcript import Transcript

if TYPE_CHECKING:
    from roleplay.reader import TurnReader
    from roleplay.scenario import Scenario

LISTENING = ("reflection", "summary", "empathy", "affirmation")
ASKING = ("open_question",)
STATING = ("candid_feedback",)
AGREEING = ("next_step",)
SPECIFIC_RESPONDS = 0.3
"""A sentence this close in meaning to what the persona just said takes it up (the reader's 0-1 scale)."""
ECHO_WORDS = 2
"""Content words of the persona's last lines (not the situation everyone knows) a sentence must take up."""
REPEAT_OVERLAP = 0.7
SURE_AGAINST = 0.6
DISCLOSURE_WORDS = 12
"""A persona turn at least this long tells something; acknowledging it right after is responsive, not stock."""
"""The reader's confidence above which one turn that blames, dismisses or imposes counts in full."""
"""Share of content words an earlier learner sentence must hold for this one to count as a repeat."""

# Words that carry no content of their own in a manager's turn: sharing them with the persona shows nothing.
_HOLLOW = set(
    "feel feels feeling feelings hear hearing heard understand understood sound sounds sounding tell telling "
    "lots okay sure thanks thank agree agreed step steps talk talking sorry hard difficult tough great glad "
    "happy shame pity appreciate honest honestly really quite totally absolutely definitely thing things stuff "
    "said saying mean means meaning point points matter matters wonder wondering think thinking thought "
    "check checking follow following going situation everything anything nothing".split()
)
_WHEN = re.compile(
    r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|\b(?:today|tomorrow|tonight|weekend|fortnight|noon|midday|eod)\b|"
    r"\b(?:this|next|each|every) (?:morning|afternoon|evening|week|month)\b|\bend of (?:the )?(?:day|week|month)\b|"
    r"\b\d{1,2}(?::\d{2})?\s*(?:am|pm)\b|\b\d{1,2}:\d{2}\b|\b\d{1,2}(?:st|nd|rd|th)\b|\bin (?:a|one|two|three|\d) "
    r"(?:days?|weeks?)\b|\b(?:jan|feb|mar|apr|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b", re.IGNORECASE)
"""A specific time (a day, a date, 'tomorrow', 'next week'); 'soon' or 'over the next few weeks' is not one."""


def words_of(text: str) -> set[str]:
    """Content words (crude stems) of a text, without the hollow ones."""
    return {w for w in content_words(text) if not any(w == h[:6] for h in _HOLLOW)}


@dataclass
class Unit:
    """One learner sentence in its place in the conversation, with what it earns."""

    turn: int
    text: str
    moves: tuple[str, ...]
    responds: float
    relevant: bool
    echoes: set[str] = field(default_factory=set)
    situational: set[str] = field(default_factory=set)
    repeat: bool = False
    turn_moves: tuple[str, ...] = ()
    asks: bool = False
    turn_asks: bool = False
    for_steps: bool = False
    confidence: float = 1.0
    after_disclosure: bool = False

    @property
    def main(self) -> str:
        """The sentence's main move."""
        return self.moves[0] if self.moves else "other"

    @property
    def specific(self) -> bool:
        """Takes up what the persona said: by meaning or by its content words."""
        return self.responds >= SPECIFIC_RESPONDS or len(self.echoes) >= ECHO_WORDS

    @property
    def concrete(self) -> bool:
        """Names the facts of the situation or of the conversation."""
        return self.specific or len(self.situational) >= 2

    def earns(self, move: str) -> bool:
        """Whether this sentence counts fully as evidence of `move`."""
        if move not in self.moves or self.repeat or not self.relevant:
            return False
        if move in STATING:
            return self.concrete
        if move in AGREEING:
            return self.timed and (self.turn_asks or bool(self.echoes))
        if move == "summary" and self.for_steps:
            return self.timed
        if move in ASKING:
            return self.specific or bool(self.situational)
        if move in ("empathy", "affirmation"):
            return self.specific or self.after_disclosure
        return self.specific

    @property
    def timed(self) -> bool:
        """A step with a specific time that is not an order."""
        return "directive" not in self.moves and bool(_WHEN.search(self.text))

    def generic(self, move: str) -> bool:
        """The right move, but a stock line that takes up nothing the persona said (or a step set without asking)."""
        return move in self.moves and not self.repeat and self.relevant and not self.earns(move)

    def against(self, moves: tuple[str, ...] | list[str]) -> bool:
        """Whether the sentence does one of `moves` as its main act (a second, weaker reading is not counted)."""
        return self.main in moves


def read_transcript(transcript: Transcript, scenario: Scenario | None, reader: TurnReader) -> list[list[Unit]]:
    """Every learner turn read in context, as units: one list per learner turn."""
    persona_lines: list[str] = []
    learner_lines: list[str] = []
    said: list[set[str]] = []
    said_text: set[str] = set()
    situation = words_of(" ".join([scenario.briefing, scenario.summary, scenario.persona.background,
                                   *scenario.objectives])) if scenario is not None else set()
    turns: list[list[Unit]] = []
    for turn in transcript.turns:
        if turn.speaker != "learner":
            persona_lines.append(turn.text)
            continue
        reading = reader.read(turn.text, ReadContext(scenario=scenario, persona_lines=list(persona_lines),
                                                     learner_lines=list(learner_lines)))
        recent = words_of(" ".join(persona_lines[-2:])) - situation
        heard = words_of(" ".join(persona_lines))
        # a persona turn that tells something (a disclosure, a worry) invites acknowledgement of it
        disclosed = len(persona_lines[-1].split()) >= DISCLOSURE_WORDS if persona_lines else False
        units: list[Unit] = []
        for s in reading.sentences:
            mine = words_of(s.text)
            key = re.sub(r"\W+", " ", s.text.lower()).strip()
            repeat = key in said_text or (len(mine) >= 2 and any(
                len(mine & old) / len(mine) >= REPEAT_OVERLAP for old in said))
            units.append(Unit(turn=len(turns), text=s.text, moves=tuple(s.moves), responds=s.responds,
                              relevant=s.moves[0] != "off_topic",
                              echoes=mine & ((heard - situation) if "summary" in s.moves else recent),
                              after_disclosure=disclosed,
                              situational=mine & (situation | heard), repeat=repeat,
                              turn_moves=tuple(reading.moves), asks=s.text.rstrip().endswith("?"),
                              turn_asks="?" in turn.text, confidence=s.confidence))
            said_text.add(key)
            if mine:
                said.append(mine)
        turns.append(units)
        learner_lines.append(turn.text)
    return turns


@dataclass
class CheckCount:
    """What a check found: turns that earn it, generic turns, and the sentences behind them."""

    earned: int
    generic: int
    quotes: list[str]

    def answer(self, min_count: int) -> str:
        """yes / partial / no: generic turns may complete a check the learner has started, never start one alone."""
        if self.earned >= min_count or (self.earned and self.earned + self.generic >= min_count):
            return "yes"
        return "partial" if self.earned or self.generic else "no"

    @property
    def turns(self) -> int:
        return self.earned + self.generic


def count_check(moves: tuple[str, ...] | list[str], turns: list[list[Unit]]) -> CheckCount:
    """Turns whose sentences earn any of `moves`; generic turns count only up to the learner's specific ones."""
    steps = "next_step" in moves
    earned_turns, generic_turns, quotes, generic_quotes = set(), set(), [], []
    for units in turns:
        for u in units:
            u.for_steps = steps
            if any(u.earns(m) for m in moves):
                if u.turn not in earned_turns:
                    quotes.append(u.text)
                earned_turns.add(u.turn)
            elif any(u.generic(m) for m in moves):
                if u.turn not in generic_turns:
                    generic_quotes.append(u.text)
                generic_turns.add(u.turn)
    specific_elsewhere = sum(1 for units in turns if any(
        u.specific and not u.repeat and u.relevant and set(u.moves) & set(LISTENING + ASKING) for u in units))
    generic = min(len(generic_turns - earned_turns), specific_elsewhere)
    return CheckCount(len(earned_turns), generic, quotes + generic_quotes[:generic])


def count_against(moves: tuple[str, ...] | list[str], turns: list[list[Unit]]) -> tuple[float, list[str]]:
    """Turns whose main act is one of `moves` (blame, dismissing, advice ...), repeats too. A turn that also asks or
    listens, and whose reading the reader is unsure of (below `SURE_AGAINST`), counts half: one doubtful reading
    inside an otherwise warm turn does not decide a criterion."""
    weight, hits = 0.0, []
    for units in turns:
        found = [u for u in units if u.against(moves)]
        if found:
            warm = any(set(u.moves) & set(LISTENING + ASKING) for u in units if u not in found)
            weight += 1.0 if max(u.confidence for u in found) >= SURE_AGAINST or not warm else 0.5
            hits.append(max(found, key=lambda u: u.confidence).text)
    return weight, hits


@dataclass
class Findings:
    """What a criterion's checks found: answers, evidence, notes for the rationale, the model's input, the level."""

    answers: dict[str, Answer]
    evidence: list[str]
    notes: list[str]
    features: list[float]
    level: int


class OfflineJudge:
    """Grades from what each learner turn does in reply to the persona: checks, levels, evidence and feedback.

    Deterministic for a given reader (the offline reader by default).

    Args:
        reader: The turn reader; the process's offline reader when None.
        model: The level model (True: the shipped one if present; None or False: the rule of `level_from_checks`).
    """

    name = "offline"

    def __init__(self, reader: TurnReader | None = None, model: LevelModel | None | bool = True) -> None:
        self._reader = reader
        self.model: LevelModel | None = LevelModel.load() if model is True else model or None

    @property
    def reader(self) -> TurnReader:
        """The reader used (loaded on first use)."""
        if self._reader is None:
            from roleplay.reader import offline_reader

            self._reader = offline_reader()
        return self._reader

    def grade(self, transcript: Transcript, rubric: Rubric, scenario: Scenario | None = None) -> Grade:
        """Grade the learner's side of `transcript` against `rubric`."""
        require_learner_turns(transcript)
        turns = read_transcript(transcript, scenario, self.reader)
        criteria = [self._criterion(c, self.findings(c, turns, rubric.id), turns, scenario, transcript)
                    for c in rubric.criteria]
        return finish_grade(rubric, self.name, criteria, flagged=injection_sentences(transcript),
                            meeting=transcript.meeting, names=cast_names(scenario))

    def features(self, transcript: Transcript, rubric: Rubric, scenario: Scenario | None = None) -> dict[str, list[float]]:
        """The level model's input per criterion (what training reads)."""
        turns = read_transcript(transcript, scenario, self.reader)
        return {c.id: self.findings(c, turns, rubric.id).features for c in rubric.criteria}

    def findings(self, criterion: Criterion, turns: list[list[Unit]], rubric_id: str = "") -> Findings:
        """What each check of `criterion` found in the conversation, and the level those findings give."""
        answers: dict[str, Answer] = {}
        evidence: list[str] = []
        notes: list[str] = []
        figures: list[CheckFigures] = []
        for check in criterion.checks:
            answer: Answer
            if check.expect == "present":
                found = count_check(check.moves, turns)
                n = found.turns
                answer = found.answer(check.min_count)  # type: ignore[assignment]
                evidence.extend(found.quotes[:2])
                notes.append(f"{check.question.rstrip('?')}: {answer} ({n} turn{'s' if n != 1 else ''})")
                figures.append(CheckFigures("present", check.min_count, found.earned, found.generic))
            else:
                weight, hits = count_against(check.moves, turns)
                answer = "yes" if weight == 0 else "partial" if weight < check.min_count else "no"
                evidence.extend(hits[:1])
                notes.append(f"{check.question.rstrip('?')}: {answer}")
                figures.append(CheckFigures("absent", check.min_count, weight))
            answers[check.id] = answer
        rule = level_from_checks(criterion, answers)
        features = criterion_features(figures, rule)
        level = rule
        present = [c.id for c in criterion.checks if c.expect == "present"]
        if self.model is not None and not (present and all(answers[c] == "no" for c in present)):
            # the model says how much is enough; it never lifts a level above what the anchors allow (blame: 2),
            # and a criterion with no evidence at all stays at 1 whatever the model says
            from roleplay.llm_judge import level_cap

            # and a criterion with some evidence of what it looks for is at least level 2 ("occasional", "one or two")
            floor = 2 if any(f.earned for f in figures if f.expect == "present") else 1
            level = min(max(self.model.level(features, f"{rubric_id}/{criterion.id}"), floor),
                        level_cap(criterion, answers))
        return Findings(answers, list(dict.fromkeys(evidence))[:3], notes, features, level)

    def _criterion(self, criterion: Criterion, found: Findings, turns: list[list[Unit]], scenario: Scenario | None,
                   transcript: Transcript) -> CriterionGrade:
        level = found.level
        better = self._better(criterion, turns, scenario, transcript, level)
        rationale = f"Level {level}: {criterion.levels.get(level, '')} " + "; ".join(found.notes) + "."
        if level <= 2:
            rationale += f" Tip: {criterion.tip}"
        return CriterionGrade(criterion_id=criterion.id, level=level,
                              checks=[CheckResult(id=k, answer=v) for k, v in found.answers.items()],
                              evidence=found.evidence, rationale=rationale, better_alternative=better)

    @staticmethod
    def _better(criterion: Criterion, turns: list[list[Unit]], scenario: Scenario | None, transcript: Transcript,
                level: int) -> str:
        """A line to try instead, set against the learner's own line where one fits the criterion's weakness."""
        alt = pick_alternative(criterion, scenario, transcript)
        if level >= 4:
            return alt
        # set against the learner's own line only where it tried the criterion's main behaviour and fell short, or did
        # the opposite: a line about something else would mislead
        main = next((c for c in criterion.checks if c.expect == "present"), None)
        wanted = set(main.moves) if main is not None else set()
        against = {m for c in criterion.checks if c.expect == "absent" for m in c.moves}
        for units in turns:
            for u in units:
                if set(u.moves) & against or (set(u.moves) & wanted and not any(u.earns(m) for m in wanted)):
                    if u.text.strip().lower() != alt.strip().lower():
                        return f'Instead of "{u.text}", try: "{alt}"'
        return alt
