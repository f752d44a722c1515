"""Butler timespans (TAI) → day_obs ranges (calibmon.butler.dayobs)."""

from __future__ import annotations

from datetime import date, timedelta

from astropy.time import Time, TimeDelta
from hypothesis import given, settings
from hypothesis import strategies as st

from calibmon.butler.dayobs import (
    EARLIEST_DAY,
    day_obs_instant_tai,
    day_obs_start,
    timespan_to_days,
)


def tai(text: str) -> Time:
    return Time(text, scale="tai")


def test_midnight_certification_starts_that_day_obs() -> None:
    """``certify-calibrations --begin-date 2025-11-21`` (00:00 TAI, inside day_obs 20251120's
    night) → day_obs 20251121 on; the end likewise exclusive."""
    assert timespan_to_days(tai("2025-11-21T00:00:00"), tai("2025-11-25T00:00:00")) == (
        "2025-11-21", "2025-11-25",
    )  # fmt: skip
    assert timespan_to_days(None, None) == (EARLIEST_DAY, None)
    assert timespan_to_days(tai("2025-11-21T00:00:00"), None) == ("2025-11-21", None)


def test_day_start_is_1200_utc_in_tai() -> None:
    """day_obs 20251121 starts 2025-11-21T12:00 UTC = 12:00:37 TAI (TAI−UTC = 37 s)."""
    assert day_obs_instant_tai("20251121").isot == "2025-11-21T12:00:37.000"
    start = tai("2025-11-21T12:00:37")
    assert timespan_to_days(start, None) == ("2025-11-21", None)  # start itself included
    one_ms = TimeDelta(1e-3, format="sec")
    assert timespan_to_days(start + one_ms, None) == ("2025-11-22", None)
    assert timespan_to_days(tai("2025-11-20T00:00:00"), start) == ("2025-11-20", "2025-11-21")


def test_span_inside_one_day_covers_nothing() -> None:
    assert timespan_to_days(tai("2025-11-21T13:00:00"), tai("2025-11-22T11:00:00")) is None


@settings(max_examples=200, deadline=None)
@given(
    b=st.floats(min_value=0, max_value=40, allow_nan=False),
    length=st.floats(min_value=0.01, max_value=20, allow_nan=False),
)
def test_days_are_those_whose_start_lies_in_the_span(b: float, length: float) -> None:
    """A day_obs is in the range iff its start (12:00 UTC) lies in [begin, end)."""
    t0 = tai("2025-11-01T00:00:00")
    begin, end = t0 + TimeDelta(b, format="jd"), t0 + TimeDelta(b + length, format="jd")
    got = timespan_to_days(begin, end)
    covered = []
    for k in range(-2, 64):
        d = date(2025, 11, 1) + timedelta(days=k)
        s = day_obs_start(d).tai
        if begin <= s < end:
            covered.append(d)
    if not covered:
        assert got is None
        return
    assert got == (covered[0].isoformat(), (covered[-1] + timedelta(days=1)).isoformat())
