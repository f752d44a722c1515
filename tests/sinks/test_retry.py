"""The one retry helper (calibmon.retry, on tenacity) that the sink outbox and the
notification outbox share: what it retries, how long it waits, what it raises."""

from __future__ import annotations

import pytest

from calibmon.errors import NotifierError, NotifierRejected, SinkRejected, SinkUnavailable
from calibmon.retry import call_with_retry


class Flaky:
    """Raises the given exceptions in turn, then returns ``"ok"``; counts calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _sink_transient(exc: BaseException) -> bool:
    return isinstance(exc, SinkUnavailable)


def test_retries_a_transient_error_waiting_the_configured_sequence() -> None:
    waits: list[float] = []
    seen: list[tuple[int, str, float]] = []
    fn = Flaky(*(SinkUnavailable("s", f"down {k}") for k in range(4)))
    out = call_with_retry(
        fn, max_attempts=5, backoff_s=[0.5, 1.0, 2.0], is_transient=_sink_transient,
        sleep=waits.append, before_sleep=lambda a, e, w: seen.append((a, str(e), w)),
    )  # fmt: skip
    assert out == "ok" and fn.calls == 5
    assert waits == [0.5, 1.0, 2.0, 2.0]  # the last value repeats
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    assert [s[2] for s in seen] == waits
    assert "down 0" in seen[0][1]


def test_stops_at_once_on_a_permanent_error() -> None:
    waits: list[float] = []
    fn = Flaky(SinkUnavailable("s", "down"), SinkRejected("s", "HTTP 400: bad line"))
    with pytest.raises(SinkRejected, match="bad line"):
        call_with_retry(fn, max_attempts=5, backoff_s=[1.0], is_transient=_sink_transient,
                        sleep=waits.append)  # fmt: skip
    assert fn.calls == 2 and waits == [1.0]


def test_gives_up_after_max_attempts_raising_the_last_error_itself() -> None:
    waits: list[float] = []
    fn = Flaky(*(NotifierError("n", f"HTTP 503 #{k}") for k in range(10)))
    with pytest.raises(NotifierError, match="#2") as info:
        call_with_retry(
            fn, max_attempts=3, backoff_s=[0.1, 0.2], sleep=waits.append,
            is_transient=lambda e: not isinstance(e, NotifierRejected),
        )  # fmt: skip
    assert type(info.value) is NotifierError  # not tenacity's RetryError
    assert fn.calls == 3 and waits == [0.1, 0.2]


def test_one_attempt_and_empty_backoff() -> None:
    waits: list[float] = []
    fn = Flaky(SinkUnavailable("s", "down"))
    with pytest.raises(SinkUnavailable):
        call_with_retry(fn, max_attempts=1, backoff_s=[5.0], is_transient=_sink_transient,
                        sleep=waits.append)  # fmt: skip
    assert fn.calls == 1 and waits == []
    fn = Flaky(SinkUnavailable("s", "down"), SinkUnavailable("s", "down"))
    assert call_with_retry(fn, max_attempts=3, backoff_s=[], is_transient=_sink_transient,
                           sleep=waits.append) == "ok"  # fmt: skip
    assert waits == [0.0, 0.0]
    with pytest.raises(ValueError):
        call_with_retry(fn, max_attempts=0, backoff_s=[], is_transient=_sink_transient)
