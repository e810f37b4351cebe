"""What happened in a meeting with several personas, counted from its turns: airtime, who was asked, sides taken,
interruptions and decisions. The scene (`roleplay.scene`) keeps these; the grader receives them as facts."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

LEARNER = "learner"


class SideTaken(BaseModel):
    """A learner turn that took a side."""

    model_config = ConfigDict(extra="forbid")
    turn: int = Field(description="Learner turn (1-based).")
    member: str = Field(description="Cast id of the person sided with or against.")
    side: int = Field(description="+1 sided with, -1 sided against.")


class Interruption(BaseModel):
    """A cast member cutting across someone the learner had given the floor to."""

    model_config = ConfigDict(extra="forbid")
    turn: int = Field(description="Learner turn after which it happened.")
    by: str = Field(description="Cast id of the person who cut across.")
    cut_off: str = Field(description="Cast id of the person who was cut off.")
    handled: bool = Field(default=False, description="Whether the learner's next turn handed the floor back.")


class Decision(BaseModel):
    """An agreed action the learner put to the meeting."""

    model_config = ConfigDict(extra="forbid")
    turn: int = Field(description="Learner turn (1-based).")
    text: str = Field(description="The learner's words.")
    owners: list[str] = Field(default_factory=list, description="Cast ids named as owners (empty: no owner named).")


class MeetingFacts(BaseModel):
    """What happened in a meeting, counted from the turns: the grader receives these as facts."""

    model_config = ConfigDict(extra="forbid")
    words: dict[str, int] = Field(default_factory=dict, description="Words spoken, by 'learner' or cast id.")
    spoke: dict[str, int] = Field(default_factory=dict, description="Turns spoken, by 'learner' or cast id.")
    last_spoke: dict[str, int] = Field(default_factory=dict, description="Learner turn after which each cast member last spoke.")
    asked: dict[str, int] = Field(default_factory=dict, description="Learner turns addressed to each cast member by name.")
    to_everyone: int = Field(default=0, description="Learner turns addressed to everyone.")
    sides: list[SideTaken] = Field(default_factory=list, description="Turns that took a side.")
    interruptions: list[Interruption] = Field(default_factory=list, description="Cutting across, and whether it was handled.")
    decisions: list[Decision] = Field(default_factory=list, description="Actions put to the meeting, with their owners.")
    present: list[str] = Field(default_factory=list, description="Cast ids in the meeting now.")
    unanswered: int = Field(default=0, description="Learner turns addressed to someone who did not answer first.")

    def airtime(self) -> dict[str, float]:
        """Share of the words spoken, by 'learner' and cast id (0-1)."""
        total = sum(self.words.values())
        return {k: round(v / total, 3) for k, v in self.words.items()} if total else {}

    def persona_airtime(self) -> dict[str, float]:
        """Share of the personas' words only, by cast id: how evenly the chair drew people in."""
        words = {k: v for k, v in self.words.items() if k != LEARNER}
        total = sum(words.values())
        return {k: round(v / total, 3) for k, v in words.items()} if total else {}

    def balance(self) -> float:
        """1.0 when every cast member present spoke equally, towards 0 when one held the floor (normalised entropy)."""
        shares = [v for v in self.persona_airtime().values() if v > 0]
        n = max(len(self.present), len(shares))
        if n <= 1 or not shares:
            return 1.0
        return round(-sum(p * math.log(p) for p in shares) / math.log(n), 3)

    def answer(self, fact: str) -> str:
        """yes, partial or no for a rubric's meeting check (`roleplay.rubric.FactCheck.fact`)."""
        if fact == "airtime_balance":
            b = self.balance()
            return "yes" if b >= 0.8 else "partial" if b >= 0.6 else "no"
        if fact == "no_sides":
            n = len({s.turn for s in self.sides})
            return "yes" if n == 0 else "partial" if n == 1 else "no"
        if fact == "interruptions_handled":
            handled = sum(i.handled for i in self.interruptions)
            return ("yes" if handled == len(self.interruptions) else "partial" if handled else "no")
        if fact == "owners_named":
            owned = [d for d in self.decisions if any(o != LEARNER for o in d.owners)]
            return "yes" if owned and 2 * len(owned) >= len(self.decisions) else "partial" if self.decisions else "no"
        if fact == "everyone_asked":
            asked = sum(1 for m in self.present if self.asked.get(m, 0))
            return "yes" if asked >= len(self.present) else "partial" if asked > 1 else "no"
        raise ValueError(f"unknown meeting fact '{fact}'")

    def summary_lines(self, name: dict[str, str]) -> list[str]:
        """The facts as short lines, with cast ids shown as `name`s."""
        air = self.airtime()
        lines = [f"Balance of the others' airtime: {self.balance():.2f} (1 = even)", "Airtime (share of words): " + ", ".join(
            f"{'you' if k == LEARNER else name.get(k, k)} {v:.0%}" for k, v in sorted(air.items(), key=lambda x: -x[1]))]
        lines.append("Asked by name: " + (", ".join(f"{name.get(k, k)} {v}" for k, v in self.asked.items()) or "nobody")
                     + f"; to everyone: {self.to_everyone}")
        if self.sides:
            lines.append("Sides taken: " + "; ".join(
                f"turn {s.turn} {'with' if s.side > 0 else 'against'} {name.get(s.member, s.member)}" for s in self.sides))
        else:
            lines.append("Sides taken: none")
        if self.interruptions:
            handled = sum(i.handled for i in self.interruptions)
            lines.append(f"Interruptions: {len(self.interruptions)}, handed back by the chair: {handled}")
        owned = [d for d in self.decisions if d.owners]
        lines.append(f"Actions put to the meeting: {len(self.decisions)}, with a named owner: {len(owned)}")
        return lines
