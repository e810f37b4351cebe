"""Fitting the LLM judge's prompt into the model's context window.

When the whole prompt does not fit beside the reply, it is shortened in this order, each step only if still needed:
the JSON Schema sent in the prompt loses its descriptions (field names, types and enums stay), the few-shot
examples are left out, the rubric text is shortened (level anchors cut to their first clause, check questions
kept), and finally turns are omitted from the middle of the transcript: the first two and as many of the last as fit
are kept, with a marker line where the others were. The grade records what was done (`Grade.fitted`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from roleplay.errors import GradingError

KEEP_HEAD = 2
"""Turns always kept at the start of a trimmed transcript (the opening)."""
REASK_ROOM = 128
"""Tokens kept free beside the prompt for the one correction a grading call may add."""
_SCHEMA_WORDS = ("description", "title", "examples")


def omitted_line(count: int) -> str:
    """The marker that stands for `count` turns left out of the middle of a transcript."""
    return f"[… {count} turns omitted to fit the model's context …]"


def compact_schema(node: Any, names: bool = False) -> Any:
    """A JSON Schema without descriptions, titles or examples: field names, types, enums and bounds only."""
    if isinstance(node, dict):
        return {key: compact_schema(value, key in ("properties", "$defs")) for key, value in node.items()
                if names or key not in _SCHEMA_WORDS}
    if isinstance(node, list):
        return [compact_schema(value) for value in node]
    return node


@dataclass(frozen=True, slots=True)
class Shape:
    """How much of the grading prompt is sent.

    Attributes:
        compact_schema: Send the schema without descriptions (it is in the prompt in json_object and prompt modes).
        examples: Send the few-shot examples approved by facilitators.
        short_rubric: Send the rubric with its level anchors cut short.
        keep_last: With the middle of the transcript omitted, how many of its last turns are kept; None for all.
    """

    compact_schema: bool = False
    examples: bool = True
    short_rubric: bool = False
    keep_last: int | None = None


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    """The messages of a grading call and how they were fitted.

    Attributes:
        messages: The messages to send.
        shape: What was sent of the prompt.
        tokens: The prompt's size as counted (messages, plus the schema when it travels in the prompt).
        note: How the prompt was shortened ("compact schema; 14 of 40 turns omitted"), or None when sent whole.
    """

    messages: list[dict[str, str]]
    shape: Shape
    tokens: int
    note: str | None


def describe(shape: Shape, turns: int) -> str | None:
    """What `shape` left out of a prompt over a `turns`-turn transcript, or None when nothing."""
    parts = []
    if shape.compact_schema:
        parts.append("compact schema")
    if not shape.examples:
        parts.append("few-shot examples left out")
    if shape.short_rubric:
        parts.append("shorter rubric and scenario text")
    if shape.keep_last is not None:
        parts.append(f"{turns - KEEP_HEAD - shape.keep_last} of {turns} turns omitted")
    return "; ".join(parts) or None


def fit(build: Callable[[Shape], tuple[list[dict[str, str]], int]], turns: int, budget: int, *,
        schema_in_prompt: bool, has_examples: bool) -> FittedPrompt:
    """The first prompt shape, from whole to most shortened, whose size is within `budget` tokens.

    Args:
        build: Builds the messages of a shape and counts their tokens.
        turns: Turns in the transcript.
        budget: Tokens the prompt may take.
        schema_in_prompt: Whether the JSON Schema is sent in the prompt (so compacting it saves room).
        has_examples: Whether there are few-shot examples to leave out.

    Returns:
        The fitted prompt; when even the first two and the last turn do not fit, the shortest one tried (its
        `tokens` exceed `budget`).
    """
    shape = Shape()
    steps: list[dict[str, bool]] = []
    if schema_in_prompt:
        steps.append({"compact_schema": True})
    if has_examples:
        steps.append({"examples": False})
    steps.append({"short_rubric": True})
    messages, tokens = build(shape)
    for step in steps:
        if tokens <= budget:
            break
        shape = replace(shape, **step)
        messages, tokens = build(shape)
    if tokens <= budget:
        return FittedPrompt(messages, shape, tokens, describe(shape, turns))
    shortest = FittedPrompt(messages, shape, tokens, describe(shape, turns))
    best: FittedPrompt | None = None
    low, high = 1, turns - KEEP_HEAD - 1  # keep the last `high` turns at most: at least one turn is omitted
    while low <= high:
        keep = (low + high) // 2
        trimmed = replace(shape, keep_last=keep)
        messages, tokens = build(trimmed)
        attempt = FittedPrompt(messages, trimmed, tokens, describe(trimmed, turns))
        if tokens <= budget:
            best = attempt
            low = keep + 1
        else:
            shortest = attempt if attempt.tokens < shortest.tokens else shortest
            high = keep - 1
    return best or shortest


def too_small(window: int, budget: int, reply_tokens: int | None, needed: int) -> GradingError:
    """The error for a context window that cannot hold even the shortest grading prompt beside the reply."""
    reply = f"a reply of up to {reply_tokens} tokens (ROLEPLAY_MAX_GRADE_TOKENS)" if reply_tokens else "the reply"
    return GradingError(
        f"the grading prompt does not fit the model's context of {window} tokens even shortened: it needs about "
        f"{needed} tokens, and beside {reply} there is room for {max(budget, 0)}; lower ROLEPLAY_MAX_GRADE_TOKENS, set "
        f"ROLEPLAY_CONTEXT_WINDOW to the server's real context size if it is larger, or use a model with a larger "
        f"context"
    )
