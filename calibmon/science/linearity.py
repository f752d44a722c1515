"""Linearity of one amplifier from a flat ramp: turnoff, nonlinearity coefficient and
maximum fractional nonlinearity, each with its 1σ error.

Turnoff: the conventions of cp_pipe's linearity solve (``_computeTurnoffAndMax``, which
follows eo_pipe's ``linearityPlotsTask``): a line through the origin, signal = a·t, is
fitted with the Poisson χ² = Σ(μ − a·t)²/μ, whose minimum is a = Σt / Σ(t²/μ); the
fractional residual is r = (μ − a·t)/μ, minus its median over the fit points; the turnoff
is the highest signal with |r| within the tolerance (1 %, cp_pipe
``maxFracLinearityDeviation``).

Nonlinearity (calibmon): a weighted quadratic in exposure time, μ = c + a·t + b·t², fitted
to the points between :data:`MIN_SIGNAL_FIT_LINEARITY_ADU` and the turnoffs. With the
linear signal x = a·t (constant flux) this is μ = c + x + k₂·x², k₂ = b/a² per adu — the
form of a quadratic output-chain nonlinearity s_meas = s + k₂ₑ·s² (k₂ = k₂ₑ·g).
``max_frac_nonlinearity`` is the signed fractional deviation of that curve from its
low-signal line c + a·t at the highest fitted point below the turnoff, k₂·x_top: the
residual with the largest |value| below the turnoff (a quadratic is monotonic in x),
measured from the whole ramp instead of one noisy point. cp_pipe's quantity (the largest
|r| of the through-origin fit, median-subtracted) mixes the slope absorbed by the fit
into the residuals — its sign and size do not follow k₂ — and is kept as
``max_abs_frac_residual``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2 as chi2_dist

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
# The quadratic μ = c + a·t + b·t² needs one point more than its 3 parameters, so that
# its χ² can be checked (dof ≥ 1).
MIN_QUADRATIC_POINTS = 4
# With absolute weights (σ(μ)² = var/2N) the covariance is scaled by χ²/dof only when
# the χ² shows excess scatter at this significance (as the PTC fit,
# :data:`calibmon.science.ptc.CHI2_EXCESS_P`); real lamps and shutters scatter the means
# by ~10⁻⁴, far above the pixel noise (~10⁻⁶), so on real ramps this scales.
CHI2_EXCESS_P = 0.05
# The quadratic is fitted only to means ≤ (1 − this) × the PTC turnoff: the brightest
# pixels (flat-field response spread σ_PRNU 0.5–1.5 % plus Poisson) clip from ~2σ below
# the full well on, lowering the mean before the pair variance falls by the PTC's outlier
# cut, so the last kept PTC points are slightly saturated in the mean. Measured on 240
# simulated small amps (30-pair ramps): k₂ pull median −0.31 with the top points,
# −0.07 without the points within 3 %.
QUADRATIC_TURNOFF_MARGIN = 0.03
NOTE_LOWER_LIMIT = (
    "ramp never left the tolerance: turnoff is the highest ramp point (a lower limit)"
)


@dataclass(frozen=True, eq=False)  # holds arrays: identity equality
class LinearityResult:
    """Result of :func:`linearity_from_ramp`.

    Attributes
    ----------
    turnoff_adu, turnoff_err_adu : float, adu
        ``linearity_turnoff``. cp_pipe's value is the highest mean whose |fractional
        residual| ≤ tolerance (``turnoff_kept_adu``); the residual leaves the tolerance
        between that point, m_k, and the next longer exposure, whose linear signal is
        m_k·t_next/t_k: the value is the middle of that step, the error step/√12 (a
        uniform position). If the highest usable point is within the tolerance the
        ramp never left it: the value is that point, ``turnoff_is_lower_limit`` True,
        the error NaN.
    turnoff_is_lower_limit : bool
    turnoff_kept_adu : float, adu
        cp_pipe's linearity turnoff.
    max_frac_nonlinearity, max_frac_nonlinearity_err : float, dimensionless
        ``max_frac_nonlinearity``, signed: k₂·x_top, the fractional deviation of the
        fitted quadratic from its low-signal line c + a·t at x_top = a·t_top, t_top the
        longest exposure fitted (at or below the linearity turnoff and
        :data:`QUADRATIC_TURNOFF_MARGIN` below the PTC turnoff). Negative for a deficit.
        Error x_top·σ(k₂).
    k2_per_adu, k2_err_per_adu : float, 1/adu
        Quadratic coefficient with μ_meas = μ + k2_per_adu·μ² (μ the linear signal, adu);
        a sensor nonlinearity s + k₂ₑ·s² in electrons gives k2_per_adu = k₂ₑ·gain.
    signal_top_adu : float, adu
        x_top, the linear signal at which ``max_frac_nonlinearity`` is evaluated.
    max_abs_frac_residual : float, dimensionless
        cp_pipe's old ``max_frac_nonlinearity``: the largest |fractional residual| of the
        median-subtracted through-origin fit among points with
        μ ≥ :data:`MIN_SIGNAL_FIT_LINEARITY_ADU` up to the turnoff (ramp order).
    residual_frac : (n_points,) float64
        Fractional residual of every input point from cp_pipe's fit (input order; NaN
        where unusable).
    reason : str
        Empty when measured; otherwise why values are NaN, or a flag.
    slope_adu_per_s : float, adu/s
        The through-origin slope a of cp_pipe's fit.
    chi2, dof : float, int
        Of the quadratic fit.
    """

    turnoff_adu: float
    max_frac_nonlinearity: float
    residual_frac: np.ndarray
    reason: str = ""
    slope_adu_per_s: float = math.nan
    turnoff_err_adu: float = math.nan
    turnoff_is_lower_limit: bool = False
    turnoff_kept_adu: float = math.nan
    max_frac_nonlinearity_err: float = math.nan
    k2_per_adu: float = math.nan
    k2_err_per_adu: float = math.nan
    signal_top_adu: float = math.nan
    max_abs_frac_residual: float = math.nan
    chi2: float = math.nan
    dof: int = 0


def linearity_from_ramp(
    exptime_s: np.ndarray,
    mu_adu: np.ndarray,
    *,
    ptc_turnoff_adu: float | None = None,
    tolerance: float = MAX_FRAC_LINEARITY_DEVIATION,
    var_adu2: np.ndarray | None = None,
    n_pixels: np.ndarray | float | None = None,
    ptc_turnoff_is_lower_limit: bool = False,
) -> LinearityResult:
    """Linearity turnoff, k₂ and maximum fractional nonlinearity of a flat ramp.

    Parameters
    ----------
    exptime_s : (n_points,) float, s
        Exposure time of each point (or any quantity proportional to the exposure,
        e.g. photodiode charge; the slope's unit then changes).
    mu_adu : (n_points,) float, adu
        Mean signal of each point (flat-pair means), bias subtracted.
    ptc_turnoff_adu : float, adu, optional
        The highest mean kept by the PTC fit (:attr:`PtcResult.turnoff_kept_adu` — not
        the roll-off midpoint, which can lie above a saturated pair's mean); the fits
        use only points at or below it. None: no upper limit.
    tolerance : float
        Allowed |fractional residual| defining the turnoff (1 %).
    var_adu2, n_pixels : (n_points,) float, optional
        Per-frame variance (adu²) and pixel count of each pair: σ(μ)² = var/(2N) weights
        the quadratic fit absolutely. Without them the weights are relative (σ ∝ √μ)
        and the errors scaled by the reduced χ².
    ptc_turnoff_is_lower_limit : bool
        :attr:`PtcResult.turnoff_is_lower_limit`: the ramp did not saturate, so the
        quadratic keeps the points up to the PTC turnoff (no
        :data:`QUADRATIC_TURNOFF_MARGIN`).

    Returns
    -------
    LinearityResult
        cp_pipe's fit range: points with :data:`MIN_SIGNAL_FIT_LINEARITY_ADU` ≤ μ ≤
        ``ptc_turnoff_adu``, finite, exposure time > 0. Too few of them (< 4) gives NaN
        values with ``reason``.

    Notes
    -----
    For a quadratic nonlinearity μ = x(1 + k₂x) the through-origin fit absorbs the mean
    slope and its residual is r(x) ≈ k₂·(x − x_med) to first order, x_med the median
    signal of the fit points: the turnoff is where that reaches the tolerance. The
    quadratic fit measures k₂ itself.
    """
    t = np.asarray(exptime_s, dtype=np.float64).ravel()
    mu = np.asarray(mu_adu, dtype=np.float64).ravel()
    if t.shape != mu.shape:
        raise ValueError(f"exptime_s and mu_adu differ in length: {t.size} vs {mu.size}")
    sigma = _mean_errors(mu, var_adu2, n_pixels)
    resid = np.full(mu.size, math.nan)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(t) & np.isfinite(mu) & (t > 0.0) & (mu > 0.0)
        fit = usable & (mu >= MIN_SIGNAL_FIT_LINEARITY_ADU)
        if ptc_turnoff_adu is not None and math.isfinite(ptc_turnoff_adu):
            fit &= mu <= ptc_turnoff_adu
    notes = []
    if ptc_turnoff_adu is None or not math.isfinite(ptc_turnoff_adu):
        notes.append("no PTC turnoff: fit uses all points above 1000 adu")

    plateau = fit & _plateau(t, mu, usable)
    if plateau.any():
        fit &= ~plateau
        notes.append(
            f"{int(np.count_nonzero(plateau))} saturated (plateau) points below the PTC "
            "turnoff not fitted"
        )
    n_fit = int(np.count_nonzero(fit))
    if n_fit < MIN_LINEARITY_FIT_POINTS:
        return LinearityResult(
            math.nan, math.nan, resid,
            f"too few points in the fit range: {n_fit} < {MIN_LINEARITY_FIT_POINTS}",
        )  # fmt: skip

    quad_range = np.ones(mu.size, dtype=bool)
    if (
        ptc_turnoff_adu is not None
        and math.isfinite(ptc_turnoff_adu)
        and not ptc_turnoff_is_lower_limit
    ):
        with np.errstate(invalid="ignore"):
            quad_range = mu <= (1.0 - QUADRATIC_TURNOFF_MARGIN) * ptc_turnoff_adu
    with np.errstate(all="ignore"):  # absurd inputs (1e300 adu) must not warn
        return _measure(t, mu, sigma, usable, fit, quad_range, tolerance, notes)


def _plateau(t: np.ndarray, mu: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Points from the first saturated one on, in exposure-time order.

    Saturated: the mean grew by less than half of what the exposure-time ratio predicts
    from the previous longer-than-zero step, μ_i − μ_j < ½·μ_j·(t_i/t_j − 1) (j the
    previous shorter exposure). A percent-level nonlinearity changes the increment by
    ~2·k₂·μ ≪ ½; a saturated pair's mean stops at the full well. Safeguard for a
    ``ptc_turnoff_adu`` above a saturated pair's mean.
    """
    out = np.zeros(mu.size, dtype=bool)
    idx = np.flatnonzero(usable)
    if idx.size < 2:
        return out
    idx = idx[np.argsort(t[idx], kind="stable")]
    j = idx[0]
    for i in idx[1:]:
        if t[i] > t[j]:
            if mu[i] - mu[j] < 0.5 * mu[j] * (t[i] / t[j] - 1.0):
                out[idx[np.searchsorted(t[idx], t[i], side="left") :]] = True
                break
            j = i
    return out


def _mean_errors(
    mu: np.ndarray, var_adu2: np.ndarray | None, n_pixels: np.ndarray | float | None
) -> np.ndarray | None:
    """σ(μ) = √(var/2N) per point (adu), or None when not given (relative weights)."""
    if var_adu2 is None or n_pixels is None:
        return None
    var = np.asarray(var_adu2, dtype=np.float64).ravel()
    npix = np.broadcast_to(np.asarray(n_pixels, dtype=np.float64), mu.shape)
    if var.shape != mu.shape:
        raise ValueError(f"var_adu2 and mu_adu differ in length: {var.size} vs {mu.size}")
    with np.errstate(all="ignore"):
        return np.sqrt(var / (2.0 * npix))


def _measure(
    t: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray | None,
    usable: np.ndarray,
    fit: np.ndarray,
    quad_range: np.ndarray,
    tolerance: float,
    notes: list[str],
) -> LinearityResult:
    """cp_pipe's fit/turnoff iteration, then the quadratic fit below the turnoff."""
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
        # No cp_pipe turnoff (too few points within the tolerance, e.g. a 4-pair ramp):
        # the quadratic is still measured over the whole fit range.
        notes.append("no linear fit with at least 5 points within the tolerance: no turnoff")
        quad = _quadratic(t, mu, sigma, fit & quad_range, notes)
        return LinearityResult(
            math.nan, quad.max_frac, resid, "; ".join(notes), slope,
            max_frac_nonlinearity_err=quad.max_frac_err, k2_per_adu=quad.k2,
            k2_err_per_adu=quad.k2_err, signal_top_adu=quad.x_top, chi2=quad.chi2,
            dof=quad.dof,
        )  # fmt: skip

    i_turn = int(np.flatnonzero(good)[np.argmax(mu[good])])
    turnoff_kept = float(mu[i_turn])
    # "Below the turnoff" in ramp order (exposure time), as cp_pipe masks points after the
    # turnoff index: past saturation the signal plateaus, so a signal cut would let
    # saturated points with μ just under the turnoff in.
    below = usable & (mu >= MIN_SIGNAL_FIT_LINEARITY_ADU) & (t <= t[i_turn])
    max_abs = float(np.max(np.abs(resid[below]))) if below.any() else math.nan
    later = usable & (t > t[i_turn])
    lower_limit = turnoff_kept >= float(np.max(mu[usable])) or not later.any()
    if lower_limit:
        notes.append(NOTE_LOWER_LIMIT)
        turnoff, turnoff_err = turnoff_kept, math.nan
    else:
        step = turnoff_kept * (float(np.min(t[later])) / float(t[i_turn]) - 1.0)
        turnoff = turnoff_kept + 0.5 * step
        turnoff_err = step / math.sqrt(12.0)
    quad = _quadratic(t, mu, sigma, fit & (t <= t[i_turn]) & quad_range, notes)
    return LinearityResult(
        turnoff_adu=turnoff,
        max_frac_nonlinearity=quad.max_frac,
        residual_frac=resid,
        reason="; ".join(notes),
        slope_adu_per_s=slope,
        turnoff_err_adu=turnoff_err,
        turnoff_is_lower_limit=lower_limit,
        turnoff_kept_adu=turnoff_kept,
        max_frac_nonlinearity_err=quad.max_frac_err,
        k2_per_adu=quad.k2,
        k2_err_per_adu=quad.k2_err,
        signal_top_adu=quad.x_top,
        max_abs_frac_residual=max_abs,
        chi2=quad.chi2,
        dof=quad.dof,
    )


@dataclass(frozen=True)
class _Quad:
    k2: float = math.nan
    k2_err: float = math.nan
    max_frac: float = math.nan
    max_frac_err: float = math.nan
    x_top: float = math.nan
    chi2: float = math.nan
    dof: int = 0


def _quadratic(
    t: np.ndarray, mu: np.ndarray, sigma: np.ndarray | None, sel: np.ndarray, notes: list[str]
) -> _Quad:
    """Weighted fit μ = c + a·t + b·t² over ``sel``; k₂ = b/a² with its propagated error.

    Linear least squares: with design X = [1, t, t²] and weights w = 1/σ², the
    covariance is (XᵀWX)⁻¹ (× χ²/dof as in :data:`CHI2_EXCESS_P`); σ(k₂)² = ∇k₂ᵀ C ∇k₂
    with ∇k₂ = (0, −2b/a³, 1/a²).
    """
    n = int(np.count_nonzero(sel))
    if n < MIN_QUADRATIC_POINTS:
        notes.append(f"too few points for the quadratic: {n} < {MIN_QUADRATIC_POINTS}")
        return _Quad()
    ts, ys = t[sel], mu[sel]
    known = sigma is not None and bool(np.all(np.isfinite(sigma[sel]) & (sigma[sel] > 0)))
    sig = sigma[sel] if known else np.sqrt(ys)  # type: ignore[index]
    t0 = float(np.max(ts))  # scale t to O(1) for conditioning
    u = ts / t0
    x = np.column_stack([np.ones_like(u), u, u * u]) / sig[:, None]
    yw = ys / sig
    try:
        cov = np.linalg.inv(x.T @ x)
    except np.linalg.LinAlgError:
        notes.append("quadratic fit singular")
        return _Quad()
    p = cov @ (x.T @ yw)
    chi2 = float(np.sum((yw - x @ p) ** 2))
    dof = n - 3
    limit = float(chi2_dist.isf(CHI2_EXCESS_P, dof))
    factor = (chi2 / dof if chi2 > limit else 1.0) if known else chi2 / dof
    cov = cov * factor
    _c, a_u, b_u = p
    # back to t: a = a_u/t0, b = b_u/t0²; k₂ = b/a² = b_u/a_u² (t0 cancels)
    k2 = float(b_u / a_u**2)
    grad = np.array([0.0, -2.0 * b_u / a_u**3, 1.0 / a_u**2])
    k2_err = float(math.sqrt(max(0.0, float(grad @ cov @ grad))))
    x_top = float(a_u)  # a·t_top with t_top = t0 (u = 1)
    if known and chi2 > limit:
        notes.append(f"quadratic chi2/dof = {chi2 / dof:.3g}: errors scaled by the scatter")
    return _Quad(k2, k2_err, k2 * x_top, abs(x_top) * k2_err, x_top, chi2, dof)
