"""LATISS's daily cadence on full-size amps (3 bias, 3 × 1 s darks, 20 flats, a 4-pair
daily_PTC up to 40 ke-, i.e. a third of full well): three stable nights.

What went wrong here before (issue 12): 48 alerts on the first night —
``dark_current_p95_high`` (the p95 of three 1-s darks is ~8 e-/s of read noise),
``defect_fraction_high`` (noise counted as hot pixels) and ``full_well_low`` (the last
point of a ramp without roll-off reported as the full well) on every amp — and no gain
of the day. Each is checked directly on the records, and the alert count must be zero.
"""

from __future__ import annotations

import sqlite3

import pytest

from calibmon.store.sqlite import Store

from .cadence_history import CADENCES, shared_history

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("latiss_full")]

N_NIGHTS = 3


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory):
    c = CADENCES["latiss_full"]
    store, _cfg = shared_history(tmp_path_factory, c, n_nights=N_NIGHTS)
    with Store(store) as s:
        recs = list(s.iter_records(level="amp"))
    return store, recs


def test_no_alert_on_a_stable_camera(history) -> None:
    store, _ = history
    with sqlite3.connect(store) as con:
        rows = con.execute(
            "SELECT rule, amp, to_state, day_obs FROM alert_events WHERE to_state != 'inactive'"
        ).fetchall()
    print(f"latiss full size: {len(rows)} alert transitions on {16 * N_NIGHTS} amp-nights")
    assert rows == []


def test_dark_p95_is_dark_current_not_read_noise(history) -> None:
    """The p95's noise floor (block means of ≥ 200 blocks, row-correlated overscan noise)
    is removed; an in-spec amp reads far below 0.2 e-/s within its error."""
    _, recs = history
    p95 = [r for r in recs if r.metric == "dark_current_p95"]
    assert len(p95) == 16 * N_NIGHTS
    for r in p95:
        assert r.value - 0.2 < 5.1 * r.error, (r.day_obs, r.amp, r.value, r.error)
        assert r.provenance.model_dump()["pixel_noise_e_per_s"] > 2.0  # noise-dominated


def test_no_noise_defects(history) -> None:
    """Hot pixels above a detection limit ≥ 5.6σ of the ~5 e-/s noise: the simulator's
    camera has ~15 hot pixels per Mpix (5–50 e-/s, the brighter ones detectable)."""
    _, recs = history
    for r in recs:
        if r.metric == "bright_pixels":
            assert r.value < 50, (r.day_obs, r.amp, r.value)
            # 5.6σ of the master's ~5 e-/s noise per pixel
            assert r.provenance.model_dump()["detection_limit_e_per_s"] > 20.0
        if r.metric == "defect_fraction":
            assert r.value < 0.005, (r.day_obs, r.amp, r.value)


def test_full_well_is_a_lower_limit_and_gain_is_measured(history) -> None:
    _, recs = history
    fw = [r for r in recs if r.metric == "full_well"]
    assert fw and all(r.provenance.model_dump().get("lower_limit") for r in fw)
    gains = [r for r in recs if r.metric == "gain"]
    assert len(gains) == 16 * N_NIGHTS
    assert all(r.error is not None and r.error < 0.005 * r.value for r in gains)
    rn = [r for r in recs if r.metric == "read_noise"]
    assert all("today" in r.provenance.model_dump()["gain_source"] for r in rn)
