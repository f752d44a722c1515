"""Verification judgements as decisions (calibmon.science.verify), on seeded synthetic data.

The false-alarm machinery is checked where it can be measured: at a loose per-exposure
probability (5 %) the NOISE test of pure noise must fail at that rate (its σ is right),
STRUCTURE at most at that rate (union bound), and the 1σ errors of the day's medians
must give pulls of unit spread. Counts are binomial; each bound is ≥ 3σ from its
expectation, stated where it is made.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibmon.science import verify as v
from calibmon.science.combine import clipped_mean_stack
from calibmon.science.defects import find_bright_defects


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_failures_to_alert_and_per_exposure_budget() -> None:
    assert [v.failures_to_alert(n) for n in (1, 2, 3, 15, 20)] == [1, 2, 2, 8, 11]
    # Markov: N·T·p/m = budget
    for n, t in ((3, 3), (15, 3), (3, 2), (20, 2)):
        p = v.exposure_false_fail(n, t)
        assert n * t * p / v.failures_to_alert(n) == pytest.approx(v.FALSE_FAIL_PER_AMP_NIGHT)
        assert v.exposure_false_fail(n, t, day_level=True) == pytest.approx(p / 2)
    assert v.normal_z(0.05) == pytest.approx(1.6449, abs=1e-4)
    assert v.normal_z(0.05, two_sided=True) == pytest.approx(1.9600, abs=1e-4)
    assert v.normal_z(0.1, n_points=2) == pytest.approx(1.6449, abs=1e-4)


def test_markov_bound_holds_for_correlated_and_independent_exposures() -> None:
    """A pass fraction of 3 exposures each failing with p = b·m/(N·T) drops below 0.5
    with probability ≤ b whether the exposures share everything or nothing (b = 0.3 so
    that rates are measurable in 20 000 nights: binomial σ ≤ 0.0033)."""
    b, n = 0.3, 3
    p = v.exposure_false_fail(n, 1, budget=b)
    u = rng(1).random((20_000, n))
    independent = np.mean((u < p).sum(axis=1) >= v.failures_to_alert(n))
    shared = np.mean(u[:, 0] < p)  # one draw decides every exposure
    assert independent <= b and shared <= b + 0.01
    assert shared == pytest.approx(p, abs=0.015)


def _noise(seed: int, k: int, shape=(100, 100), sigma=4.0) -> np.ndarray:
    return sigma * rng(seed).standard_normal((k, *shape), dtype=np.float32)


def test_noise_test_fails_pure_noise_at_its_stated_rate() -> None:
    """With the tolerance at 0 and the true σ as expectation, NOISE fails pure noise with
    probability p: 400 residuals at p = 0.05 give 20 ± 4.4 failures; STRUCTURE, a
    union bound over 200 profile points, fails at most at p; MEAN (tolerance σ) never."""
    frames = _noise(2, 400)
    fails = {"NOISE": 0, "STRUCTURE": 0, "MEAN": 0}
    for f in frames:
        c = v.verify_bias_exposure(f, 4.0, noise_tolerance=0.0, false_fail=0.05)
        for t in fails:
            fails[t] += not c.tests[t]
    assert 7 <= fails["NOISE"] <= 34, fails
    assert fails["STRUCTURE"] <= 34 and fails["MEAN"] == 0, fails


def test_mean_error_includes_row_correlated_noise() -> None:
    """Pixels of a row share the row's overscan level: the mean's error comes from the
    row means. Pulls of 300 residuals with a per-row offset (σ_row = 1, pixel σ = 4):
    spread 1 ± 0.04 (std of a std of 300 values), checked within 0.85–1.15; the
    pixel-only error would be 2.7× too small."""
    shape, pulls = (200, 100), []
    for k, f in enumerate(_noise(3, 300, shape)):
        f += rng(100 + k).standard_normal((shape[0], 1)).astype(np.float32)
        mean, noise, _ = v.residual_stats(f)
        pulls.append(mean / v.mean_error_rows(f, noise, mean))
    assert 0.85 < float(np.std(pulls)) < 1.15
    assert abs(float(np.mean(pulls))) < 0.2  # 3σ of a mean of 300 unit pulls


def test_errors_of_the_day_medians_give_unit_pulls() -> None:
    """A day of 3 biases against a master of 3 frames (clipped mean, shared by all
    three): the median of the residual means and of the residual noises, with the
    errors the verify step records, over 200 nights: pulls of unit spread (0.8–1.2 is
    ±4σ for 200 pulls) — without the master's common share (a third of the variance) the mean's
    pulls would spread 1.17."""
    sigma, n_m, n_day = 4.0, 3, 3
    master_noise = v.master_noise(sigma, n_m)
    truth = v.bias_expected_noise_adu(sigma, master_noise)
    pm, pn = [], []
    for night in range(200):
        st = _noise(1000 + night, n_m + n_day, (60, 60), sigma)
        master = clipped_mean_stack(st[:n_m])
        checks = [v.verify_bias_exposure(f - master, truth) for f in st[n_m:]]
        rho = v.common_variance_fraction(master_noise, truth, of_std=False)
        err_m = v.median_error([c.detail["mean_error"] for c in checks], rho)
        err_n = v.median_error([c.detail["noise_error"] for c in checks],
                               v.common_variance_fraction(master_noise, truth))  # fmt: skip
        pm.append(float(np.median([c.mean for c in checks])) / err_m)
        pn.append((float(np.median([c.noise for c in checks])) - truth) / err_n)
    assert 0.8 < float(np.std(pm)) < 1.2
    assert 0.8 < float(np.std(pn)) < 1.25
    assert abs(float(np.median(pn))) < 0.3


def test_short_dark_noise_is_not_a_new_defect_but_a_hot_column_is() -> None:
    """Three 1-s darks of a full-size ITL amp: σ ≈ 6 e-/s a pixel. cp_pipe's census (3 e-/s)
    calls a third of the pixels hot; the decision finds nothing — and still finds a
    10 e-/s column (its median is known to 0.17 e-/s) and a 60 e-/s pixel."""
    shape = (2000, 509)
    img = 6.0 * rng(5).standard_normal(shape, dtype=np.float32)
    census = find_bright_defects(img)
    assert census.n_columns + census.n_pixels > 100  # the census counts noise
    clean = v.find_new_defects(img, None, 3.0, pixel_noise=6.0)
    assert clean.n_pixels == 0 and clean.ok
    assert clean.column_limit == 3.0 and 30 < clean.pixel_limit < 45
    img[:, 100] += 10.0
    img[7, 7] += 60.0
    cert = np.zeros(shape, bool)
    cert[:, 300] = True
    img[:, 300] += 50.0  # certified: not new
    found = v.find_new_defects(img, cert, 3.0, pixel_noise=6.0)
    assert found.columns == (100,)
    assert found.n_pixels == shape[0] + 1 and not found.ok


def test_cold_column_found_in_a_flat() -> None:
    flat = 15000.0 + 150.0 * rng(6).standard_normal((300, 100), dtype=np.float32)
    assert v.find_new_defects(flat, None, 1500.0, cold=True).n_pixels == 0
    flat[:, 20] *= 0.8
    flat[3, 3] = 1000.0
    found = v.find_new_defects(flat, None, 1500.0, cold=True)
    assert found.columns == (20,) and found.n_pixels == 300 + 1


def test_robust_reference_excludes_outliers() -> None:
    vals = {f"C{i:02d}": 15000.0 * (1 + 1e-3 * math.sin(i)) for i in range(16)}
    vals["C03"] = 3.0  # dead
    vals["C04"] = math.nan
    vals["C05"] *= 1.05
    ref = v.robust_reference(vals, 0.02)
    assert ref.outliers == ("C03", "C04", "C05") and ref.n_inliers == 13
    assert ref.median == pytest.approx(15000.0, rel=2e-3)
    assert ref.sigma_mad / ref.median < 2e-3
    # no majority: keep every finite amp
    split = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 2.0, "e": 3.0}
    assert v.robust_reference(split, 0.02).n_inliers == 5


def test_dead_amp_fails_alone_in_the_detector_flat_verification() -> None:
    """A dead amp (no signal: mean ~0) among 16: the old detector SCATTER (std/mean of
    all amp means ≈ 0.25) failed all 16; now only the dead amp fails."""
    amps = [f"C1{i}" for i in range(8)] + [f"C0{i}" for i in range(8)]
    per_amp = {}
    for k, amp in enumerate(amps):
        level = 2.0 if amp == "C12" else 15000.0 * (1 + 1e-3 * math.cos(k))
        per_amp[amp] = [v.FlatExposure(e, level, 0.0088, 0.0088, 15000, 0.003, 0.003)
                        for e in range(20)]  # fmt: skip
    verdicts = v.finish_flat_verification(per_amp)
    assert {a for a, vd in verdicts.items() if vd.pass_fraction < 1} == {"C12"}
    assert verdicts["C12"].checks[0].failed_tests == ["LEVEL"]
    d = verdicts["C10"].checks[0].detail
    assert d["n_outlier_amps"] == 1 and d["detector_scatter"] < 2e-3
    # new cold defects of one amp fail that amp only
    only = v.finish_flat_verification(per_amp, day_ok={"C05": False})
    assert {a for a, vd in only.items() if vd.pass_fraction < 1} == {"C12", "C05"}
    assert math.isfinite(verdicts["C10"].scatter_error) and verdicts["C10"].scatter_error > 0
