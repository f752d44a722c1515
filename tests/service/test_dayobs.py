"""day_obs: the date in UTC-12, rolling over at 12:00 UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibmon.dayobs import (
    day_obs_for,
    day_obs_range,
    day_obs_start,
    day_obs_window,
    next_day_obs,
    parse_day_obs,
    previous_day_obs,
    shift_day_obs,
)

CHILE = timezone(timedelta(hours=-3))  # CLST, summer at Cerro Pachón


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(2025, 11, 22, 11, 59, 59, 999999, tzinfo=UTC), "20251121"),
        (datetime(2025, 11, 22, 12, 0, tzinfo=UTC), "20251122"),
        (datetime(2025, 11, 22, 0, 0, tzinfo=UTC), "20251121"),
        (datetime(2025, 11, 22, 23, 59, tzinfo=UTC), "20251122"),
        # one Chilean night keeps one day_obs: afternoon calibrations to morning
        (datetime(2025, 11, 21, 15, 0, tzinfo=CHILE), "20251121"),
        (datetime(2025, 11, 22, 8, 59, tzinfo=CHILE), "20251121"),
        (datetime(2025, 11, 22, 9, 0, tzinfo=CHILE), "20251122"),
        # year and leap-day boundaries
        (datetime(2025, 1, 1, 11, 0, tzinfo=UTC), "20241231"),
        (datetime(2024, 3, 1, 6, 0, tzinfo=UTC), "20240229"),
    ],
)
def test_day_obs_rolls_over_at_noon_utc(when: datetime, expected: str) -> None:
    assert day_obs_for(when) == expected


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        day_obs_for(datetime(2025, 11, 22, 13, 0))


def test_previous_next_shift_and_ranges() -> None:
    assert previous_day_obs("20240301") == "20240229"
    assert next_day_obs("20241231") == "20250101"
    assert shift_day_obs("20251121", -7) == "20251114"
    assert day_obs_range("20251230", "20260102") == ["20251230", "20251231", "20260101", "20260102"]
    assert day_obs_range("20251122", "20251121") == []
    assert day_obs_window("20251121", 2) == ["20251119", "20251120", "20251121"]
    assert day_obs_window("20251121", 0) == ["20251121"]
    with pytest.raises(ValueError):
        day_obs_window("20251121", -1)
    assert day_obs_start("20251121") == datetime(2025, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["2025112", "2025-11-2x", "20251332", "20250230", ""])
def test_parse_rejects_bad_day_obs(bad: str) -> None:
    with pytest.raises(ValueError, match="day_obs"):
        parse_day_obs(bad)


@given(st.dates(min_value=date(1990, 1, 2), max_value=date(2100, 12, 31)))
def test_start_of_a_day_obs_belongs_to_it_and_the_instant_before_does_not(d: date) -> None:
    day = d.strftime("%Y%m%d")
    start = day_obs_start(day)
    assert day_obs_for(start) == day
    assert day_obs_for(start - timedelta(microseconds=1)) == previous_day_obs(day)
    assert day_obs_for(start + timedelta(hours=23, minutes=59)) == day
    assert next_day_obs(previous_day_obs(day)) == day


def test_dayobs_command_prints_the_day_obs(capsys: pytest.CaptureFixture[str]) -> None:
    from calibmon.cli import main

    assert main(["dayobs", "--at", "2025-11-22T13:00:00Z"]) == 0
    assert main(["dayobs", "--previous", "--at", "2025-11-22T13:00:00Z"]) == 0
    assert main(["dayobs", "--at", "2025-11-22T11:00:00Z", "--offset", "-2"]) == 0
    assert capsys.readouterr().out.split() == ["20251122", "20251121", "20251119"]
