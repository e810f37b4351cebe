"""Token counting with tiktoken (from the local cache only), budgets, trimming and cost estimates."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

_BLOBS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
MESSAGE_OVERHEAD = 4
CHARS_PER_TOKEN = 4.0


def tiktoken_cache_dir() -> Path:
    """Where tiktoken keeps downloaded encodings (same rules as tiktoken itself)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _encoding_name(model: str) -> str:
    m = model.lower()
    if m.startswith(("gpt-4o", "o1", "o3", "o4", "gpt-4.1", "gpt-5")):
        return "o200k_base"
    return "cl100k_base"


@dataclass
class TokenCounter:
    """Counts tokens exactly with a tiktoken Encoding, or estimates them (clearly flagged) without one."""

    encoding: Any | None = None
    name: str = "estimate"

    @property
    def estimated(self) -> bool:
        """True when counts are an estimate (no encoding could be loaded offline)."""
        return self.encoding is None

    def count(self, text: str) -> int:
        """Tokens in `text`."""
        if self.encoding is None:
            return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0
        return len(self.encoding.encode(text, disallowed_special=()))

    def count_messages(self, messages: list[dict[str, str]]) -> int:
        """Tokens of a chat request (content plus per-message overhead)."""
        return sum(self.count(m.get("content") or "") + MESSAGE_OVERHEAD for m in messages) + 2

    def label(self) -> str:
        """'exact (o200k_base)' or 'estimate (~4 characters a token)'."""
        return f"exact ({self.name})" if not self.estimated else "estimate (~4 characters a token)"


@lru_cache(maxsize=8)
def counter_for(model: str) -> TokenCounter:
    """A counter for `model`: tiktoken when its encoding is in the local cache, else an estimate; never downloads."""
    name = _encoding_name(model)
    # tiktoken names its cache files by the SHA-1 of the source URL: a file name, not security
    cached = tiktoken_cache_dir() / hashlib.sha1(_BLOBS[name].encode(), usedforsecurity=False).hexdigest()
    if not cached.is_file():
        return TokenCounter()
    try:
        import tiktoken

        return TokenCounter(tiktoken.get_encoding(name), name)
    except Exception:  # noqa: BLE001 - a corrupt cache must not stop a practice session
        return TokenCounter()


def trim_to_budget(
    messages: list[dict[str, str]], budget: int, counter: TokenCounter, keep_head: int = 1, keep_tail: int = 5
) -> tuple[list[dict[str, str]], int]:
    """Drop the oldest conversation turns until the request fits `budget` tokens.

    The first `keep_head` messages (instructions) and the last `keep_tail` (recent turns and the
    final instruction) are always kept; a note replaces what was dropped.

    Returns:
        The messages to send and how many were dropped.
    """
    if counter.count_messages(messages) <= budget or len(messages) <= keep_head + keep_tail:
        return messages, 0
    head, middle, tail = messages[:keep_head], messages[keep_head:-keep_tail], messages[-keep_tail:]
    dropped = 0
    while middle:
        note = {"role": "system", "content": f"[{dropped} earlier turns omitted to fit the context budget]"}
        if counter.count_messages(head + ([note] if dropped else []) + middle + tail) <= budget:
            break
        middle = middle[1:]
        dropped += 1
    note = {"role": "system", "content": f"[{dropped} earlier turns omitted to fit the context budget]"}
    return head + ([note] if dropped else []) + middle + tail, dropped


def context_margin(window: int, estimated: bool = False) -> int:
    """Tokens of a context window kept free for the chat template and counting error (more when counts are estimates)."""
    return max(64, window // 12) if estimated else max(32, window // 32)


def prompt_budget(window: int, reply_tokens: int | None, estimated: bool = False) -> int:
    """Tokens a prompt may take in a `window`-token context that must also hold a reply of `reply_tokens`.

    Args:
        window: The model's context window in tokens (prompt and reply).
        reply_tokens: The reply's `max_tokens`, or None when the request sets none.
        estimated: Whether the prompt is measured with an estimate (a wider margin is kept).

    Returns:
        The budget; 0 or less when the reply alone leaves no room.
    """
    return window - (reply_tokens or 0) - context_margin(window, estimated)


def persona_budget(scenario_budget: int, window: int | None, max_reply: int | None, estimated: bool = False) -> int:
    """The persona's prompt budget: the scenario's, lowered to what the model's context leaves beside the reply.

    Args:
        scenario_budget: The scenario's `token_budget`.
        window: The model's context window in tokens, or None when it is not known.
        max_reply: The reply's `max_tokens`, or None.
        estimated: Whether token counts are estimates.

    Returns:
        The budget `trim_to_budget` should fit the persona's request to (at least 1).
    """
    if window is None:
        return scenario_budget
    return max(1, min(scenario_budget, prompt_budget(window, max_reply, estimated)))


def estimate_cost(prompt_tokens: int, completion_tokens: int, price_input: float | None,
                  price_output: float | None = None) -> float | None:
    """Cost in the configured currency, prices per million tokens (ROLEPLAY_PRICE_INPUT / ROLEPLAY_PRICE_OUTPUT).

    None when no input price is configured; the output price defaults to the input price.
    """
    if price_input is None:
        return None
    price_out = price_input if price_output is None else price_output
    return (prompt_tokens * price_input + completion_tokens * price_out) / 1_000_000
