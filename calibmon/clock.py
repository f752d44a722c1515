"""The service's notion of "now", for the delivery code that decides retries and expiry.

Production uses the system clock. ``calibmon serve --test-now`` runs the service on a
shifted clock; the scheduler installs it here (:func:`install`) so that everything the
daemon timestamps and compares — when a notification was queued, when its retry is due,
when it expires — uses one clock, never the wall clock on one side and the test clock on
the other. Code that is given an explicit ``now`` uses that instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def system_clock() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


_clock: Callable[[], datetime] = system_clock


def install(clock: Callable[[], datetime] | None) -> None:
    """Make ``clock`` the process's clock (None: back to the system clock)."""
    global _clock
    _clock = clock or system_clock


def now() -> datetime:
    """The current time on the installed clock (UTC, timezone-aware)."""
    return _clock()


def iso(dt: datetime) -> str:
    """``dt`` as a UTC ISO string with microseconds (``2025-11-22T13:00:00.000000Z``): the
    form the store's timestamps are compared in, as text."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
