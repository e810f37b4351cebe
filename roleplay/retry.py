"""One retry policy for every outbound call (the model endpoint, the LRS), built on tenacity.

A client says how it fails with a classifier: an exception becomes a `Failure` (retryable or not, the HTTP
status, a Retry-After wait, a hint saying what to fix) or None when it is not the remote side's doing (then it
propagates untouched). Retryable failures wait with exponential backoff and jitter, or what the server asked for
in Retry-After (capped), at most `max_retries` times; then the client turns the last failure into its error.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Failure:
    """How one failed attempt should be treated."""

    retryable: bool
    status: int | None
    retry_after: float | None
    hint: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry.

    Args:
        max_retries: Retries after the first attempt (0 for none).
        backoff_base: Wait before the first retry in seconds; doubles per retry, with jitter.
        backoff_max: Upper bound on one backoff wait in seconds.
        retry_after_max: Upper bound in seconds on a wait requested by a Retry-After header.
    """

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    retry_after_max: float = 30.0

    def delay(self, attempt: int, failure: Failure) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if failure.retry_after is not None:
            return min(max(failure.retry_after, 0.0), self.retry_after_max)
        return min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max) * random.uniform(0.5, 1.0)


class GaveUp(Exception):
    """Raised by `call_with_retries` when the failure is final; carries the attempts made and the last failure."""

    def __init__(self, attempts: int, failure: Failure, cause: BaseException) -> None:
        super().__init__(failure.hint)
        self.attempts = attempts
        self.failure = failure
        self.cause = cause


def retrying(what: str, classify: Callable[[BaseException], Failure | None], policy: RetryPolicy) -> Retrying:
    """A tenacity `Retrying` that retries what `classify` calls retryable, waiting as `policy` says.

    With `reraise=True` the last exception propagates unchanged; `give_up` turns it into the final `GaveUp`.
    """

    def retryable(exc: BaseException) -> bool:
        failure = classify(exc)
        return failure is not None and failure.retryable

    def failure_of(state: RetryCallState) -> Failure | None:
        exc = state.outcome.exception() if state.outcome else None
        return classify(exc) if exc is not None else None

    def wait(state: RetryCallState) -> float:
        failure = failure_of(state)
        return policy.delay(state.attempt_number, failure) if failure else 0.0

    def before_sleep(state: RetryCallState) -> None:
        failure = failure_of(state)
        log.info("%s failed (%s); retry %d of %d in %.2fs", what, failure.hint if failure else "?",
                 state.attempt_number, policy.max_retries, state.upcoming_sleep)

    return Retrying(retry=retry_if_exception(retryable), stop=stop_after_attempt(policy.max_retries + 1),
                    wait=wait, before_sleep=before_sleep, reraise=True)


def give_up(exc: Exception, classify: Callable[[BaseException], Failure | None], loop: Retrying) -> Exception:
    """The exception to raise after `loop` ended with `exc`: a `GaveUp` for the remote side's failures, else `exc`."""
    failure = classify(exc)
    if failure is None:
        return exc
    return GaveUp(int(loop.statistics.get("attempt_number", 1)), failure, exc)


def call_with_retries(what: str, call: Callable[[], T], classify: Callable[[BaseException], Failure | None],
                      policy: RetryPolicy) -> T:
    """Run `call`, retrying the failures `classify` calls retryable.

    Raises:
        GaveUp: a failure that is not retryable, or the last retryable one (`raise ... from gave_up.cause`).
        Exception: anything `classify` maps to None, unchanged.
    """
    loop = retrying(what, classify, policy)
    try:
        return loop(call)
    except Exception as exc:
        final = give_up(exc, classify, loop)
        if final is exc:
            raise
        raise final from exc


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds requested by `retry-after-ms` or `Retry-After` (seconds or an HTTP date), else None."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)
