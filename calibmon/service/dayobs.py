"""Rubin's observing day, ``day_obs``.

``day_obs`` is the calendar date in the UTC−12 time zone, written ``YYYYMMDD``: it rolls
over at 12:00 UTC, so one night at Cerro Pachón (UTC−3/−4) keeps one day_obs from its
afternoon calibrations to the next morning's (SITCOMTN-032; the ``DAYOBS`` header key of
LSSTCam and LATISS raws). Everything here is pure: the caller passes the instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

# Offset of the day_obs time zone from UTC (day_obs rolls over at 12:00 UTC).
DAY_OBS_TZ = timezone(timedelta(hours=-12), "UTC-12")


def parse_day_obs(day_obs: str) -> date:
    """``'YYYYMMDD'`` (``'YYYY-MM-DD'`` accepted) → :class:`datetime.date`; ValueError if not."""
    text = day_obs.replace("-", "")
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"day_obs must be YYYYMMDD, got {day_obs!r}")
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError as exc:
        raise ValueError(f"day_obs {day_obs!r} is not a calendar date") from exc


def format_day_obs(d: date) -> str:
    """:class:`datetime.date` → ``'YYYYMMDD'``."""
    return d.strftime("%Y%m%d")


def day_obs_for(when: datetime) -> str:
    """The day_obs of an instant (timezone-aware; naive datetimes are refused).

    >>> day_obs_for(datetime(2025, 11, 22, 11, 59, tzinfo=UTC))
    '20251121'
    >>> day_obs_for(datetime(2025, 11, 22, 12, 0, tzinfo=UTC))
    '20251122'
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("day_obs_for needs a timezone-aware datetime")
    return format_day_obs(when.astimezone(DAY_OBS_TZ).date())


def day_obs_start(day_obs: str) -> datetime:
    """First instant of a day_obs: 12:00 UTC of its date (a UTC datetime)."""
    d = parse_day_obs(day_obs)
    return datetime(d.year, d.month, d.day, tzinfo=DAY_OBS_TZ).astimezone(UTC)


def shift_day_obs(day_obs: str, days: int) -> str:
    """``day_obs`` moved by ``days`` (negative: earlier)."""
    return format_day_obs(parse_day_obs(day_obs) + timedelta(days=days))


def previous_day_obs(day_obs: str) -> str:
    """The day_obs before ``day_obs``."""
    return shift_day_obs(day_obs, -1)


def next_day_obs(day_obs: str) -> str:
    """The day_obs after ``day_obs``."""
    return shift_day_obs(day_obs, 1)


def day_obs_range(first: str, last: str) -> list[str]:
    """Every day_obs from ``first`` to ``last``, both included (empty if last < first)."""
    return list(iter_day_obs(first, last))


def iter_day_obs(first: str, last: str) -> Iterator[str]:
    d, end = parse_day_obs(first), parse_day_obs(last)
    while d <= end:
        yield format_day_obs(d)
        d += timedelta(days=1)


def day_obs_window(target: str, catch_up_days: int) -> list[str]:
    """``target`` and the ``catch_up_days`` day_obs before it, oldest first."""
    if catch_up_days < 0:
        raise ValueError("catch_up_days must be >= 0")
    return day_obs_range(shift_day_obs(target, -catch_up_days), target)
