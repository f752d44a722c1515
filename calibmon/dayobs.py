"""Rubin's observing day, ``day_obs``: the one place that parses, formats and computes it.

``day_obs`` is the calendar date in the UTC−12 time zone, written ``YYYYMMDD``: it rolls
over at 12:00 UTC, so one night at Cerro Pachón (UTC−3/−4) keeps one day_obs from its
afternoon calibrations to the next morning's (SITCOMTN-032; the ``DAYOBS`` header key of
LSSTCam and LATISS raws). Day_obs ``D`` runs from ``D`` 12:00 UTC to ``D+1`` 12:00 UTC.

Everything here is pure (the caller passes the instant) and imports only the standard
library, so every layer (records, io, store, butler, service, report) can use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

# Offset of the day_obs time zone from UTC (day_obs rolls over at 12:00 UTC).
DAY_OBS_OFFSET = timedelta(hours=12)
DAY_OBS_TZ = timezone(-DAY_OBS_OFFSET, "UTC-12")


def parse_day_obs(day_obs: str) -> date:
    """``'YYYYMMDD'`` (``'YYYY-MM-DD'`` accepted) → :class:`datetime.date`.

    Raises ValueError naming the text when it is not 8 digits or not a calendar date.
    """
    text = str(day_obs).replace("-", "")
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"day_obs must be YYYYMMDD, got {day_obs!r}")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError as exc:
        raise ValueError(f"day_obs {day_obs!r} is not a calendar date") from exc


def check_day_obs(day_obs: str) -> str:
    """``day_obs`` itself when it is strictly ``YYYYMMDD`` (8 digits, no dashes) and a
    calendar date; ValueError naming it otherwise. The validator of stored records."""
    if not isinstance(day_obs, str) or len(day_obs) != 8 or not day_obs.isdigit():
        raise ValueError(f"day_obs must be YYYYMMDD, got {day_obs!r}")
    parse_day_obs(day_obs)
    return day_obs


def format_day_obs(d: date) -> str:
    """:class:`datetime.date` (or datetime: its calendar date as given) → ``'YYYYMMDD'``."""
    return d.strftime("%Y%m%d")


def to_day_obs(value: str | date | datetime | None) -> str | None:
    """A date-like filter → ``'YYYYMMDD'``: ``"2025-11-01"``, ``"2025-11-01T…"``,
    ``"20251101"``, a date or a datetime (its calendar date as given, no UTC−12 shift);
    None → None. ValueError when it is none of these."""
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return format_day_obs(value)
    t = str(value).strip()
    if len(t) >= 10 and t[4] == "-" and t[7] == "-":
        t = t[:10].replace("-", "")
    if len(t) != 8 or not t.isdigit():
        raise ValueError(f"not a day_obs or date: {value!r}")
    return t


def day_obs_iso(day_obs: str) -> str:
    """``20251121`` → ``2025-11-21``."""
    return parse_day_obs(day_obs).isoformat()


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


def day_obs_start(day_obs: str | date) -> datetime:
    """First instant of a day_obs: 12:00 UTC of its date (a UTC datetime)."""
    d = parse_day_obs(day_obs) if isinstance(day_obs, str) else day_obs
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


def iter_day_obs(first: str, last: str) -> Iterator[str]:
    """Every day_obs from ``first`` to ``last``, both included, oldest first."""
    d, end = parse_day_obs(first), parse_day_obs(last)
    while d <= end:
        yield format_day_obs(d)
        d += timedelta(days=1)


def day_obs_range(first: str, last: str) -> list[str]:
    """Every day_obs from ``first`` to ``last``, both included (empty if last < first)."""
    return list(iter_day_obs(first, last))


def day_obs_window(target: str, catch_up_days: int) -> list[str]:
    """``target`` and the ``catch_up_days`` day_obs before it, oldest first."""
    if catch_up_days < 0:
        raise ValueError("catch_up_days must be >= 0")
    return day_obs_range(shift_day_obs(target, -catch_up_days), target)
