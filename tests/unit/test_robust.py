"""Robust statistics against references (scipy/astropy) on seeded random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.stats import mad_std, sigma_clipped_stats

from calibmon.science import robust
from calibmon.science.combine import clipped_mean_stack, median_noise_factor, median_stack
from calibmon.science.isr import overscan_correct, overscan_row_levels, residual_std_factor


def test_sigma_per_mad_constant() -> None:
    assert pytest.approx(1.482602218505602, rel=1e-12) == robust.SIGMA_PER_MAD
    # the stdlib inverse CDF gives scipy's double exactly (records stay bit-identical)
    from scipy.special import ndtri

    assert float(1.0 / ndtri(0.75)) == robust.SIGMA_PER_MAD


def test_one_sigma_mad_everywhere() -> None:
    """The report and the alert rules use the science constant, not their own copies."""
    from calibmon.alerts import rules

    assert rules.SIGMA_PER_MAD is robust.SIGMA_PER_MAD


def test_sigma_mad_matches_astropy() -> None:
    x = np.random.default_rng(1).normal(3.0, 2.0, 10001)
    assert robust.sigma_mad(x) == pytest.approx(mad_std(x), rel=1e-12)


def test_clipped_stats_vs_astropy_without_correction() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(100.0, 5.0, 200_000)
    x[:50] = 1e5  # outliers
    mean, std, _ = robust.clipped_stats(x, nsigma=3.0, correct_truncation=False)
    a_mean, _, a_std = sigma_clipped_stats(x, sigma=3.0, maxiters=10, stdfunc="std")
    assert mean == pytest.approx(a_mean, abs=0.01)
    assert std == pytest.approx(a_std, rel=2e-3)


def test_truncation_correction_makes_std_unbiased() -> None:
    """200k Gaussian samples: relative std error 1/sqrt(2N) = 0.16 %; assert 0.6 %."""
    x = np.random.default_rng(3).normal(0.0, 7.0, 200_000)
    _, std, _ = robust.clipped_stats(x, nsigma=3.0)
    assert std == pytest.approx(7.0, rel=6e-3)
    _, raw, _ = robust.clipped_stats(x, nsigma=3.0, correct_truncation=False)
    assert raw / 7.0 == pytest.approx(robust.truncation_std_factor(3.0), rel=6e-3)


def test_empty_inputs_give_nan() -> None:
    assert math.isnan(robust.median(np.array([])))
    assert math.isnan(robust.clipped_stats(np.array([np.nan]))[0])
    s = robust.summary_stats(np.array([]))
    assert s["n_points"] == 0 and math.isnan(s["median"])


def test_summary_stats() -> None:
    s = robust.summary_stats(np.array([1.0, 2.0, 3.0, np.nan, 10.0]))
    assert s == {"median": 2.5, "sigma_mad": pytest.approx(1.4826 * 1.0, rel=1e-4),
                 "n_points": 4, "min": 1.0, "max": 10.0}  # fmt: skip


def test_median_stack_equals_numpy_median() -> None:
    rng = np.random.default_rng(4)
    for n in (1, 2, 5, 6, 15):
        stack = rng.normal(size=(n, 31, 17)).astype(np.float32)
        ref = np.median(stack, axis=0)
        np.testing.assert_allclose(median_stack(stack.copy()), ref, rtol=1e-6, atol=1e-6)


def test_clipped_mean_stack_rejects_cosmic_rays_and_matches_reference() -> None:
    """Reference: per-pixel masked mean with the same rule, via numpy masked arrays."""
    rng = np.random.default_rng(8)
    stack = rng.normal(100.0, 5.0, (15, 40, 30)).astype(np.float32)
    stack[3, 10, 10] += 5000.0  # a cosmic ray in one frame
    got = clipped_mean_stack(stack)
    # plain-numpy reference of the documented rule: centre = mean without min and max,
    # sigma = 1.4826 MAD of the residuals of every k-th row, keep |resid| <= 3 sigma
    s64 = stack.astype(np.float64)
    centre = (s64.sum(axis=0) - s64.max(axis=0) - s64.min(axis=0)) / 13
    resid = s64 - centre
    sub = s64[:, :: max(1, s64.shape[1] // 64)]
    sub_centre = (sub.sum(axis=0) - sub.max(axis=0) - sub.min(axis=0)) / 13
    sigma = robust.SIGMA_PER_MAD * np.median(np.abs(sub - sub_centre))
    ref = np.ma.masked_array(s64, np.abs(resid) > 3 * sigma).mean(axis=0)
    close = np.isclose(got, ref, rtol=1e-5, atol=1e-4)
    assert close.mean() > 0.999  # float32 vs float64 at the 3-sigma boundary only
    assert abs(got[10, 10] - 100.0) < 5.0
    # continuous values from integer frames: no quantisation of the master
    ints = np.round(stack)
    assert len(np.unique(clipped_mean_stack(ints))) > 100


def test_median_noise_factor_limits() -> None:
    assert median_noise_factor(1) == 1.0 and median_noise_factor(2) == 1.0
    assert median_noise_factor(3) == pytest.approx(1.1602, abs=2e-3)
    assert median_noise_factor(101) == pytest.approx(math.sqrt(math.pi / 2), abs=0.01)


def test_row_levels_fast_path_equals_reference() -> None:
    """Partition-based clipped row median == NaN-median reference on random data."""
    rng = np.random.default_rng(5)
    os_ = rng.normal(1000.0, 4.0, (500, 60)).astype(np.float32)
    os_[rng.integers(0, 500, 40), rng.integers(0, 60, 40)] += 500.0  # glitches
    fast = overscan_row_levels(os_)
    resid = np.abs(os_ - np.median(os_, axis=1)[:, None])
    sigma = robust.SIGMA_PER_MAD * np.median(resid[::8])  # the documented every-8th-row σ
    masked = np.where(np.abs(os_ - np.median(os_, axis=1)[:, None]) > 3 * sigma, np.nan, os_)
    np.testing.assert_allclose(fast, np.nanmedian(masked, axis=1), rtol=0, atol=1e-3)


def test_overscan_correct_removes_row_drift() -> None:
    rng = np.random.default_rng(6)
    rows, cols = 400, 120
    drift = 20000 + 5 * np.sin(np.arange(rows) / 30.0)
    img = drift[:, None] + rng.normal(0, 3.0, (rows, cols))
    trimmed, levels = overscan_correct(img, slice(0, 380), slice(3, 90), slice(93, 120))
    assert trimmed.shape == (380, 87)
    assert abs(float(np.mean(trimmed))) < 0.1
    # row median of 27 pixels, sigma 3: std 3*1.25/sqrt(27) = 0.72 adu; 380 rows -> allow 5 sigma
    np.testing.assert_allclose(levels, drift[:380], atol=3.6)


def test_residual_std_factor_monte_carlo() -> None:
    """std(x - row median)/sigma for n=60: Monte Carlo on 2000x60 draws (0.04 % error)."""
    x = np.random.default_rng(7).normal(0, 1, (20000, 60))
    emp = np.std(x - np.median(x, axis=1)[:, None])
    assert emp == pytest.approx(residual_std_factor(60), rel=1.5e-3)


def test_interpolated_quantile_equals_quantile_on_continuous_data() -> None:
    x = np.random.default_rng(9).normal(0.0, 1.0, 100_001)
    for q in (0.05, 0.5, 0.95):
        assert robust.interpolated_quantile(x, q) == pytest.approx(np.quantile(x, q), abs=2e-3)


def test_interpolated_quantile_removes_grid_bias() -> None:
    """Data on a 1/30 grid (an N=15 mean of half-integer frames) with a true median 0.01:
    the plain median sits on a grid value (0.0 or 0.033); the interpolated median recovers
    0.01 within its statistical error 1.25·σ/√n = 1.25·2/√1e6 = 0.0025 (assert 4σ)."""
    rng = np.random.default_rng(10)
    x = np.round((0.01 + rng.normal(0.0, 2.0, 1_000_000)) * 30) / 30
    assert np.median(x) in (0.0, pytest.approx(1 / 30))
    assert robust.interpolated_quantile(x, 0.5) == pytest.approx(0.01, abs=0.01)
    assert robust.interpolated_quantile(np.array([3.0, 3.0, 3.0]), 0.5) == 3.0
    assert math.isnan(robust.interpolated_quantile(np.array([]), 0.5))
