"""Retry with backoff, the one loop the sink outbox and the notification outbox share.

Built on tenacity. Semantics (as configured in ``sinks``/``alerts.delivery``):

- ``max_attempts`` calls at most (1 = no retry);
- before retry *n* (1-based) wait ``backoff_s[n-1]`` seconds, the last value repeating;
  an empty ``backoff_s`` retries at once;
- only exceptions for which ``is_transient(exc)`` is true are retried; any other
  exception is raised at once, untouched; when the attempts are used up the last
  transient exception is raised, untouched (never tenacity's ``RetryError``).

``sleep`` is injected (tests pass a recorder, so they never wait) and ``before_sleep``
sees ``(attempt, exception, wait_s)`` before each wait, for a log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

T = TypeVar("T")


def backoff_wait(backoff_s: Sequence[float]) -> Callable[[RetryCallState], float]:
    """tenacity ``wait``: ``backoff_s[n-1]`` seconds before retry *n*, the last repeating."""
    waits = tuple(float(w) for w in backoff_s)

    def wait(state: RetryCallState) -> float:
        if not waits:
            return 0.0
        return waits[min(state.attempt_number - 1, len(waits) - 1)]

    return wait


def call_with_retry(
    fn: Callable[[], T],
    *,
    max_attempts: int,
    backoff_s: Sequence[float],
    is_transient: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
    before_sleep: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """``fn()``, retried on transient errors as the module docstring says.

    Parameters
    ----------
    fn : callable
        The call to make, no arguments.
    max_attempts : int
        Calls at most, >= 1.
    backoff_s : sequence of float, seconds
        Wait before each retry; the last value repeats.
    is_transient : callable
        Whether an exception is worth another try.
    sleep : callable
        Waits the given seconds (``time.sleep``; tests inject their own).
    before_sleep : callable, optional
        Called with (attempt number that failed, its exception, seconds about to wait).
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")

    def _before_sleep(state: RetryCallState) -> None:
        if before_sleep is None or state.outcome is None or state.next_action is None:
            return
        exc = state.outcome.exception()
        assert exc is not None
        before_sleep(state.attempt_number, exc, state.next_action.sleep)

    retrying = Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=backoff_wait(backoff_s),
        retry=retry_if_exception(is_transient),
        sleep=sleep,
        before_sleep=_before_sleep,
        reraise=True,
    )
    return retrying(fn)
