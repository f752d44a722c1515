"""The verification statistics (calibmon.science.verify) on seeded synthetic data.

Noise expectations are checked against a direct simulation of what they predict: frames
with known noise, a master combined by the pipeline's own clipped mean, the residual's
clipped std. With 40 000 pixels a std has a relative error of 1/√80000 = 0.35 %, so 2 %
is > 5σ and tests the formula, not luck.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibmon.science import verify as v
from calibmon.science.combine import clipped_mean_stack

SHAPE = (200, 200)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_master_noise_factor_matches_an_independent_simulation() -> None:
    assert v.master_noise_factor(1) == v.master_noise_factor(2) == 1.0
    for n in (3, 5, 15):
        frames = rng(n).standard_normal((n, 300, 300), dtype=np.float32)
        measured = float(np.var(clipped_mean_stack(frames), dtype=np.float64) * n)
        assert v.master_noise_factor(n) == pytest.approx(measured, rel=0.02)
    assert v.master_noise_factor(5) > 1.05  # the clipped mean of few frames is not a mean


def test_frame_noise_from_pairs_ignores_fixed_structure() -> None:
    r = rng(1)
    pattern = 50.0 * r.standard_normal(SHAPE).astype(np.float32)
    stack = pattern[None] + 4.0 * r.standard_normal((6, *SHAPE)).astype(np.float32)
    assert v.frame_noise_from_pairs(stack) == pytest.approx(4.0, rel=0.01)
    assert math.isnan(v.frame_noise_from_pairs(stack[:1]))


def _bias_residual(seed: int, sigma: float, n_master: int, scale: float = 1.0):
    """A new bias minus a clipped-mean master of n frames (same fixed pattern)."""
    r = rng(seed)
    pattern = 3.0 * r.standard_normal(SHAPE).astype(np.float32)
    master = clipped_mean_stack(pattern[None] + sigma * r.standard_normal((n_master, *SHAPE),
                                                                          dtype=np.float32))  # fmt: skip
    frame = pattern + scale * sigma * r.standard_normal(SHAPE, dtype=np.float32)
    return frame - master


def test_bias_expectation_and_tests() -> None:
    sigma, n = 4.0, 5
    expected = v.bias_expected_noise_adu(sigma, v.master_noise(sigma, n))
    clean = v.verify_bias_exposure(_bias_residual(2, sigma, n), expected)
    assert clean.passed, clean
    assert clean.noise == pytest.approx(expected, rel=0.02)
    f = v.master_noise_factor(n)
    assert expected == pytest.approx(sigma * math.sqrt(1 + f / n))
    noisy = v.verify_bias_exposure(_bias_residual(3, sigma, n, scale=1.5), expected)
    assert noisy.failed_tests == ["NOISE"]
    shifted = v.verify_bias_exposure(_bias_residual(4, sigma, n) + 8.0, expected)
    assert shifted.failed_tests == ["MEAN"]  # profiles are relative to their median
    # a fixed structure in the first columns: invisible to MEAN/NOISE, not to STRUCTURE
    resid = _bias_residual(5, sigma, n)
    resid[:, :3] += np.float32([3.0, 1.8, 1.1])
    struct = v.verify_bias_exposure(resid, expected)
    assert struct.failed_tests == ["STRUCTURE"] and struct.detail["column_nsigma"] > 6
    # cosmic rays and a hot pixel move neither the clipped statistics nor the medians
    resid = _bias_residual(6, sigma, n)
    resid[rng(7).integers(0, 200, 30), rng(8).integers(0, 200, 30)] += 5000.0
    assert v.verify_bias_exposure(resid, expected).passed


def test_dark_expectation_matches_simulation() -> None:
    """Frames F = B + d·t + noise; the master dark from N frames minus a master bias of
    N_b frames; a new frame minus the day's master bias minus D·t."""
    r = rng(10)
    rn, d, t, n_d, n_b = 6.0, 0.5, 30.0, 5, 5  # e-, e-/s, s
    bias = 20.0 * r.standard_normal(SHAPE).astype(np.float32)

    def biases(n: int) -> np.ndarray:
        return bias[None] + rn * r.standard_normal((n, *SHAPE), dtype=np.float32)

    def darks(n: int) -> np.ndarray:
        return biases(n) + r.poisson(d * t, (n, *SHAPE)).astype(np.float32)

    b_build = clipped_mean_stack(biases(n_b))
    stack = darks(n_d) - b_build[None]
    fn = v.frame_noise_from_pairs(stack)
    master = clipped_mean_stack(stack / t)
    bias_noise = v.master_noise(rn, n_b)
    m_noise = v.dark_master_noise_e_per_s(fn, n_d, t, bias_noise)
    b_today = clipped_mean_stack(biases(n_b))
    resid = (darks(1)[0] - b_today) / t - master
    expected = v.dark_expected_noise_e(fn, d, t, m_noise, t, v.master_noise(rn, n_b))
    check = v.verify_dark_exposure(resid, t, expected)
    assert check.passed, check
    assert check.noise * t == pytest.approx(expected, rel=0.02)
    assert v.dark_read_noise_e(fn, d, t) == pytest.approx(rn, rel=0.02)


def test_flat_expectation_matches_simulation() -> None:
    r = rng(20)
    s, rn, n = 15000.0, 6.0, 6
    response = (1 + 0.01 * r.standard_normal(SHAPE)).astype(np.float32)

    def flats(k: int) -> np.ndarray:
        mu = s * response
        return (r.poisson(mu, (k, *SHAPE)) + rn * r.standard_normal((k, *SHAPE))).astype(np.float32)

    stack = flats(n)
    pair_var = np.mean([np.var(stack[i] - stack[i + 1]) / 2 for i in (0, 2, 4)])
    master = clipped_mean_stack(stack)
    signal = float(master.mean())
    master /= signal
    m_rel = math.sqrt(pair_var * v.master_noise_factor(n) / n) / signal
    ratio = flats(1)[0] / master
    mean_e, scatter, n_pix = v.flat_exposure_stats(ratio)
    assert n_pix > 0.99 * ratio.size
    expected = v.flat_expected_scatter(mean_e, 1.0, pair_var, signal, rn, m_rel)
    assert scatter == pytest.approx(expected, rel=0.02)
    assert mean_e == pytest.approx(s, rel=0.001)


def test_finish_flat_blames_the_changed_amp_only() -> None:
    amps = [f"C1{i}" for i in range(8)] + [f"C0{i}" for i in range(8)]
    per_amp = {}
    for k, amp in enumerate(amps):
        level = 15000.0 * (1.05 if amp == "C04" else 1.0)
        scatter = 0.0090 * (1.2 if amp == "C11" else 1.0)
        per_amp[amp] = [v.FlatExposure(e, level * (1 + 1e-4 * k), scatter, 0.0088)
                        for e in (1, 2)]  # fmt: skip
    verdicts = v.finish_flat_verification(per_amp)
    failing = {a: vd.checks[0].failed_tests for a, vd in verdicts.items() if vd.pass_fraction < 1}
    assert failing == {"C04": ["LEVEL"], "C11": ["NOISE"]}
    # a whole-detector change is not an amp's problem: the median moves with it
    same = {a: [v.FlatExposure(1, 20000.0, 0.0088, 0.0088)] for a in amps}
    assert all(vd.pass_fraction == 1 for vd in v.finish_flat_verification(same).values())


def test_new_defects_and_pass_fraction() -> None:
    cert = np.zeros(SHAPE, bool)
    cert[5, 5] = True
    cert[:, 7] = True
    day = cert.copy()
    day[:, 50] = True
    assert v.count_new_defects(day, cert) == SHAPE[0]
    assert v.new_defect_columns([7, 50], cert) == [50]
    checks = [
        v.ExposureCheck(1, 0, 1, 1, {"MEAN": True}),
        v.ExposureCheck(2, 0, 1, 1, {"MEAN": False}),
    ]
    assert v.pass_fraction(checks) == 0.5
    assert v.pass_fraction(checks, day_ok=False) == 0.0
    assert math.isnan(v.pass_fraction([]))
