"""Nonlinearity k₂ and max_frac_nonlinearity against the truth, with calibrated pulls.

Ramps follow calibmon's simulator (calibmon.simulate.physics, writer): a constant lamp,
exposure times quantised to 1 ms (the signal is flux × the quantised time), pixel charge
clipped at the full well, then the output-chain nonlinearity s + k₂·s² (k₂ per electron
in −1·10⁻⁷ … −5·10⁻⁸), then ÷ gain. Each pair mean scatters by its pixel noise,
√(var/2N), var the per-frame variance (eq. 16 brighter-fatter + read noise).

Truth: k2_per_adu = k₂·g; max_frac_nonlinearity = k₂·s_top, s_top (e-) the linear signal of
the longest exposure fitted. Requirement (issue 12): median pull within ±0.3, spread
(1.4826·MAD) 0.8–1.25; with 300 ramps the standard errors are 0.07 (see
test_ptc_pulls), so a calibrated estimator passes with ≥ 3.5σ margin.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibmon.science.linearity import QUADRATIC_TURNOFF_MARGIN, linearity_from_ramp
from calibmon.science.ptc import ptc_model_astier

pytestmark = pytest.mark.filterwarnings("error")

N_RAMPS = 300
LAMP_E_PER_S = 2000.0  # calibmon.simulate.writer.LAMP_FLUX_E_PER_S
EXPTIME_RESOLUTION_S = 0.001


def _ramp(rng, levels_e, gain, a00, rn_e, k2_e, fw_e, n_pix, flux_e_per_s):
    """(exptime s, mean adu, per-frame variance adu²) of pairs at nominal ``levels_e``."""
    t = np.maximum(
        EXPTIME_RESOLUTION_S,
        np.round(np.asarray(levels_e) / LAMP_E_PER_S / EXPTIME_RESOLUTION_S) * EXPTIME_RESOLUTION_S,
    )
    s = np.minimum(flux_e_per_s * t, fw_e)  # clip (partial saturation ignored: points
    # used are ≥ 2 % below the full well, where the clipped fraction is < 10⁻¹⁰)
    s_meas = s + k2_e * s * s
    mu = s_meas / gain
    var = ptc_model_astier(mu, a00, gain, rn_e**2)
    mu_meas = mu + np.sqrt(var / (2.0 * n_pix)) * rng.standard_normal(mu.size)
    return t, mu_meas, var


def _spread(p: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(p - np.median(p))))


@pytest.mark.parametrize(
    ("n_pairs", "n_pix"),
    [(30, 15_000), (30, 1_000_000), (6, 15_000), (6, 1_000_000)],
)
def test_k2_and_max_frac_nonlinearity_pulls(n_pairs, n_pix):
    """k₂ and the signed max_frac_nonlinearity agree with the injected k₂ within errors.

    30 pairs: log-spaced from 300 e- to 0.85 FW, then dense through saturation; the PTC
    turnoff passed is the last pair ≥ 2 % below the full well (as the PTC fit keeps).
    6 pairs: a daily_PTC from 500 e- to 50 % FW (5 points above the 1000 adu fit limit).
    Measured (median, spread) of the k₂ pulls: 30 × 15 000 px (−0.12, 0.98), 30 × 10⁶
    (−0.09, 1.04), 6 × 15 000 (0.02, 1.04), 6 × 10⁶ (0.01, 1.04); max_frac alike; the
    largest relative deviation of max_frac_nonlinearity from k₂·s_top 1.5 %, 0.17 %,
    5.9 %, 0.7 %.
    """
    rng = np.random.default_rng(500 + n_pairs + int(n_pix) % 97)
    pk2, pmax, rel = [], [], []
    for _ in range(N_RAMPS):
        gain = rng.uniform(1.4, 1.8)
        a00 = rng.uniform(-2.5e-6, -1.5e-6)
        k2 = rng.uniform(-1e-7, -5e-8)
        fw = rng.uniform(115e3, 140e3)
        flux = LAMP_E_PER_S * rng.uniform(0.97, 1.03)
        if n_pairs == 30:
            lev = np.concatenate(
                [np.geomspace(300, 0.85 * 110e3, 21), np.linspace(0.85 * 110e3, 175e3, 10)[1:]]
            )
        else:
            lev = np.geomspace(500.0, 0.5 * fw, n_pairs)
        t, mu, var = _ramp(rng, lev, gain, a00, 6.0, k2, fw, n_pix, flux)
        lin_sig = flux * t
        below_fw = lin_sig < 0.98 * fw
        ptc_turnoff = float(mu[below_fw].max())
        lower_limit = bool(below_fw.all())  # a daily_PTC never saturates
        r = linearity_from_ramp(
            t,
            mu,
            ptc_turnoff_adu=ptc_turnoff,
            var_adu2=var,
            n_pixels=n_pix,
            ptc_turnoff_is_lower_limit=lower_limit,
        )
        assert math.isfinite(r.k2_per_adu), r.reason
        # the point at which max_frac is evaluated: the longest exposure fitted
        margin = 0.0 if lower_limit else QUADRATIC_TURNOFF_MARGIN
        fitted = (mu >= 1000.0) & (mu <= (1 - margin) * ptc_turnoff)
        if math.isfinite(r.turnoff_kept_adu):
            fitted &= t <= t[np.argmin(np.abs(mu - r.turnoff_kept_adu))]
        s_top = float(flux * t[fitted].max())
        pk2.append((r.k2_per_adu - k2 * gain) / r.k2_err_per_adu)
        pmax.append((r.max_frac_nonlinearity - k2 * s_top) / r.max_frac_nonlinearity_err)
        rel.append(r.max_frac_nonlinearity / (k2 * s_top) - 1.0)
        assert r.max_frac_nonlinearity < 0  # a deficit, as injected
        assert r.signal_top_adu * gain == pytest.approx(s_top, rel=1e-3)
    for v in (np.array(pk2), np.array(pmax)):
        assert abs(np.median(v)) <= 0.3, np.median(v)
        assert 0.8 <= _spread(v) <= 1.25, _spread(v)
    # sign and order of magnitude (the bug of issue 12): within 10 % on every ramp
    assert np.max(np.abs(rel)) < 0.1


def test_saturated_plateau_below_the_ptc_turnoff_is_not_fitted():
    """A PTC turnoff given above the saturated pairs' plateau (e.g. the PTC's roll-off
    midpoint): the plateau points (mean stopped growing) are left out, k₂ stays right.

    Noise-free 30-pair ramp, k₂ = −8·10⁻⁸/e, g = 1.5: the fit is exact, so k₂ must match
    to 10⁻³ relative (the 1 ms exposure quantisation is part of the signal, not noise).
    """
    rng = np.random.default_rng(9)
    gain, k2, fw = 1.5, -8e-8, 120e3
    lev = np.concatenate(
        [np.geomspace(300, 0.85 * 110e3, 21), np.linspace(0.85 * 110e3, 175e3, 10)[1:]]
    )
    t, mu, var = _ramp(rng, lev, gain, -2e-6, 6.0, k2, fw, np.inf, LAMP_E_PER_S)
    r = linearity_from_ramp(t, mu, ptc_turnoff_adu=float(mu.max()) + 1.0, var_adu2=var)
    assert "saturated (plateau) points" in r.reason
    assert r.k2_per_adu == pytest.approx(k2 * gain, rel=1e-3)
    assert r.signal_top_adu < fw / gain
