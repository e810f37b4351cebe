"""The scene: who of a cast answers a learner turn, who speaks up unasked, and the meeting's facts.

Turn-taking is decided in code from the turn's `Reading` (who is addressed, whose side the learner took) and the
rules the scenario states for each cast member (`SpeaksUp`); voices only word what was decided. The facts kept
here (airtime, who was asked what, sides taken, interruptions and whether the learner handled them, decisions
with owners) are counted, not guessed, and reach the grader as facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from roleplay.meeting import LEARNER, Decision, Interruption, MeetingFacts, SideTaken
from roleplay.reader import Reading
from roleplay.scenario import CastMember, Scenario

HANDBACKS_TO_STOP = 2
"""Times the learner must hand the floor back before a dominant talker stops cutting across."""


@dataclass(frozen=True)
class Speaker:
    """One persona turn the scene calls for after a learner turn."""

    who: str
    role: str  # 'answer' (the main reply: may reveal or end), 'also' (a second answer to a turn to everyone),
    # 'interject' (sided against), 'cut_across', 'speak_up' or 'join'


def present(scenario: Scenario, learner_turns: int) -> list[CastMember]:
    """Cast members in the meeting once `learner_turns` turns have been taken (late joiners come in after theirs)."""
    return [m for m in scenario.members if m.joins_at_turn <= max(learner_turns - 1, 0) or m.joins_at_turn == 0]


def addressed(scenario: Scenario, reading: Reading, members: list[CastMember]) -> CastMember | None:
    """The present cast member the turn speaks to, or None for everyone."""
    if reading.addressee is None:
        return None
    return next((m for m in members if m.persona.name == reading.addressee), None)


def plan_speakers(scenario: Scenario, facts: MeetingFacts, reading: Reading, turn: int,
                  first: str | None = None) -> list[Speaker]:
    """Who speaks after learner turn `turn`, in order: the answer first, then who speaks up unasked.

    Args:
        first: A cast id that must answer first (e.g. the owner of a hidden fact the learner named).
    """
    members = present(scenario, turn)
    if len(scenario.members) == 1:
        return [Speaker(members[0].id, "answer")]
    by_id = {m.id: m for m in members}
    target = addressed(scenario, reading, members)
    limit = scenario.meeting.max_replies
    if first and first in by_id:
        order = [first]
    elif target is not None:
        order = [target.id]
    else:
        # a turn to everyone: those who answer group questions, the one who spoke least recently first
        willing = [m for m in members if not m.speaks_up.only_when_addressed]
        # a dominant talker answers group questions first; the others, the one heard least recently first
        willing.sort(key=lambda m: (m.speaks_up.cuts_across_every is None, facts.last_spoke.get(m.id, -1),
                                    scenario.members.index(m)))
        order = [m.id for m in willing[:limit]]
        if not order:
            order = [members[0].id]
    plan = [Speaker(order[0], "answer")] + [Speaker(w, "also") for w in order[1:]]
    against = {m.id for m in members if sided_against(m, reading, scenario)}
    for m in members:
        if len(plan) >= limit:
            break
        if any(s.who == m.id for s in plan):
            continue
        if m.id in against and m.speaks_up.when_sided_against:
            plan.append(Speaker(m.id, "interject"))
        elif target is not None and target.id != m.id and _cuts_across(m, facts, turn):
            plan.append(Speaker(m.id, "cut_across"))
        elif (m.speaks_up.after_silent_turns is not None
              and turn - max(facts.last_spoke.get(m.id, 0), 0) > m.speaks_up.after_silent_turns
              and target is not None and target.id != m.id):
            plan.append(Speaker(m.id, "speak_up"))
    return plan[:limit]


def sided_against(member: CastMember, reading: Reading, scenario: Scenario) -> bool:
    """Whether the turn took a side against `member`, or with someone they oppose."""
    names = {m.id: m.persona.name for m in scenario.members}
    if reading.sides.get(member.persona.name, 0) < 0:
        return True
    return any(reading.sides.get(names.get(o, ""), 0) > 0 for o in member.opposes)


def _cuts_across(member: CastMember, facts: MeetingFacts, turn: int) -> bool:
    every = member.speaks_up.cuts_across_every
    if every is None:
        return False
    handed_back = sum(i.handled for i in facts.interruptions if i.by == member.id)
    if handed_back >= HANDBACKS_TO_STOP:
        return False
    if any(i.turn == turn - 1 and i.by == member.id for i in facts.interruptions):
        return False  # not twice in a row: the learner gets a turn to hand the floor back
    return turn % every == 0


def hear(scenario: Scenario, facts: MeetingFacts, reading: Reading, turn: int) -> None:
    """Count a learner turn: words, whom it addressed, sides taken, interruptions handed back, decisions."""
    members = present(scenario, turn)
    facts.present = [m.id for m in members]
    _count(facts, LEARNER, reading.text)
    target = addressed(scenario, reading, members)
    if target is None:
        facts.to_everyone += 1
    else:
        facts.asked[target.id] = facts.asked.get(target.id, 0) + 1
    by_name = {m.persona.name: m.id for m in scenario.members}
    for name, side in reading.sides.items():
        if name in by_name:
            facts.sides.append(SideTaken(turn=turn, member=by_name[name], side=side))
    low = reading.text.lower()
    for i in facts.interruptions:
        if i.turn == turn - 1 and not i.handled:
            cut_off = scenario.member(i.cut_off)
            i.handled = (target is not None and target.id == i.cut_off) or _names(low, cut_off)
    if reading.has("next_step", "directive", "advice"):
        owners = [m.id for m in scenario.members if _names(low, m)]
        if re.search(r"\b(?:i(?:'ll| will)|i'm going to|me)\b", low) and not owners:
            owners = [LEARNER]
        # an action put to the meeting has someone or a time against it ("Priya sends the plan by Wednesday");
        # framing ("we have thirty minutes and one decision to make") is not one
        if _WHEN.search(low) or (owners and "next_step" in reading.moves):
            facts.decisions.append(Decision(turn=turn, text=reading.text, owners=owners))


def spoke(facts: MeetingFacts, who: str, text: str, turn: int, role: str, cut_off: str | None = None) -> None:
    """Count a persona turn (and an interruption when it cut across someone)."""
    _count(facts, who, text)
    facts.last_spoke[who] = turn
    if role == "cut_across" and cut_off:
        facts.interruptions.append(Interruption(turn=turn, by=who, cut_off=cut_off))


def _count(facts: MeetingFacts, who: str, text: str) -> None:
    facts.words[who] = facts.words.get(who, 0) + len(text.split())
    facts.spoke[who] = facts.spoke.get(who, 0) + 1


_WHEN = re.compile(r"\b(?:by|before|on|until|next|this|end of)\s+(?:the\s+)?(?:monday|tuesday|wednesday|thursday|friday|"
                   r"saturday|sunday|week|month|tomorrow|today|tonight|morning|afternoon|evening|\d)|\btomorrow\b|"
                   r"\bby\s+(?:noon|midday|lunch|close of play|eod|cob)\b")


def _names(low: str, member: CastMember) -> bool:
    return re.search(rf"\b{re.escape(member.first_name.lower())}\b", low) is not None


def start(scenario: Scenario) -> MeetingFacts:
    """The facts of a meeting that has not begun."""
    return MeetingFacts(present=[m.id for m in present(scenario, 0)])
