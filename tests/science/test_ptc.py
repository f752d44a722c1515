"""PTC fit (Astier et al. 2019 eq. 16, cp_pipe EXPAPPROXIMATION) against injected truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibmon.science.flat import pair_statistics
from calibmon.science.ptc import NOTE_LOWER_LIMIT, fit_ptc_astier, ptc_model_astier

pytestmark = pytest.mark.filterwarnings("error")

GAIN = 1.5  # e-/adu
A00 = -2.5e-6  # 1/e, ITL-like
RN_E = 6.0  # e-
FULL_WELL_E = 100_000.0


def _ramp_levels_e() -> np.ndarray:
    """34 levels: log-spaced to 0.9 FW, then every 1.6 % of FW from 0.92 to 1.1 FW."""
    return np.concatenate(
        [np.geomspace(300, 0.9 * FULL_WELL_E, 22), np.linspace(0.92, 1.1, 12) * FULL_WELL_E]
    )


def _simulate_pixel_ptc(synth, seed: int, shape=(300, 300)):
    rng = np.random.default_rng(seed)
    mus, vs = [], []
    for mu_e in _ramp_levels_e():
        kw = dict(gain=GAIN, read_noise_e=RN_E, a00=A00, full_well_e=FULL_WELL_E)
        p = pair_statistics(
            synth.flat_frame(rng, shape, mu_e, **kw), synth.flat_frame(rng, shape, mu_e, **kw)
        )
        mus.append(p.mu_adu)
        vs.append(p.var_adu2)
    return np.array(mus), np.array(vs)


def test_ptc_from_pixels_recovers_gain_a00_noise_full_well(synth):
    """End to end: flat pairs → pair_statistics → fit_ptc_astier, against the injected truth.

    Simulation (conftest): Poisson electrons, brighter-fatter smoothing giving exactly
    eq. 16 with a₀₀ = −2.5·10⁻⁶/e, clipping at 100 000 e, gain 1.5, read noise 6 e.
    Each point's variance has relative error √(2/N) = 0.47 % (N = 90 000).

    Tolerances from a 16-seed Monte Carlo of this exact set-up (fit errors scaled by the
    reduced χ², validated against that scatter): gain scatter 0.18 % (fit error 0.16 %),
    mean bias < 0.03 %; a₀₀ scatter 1.3 % (fit error 1.3 %); noise 6.02 ± 0.15 e.
    Asserted: gain 1 % (requirement; 5.5σ), a₀₀ 6 % (4.5σ) and within 4× its own error,
    noise 0.6 e (4σ).

    Full well: the turnoff is the last level whose variance is not yet cut by the
    clipping; levels are 1.6 % of FW apart near saturation and the variance deficit
    reaches the 5√var cut ~2σ_e = 0.6 % below FW, so turnoff × gain lies in
    [FW − 2.3 %, FW]. Asserted: 3 % (requirement).
    """
    mu, var = _simulate_pixel_ptc(synth, seed=20)
    r = fit_ptc_astier(mu, var)
    assert r.reason == ""
    assert abs(r.gain / GAIN - 1) < 0.01
    assert abs(r.a00 / A00 - 1) < 0.06
    assert abs(r.a00 - A00) < 4 * r.a00_err
    assert abs(r.noise_e - RN_E) < 0.6
    assert abs(r.full_well_e / FULL_WELL_E - 1) < 0.03
    assert r.full_well_e == pytest.approx(r.turnoff_adu * r.gain)
    # cp_pipe's turnoff is the highest kept mean; the value is the middle of the step to
    # the next (saturated) point, where the roll-off lies, with a uniform-step error
    assert r.turnoff_kept_adu == pytest.approx(np.max(mu[r.used]))
    m_next = np.min(mu[mu > r.turnoff_kept_adu])
    assert r.turnoff_adu == pytest.approx(0.5 * (r.turnoff_kept_adu + m_next))
    assert r.turnoff_err_adu == pytest.approx((m_next - r.turnoff_kept_adu) / math.sqrt(12))
    assert not r.turnoff_is_lower_limit
    # all points below saturation kept, all above rejected
    below = _ramp_levels_e() < 0.99 * FULL_WELL_E
    assert r.used[below].all()
    assert not r.used[_ramp_levels_e() > 1.005 * FULL_WELL_E].any()
    assert r.gain_err < 0.005 * GAIN


def _curve(mu_adu, gain, a00, noise_e, n_pix, rng):
    """Variances on the eq. 16 model with the statistical scatter of N-pixel pairs."""
    model = ptc_model_astier(mu_adu, a00, gain, noise_e**2)
    return model * (1 + math.sqrt(2.0 / n_pix) * rng.standard_normal(mu_adu.size))


@pytest.mark.parametrize(("a00", "gain"), [(-1.0e-6, 1.2), (-3.0e-6, 1.8), (0.0, 1.5)])
def test_ptc_curve_level_recovery(a00, gain):
    """Curve-level truth: 30 points on eq. 16 from 300 to 80 000 adu, ITL-amp scatter.

    N = 10⁶ pixels per pair → √(2/N) = 0.14 % per variance. The expected 1σ errors of
    this fit are ≈ 0.05 % on g and ≈ 1·10⁻⁸/e on a₀₀ (the fit's own errors, checked
    below to be of this size). Asserted: g within 0.3 %, a₀₀ within 5·10⁻⁸/e (≥ 4σ),
    noise within 0.3 e; a₀₀ = 0 (no brighter-fatter) is handled exactly (expm1 form).
    """
    rng = np.random.default_rng(30)
    mu = np.geomspace(300, 80_000, 30)
    var = _curve(mu, gain, a00, 6.0, 1_000_000, rng)
    r = fit_ptc_astier(mu, var)
    assert r.gain == pytest.approx(gain, rel=3e-3)
    assert abs(r.a00 - a00) < 5e-8
    assert abs(r.noise_e - 6.0) < 0.3
    assert r.gain_err < 1e-3 * gain and r.a00_err < 2.5e-8
    assert NOTE_LOWER_LIMIT in r.reason and r.turnoff_is_lower_limit
    assert math.isnan(r.full_well_err_e) and math.isnan(r.turnoff_err_adu)
    assert r.turnoff_adu == pytest.approx(80_000)
    assert r.full_well_e == pytest.approx(80_000 * r.gain)


def test_model_limits():
    """eq. 16 → μ/g + n/g² as a₀₀ → 0, continuous through 0; Taylor form at small a₀₀."""
    mu = np.array([0.0, 100.0, 5e4])
    exact = mu / 1.5 + 36.0 / 1.5**2
    assert np.allclose(ptc_model_astier(mu, 0.0, 1.5, 36.0), exact, rtol=1e-15)
    assert np.allclose(ptc_model_astier(mu, -1e-15, 1.5, 36.0), exact, rtol=1e-9)
    x = 2 * -2e-6 * 5e4 * 1.5
    assert ptc_model_astier(np.array([5e4]), -2e-6, 1.5, 0.0)[0] == pytest.approx(
        5e4 / 1.5 * math.expm1(x) / x, rel=1e-14
    )


def test_ramp_not_reaching_saturation_gives_lower_limits():
    """Turnoff = highest point, full well = that × gain: lower limits, flagged, no error
    (a lower limit used as a value would trip the full-well alert)."""
    rng = np.random.default_rng(31)
    mu = np.geomspace(200, 30_000, 25)
    r = fit_ptc_astier(mu, _curve(mu, 1.5, -2.5e-6, 6.0, 1_000_000, rng))
    assert r.turnoff_adu == pytest.approx(mu.max())
    assert r.turnoff_is_lower_limit and math.isnan(r.full_well_err_e)
    assert NOTE_LOWER_LIMIT in r.reason
    assert r.gain == pytest.approx(1.5, rel=5e-3)


def test_saturated_points_rejected_and_input_order_kept():
    """Points past saturation (variance collapsing) are not used; outputs keep input order."""
    rng = np.random.default_rng(32)
    mu = np.concatenate([np.geomspace(200, 60_000, 25), np.linspace(60_500, 66_000, 12)])
    var = _curve(mu, 1.5, -2.5e-6, 6.0, 1_000_000, rng)
    sat = mu > 63_000
    var[sat] *= np.linspace(0.8, 0.01, sat.sum())  # roll-off beyond 63 000 adu
    perm = rng.permutation(mu.size)
    r = fit_ptc_astier(mu[perm], var[perm])
    assert np.array_equal(r.mu_adu, mu[perm])
    assert not r.used[sat[perm]].any()
    assert r.used[~sat[perm]].all()
    assert r.turnoff_kept_adu == pytest.approx(mu[~sat].max())
    turnoff = 0.5 * (mu[~sat].max() + mu[sat].min())
    assert r.turnoff_adu == pytest.approx(turnoff)
    assert r.full_well_e == pytest.approx(turnoff * r.gain)
    assert not r.turnoff_is_lower_limit and r.full_well_err_e > 0
    assert r.reason == ""
    # the model is evaluated at every input mean
    assert np.all(np.isfinite(r.model_var_adu2))


def test_outlier_and_jump_rule():
    """A mid-ramp outlier is rejected; cp_pipe's jump rule then ends the curve there.

    With LSSTCam's maxDeltaInitialPtcOutlierFit = 1000 adu (calibmon's default is the task
    default, 5000 adu) and points ~2500 adu apart,
    the kept point after the outlier is too far from the previous one: everything above
    is dropped (cp_pipe behaviour). A large max_delta keeps the rest of the curve.
    """
    rng = np.random.default_rng(33)
    mu = np.linspace(1000, 60_000, 25)
    var = _curve(mu, 1.5, -2.5e-6, 6.0, 1_000_000, rng)
    i_out = 12
    var[i_out] *= 1.25
    r = fit_ptc_astier(mu, var, max_delta_initial_adu=1000.0)
    assert not r.used[i_out:].any() and r.used[:i_out].all()
    assert r.turnoff_adu == pytest.approx(mu[i_out - 1])
    # no saturation roll-off above the cut: the turnoff is not a full well
    assert r.turnoff_is_lower_limit and "not for a saturation roll-off" in r.reason
    r2 = fit_ptc_astier(mu, var, max_delta_initial_adu=1e6)
    assert not r2.used[i_out]
    assert r2.used[np.arange(mu.size) != i_out].all()
    assert r2.gain == pytest.approx(1.5, rel=3e-3)


def test_bad_top_pair_is_not_saturation():
    """A top point with excess variance (light leak, bad pair) is rejected, not a full well."""
    rng = np.random.default_rng(36)
    mu = np.geomspace(200, 40_000, 25)
    var = _curve(mu, 1.5, -2.5e-6, 6.0, 1_000_000, rng)
    var[-1] *= 1.3
    r = fit_ptc_astier(mu, var)
    assert not r.used[-1] and r.used[:-1].all()
    assert r.turnoff_adu == pytest.approx(mu[-2])
    assert r.turnoff_is_lower_limit and NOTE_LOWER_LIMIT in r.reason


def test_too_few_points_dead_amp_and_nan_input():
    """Unmeasurable inputs: NaN values with a reason, no exception, no warning."""
    r = fit_ptc_astier(np.array([100.0]), np.array([70.0]))
    assert math.isnan(r.gain) and "too few" in r.reason
    assert math.isnan(r.turnoff_adu) and math.isnan(r.full_well_e)
    assert not r.used.any()

    # dead amp: flat pairs of bias + noise: mean ~ 0, variance = read noise² at every level
    rng = np.random.default_rng(34)
    mu = np.abs(rng.normal(0, 0.01, 30)) + 1e-3
    var = 16.0 * (1 + 0.003 * rng.standard_normal(30))
    r = fit_ptc_astier(mu, var)
    assert math.isnan(r.gain) and "no photon signal" in r.reason

    nan = np.full(20, np.nan)
    r = fit_ptc_astier(nan, nan)
    assert math.isnan(r.gain) and r.reason
    r = fit_ptc_astier(np.array([]), np.array([]))
    assert math.isnan(r.gain) and r.reason

    with pytest.raises(ValueError):
        fit_ptc_astier(np.ones(5), np.ones(6))


def test_dead_amp_from_pixels_gives_nan(synth):
    """Pixel-level dead amp (bias + noise at every 'exposure'): PTC gain NaN with reason."""
    rng = np.random.default_rng(35)
    mus, vs = [], []
    for _ in range(12):
        p = pair_statistics(synth.bias_frame(rng, (200, 200)), synth.bias_frame(rng, (200, 200)))
        mus.append(p.mu_adu)
        vs.append(p.var_adu2)
    r = fit_ptc_astier(np.array(mus), np.array(vs))
    assert math.isnan(r.gain) and math.isnan(r.full_well_e)
    assert r.reason


def test_sparse_ramp_with_jittered_saturated_points():
    """A 30-pair daily ramp (7 points under 20 000 adu) whose 14 saturated pairs have
    means within 1 adu of each other and variances jittering around 15 adu²: sorted by
    mean, their variances do not fall twice in a row, so the initial range must end at the
    largest variance, not include the saturated points (seen on a simulated amp)."""
    mu = np.array([182, 374, 769, 1582, 3256, 6700, 13778, 28321, 58135, 59853, 61620, 63437,
                   65312, 67238, 69223, 71265] + [72772.2, 72772.4] + [72773.0] * 12, float)  # fmt: skip
    var = np.array([122.4, 231.9, 471.2, 966.9, 1895.2, 3952.0, 7967.0, 15547.9, 28648.7,
                    29755.6, 30794.7, 31537.0, 32163.0, 33211.0, 34080.9, 34102.4, 14.6, 21.0,
                    14.4, 14.7, 14.5, 14.5, 14.1, 14.8, 14.4, 14.7, 14.6, 15.1, 14.5, 14.6])  # fmt: skip
    r = fit_ptc_astier(mu, var, n_pixels=15_000)
    assert r.gain == pytest.approx(1.68, rel=0.02)
    assert r.turnoff_adu >= 69_000 and math.isfinite(r.full_well_e)
    assert not r.used[16:].any()
