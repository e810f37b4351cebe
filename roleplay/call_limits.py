"""The limits of one outbound model call: a total deadline (all attempts and streaming included) and a size cap.

A per-read timeout alone does not bound a call: an endpoint that sends a keep-alive byte every second, or a reply
of many megabytes, never trips it. So every response body is read through `GuardedStream`, which counts the bytes
as they arrive and watches the clock on every read, and raises `CallLimitExceeded` (never retried) as soon as the
call's deadline passes or its reply outgrows the cap. The limits of the call being made travel in a context
variable set around the request (`limited`), and the HTTP client's response hook (`guard_response`) picks them up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

try:  # the transport the openai SDK rides on
    import httpx2 as _http
except ImportError:  # pragma: no cover - older openai releases use httpx
    import httpx as _http  # type: ignore[no-redef]

REPLY_BYTES_BASE = 256 * 1024  # headers of a reply, JSON framing, usage
REPLY_BYTES_PER_TOKEN = 1024  # a streamed token arrives in a JSON chunk of about 200-300 bytes
REPLY_BYTES_UNBOUNDED = 16 * 1024 * 1024  # a call without max_tokens (embeddings, model lists)


def byte_cap(max_tokens: int | None) -> int:
    """The most bytes a reply to a call asking for at most `max_tokens` tokens may have on the wire."""
    if max_tokens is None:
        return REPLY_BYTES_UNBOUNDED
    return REPLY_BYTES_BASE + max_tokens * REPLY_BYTES_PER_TOKEN


@dataclass(frozen=True, slots=True)
class CallLimits:
    """The limits of one call.

    Attributes:
        deadline_at: `time.monotonic()` value after which the call is abandoned, or None for no deadline.
        deadline: The deadline in seconds, for messages (ROLEPLAY_DEADLINE).
        max_bytes: The most bytes one response body may have.
        max_tokens: The tokens asked for, for messages (None when not asked).
    """

    deadline_at: float | None
    deadline: float | None
    max_bytes: int
    max_tokens: int | None = None

    @classmethod
    def start(cls, deadline: float | None, max_tokens: int | None) -> CallLimits:
        """Limits for a call starting now."""
        return cls(time.monotonic() + deadline if deadline else None, deadline, byte_cap(max_tokens), max_tokens)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None without one; 0 once it has passed)."""
        return None if self.deadline_at is None else max(0.0, self.deadline_at - time.monotonic())

    def check_time(self) -> None:
        """Raise `CallLimitExceeded` when the deadline has passed."""
        if self.deadline_at is not None and time.monotonic() >= self.deadline_at:
            raise CallLimitExceeded("deadline", self)


class CallLimitExceeded(Exception):
    """A call ran past its deadline (`kind` "deadline") or its reply outgrew the cap ("size")."""

    def __init__(self, kind: str, limits: CallLimits) -> None:
        super().__init__(kind)
        self.kind = kind
        self.limits = limits

    def describe(self, model: str) -> str:
        """What happened and what to check, in one line."""
        lim = self.limits
        if self.kind == "deadline":
            return (f"no complete reply from model {model!r} within ROLEPLAY_DEADLINE={lim.deadline:g}s (every attempt "
                    "and the streaming included); check the endpoint's load, or raise ROLEPLAY_DEADLINE")
        asked = (f", far more than the {lim.max_tokens} tokens asked for (ROLEPLAY_MAX_REPLY_TOKENS / "
                 "ROLEPLAY_MAX_GRADE_TOKENS); check that the endpoint honours max_tokens"
                 if lim.max_tokens else "; check the endpoint")
        return f"the reply from model {model!r} passed {lim.max_bytes:,} bytes and was dropped unread{asked}"


def limit_in(exc: BaseException | None) -> CallLimitExceeded | None:
    """The `CallLimitExceeded` that `exc` is or was caused by, if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, CallLimitExceeded):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


_CURRENT: ContextVar[CallLimits | None] = ContextVar("roleplay_call_limits", default=None)


@contextmanager
def limited(limits: CallLimits) -> Iterator[None]:
    """Requests made inside apply `limits` to their responses (the whole body, however long it is read)."""
    token = _CURRENT.set(limits)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class GuardedStream(_http.SyncByteStream):
    """A response body that enforces its call's limits on every read."""

    def __init__(self, inner: Any, limits: CallLimits) -> None:
        self.inner = inner
        self.limits = limits

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self.inner:
            size += len(chunk)
            if size > self.limits.max_bytes:
                raise CallLimitExceeded("size", self.limits)
            self.limits.check_time()
            yield chunk

    def close(self) -> None:
        self.inner.close()


def guard_response(response: Any) -> None:
    """HTTP client response hook: read the body under the limits of the call being made."""
    limits = _CURRENT.get()
    if limits is not None:
        response.stream = GuardedStream(response.stream, limits)

