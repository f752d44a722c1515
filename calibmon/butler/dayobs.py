"""Butler validity timespans ↔ calibmon's day_obs ranges.

A Butler certification is a ``Timespan`` ``[begin, end)`` of instants in TAI (either end
may be unbounded). calibmon certifies a product for a range of day_obs dates
``[begin_day, end_day)`` (:mod:`calibmon.calibs.registry`). Rubin's day_obs is the date in
UTC−12 h: day_obs ``D`` runs from ``D`` 12:00 UTC to ``D+1`` 12:00 UTC.

**The rule.** calibmon hands out one product per detector and day_obs, so each day_obs
takes the product valid at the *start* of that day_obs (``D`` 12:00 UTC, which is
12:00:37 TAI since 2017: TAI − UTC = 37 s): day_obs ``D`` is in a certification when
``begin ≤ start(D) < end``. Hence ``begin_day`` is the first day_obs whose start is at or
after ``begin`` and ``end_day`` (exclusive) the first whose start is at or after ``end``.

Why the start of the day: certifications are made at midnight TAI
(``butler certify-calibrations --begin-date 2025-11-21``, i.e. 2025-11-21T00:00:00 TAI),
which falls in the middle of day_obs 20251120 (its night). The daily calibration
exposures of 20251120 were taken that afternoon, before midnight, with the *old* product,
and everything of day_obs 20251121 with the new one; the rule gives exactly that
(``begin_day`` 2025-11-21). The price: exposures of day_obs ``D`` taken after a
boundary inside ``D`` (night exposures after midnight) were processed by the stack with
the next product, which calibmon assigns from ``D+1`` on. A timespan that contains no
day start (shorter than a day, inside one day_obs) covers no day_obs and is reported.

An unbounded begin becomes :data:`EARLIEST_DAY`; an unbounded end stays open (None).
"""

from __future__ import annotations

from datetime import UTC, date, timedelta

from astropy.time import Time

from calibmon import dayobs

# The day_obs of an unbounded begin: the Butler's own "beginning of time" for calibrations
# certified without --begin-date is far earlier than any camera data; 1970-01-01 keeps
# calibmon's YYYY-MM-DD dates.
EARLIEST_DAY = "1970-01-01"


def day_obs_start(day: date) -> Time:
    """Start of day_obs ``day``: ``day`` 12:00 UTC (as an astropy Time, UTC scale)."""
    return Time(dayobs.day_obs_start(day), scale="utc")


def day_obs_of(instant: Time) -> date:
    """The day_obs (as a date) an instant belongs to: the date of UTC − 12 h."""
    return dayobs.parse_day_obs(dayobs.day_obs_for(instant.utc.to_datetime(timezone=UTC)))


def first_day_starting_at_or_after(instant: Time) -> date:
    """The first day_obs whose start (12:00 UTC) is at or after ``instant``."""
    day = day_obs_of(instant)
    return day if day_obs_start(day) >= instant else day + timedelta(days=1)


def timespan_to_days(begin: Time | None, end: Time | None) -> tuple[str, str | None] | None:
    """``[begin, end)`` in TAI → ``(begin_day, end_day)`` as ``YYYY-MM-DD`` (end exclusive,
    None = open), the day_obs whose start lies in the timespan (module docstring); None when
    it covers no day start."""
    b = EARLIEST_DAY if begin is None else first_day_starting_at_or_after(begin).isoformat()
    e = None if end is None else first_day_starting_at_or_after(end).isoformat()
    if e is not None and e <= b:
        return None
    return b, e


def day_obs_instant_tai(day_obs: str) -> Time:
    """The instant a day_obs (``YYYYMMDD``) is looked up at: its start, in TAI."""
    return day_obs_start(dayobs.parse_day_obs(day_obs)).tai


def format_tai(t: Time | None) -> str:
    """A timespan end as ISO TAI text (``-∞``/``∞`` when unbounded)."""
    if t is None:
        return "∞"
    shown = t.tai.copy()
    shown.precision = 3  # milliseconds (Butler timespans hold nanoseconds)
    return shown.isot + " TAI"
