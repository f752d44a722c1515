"""Linearity turnoff and maximum fractional nonlinearity against an injected quadratic k₂."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibmon.science.linearity import MIN_SIGNAL_FIT_LINEARITY_ADU, linearity_from_ramp

pytestmark = pytest.mark.filterwarnings("error")

FLUX_ADU_PER_S = 1000.0
SATURATION_ADU = 90_000.0
NOISE_FRAC = 2e-4  # flat-pair means: shutter/flux repeatability, ≫ the 1e-5 pixel noise


def _ramp(k2: float, rng: np.random.Generator, n: int = 60, t_max: float = 100.0):
    """μ = x(1 + k₂x), x = flux·t, clipped at saturation, with 2·10⁻⁴ relative scatter."""
    t = np.linspace(t_max / n, t_max, n)
    x = FLUX_ADU_PER_S * t
    mu = np.minimum(x * (1 + k2 * x), SATURATION_ADU)
    mu = mu * (1 + NOISE_FRAC * rng.standard_normal(n))
    return t, x, mu


def _expected_noiseless(t, x, k2, ptc_turnoff):
    """The defined quantities on noise-free data, written out independently.

    Through-origin Poisson fit a = Σt/Σ(t²/μ) over 1000 ≤ μ ≤ PTC turnoff; residual
    r = (μ − a t)/μ minus its median over the fit points.
    """
    mu = np.minimum(x * (1 + k2 * x), SATURATION_ADU)
    fit = (mu >= 1000.0) & (mu <= ptc_turnoff)
    a = t[fit].sum() / (t[fit] ** 2 / mu[fit]).sum()
    r = (mu - a * t) / mu
    r -= np.median(r[fit])
    good = np.abs(r) <= 0.01
    i_turn = np.flatnonzero(good)[np.argmax(mu[good])]
    turnoff = mu[i_turn]
    below = (mu >= 1000.0) & (t <= t[i_turn])
    return turnoff, np.abs(r[below]).max(), r, mu


def test_quadratic_nonlinearity_turnoff_and_max():
    """Injected μ = x(1 + k₂x), k₂ = −3·10⁻⁷/adu, ramp 1 667 … 100 000 adu, saturation 90 000.

    First order: after the fit absorbs the mean slope, r(x) ≈ k₂(x − x_med), x_med ≈ 46 700
    adu (median linear signal of the fit points, 1 000 … 88 000 adu), so |r| reaches 1 %
    at x_t = x_med + 0.01/|k₂| ≈ 80 000 adu, reported as the signal μ(x_t) = x_t(1 + k₂x_t)
    ≈ 78 100 adu; the second-order terms of the exact residual
    r = k₂(x − x̄)/(1 + k₂x) − median move it by ≈ k₂x ≈ 2.5 %, and the turnoff is the last
    ramp point before the crossing (≤ 1 step of 1 667 adu below it).

    Noise: each residual carries the 2·10⁻⁴ scatter of its point; near the threshold
    the residual changes by |k₂|·1 667 = 5·10⁻⁴ per ramp step (2.5σ), so the highest point
    within 1 % can move by one step, rarely two (4 of 300 seeds in a Monte Carlo, never
    more). Asserted against the exact noiseless definition: turnoff within 2 steps;
    max_frac_nonlinearity within 1.5·10⁻³ (the max over ~45 noisy residuals shifts by up to
    ~3σ = 6·10⁻⁴, plus 5·10⁻⁴ when the last point below the turnoff changes; MC max
    1.07·10⁻³). Against first order: within 2 steps + 2.5 %; and max_frac_nonlinearity
    ≈ |k₂|·max|x − x_med| over the points below the turnoff, within 10 %.
    """
    rng = np.random.default_rng(40)
    k2 = -3e-7
    t, x, mu = _ramp(k2, rng)
    ptc_turnoff = float(mu[mu < 0.999 * SATURATION_ADU].max())
    res = linearity_from_ramp(t, mu, ptc_turnoff_adu=ptc_turnoff)
    exp_turnoff, exp_max, exp_r, _ = _expected_noiseless(t, x, k2, ptc_turnoff)
    step = FLUX_ADU_PER_S * (t[1] - t[0])
    assert abs(res.turnoff_kept_adu - exp_turnoff) <= 2.01 * step
    # the value is the middle of the step to the next exposure, in linear signal
    next_t = t[t > t[np.argmin(np.abs(mu - res.turnoff_kept_adu))]].min()
    t_turn = t[np.argmin(np.abs(mu - res.turnoff_kept_adu))]
    w = res.turnoff_kept_adu * (next_t / t_turn - 1)
    assert res.turnoff_adu == pytest.approx(res.turnoff_kept_adu + w / 2)
    assert res.turnoff_err_adu == pytest.approx(w / math.sqrt(12))
    assert not res.turnoff_is_lower_limit
    fit = (mu >= 1000) & (mu <= ptc_turnoff)
    x_med = np.median(x[fit])
    x_t = x_med + 0.01 / abs(k2)
    first_order = x_t * (1 + k2 * x_t)
    assert abs(res.turnoff_kept_adu - first_order) < 2 * step + 0.025 * first_order
    below = (mu >= 1000) & (t <= t[np.argmin(np.abs(mu - res.turnoff_kept_adu))])
    # cp_pipe's unsigned maximum residual, kept as max_abs_frac_residual
    assert res.max_abs_frac_residual == pytest.approx(
        abs(k2) * np.max(np.abs(x[below] - x_med)), rel=0.1
    )
    assert abs(res.max_abs_frac_residual - exp_max) < 1.5e-3
    finite = np.isfinite(res.residual_frac)
    assert finite.all()
    assert np.max(np.abs(res.residual_frac - exp_r)[mu < 0.999 * SATURATION_ADU]) < 1.5e-3
    assert res.reason == ""
    assert res.slope_adu_per_s == pytest.approx(FLUX_ADU_PER_S, rel=0.02)


def test_linear_sensor_turnoff_at_saturation():
    """k₂ = 0: residuals are noise (≤ 5σ = 1.4·10⁻³) up to saturation, where μ stops growing.

    The turnoff is the highest point within 1 %: the last unsaturated point or the first
    clipped one if it lies < 1 % above the clip (as the noiseless definition gives).
    """
    rng = np.random.default_rng(41)
    t, x, mu = _ramp(0.0, rng)
    ptc_turnoff = float(mu[mu < 0.999 * SATURATION_ADU].max())
    res = linearity_from_ramp(t, mu, ptc_turnoff_adu=ptc_turnoff)
    exp_turnoff, _, _, _ = _expected_noiseless(t, x, 0.0, ptc_turnoff)
    assert res.turnoff_kept_adu == pytest.approx(exp_turnoff, rel=0.002)
    assert res.max_abs_frac_residual < 5 * math.sqrt(2) * NOISE_FRAC
    assert res.turnoff_kept_adu <= SATURATION_ADU * (1 + 5 * NOISE_FRAC)
    # linear: k₂ = 0 within 5σ of its own error
    assert abs(res.k2_per_adu) < 5 * res.k2_err_per_adu


def test_ramp_that_stays_linear_is_flagged():
    """A ramp that never leaves 1 %: turnoff = highest point, flagged as a lower limit."""
    rng = np.random.default_rng(42)
    t = np.linspace(1, 50, 30)
    mu = 1000.0 * t * (1 + NOISE_FRAC * rng.standard_normal(t.size))
    res = linearity_from_ramp(t, mu)
    assert res.turnoff_adu == pytest.approx(mu.max())
    assert "lower limit" in res.reason
    assert "no PTC turnoff" in res.reason


def test_unmeasurable_ramps():
    """Too few points in the fit range, all NaN, non-positive times: NaN with a reason."""
    t = np.array([1.0, 2.0, 3.0])
    r = linearity_from_ramp(t, 1000.0 * t, ptc_turnoff_adu=1e5)
    assert math.isnan(r.turnoff_adu) and math.isnan(r.max_frac_nonlinearity)
    assert "too few" in r.reason
    nan = np.full(10, np.nan)
    r = linearity_from_ramp(nan, nan)
    assert math.isnan(r.turnoff_adu) and r.reason and np.isnan(r.residual_frac).all()
    # everything below the 1000 adu fit threshold (dead amp): not measurable
    r = linearity_from_ramp(np.arange(1.0, 20.0), np.full(19, 3.0))
    assert math.isnan(r.turnoff_adu) and r.reason
    assert MIN_SIGNAL_FIT_LINEARITY_ADU == 1000.0
    with pytest.raises(ValueError):
        linearity_from_ramp(np.ones(3), np.ones(4))
