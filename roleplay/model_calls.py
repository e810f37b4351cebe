"""Retries and streaming shared by the model clients (`OpenAIChatModel`, `LangChainChatModel`).

A client gives its retry policy, its deadline and a classifier (`_classify`) that says how each failure is treated;
this class runs a call or a stream under the shared tenacity policy, never waits past the deadline, and turns the last
failure into the client's one-line `ProviderError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tenacity import Retrying

from roleplay.call_limits import CallLimits, limit_in
from roleplay.errors import ProviderError
from roleplay.retry import Failure, GaveUp, RetryPolicy, give_up, retrying

log = logging.getLogger("roleplay.llm")
T = TypeVar("T")


class RetryingCalls:
    """What a model client needs to retry its calls; subclasses set `model`, `retry`, `deadline` and `_classify`."""

    model: str
    retry: RetryPolicy
    deadline: float | None

    def _classify(self, exc: BaseException) -> Failure | None:
        """How `exc` is treated: retried or not, with a hint; None when it is not the endpoint's doing."""
        raise NotImplementedError

    def _give_up(self, what: str, attempts: int, failure: Failure, note: str = "") -> ProviderError:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        hint = failure.hint + note if failure.status == 400 and note else failure.hint
        return ProviderError(f"{what} failed after {tries}: {hint}", attempts=attempts, status=failure.status)

    def _retrying(self, what: str, limits: CallLimits,
                  classify: Callable[[BaseException], Failure | None] | None = None) -> Retrying:
        """The retry loop of one call; with a deadline, no wait between attempts runs past it."""
        loop = retrying(what, classify or self._classify, self.retry)
        if limits.deadline_at is None:
            return loop
        wait = loop.wait

        def capped(state: Any) -> float:
            return min(wait(state), limits.remaining() or 0.0)

        return loop.copy(wait=capped)

    def _with_retries(self, what: str, call: Callable[[], T], *, note: str = "", limits: CallLimits | None = None,
                      classify: Callable[[BaseException], Failure | None] | None = None) -> T:
        started = time.perf_counter()
        limits = limits or CallLimits.start(self.deadline, None)
        classify = classify or self._classify
        loop = self._retrying(what, limits, classify)
        sent = [0]

        def counted() -> T:
            limits.check_time()  # an attempt that would start past the deadline is not made
            sent[0] += 1
            return call()

        try:
            try:
                result = loop(counted)
            except Exception as exc:
                final = give_up(exc, classify, loop)
                if final is exc:
                    raise
                raise final from exc
        except GaveUp as gave_up:
            log.warning("%s failed after %.0f ms", what, (time.perf_counter() - started) * 1000)
            raise self._give_up(what, sent[0], gave_up.failure, note) from gave_up.cause
        log_call(what, started, result)
        return result

    def _streamed(self, what: str, once: Callable[[CallLimits], Iterator[str]], out: Any, limits: CallLimits,
                  interrupted: Callable[[int, Exception, Failure], str]) -> Iterator[str]:
        """Yield the deltas of `once`, retried before the first delta; a stream cut after text is a clear error
        (`interrupted` words it from the characters delivered, the exception and its failure)."""
        started = time.perf_counter()
        loop = self._retrying(what, limits)
        try:
            for attempt in loop:
                with attempt:
                    delivered = 0
                    try:
                        for content in once(limits):
                            delivered += len(content)
                            out.parts.append(content)
                            yield content
                    except Exception as exc:
                        exceeded = limit_in(exc)
                        if exceeded is not None:
                            raise ProviderError(f"{what} stopped: {exceeded.describe(self.model)}",
                                                attempts=attempt.retry_state.attempt_number) from exc
                        failure = self._classify(exc)
                        if failure is None or not delivered:
                            raise
                        raise ProviderError(interrupted(delivered, exc, failure),
                                            attempts=attempt.retry_state.attempt_number, status=failure.status) from exc
        except Exception as exc:
            final = give_up(exc, self._classify, loop)
            if final is exc:
                raise
            log.warning("%s failed after %.0f ms", what, (time.perf_counter() - started) * 1000)
            assert isinstance(final, GaveUp)
            raise self._give_up(what, final.attempts, final.failure) from exc
        log_call(what, started, out)


def log_call(what: str, started: float, result: object) -> None:
    """One line per model call: what, how long, and the tokens the server reported."""
    log.info("%s took %.0f ms; tokens in %s, out %s", what, (time.perf_counter() - started) * 1000,
             getattr(result, "prompt_tokens", None), getattr(result, "completion_tokens", None))
