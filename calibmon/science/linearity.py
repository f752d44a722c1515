"""Linearity of one amplifier from a flat ramp: turnoff and maximum fractional residual.

Conventions of cp_pipe's linearity solve (``_computeTurnoffAndMax``, which follows
eo_pipe's ``linearityPlotsTask``): a line through the origin, signal = a·t, is fitted
with the Poisson χ² = Σ(μ − a·t)²/μ, whose minimum is a = Σt / Σ(t²/μ); the fractional
residual is r = (μ − a·t)/μ, minus its median over the fit points; the turnoff is the
highest signal with |r| within the tolerance (1 %, cp_pipe ``maxFracLinearityDeviation``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# cp_pipe LinearitySolveConfig.maxFracLinearityDeviation = 0.01: |fractional residual|
# allowed below the linearity turnoff.
MAX_FRAC_LINEARITY_DEVIATION = 0.01
# cp_pipe LinearitySolveConfig.minSignalFitLinearityTurnoff = 1000 adu: lower end of the
# linear fit (and of the residuals that count towards max_frac_nonlinearity), where bias
# residuals and the signal chain's low-level behaviour no longer dominate the ratio.
MIN_SIGNAL_FIT_LINEARITY_ADU = 1000.0
# cp_pipe keeps removing the worst fit point while fewer than 5 points are within the
# tolerance and at least 4 remain in the fit (``while fitMask.sum() >= 4`` … ``> 4``).
MIN_LINEARITY_FIT_POINTS = 4
MIN_GOOD_POINTS = 5


@dataclass(frozen=True, eq=False)  # holds arrays: identity equality
class LinearityResult:
    """Result of :func:`linearity_from_ramp`.

    Attributes
    ----------
    turnoff_adu : float, adu
        ``linearity_turnoff``: the highest mean whose |fractional residual| ≤ tolerance.
        If that is the highest point of the ramp, the ramp never left the tolerance and
        the value is a lower limit (flagged in ``reason``).
    max_frac_nonlinearity : float, dimensionless
        ``max_frac_nonlinearity``: the largest |fractional residual| among points with
        μ ≥ :data:`MIN_SIGNAL_FIT_LINEARITY_ADU` up to the turnoff point in ramp order
        (exposure time ≤ that of the turnoff point).
    residual_frac : (n_points,) float64
        Fractional residual of every input point (input order; NaN where unusable).
    reason : str
        Empty when measured; otherwise why values are NaN, or a flag.
    slope_adu_per_s : float, adu/s
        The fitted a.
    """

    turnoff_adu: float
    max_frac_nonlinearity: float
    residual_frac: np.ndarray
    reason: str = ""
    slope_adu_per_s: float = math.nan


def linearity_from_ramp(
    exptime_s: np.ndarray,
    mu_adu: np.ndarray,
    *,
    ptc_turnoff_adu: float | None = None,
    tolerance: float = MAX_FRAC_LINEARITY_DEVIATION,
) -> LinearityResult:
    """Linearity turnoff and maximum fractional nonlinearity of a flat ramp.

    Parameters
    ----------
    exptime_s : (n_points,) float, s
        Exposure time of each point (or any quantity proportional to the exposure,
        e.g. photodiode charge; the slope's unit then changes).
    mu_adu : (n_points,) float, adu
        Mean signal of each point (flat-pair means), bias subtracted.
    ptc_turnoff_adu : float, adu, optional
        PTC turnoff; the fit uses only points at or below it (cp_pipe fits within the
        PTC's kept points). None: no upper limit.
    tolerance : float
        Allowed |fractional residual| defining the turnoff (1 %).

    Returns
    -------
    LinearityResult
        Fit range: points with :data:`MIN_SIGNAL_FIT_LINEARITY_ADU` ≤ μ ≤
        ``ptc_turnoff_adu``, finite, exposure time > 0. Too few of them (< 4) gives
        NaN values with ``reason``.

    Notes
    -----
    For a quadratic nonlinearity μ = x(1 + k₂x) (x the linear signal), the fit absorbs
    the mean slope and the residual is r(x) ≈ k₂·(x − x_med) to first order, x_med the
    median signal of the fit points: the turnoff is where that reaches the tolerance.
    """
    t = np.asarray(exptime_s, dtype=np.float64).ravel()
    mu = np.asarray(mu_adu, dtype=np.float64).ravel()
    if t.shape != mu.shape:
        raise ValueError(f"exptime_s and mu_adu differ in length: {t.size} vs {mu.size}")
    resid = np.full(mu.size, math.nan)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(t) & np.isfinite(mu) & (t > 0.0) & (mu > 0.0)
        fit = usable & (mu >= MIN_SIGNAL_FIT_LINEARITY_ADU)
        if ptc_turnoff_adu is not None and math.isfinite(ptc_turnoff_adu):
            fit &= mu <= ptc_turnoff_adu
    notes = []
    if ptc_turnoff_adu is None or not math.isfinite(ptc_turnoff_adu):
        notes.append("no PTC turnoff: fit uses all points above 1000 adu")

    n_fit = int(np.count_nonzero(fit))
    if n_fit < MIN_LINEARITY_FIT_POINTS:
        return LinearityResult(
            math.nan, math.nan, resid,
            f"too few points in the fit range: {n_fit} < {MIN_LINEARITY_FIT_POINTS}",
        )  # fmt: skip

    with np.errstate(all="ignore"):  # absurd inputs (1e300 adu) must not warn
        return _turnoff(t, mu, usable, fit, tolerance, notes)


def _turnoff(
    t: np.ndarray,
    mu: np.ndarray,
    usable: np.ndarray,
    fit: np.ndarray,
    tolerance: float,
    notes: list[str],
) -> LinearityResult:
    """The fit/turnoff iteration of :func:`linearity_from_ramp` (cp_pipe's loop)."""
    resid = np.full(mu.size, math.nan)
    fit_mask = fit.copy()
    good = None
    slope = math.nan
    while np.count_nonzero(fit_mask) >= MIN_LINEARITY_FIT_POINTS:
        slope = float(np.sum(t[fit_mask]) / np.sum(t[fit_mask] ** 2 / mu[fit_mask]))
        r = np.full(mu.size, math.nan)
        r[usable] = (mu[usable] - slope * t[usable]) / mu[usable]
        r -= float(np.median(r[fit_mask]))
        resid = r
        good = usable & (np.abs(np.where(usable, r, np.inf)) <= tolerance)
        if np.count_nonzero(good) >= MIN_GOOD_POINTS:
            break
        # A bad fit: drop the worst point and try again (cp_pipe).
        worst = np.flatnonzero(fit_mask)[np.argmax(np.abs(r[fit_mask]))]
        fit_mask[worst] = False
        good = None
    if good is None:
        return LinearityResult(
            math.nan, math.nan, resid,
            "no linear fit with at least 5 points within the tolerance",
            slope,
        )  # fmt: skip

    i_turn = int(np.flatnonzero(good)[np.argmax(mu[good])])
    turnoff = float(mu[i_turn])
    # "Below the turnoff" in ramp order (exposure time), as cp_pipe masks points after the
    # turnoff index: past saturation the signal plateaus, so a signal cut would let
    # saturated points with μ just under the turnoff in.
    below = usable & (mu >= MIN_SIGNAL_FIT_LINEARITY_ADU) & (t <= t[i_turn])
    max_frac = float(np.max(np.abs(resid[below]))) if below.any() else math.nan
    if turnoff >= float(np.max(mu[usable])):
        notes.append(
            "ramp never left the tolerance: turnoff is the highest ramp point (a lower limit)"
        )
    return LinearityResult(turnoff, max_frac, resid, "; ".join(notes), slope)
