"""The chat as a learner's browser shows it: each step of a turn carries that turn's exchange, put into the chat."""

from __future__ import annotations

from typing import Any


def chat_after(chat: list[dict[str, Any]], steps: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """`chat` after the steps of one `practice_page.send` (its first output is the exchange: the learner's line and
    the replies, and the position in the chat where they go)."""
    for step in steps:
        ex = step[0]
        if isinstance(ex, dict) and "messages" in ex:
            chat = [*chat[:ex["base"]], *(_plain(m) for m in ex["messages"])]
    return chat


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the chat holds it in the browser ({role, content: [{type: text, text}], ...}) in the form the
    handlers give the chat ({role, content})."""
    content = message["content"]
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content)
    return {"role": message["role"], "content": content}
