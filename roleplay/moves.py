"""The vocabulary of learner moves shared by scenarios, rubrics, the offline persona and judge."""

from __future__ import annotations

from typing import Literal, get_args

Move = Literal[
    "greeting",
    "open_question",
    "closed_question",
    "reflection",
    "summary",
    "empathy",
    "affirmation",
    "candid_feedback",
    "advice",
    "blame",
    "dismissive",
    "next_step",
    "other",
]
"""What a learner turn does in the conversation; one turn may carry several moves."""

MOVES: tuple[str, ...] = get_args(Move)

MOVE_DESCRIPTIONS: dict[str, str] = {
    "greeting": "opens or sets up the conversation (hello, purpose, agenda)",
    "open_question": "asks a question that invites a full answer (what, how, tell me about)",
    "closed_question": "asks a yes/no or single-fact question",
    "reflection": "gives back what the other person said or feels, in the learner's words",
    "summary": "pulls several points together to check understanding",
    "empathy": "names or acknowledges the other person's feelings or situation",
    "affirmation": "recognises the other person's strengths, effort or intentions",
    "candid_feedback": "states a concrete fact, impact or expectation plainly",
    "advice": "proposes a solution or tells the other person what to do",
    "blame": "accuses, judges character or uses threatening language",
    "dismissive": "minimises or brushes aside the other person's concern",
    "next_step": "proposes or agrees concrete next steps, owners or follow-up",
    "other": "none of the above",
}
