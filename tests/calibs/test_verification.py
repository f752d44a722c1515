"""Build → certify → verify against truth on a simulated history (see conftest.py).

Clean nights must pass on every amp; each injected change must first fail on its night,
on its amp, for the right calibration types, and nowhere else; ``calibs validity`` must
say so. Tolerances: the NOISE tests sit at 5 % over an expectation whose scatter on a
small amp (15 000 pixels: std error 1/√(2·15000) = 0.6 %, plus 0.5 % night-to-night read
noise drift) is ~1 %, and the injected changes are far outside (read noise × 1.5 is
+50 %; a 10 adu structure is ~25σ of a column median; a hot column adds 152 new defect
pixels against 10 allowed; a 5 % response change against 2 % allowed).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

import fitsio
import numpy as np
import pytest
from calib_history import (
    COLD_COLUMN,
    DEAD,
    DETECTORS,
    HOT_COLUMN,
    INJECTIONS,
    NIGHTS,
    History,
    run_cli,
)

from calibmon.io.detectors import AMP_ORDER_16
from calibmon.store.sqlite import Store

PASS = {"bias": "verify_bias_pass", "dark": "verify_dark_pass", "flat": "verify_flat_pass"}
ERROR_METRICS = ("verify_bias_mean", "verify_bias_noise", "verify_dark_mean",
                 "verify_dark_noise", "verify_flat_scatter")  # fmt: skip
# Test that fails for each injection (the verdict's failed_tests).
FAILED_TEST = {
    ("R22_S11", "C13", "dark"): "NEW_DEFECTS",
    ("R01_S01", "C04", "bias"): "NOISE",
    ("R01_S01", "C04", "dark"): "NOISE",
    ("R22_S11", "C05", "bias"): "STRUCTURE",
    ("R01_S01", "C16", "flat"): "LEVEL",
    ("R01_S01", "C10", "flat"): "NEW_DEFECTS",  # dead: every pixel is a new cold defect
    ("R01_S01", "C07", "flat"): "NEW_DEFECTS",
}


@pytest.fixture(scope="module")
def records(history: History) -> list:
    with Store(history.store) as st:
        return [r for r in st.iter_records(level="amp") if r.metric.startswith("verify_")]


def expected_failing(day: str, kind: str) -> set[tuple[str, str]]:
    return {(det, amp) for first, det, amp, kinds in INJECTIONS if day >= first and kind in kinds}


def test_products_layout_and_truth(history: History) -> None:
    """Every product: header contract, one float32 (defects uint8) HDU per amp named like
    the raws with DATASEC/DETSEC, exposure table; numbers against the simulator's truth."""
    truth = history.truth[NIGHTS[0]]
    for (calib_type, det), pid in history.products.items():
        with Store(history.store) as st:
            from calibmon.store.calibs import get_product

            path = get_product(st, pid).path
        with fitsio.FITS(path) as f:
            h = f[0].read_header()
            assert h["CALIBTYP"] == calib_type and h["CALIB_ID"] == pid
            assert h["INSTRUME"] == "LSSTCam" and h["DETNAME"] == det
            assert h["DETECTOR"] == {"R22_S11": 94, "R01_S01": 1}[det]
            assert h["DAYOBS"] == NIGHTS[0] and h["CALIBSW"] and h["CFGHASH"]
            assert h["FILTER"] == ("empty" if calib_type == "flat" else "")
            exps = f["EXPOSURES"].read()["EXPOSURE"]
            assert h["NEXPOSE"] == len(exps) > 0
            assert all(str(e).startswith(NIGHTS[0]) for e in exps)
            geo = truth["geometry"][truth["detectors"][det]["vendor"]]
            hot_ratios: list[float] = []
            for amp in AMP_ORDER_16:
                hdu = f[f"Segment{amp[1:]}"]
                data, hh = hdu.read(), hdu.read_header()
                assert data.shape == (geo["n_data_rows"], geo["n_data_cols"])
                assert data.dtype == (np.uint8 if calib_type == "defects" else np.float32)
                assert hh["DATASEC"] == geo["datasec"] and hh["DETSEC"]
                t = truth["detectors"][det]["amps"][amp]
                if calib_type == "bias":
                    # overscan read noise: 5 frames × 150 rows × ~25 columns, < 1 % error
                    assert hh["RDNOISE"] == pytest.approx(t["read_noise_adu"], rel=0.03)
                    # data-area frame noise ≥ read noise (adds the overscan-level noise)
                    assert t["read_noise_adu"] < hh["FRMNOISE"] < 1.1 * t["read_noise_adu"]
                if calib_type == "dark":
                    # 5 × 30 s darks: the per-row overscan levels of darks and biases
                    # (~0.9 adu a row) average over 150 rows × 5 frames to ~0.05 adu, so
                    # the amp's dark current is known to ~0.0025 e-/s: 4σ
                    assert hh["DARKMEAN"] == pytest.approx(t["dark_current_e_per_s"], abs=0.01)
                    # hot pixels (5-50 e-/s) check gain and units
                    for (r, c), rate in zip(t["hot_pixels"], t["hot_pixel_rates_e_per_s"],
                                            strict=True):  # fmt: skip
                        hot_ratios.append(data[r, c] / (rate + t["dark_current_e_per_s"]))
                if calib_type == "defects":
                    for r, c in t["hot_pixels"]:
                        assert data[r, c] == 1
                    for c in t["hot_columns"] + t["cold_columns"]:
                        assert data[:, c].all()
            if calib_type == "dark":
                # Each hot pixel's clipped mean is noisy (its Poisson scatter of ~30 e- a
                # frame is clipped at 3σ of the amp's ~6 e-), so take the median ratio:
                # the gain (night 1 flat pairs, ~3 % high from brighter-fatter) and units.
                assert 0.9 < float(np.median(hot_ratios)) < 1.1, hot_ratios
            if calib_type == "flat":
                hdrs = [f[f"Segment{a[1:]}"].read_header() for a in AMP_ORDER_16]
                levels = np.asarray([hh["AMPMEAN"] for hh in hdrs])
                # normalised per detector: amps keep their relative response, i.e. the
                # illumination × QE times the gain used over the true gain (the flat is in
                # electrons with the store's gain; a 1-2 % gain error shows in the flat)
                assert np.median(levels) == pytest.approx(1.0, abs=1e-6)
                amps_t = truth["detectors"][det]["amps"]
                rel = np.asarray([amps_t[a]["illumination"] * hh["GAIN"] / amps_t[a]["gain_e_per_adu"]
                                  for a, hh in zip(AMP_ORDER_16, hdrs, strict=True)])  # fmt: skip
                # clipped means of 15 000 pixels at 15 ke-: 0.01 %; nonlinearity ~0.1 %
                np.testing.assert_allclose(levels / levels.mean(), rel / rel.mean(), atol=0.003)
                assert h["NORMTYPE"] == "DETECTOR" and h["FLATNORM"] > 0


def test_build_cli_prints_one_id_per_line(history: History) -> None:
    for calib_type, out in history.build_out.items():
        lines = out.splitlines()
        assert len(lines) == 2
        assert {(calib_type, d) for d in DETECTORS} <= set(history.products)
        assert set(lines) == {history.products[(calib_type, d)] for d in DETECTORS}


def test_list_shows_associations(history: History) -> None:
    lines = history.list_out.splitlines()
    assert len(lines) == 8
    pid = history.products[("bias", "R22_S11")]
    line = next(line for line in lines if pid in line)
    assert line.startswith(f"[2025-11-01, ∞) {pid} ")
    assert line.endswith("bias LSSTCam R22_S11")
    flat = next(line for line in lines if history.products[("flat", "R01_S01")] in line)
    assert flat.endswith("flat LSSTCam R01_S01 empty")


@pytest.mark.parametrize("kind", ["bias", "dark", "flat"])
def test_failures_exactly_on_injected_amps_and_nights(records, kind: str) -> None:
    """On every night each amp passes (pass fraction 1) unless an injection on that amp
    is in effect for this type; then it fails (pass fraction 0) with the expected test."""
    by_day: dict[str, dict[tuple[str, str], object]] = defaultdict(dict)
    for r in records:
        if r.metric == PASS[kind]:
            by_day[r.day_obs][(r.detector_name, r.amp)] = r
    assert sorted(by_day) == NIGHTS[1:]
    for day in NIGHTS[1:]:
        assert len(by_day[day]) == 32, (day, kind)
        failing = {key for key, r in by_day[day].items() if r.value < 1.0}
        assert failing == expected_failing(day, kind), (day, kind)
        for key in failing:
            r = by_day[day][key]
            assert r.value == 0.0, (day, key, r.value)
            assert FAILED_TEST[(*key, kind)] in r.provenance.model_extra["failed_tests"]


def test_first_failing_night_is_the_injection_night(records) -> None:
    for first, det, amp, kinds in INJECTIONS:
        for kind in kinds:
            days = sorted(r.day_obs for r in records if r.metric == PASS[kind]
                          and r.detector_name == det and r.amp == amp and r.value < 1.0)  # fmt: skip
            assert days and days[0] == first, (det, amp, kind, days)


def test_new_defects_count_the_hot_column_by_pixel(history: History, records) -> None:
    """verify_new_defects counts every kind: the hot column (R22_S11 C13), the cold column
    (R01_S01 C07) and the dead amp's pixels (R01_S01 C10, all cold but the certified
    ones); nothing anywhere else."""
    rows = history.truth[NIGHTS[0]]["geometry"]["E2V"]["n_data_rows"]
    itl = history.truth[NIGHTS[0]]["geometry"]["ITL"]
    itl_pixels = itl["n_data_rows"] * itl["n_data_cols"]
    for r in records:
        if r.metric != "verify_new_defects":
            continue
        key, extra = (r.detector_name, r.amp), r.provenance.model_extra
        if key == ("R22_S11", "C13") and r.day_obs >= "20251104":
            assert r.value == rows
            assert extra["new_columns"] == [HOT_COLUMN] and extra["new_cold_defects"] == 0
            assert r.provenance.input_calibs["defects"]["id"]
        elif key == ("R01_S01", "C07") and r.day_obs >= "20251107":
            assert r.value == itl["n_data_rows"]
            assert extra["new_cold_columns"] == [COLD_COLUMN] and extra["new_hot_defects"] == 0
        elif key == DEAD and r.day_obs >= "20251105":
            # certified defects of the amp (its hot/cold pixels) are not new
            assert 0.99 * itl_pixels < r.value < itl_pixels
            assert extra["new_hot_defects"] == 0
        else:
            assert r.value == 0, (r.day_obs, r.detector_name, r.amp)


def test_new_cold_column_fails_the_flat_of_its_amp(history: History, records) -> None:
    """verify_new_cold_defects flags the cold column on its amp from its first night (all
    its pixels, the column named), and is 0 on every clean amp-night; the flat of that
    amp fails with NEW_DEFECTS only (the column is clipped from NOISE and LEVEL)."""
    cold = [r for r in records if r.metric == "verify_new_cold_defects"]
    assert len(cold) == 32 * len(NIGHTS[1:])
    for r in cold:
        key = (r.detector_name, r.amp)
        if key == ("R01_S01", "C07") and r.day_obs >= "20251107":
            rows = history.truth[NIGHTS[0]]["geometry"]["ITL"]["n_data_rows"]
            assert 0.99 * rows <= r.value <= rows  # certified pixels of the column aside
            assert r.provenance.model_extra["new_columns"] == [COLD_COLUMN]
        elif key == DEAD and r.day_obs >= "20251105":
            assert r.value > 10_000
        else:
            assert r.value == 0, (r.day_obs, key)
    flat = {r.day_obs: r for r in records if r.metric == "verify_flat_pass"
            and (r.detector_name, r.amp) == ("R01_S01", "C07")}  # fmt: skip
    assert flat["20251107"].value == 0.0
    assert flat["20251107"].provenance.model_extra["failed_tests"] == "NEW_DEFECTS"
    assert all(flat[d].value == 1.0 for d in NIGHTS[1:-1])


def test_dead_amp_fails_alone(records) -> None:
    """On each night the amp is dead only it fails the flat verification; its 15
    neighbours pass every exposure, judged against the detector reference without it
    (the provenance says one outlier amp was left out)."""
    det, dead = DEAD
    nights = [d for d in NIGHTS[1:] if d >= "20251105"]
    assert len(nights) == 3
    for day in nights:
        flat = {r.amp: r for r in records if r.metric == "verify_flat_pass"
                and r.detector_name == det and r.day_obs == day}  # fmt: skip
        assert len(flat) == 16
        assert flat[dead].value == 0.0
        for amp, r in flat.items():
            if amp == dead or (day >= "20251107" and amp in ("C16", "C07")):
                continue
            assert r.value == 1.0, (day, amp, r.provenance.model_extra["failed_tests"])
            extra = r.provenance.model_extra
            assert extra["outlier_amps"] >= 1
            # the robust scatter of the other amps' levels (~0.1 % drift), not the dead
            # amp's 100 %
            assert extra["detector_scatter"] < 0.01


def test_values_and_provenance(history: History, records) -> None:
    """Clean residuals are zero-mean with the expected noise; provenance names the product
    and its validity range."""
    for r in records:
        clean = (r.detector_name, r.amp) not in {(d, a) for _, d, a, _ in INJECTIONS}
        extra = r.provenance.model_extra
        kind = {"verify_new_defects": "defects", "verify_new_cold_defects": "defects"}.get(
            r.metric, r.metric.split("_")[1]
        )
        ref = r.provenance.input_calibs[kind]
        assert ref["id"] == history.products[(kind, r.detector_name)]
        assert ref["begin"] == "2025-11-01" and ref["end"] is None
        assert r.calib_type == "verify"
        if not clean:
            continue
        if r.metric == "verify_bias_noise":
            assert r.value == pytest.approx(extra["noise_expected_adu"], rel=0.04)
        if r.metric == "verify_bias_mean":
            assert abs(r.value) < 0.5  # adu; noise of a 15 000-pixel mean is 0.04
        if r.metric == "verify_dark_noise":
            # e-/s × 30 s dark time against the expectation in electrons
            assert r.value * 30.0 == pytest.approx(extra["noise_expected_e"], rel=0.04)
        if r.metric == "verify_flat_scatter":
            assert r.value == pytest.approx(extra["scatter_expected"], rel=0.04)
            assert 1 / math.sqrt(16000) < r.value < 1 / math.sqrt(12000)  # ~15 ke- Poisson
        if r.metric in ERROR_METRICS:
            # 1σ errors: positive and small against the value's scale (15 000 pixels)
            assert r.error is not None and r.error > 0, r.metric
        elif r.metric.endswith(("_pass", "_defects")):
            assert r.error is None, r.metric


def _validity(history: History, capsys, kind: str, det: str) -> list[str]:
    rc, out, _ = run_cli(capsys, "calibs", "validity", history.products[(kind, det)],
                         "--store", str(history.store))  # fmt: skip
    assert rc == 0
    return out.splitlines()


@pytest.mark.parametrize(
    ("kind", "det", "passed", "first", "amps"),
    [
        ("bias", "R01_S01", "20251102..20251104 (3 days)", "20251105", "C04"),
        ("bias", "R22_S11", "20251102..20251105 (4 days)", "20251106", "C05"),
        ("dark", "R22_S11", "20251102..20251103 (2 days)", "20251104", "C13"),
        ("dark", "R01_S01", "20251102..20251104 (3 days)", "20251105", "C04"),
        ("flat", "R01_S01", "20251102..20251104 (3 days)", "20251105", "C10"),
        ("defects", "R22_S11", "20251102..20251103 (2 days)", "20251104", "C13"),
    ],
)
def test_validity_reports_first_failure(history, capsys, kind, det, passed, first, amps) -> None:
    lines = _validity(history, capsys, kind, det)
    assert f"{det}: passed {passed}, first failure {first} ({amps})" in lines
    amp_line = next(line for line in lines if line.startswith(f"  {amps}: "))
    assert f"first failure {first}" in amp_line
    assert lines[-1].startswith(f"suggested end of validity: {first[:4]}-{first[4:6]}-{first[6:]}")


def test_validity_without_failure(history, capsys) -> None:
    lines = _validity(history, capsys, "flat", "R22_S11")
    assert "R22_S11: passed 20251102..20251107 (6 days), no failure" in lines
    assert "certified [2025-11-01, ∞)" in lines[0]


def test_run_notes_of_a_clean_history(history: History) -> None:
    with Store(history.store) as st:
        runs = st.runs()
    for run in runs:
        notes = json.loads(run["notes"])
        assert notes.get("missing_certified", []) == []
