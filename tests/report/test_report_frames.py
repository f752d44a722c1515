"""The notebook API (calibmon.store.frames): records as DataFrames, filters, blob codecs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from nightdata import fill_ptc_curves, fire_alert, night_records, write_night

from calibmon.dayobs import to_day_obs
from calibmon.store import frames
from calibmon.store.sqlite import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        for day in ("20251031", "20251101", "20251102"):
            write_night(
                s, night_records(day, ["R22_S11", "R01_S01"], metrics=["read_noise", "gain"]), day
            )
        yield s


def test_records_frame_flattens_provenance_and_stats(store) -> None:
    recs = list(store.iter_records(day_obs="20251101"))
    df = frames.records_frame(recs)
    assert len(df) == len(recs)
    assert list(df.columns[: len(frames.COLUMNS)]) == list(frames.COLUMNS)
    assert "gain_source" in df.columns  # an extra provenance key becomes a column
    amp = df[df["level"] == "amp"]
    cam = df[df["level"] == "camera"].iloc[0]
    assert amp["stats_median"].isna().all()
    assert cam["stats_median"] == cam["value"]
    assert pd.isna(cam["detector"]) and pd.isna(cam["detector_name"])
    assert df["timestamp"].dt.tz is not None
    assert amp["exposures"].iloc[0].startswith("2025110100001,")
    assert (df["n_exposures"] == 15).all()
    assert str(df["detector"].dtype) == "Int64"
    json.loads(df["input_calibs"].iloc[0])


def test_records_frame_of_nothing_has_the_columns() -> None:
    df = frames.records_frame([])
    assert df.empty and list(df.columns) == list(frames.COLUMNS)


def test_frame_filters_like_the_notebook_example(store) -> None:
    df = frames.frame(store, metric="read_noise", detector_name="R22_S11", since="2025-11-01")
    assert set(df["day_obs"]) == {"20251101", "20251102"}
    assert set(df["metric"]) == {"read_noise"}
    assert set(df["detector_name"]) == {"R22_S11"}
    assert len(df[df["level"] == "amp"]) == 32
    only = frames.frame(store, calib_type="flat", level="amp", until="20251031")
    assert set(only["metric"]) == {"gain"} and set(only["day_obs"]) == {"20251031"}
    assert len(frames.frame(store, detector=94, amp="C10", level="amp")) == 6
    wide = frames.StoreFrames(store).wide(day_obs="20251102")
    assert {"read_noise", "gain"} <= set(wide.columns) and len(wide) == 32


@pytest.mark.parametrize("text", ["20251101", "2025-11-01", "2025-11-01T12:00:00"])
def test_day_obs_of_accepts_dates(text) -> None:
    assert to_day_obs(text) == "20251101"
    with pytest.raises(ValueError):
        to_day_obs("Nov 1")


def test_amp_image_codec_round_trips() -> None:
    img = np.random.default_rng(1).normal(size=(7, 3)).astype(np.float32)
    img[2, 1] = np.nan
    blob = frames.encode_amp_image(img)
    assert len(blob) == 7 * 3 * 4
    back = frames.decode_amp_image(blob, 7, 3)
    np.testing.assert_array_equal(back, img)
    with pytest.raises(ValueError):
        frames.decode_amp_image(blob, 7, 4)
    with pytest.raises(ValueError):
        frames.encode_amp_image(np.zeros(3))


def test_ptc_curves_read_back_with_missing_values(store) -> None:
    fill_ptc_curves(store, "LSSTCam", "20251102", ["R22_S11"])
    raw = json.loads(store.query("SELECT data FROM ptc_curves LIMIT 1")[0]["data"])
    raw["model_var_adu2"][0] = None
    raw.pop("residual_frac")
    store.execute("UPDATE ptc_curves SET data=? WHERE amp='C00'", (json.dumps(raw),))
    curves = frames.ptc_curves(store, "LSSTCam", "20251102")
    assert len(curves) == 16 and {c.detector_name for c in curves} == {"R22_S11"}
    c00 = next(c for c in curves if c.amp == "C00")
    assert np.isnan(c00.model_var_adu2[0]) and np.isnan(c00.residual_frac).all()
    assert c00.extra["gain"] == pytest.approx(raw["gain"])
    assert len(frames.StoreFrames(store).ptc("LSSTCam", "20251102")) == 16 * 24


def test_alert_states_and_events(store) -> None:
    fire_alert(store, "LSSTCam", "R22_S11", "C10", "read_noise_high", value=11.5)
    store.execute(
        "INSERT INTO alert_state(rule, instrument, detector, amp, state, data, updated_at)"
        " VALUES ('gain_drift','LSSTCam',94,'C11','resolved','{}','2025-11-20T00:00:00Z')"
    )
    firing = frames.alert_states(store)
    assert [(a.rule, a.detector, a.amp) for a in firing] == [("read_noise_high", 94, "C10")]
    assert firing[0].data["value"] == 11.5
    assert len(frames.alert_states(store, state=None)) == 2
    assert frames.alert_events(store)[0]["to_state"] == "firing"
    assert frames.StoreFrames(store).alerts()["rule"].tolist() == ["read_noise_high"]


def test_day_helpers(store) -> None:
    assert frames.day_obs_list(store) == ["20251031", "20251101", "20251102"]
    assert frames.instruments_on(store, "20251102") == ["LSSTCam"]
    runs = frames.runs_for_day(store, "LSSTCam", "20251102")
    assert runs[0]["run_id"] == "run-20251102" and runs[0]["n_day_records"] > 0
    amps = frames.day_amp_values(store, "LSSTCam", "20251102")
    assert len(amps) == 2 * 32 and set(amps["vendor"]) == {"ITL", "E2V"}
    summ = frames.summary_values(store, "LSSTCam", ["20251101", "20251102"])
    cam = summ[(summ["level"] == "camera") & (summ["metric"] == "gain")]
    assert len(cam) == 2 and cam["sigma_mad"].notna().all()


def test_influxql_query_is_the_same_selection() -> None:
    q = frames.influxql_query(metric="read_noise", detector_name="R22_S11", since="2025-11-01")
    assert q.startswith('SELECT "read_noise", "day_obs", "run" FROM "lsst.cp.bias" WHERE')
    assert "\"detector_name\" = 'R22_S11'" in q and "time >= '2025-11-01T12:00:00Z'" in q
    q3 = frames.influxql_query(metric="gain", until="20251130")
    assert "time < '2025-12-01T12:00:00Z'" in q3
    q2 = frames.influxql_query(metric="gain", level="detector", instrument="O'Brien")
    assert '"lsst.cp.flat_summary"' in q2 and "'O\\'Brien'" in q2 and '"gain_sigma_mad"' in q2
