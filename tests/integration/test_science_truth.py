"""Every per-amp metric of a simulated night against the simulator's injected truth.

One small two-detector night (R22_S11 e2v, R01_S01 ITL; 100 x 150 px data per amp) with
15 biases, 15 darks of 600 s, 16 daily flats and a 60-pair PTC ramp, processed through
``run_directory`` exactly as ``calibmon run`` does. Each test's docstring derives its
tolerance from the pixel/frame counts and the known systematics of the estimator.
"""

from __future__ import annotations

import numpy as np
import pytest

from calibmon.config import load_settings
from calibmon.service.run import run_directory
from calibmon.simulate import simulate_night
from calibmon.store.sqlite import Store

DAY = "20251121"
DETS = ["R22_S11", "R01_S01"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Store]:
    out = tmp_path_factory.mktemp("truth_night")
    # column defects on a few amps of each vendor (the camera draws few on small amps)
    cols = {"R22_S11": {"C03": {"hot_columns": [40]}, "C14": {"cold_columns": [61]}},
            "R01_S01": {"C05": {"hot_columns": [22], "cold_columns": [70]}}}  # fmt: skip
    truth = simulate_night(out, DAY, DETS, small=True, seed=7, ptc=True, n_ptc_pairs=60,
                           dark_time_s=600.0, n_bias=15, n_dark=15, n_flat=16,
                           extra_defects=cols)  # fmt: skip
    settings = load_settings(None, store=out / "cm.sqlite", workers=2)
    store = Store(settings.store_path())
    summary = run_directory(out, settings, store)
    assert summary.ok and summary.n_rejected == 0
    values: dict[tuple[str, str], dict] = {}
    for r in store.iter_records(level="amp"):
        values.setdefault((r.detector_name, r.amp), {})[r.metric] = r
    return truth, values, store


def _amps(truth: dict):
    for det in DETS:
        for amp, t in truth["detectors"][det]["amps"].items():
            yield det, amp, t


DESIGN_AMP_METRICS = {
    "bias_level", "read_noise", "read_noise_adu", "bias_mean", "bias_noise",
    "dark_current", "dark_current_p95", "bright_pixels", "bright_columns",
    "flat_level", "gain", "dark_pixels", "dark_columns", "serial_cti",
    "ptc_gain", "ptc_noise", "ptc_turnoff", "full_well", "ptc_a00",
    "linearity_turnoff", "max_frac_nonlinearity", "defect_fraction",
}  # fmt: skip


def test_every_design_metric_for_every_amp(measured) -> None:
    _truth, values, _ = measured
    assert len(values) == 32
    for key, metrics in values.items():
        assert set(metrics) >= DESIGN_AMP_METRICS, (key, DESIGN_AMP_METRICS - set(metrics))


def test_read_noise_electrons(measured) -> None:
    """read_noise (e-) = read_noise_adu x PTC gain of the day. read_noise_adu: 15 frames x
    150 rows x ~24 used overscan columns = 54k pixels, std error 1/sqrt(2N) = 0.3 %; the PTC
    gain adds <= 1 %: 2 % is > 4 sigma of the combination."""
    truth, values, _ = measured
    for det, amp, t in _amps(truth):
        r = values[(det, amp)]["read_noise"]
        assert r.provenance.model_dump()["gain_source"].startswith("PTC")
        assert r.value == pytest.approx(t["read_noise_e"], rel=0.02), (det, amp)


def test_flat_pair_gain(measured) -> None:
    """Flat-pair gain, corrected for brighter-fatter and nonlinearity with the day's PTC a00
    (which absorbs the nonlinearity: a00_fit = a00 + 3·k2, see pipeline.step_gain), against
    the injected gain within 4 of its own errors (8 pairs of 15 000 pixels: 0.4 % from the
    pair variances, plus the a00 fit error × the signal in electrons). Uncorrected, the
    estimate would be ~3 % high at 15 ke- (a00 ≈ −2e-6/e-)."""
    truth, values, _ = measured
    for det, amp, t in _amps(truth):
        r = values[(det, amp)]["gain"]
        g = t["gain_e_per_adu"]
        assert r.error is not None and 0 < r.error < 0.02 * g, (det, amp, r.error)
        assert abs(r.value - g) < 4 * r.error, (det, amp, r.value, g, r.error)


def test_ptc_gain_noise_a00(measured) -> None:
    """PTC gain within 1 % or 4x its fit error, whichever is larger (small amps: each
    variance from 15 000 pixels is 1.15 % uncertain, so the gain's fit error is ~0.3-0.5 %).
    a00: the quadratic nonlinearity adds 3 k2 to the fitted a00 (var ~ mu (1 + (a00 + 3k2)
    mu) to first order), within 20 % (fit error ~5-8 %). PTC noise within 25 % of the read
    noise (it is a fit intercept, ~10 % uncertain on small amps)."""
    truth, values, _ = measured
    for det, amp, t in _amps(truth):
        v = values[(det, amp)]
        gain = v["ptc_gain"]
        err = gain.provenance.model_dump()["gain_err"]
        tol = max(0.01, 4 * err / t["gain_e_per_adu"])
        assert gain.value == pytest.approx(t["gain_e_per_adu"], rel=tol), (det, amp, err)
        a00_expected = t["a00_per_e"] + 3 * t["nonlinearity_k2_per_e"]
        assert v["ptc_a00"].value == pytest.approx(a00_expected, rel=0.20), (det, amp)
        assert v["ptc_noise"].value == pytest.approx(t["read_noise_e"], rel=0.25), (det, amp)


def test_full_well(measured) -> None:
    """full_well = PTC turnoff x gain. The largest measurable signal is FW (1 + k2 FW)
    (nonlinearity; simulator definitions). The turnoff is the last ramp point before the
    variance rolls off: at most one dense ramp step below it, plus the early roll-off of
    the brightest PRNU pixels (clipping of the top ~2 % of pixels, i.e. at 2 sigma_PRNU,
    already lowers the variance of a 15 000-pixel pair beyond the outlier cut), plus the
    gain error (0.5 %). With 60 pairs the step is ~1.3 % and sigma_PRNU ~0.8 %: ~3.4 %."""
    truth, values, _ = measured
    step = truth["ptc"]["max_dense_step_frac"]
    assert step <= 0.015
    for det, amp, t in _amps(truth):
        fw = t["full_well_e"] * (1 + t["nonlinearity_k2_per_e"] * t["full_well_e"])
        got = values[(det, amp)]["full_well"].value
        low = -(step + 2 * t["prnu"] + 0.005)
        assert low <= got / fw - 1 <= 0.005, (det, amp, got / fw - 1, low)
        turnoff, gain = values[(det, amp)]["ptc_turnoff"].value, values[(det, amp)]["ptc_gain"]
        assert turnoff * gain.value == pytest.approx(got, rel=1e-9)


def test_linearity(measured) -> None:
    """Quadratic response s + k2 s^2: the fractional residual from a line through the fit
    points stays about 1 % below the linearity turnoff by definition, is non-zero (k2 != 0),
    and the turnoff cannot lie above the saturated mean FW (1 + k2 FW)/g."""
    truth, values, _ = measured
    for det, amp, t in _amps(truth):
        v = values[(det, amp)]
        fw_adu = t["full_well_e"] * (1 + t["nonlinearity_k2_per_e"] * t["full_well_e"])
        fw_adu /= t["gain_e_per_adu"]
        # <= 1 % at the turnoff by definition; a point below it may exceed that by its own
        # noise (mean of 15 000 pixels at ~20 000 adu: 0.1 %) plus the residual's
        # normalisation (~0.1 %): allow 1.25 %
        assert 0 < v["max_frac_nonlinearity"].value <= 0.0125
        assert 0.5 * fw_adu < v["linearity_turnoff"].value <= 1.01 * fw_adu


def test_dark_current(measured) -> None:
    """Dark current within 10 % or 5e-4 e-/s. Error budget for 600 s darks: the per-row
    overscan level of ~24 pixels (0.9 adu a row and frame) averages to 0.02 adu over 150
    rows x 15 frames: 5e-5 e-/s; the master noise (2.2 e- a pixel) gives a median error of
    1.25 x 2.2/sqrt(15000)/600 = 4e-5 e-/s."""
    truth, values, _ = measured
    for det, amp, t in _amps(truth):
        got = values[(det, amp)]["dark_current"].value
        want = t["dark_current_e_per_s"]
        assert abs(got - want) <= max(0.10 * want, 5e-4), (det, amp, got, want)


def test_serial_cti(measured) -> None:
    """EPER within 20 %: the trail of 2 overscan columns over 150 rows x 16 flats has a
    noise of ~3.6 adu x sqrt(2/2400) = 0.1 adu against a trail of cti x 110 transfers x
    ~9000 adu = 3-20 adu: < 3 %; 20 % is the issue's tolerance."""
    truth, values, _ = measured
    for det, amp, t in _amps(truth):
        got = values[(det, amp)]["serial_cti"].value
        assert got == pytest.approx(t["serial_cti"], rel=0.20), (det, amp)


def test_defect_census(measured) -> None:
    """Every injected hot/cold pixel and column is found; at most one false positive per
    amp (the injected defects are 9-33 sigma above the background)."""
    truth, values, _ = measured
    pairs = (("bright_columns", "hot_columns"), ("dark_columns", "cold_columns"),
             ("bright_pixels", "hot_pixels"), ("dark_pixels", "cold_pixels"))  # fmt: skip
    for det, amp, t in _amps(truth):
        v = values[(det, amp)]
        for metric, key in pairs:
            n_true = len(t[key])
            assert n_true <= v[metric].value <= n_true + 1, (det, amp, metric)
        n_data = 100 * (150 if t["vendor"] == "ITL" else 152)
        bad = len(t["hot_pixels"]) + len(t["cold_pixels"]) + 150 * (
            len(t["hot_columns"]) + len(t["cold_columns"]))  # fmt: skip
        assert v["defect_fraction"].value == pytest.approx(bad / n_data, abs=4 / n_data)


def test_summaries_and_pictures(measured) -> None:
    """Detector/camera summaries exist for every metric; binned masters and PTC curves are
    stored for the report."""
    _, _values, store = measured
    cams = {r.metric: r for r in store.iter_records(level="camera")}
    assert set(cams) >= DESIGN_AMP_METRICS
    assert cams["read_noise"].stats.n_points == 32
    dets = [r for r in store.iter_records(level="detector", metric="gain")]
    assert len(dets) == 2 and all(r.stats.n_points == 16 for r in dets)
    imgs = store.amp_images(DAY, "bias")
    assert len(imgs) == 32 and all(i["detsec"] for i in imgs)
    curves = store.ptc_curves(DAY)
    assert len(curves) == 32 and len(curves[0]["mu_adu"]) == 60
    assert np.isfinite(curves[0]["gain"])
