"""calibmon.dayobs is the one day_obs owner: the helpers that used to repeat it agree."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from astropy.time import Time
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from calibmon import dayobs
from calibmon.butler import dayobs as butler_dayobs
from calibmon.io.validate import day_obs_window
from calibmon.records import MetricRecord, Provenance


def test_check_day_obs_is_strict() -> None:
    assert dayobs.check_day_obs("20251121") == "20251121"
    for bad in ("2025-11-21", "2025112", "20251399", "20250230", "abcdefgh"):
        with pytest.raises(ValueError, match="day_obs"):
            dayobs.check_day_obs(bad)


def test_to_day_obs_accepts_date_like_filters() -> None:
    assert dayobs.to_day_obs("2025-11-01") == "20251101"
    assert dayobs.to_day_obs("2025-11-01T23:00:00") == "20251101"
    assert dayobs.to_day_obs(date(2025, 11, 1)) == "20251101"
    assert dayobs.to_day_obs(datetime(2025, 11, 1, 23, tzinfo=UTC)) == "20251101"
    assert dayobs.to_day_obs(None) is None
    with pytest.raises(ValueError, match="not a day_obs"):
        dayobs.to_day_obs("Nov 1")


def test_iso_and_start() -> None:
    assert dayobs.day_obs_iso("20251121") == "2025-11-21"
    assert dayobs.day_obs_start("20251121") == datetime(2025, 11, 21, 12, tzinfo=UTC)
    assert dayobs.day_obs_start(date(2025, 11, 21)) == dayobs.day_obs_start("20251121")


def test_record_validator_uses_it() -> None:
    prov = Provenance(run="r", exposures=[1], n_exposures=1, software_version="0",
                      config_hash="h", input_calibs={}, processed_at="x")  # fmt: skip
    kw = dict(metric="gain", value=1.5, unit="electron/adu", calib_type="flat", level="amp",
              instrument="LATISS", detector=0, detector_name="R00_S00", amp="C10",
              timestamp="2025-11-21T18:00:00.000Z", provenance=prov)  # fmt: skip
    assert MetricRecord(day_obs="20251121", **kw).day_obs == "20251121"
    with pytest.raises(ValidationError, match="day_obs"):
        MetricRecord(day_obs="20251399", **kw)


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)))
def test_butler_and_core_agree_on_the_day_of_an_instant(naive: datetime) -> None:
    when = naive.replace(tzinfo=UTC)
    core = dayobs.day_obs_for(when)
    t = Time(naive, scale="utc")
    assert dayobs.format_day_obs(butler_dayobs.day_obs_of(t)) == core
    start = butler_dayobs.day_obs_start(dayobs.parse_day_obs(core))
    assert start.to_datetime(timezone=UTC) == dayobs.day_obs_start(core)


def test_header_window_is_the_day_obs_plus_an_edge() -> None:
    lo, hi = day_obs_window("20251121")
    start = dayobs.day_obs_start("20251121")
    assert lo < start < start + timedelta(days=1) < hi
