"""Photon transfer curve of one amplifier: the EXPAPPROXIMATION fit of cp_pipe.

The model is Astier et al. 2019 (A&A 629, A36; arXiv:1905.08677) eq. 16, the
variance of a flat as a function of its mean when brighter-fatter charge redistribution
is described by one coefficient a₀₀:

    C₀₀(μ) = (exp(2·a₀₀·μ·g) − 1) / (2·g²·a₀₀) + n / g²

with μ the mean (adu), C₀₀ the per-frame variance (adu²), g the gain (electron/adu),
a₀₀ in 1/electron (negative: bright pixels repel charge, the variance falls short of
Poisson) and n the noise term in electron². As a₀₀ → 0 it becomes μ/g + n/g².

The selection of the points follows cp_pipe's ``PhotonTransferCurveSolveTask.fitPtc``:
an unweighted, bounded fit to the low-signal points, then ``max_iter`` passes of outlier
rejection over the whole curve with residuals in units of √var, a "jump" rule that drops
everything above a gap left by rejected points, and a final fit weighted by
1/σ(var) ∝ 1/var (the variance of a variance is 2var²/N). cp_pipe's PTC turnoff is the
highest mean kept.

Where calibmon differs (each says why where it is done):

- errors: with the pixel count N of each pair the weights are absolute,
  σ(var_i) = model_i·√(2/N_i) (iteratively reweighted), and the covariance is used as
  it is unless the χ² shows significant excess scatter (then × χ²/dof); cp_pipe always
  scales by the reduced χ².
- short ramps (a daily_PTC of 2–6 pairs): fitted without outlier rejection below 4
  points; a₀₀ is fitted only when the ramp measures it, else fixed to a caller's prior
  whose error is propagated (or to 0, said in ``reason``).
- turnoff: the roll-off lies within the ramp step above the highest kept mean; the value
  is the middle of that step with error step/√12, and without a roll-off the highest
  mean is returned as a flagged lower limit (``turnoff_is_lower_limit``), as is the
  full well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import chi2 as chi2_dist

# --- cp_pipe PhotonTransferCurveSolveConfig, values of pipelines/LSSTCam/cpPtc.yaml ---
# sigmaCutPtcOutliers: residual cut, in units of √var (adu), of the outlier rejection.
SIGMA_CUT_PTC_OUTLIERS = 5.0
# maxIterationsPtcOutliers (task default; LSSTCam does not override it).
MAX_ITERATIONS_PTC_OUTLIERS = 2
# maxSignalInitialPtcOutlierFit with scaleMaxSignalInitialPtcOutlierFit=False (LSSTCam):
# the initial fit uses only means up to this, safely below the turnoff (adu).
MAX_SIGNAL_INITIAL_PTC_OUTLIER_FIT_ADU = 20_000.0
# maxDeltaInitialPtcOutlierFit: a kept point that follows rejected ones must lie within
# this of the previous kept point, else it and all above are dropped. cp_pipe's task
# default (used by LATISS) is 9 000 e−, i.e. ~5 000 adu at gain 1.7; LSSTCam's config
# uses 1 000 adu for its ramps of 100+ finely spaced pairs. calibmon takes the task
# default: daily ramps of ~30–60 pairs have ~1 000 adu steps near the turnoff, so one
# statistical outlier there would otherwise end the curve two steps early (measured:
# full well −14 % on a simulated 60-pair ramp with the 1 000 adu value).
MAX_DELTA_INITIAL_PTC_OUTLIER_FIT_ADU = 5_000.0
# Legacy initial turnoff search (cp_pipe _getInitialGoodPoints, minVarPivotSearch and
# consecutivePointsVarDecreases): the variance falling over 2 consecutive points above
# 10 000 adu² marks a first estimate of the turnoff. cp_pipe now uses a per-pair KS test
# instead, which needs pixels; here the pivot only caps the *initial* fit range.
MIN_VAR_PIVOT_SEARCH_ADU2 = 10_000.0
CONSECUTIVE_POINTS_VAR_DECREASES = 2
# Starting values and bounds of the initial fit (cp_pipe fitPtc): a00 [1/e], gain [e/adu],
# noise² [e²].
INITIAL_PARS = (-2e-6, 1.5, 25.0)
INITIAL_LOWER = (-1e-4, 0.1, 0.0)
INITIAL_UPPER = (0.0, 10.0, 2000.0)
# cp_pipe PhotonTransferCurveSolveConfig minMeanSignal / maxMeanSignal defaults
# ({'ALL_AMPS': 0.0} and {'ALL_AMPS': 1e6}, adu): points outside (0, 1e6) are not used.
MIN_MEAN_SIGNAL_ADU = 0.0
MAX_MEAN_SIGNAL_ADU = 1e6
# cp_pipe fails an amp with fewer points than the 3 parameters. calibmon fits what the
# data support (a daily_PTC has 2–6 pairs): 2 points give gain and noise with a₀₀ fixed
# (see :func:`fit_ptc_astier`), 3 or more the full model when a₀₀ is measurable.
PTC_MIN_POINTS = 2
# Below this many usable points the cp_pipe outlier rejection is skipped (3 points and 3
# parameters leave nothing to judge an outlier by) and every usable point is fitted.
MIN_POINTS_OUTLIER_REJECTION = 4
# A nominal a₀₀ prior (1/e) for callers without the amp's own measurement: LSSTCam and
# LATISS sensors have a₀₀ ≈ −1.5…−2.5·10⁻⁶/e (Astier et al. 2019 Fig. 11); the error
# covers that range twice over. Fixing a₀₀ to 0 instead biases a mini-PTC's gain by
# ~a₀₀·g·μ (10 % at 50 ke-).
NOMINAL_A00_PRIOR = (-2.0e-6, 1.0e-6)
# a₀₀ counts as measured by the ramp when its 1σ error from the free fit is below the
# caller's prior error or, without a prior, below this (1/e): half the smallest |a₀₀| of
# LSSTCam/LATISS sensors (≈ −2·10⁻⁶/e, Astier et al. 2019 Fig. 11), i.e. the
# brighter-fatter curvature detected at ≥ 2σ. Otherwise a₀₀ is fixed (prior or 0).
A00_MAX_ERR_NO_PRIOR = 1e-6
# Iteratively reweighted least squares: σ(var_i) = model_i·√(2/N_i) is re-evaluated with
# the previous fit's model this many times (the weights then change by ≪ 1 %).
IRLS_PASSES = 3
# With calibrated weights the covariance is scaled by χ²/dof only when the χ² shows excess
# scatter at this significance. Scaling whenever χ²/dof > 1 inflates the errors of
# correct fits by chance on short ramps (dof 1–3: the gain pulls' spread fell to 0.82 in
# Monte Carlo, the noise's to 0.77); a real excess of ≥ 1.5× in σ is still caught at
# dof ≥ 10 (χ²/dof ≥ 2.25 > the 95 % limit 1.83).
CHI2_EXCESS_P = 0.05
# Fewer points than this under max_signal_initial_adu and the initial fit uses the whole
# range up to the variance pivot instead (calibmon choice: cp_pipe's LSSTCam ramps have
# 100+ pairs, so its cap always leaves many; a 30-pair daily ramp may leave 5).
MIN_INITIAL_FIT_POINTS = 10
# Re-selections of the kept points with the final weighted model (see step 3).
REFINE_PASSES = 3
# The curve must show photon noise: the variance of the highest kept point at least this
# many times that of the lowest. A real ramp spans a factor ≥ 100; a dead amp ≈ 1.
MIN_VARIANCE_DYNAMIC_RANGE = 2.0
# A final gain outside cp_pipe's initial-fit bounds is not a measurement.
GAIN_RANGE = (INITIAL_LOWER[1], INITIAL_UPPER[1])
# A ramp whose variance grows by less than MIN_VARIANCE_DYNAMIC_RANGE (a 2-pair daily_PTC
# at 25 % and 50 % of full well grows by ≈ 1.8) still shows photon noise when its mean
# spans at least this (adu) and the variance grows at a rate 1/g inside GAIN_RANGE; a dead
# amp's means span ≪ 1 adu.
MIN_MEAN_SPAN_ADU = 100.0
# Notes (``reason``) that callers and tests match on.
NOTE_LOWER_LIMIT = "no roll-off in the ramp: lower limit"

# a00 is ~1e-6 1/e: fit it in units of 1e-6 so the three parameters are O(1).
_A00_SCALE = 1e-6


@dataclass(frozen=True, eq=False)  # holds arrays: identity equality
class PtcResult:
    """Result of :func:`fit_ptc_astier` for one amp.

    Every ``*_err`` is a 1σ error in the unit of its value: from the covariance of the
    final weighted fit (weights 1/σ(var_i), σ(var_i) = model_i·√(2/N_i)), multiplied by
    √(χ²/dof) when that exceeds 1; without ``n_pixels`` the weights are only relative and
    the covariance is always scaled by χ²/dof (cp_pipe). NaN when not measurable.

    Attributes
    ----------
    gain, gain_err : float, electron/adu
        Fitted g (``ptc_gain``). With a₀₀ fixed to a prior, the prior's error is
        propagated into ``gain_err`` (``(∂g/∂a₀₀)·a00_prior_err`` added in quadrature).
    noise_e, noise_err_e : float, electron
        √|n|: the noise term of the fit (``ptc_noise``). cp_pipe reports the same
        quantity; n/g² is the read-noise variance in adu² (so noise_e = √(n/g²)·g).
        Error σ(n)/(2√|n|) (delta method; large when the ramp starts far above the
        read-noise floor, see ``reason``).
    a00, a00_err : float, 1/electron
        Brighter-fatter coefficient (``ptc_a00``); negative for brighter-fatter. NaN
        when the ramp does not measure it (``a00_fixed``).
    turnoff_adu, turnoff_err_adu : float, adu
        ``ptc_turnoff``. When the ramp rolls off (a point above the highest kept one
        has its variance below the model by more than the outlier cut, i.e. saturated),
        the roll-off lies between the highest kept mean m_k and the next ramp point
        m_k+1: the value is their midpoint and the error (m_k+1 − m_k)/√12 (a uniform
        position within the step). cp_pipe's value, m_k, is ``turnoff_kept_adu``.
        Without roll-off: the highest mean used, ``turnoff_is_lower_limit`` True and
        the error NaN.
    full_well_e, full_well_err_e : float, electron
        ``full_well`` = turnoff_adu × gain; error √((g·σ_T)² + (T·σ_g)²). A lower
        limit (error NaN) exactly when the turnoff is.
    turnoff_is_lower_limit : bool
        True when the ramp shows no roll-off (``reason`` then contains
        :data:`NOTE_LOWER_LIMIT`); the turnoff and full well are then lower limits that
        no rule may treat as values.
    turnoff_kept_adu : float, adu
        cp_pipe's PTC turnoff: the largest mean kept by the fit.
    mu_adu, var_adu2 : (n_points,) float64, adu and adu²
        The input points, in input order.
    used : (n_points,) bool
        Points kept by the final fit.
    model_var_adu2 : (n_points,) float64, adu²
        The fitted model at every input mean (NaN where the mean is not finite).
    reason : str
        Empty when everything was measured; otherwise what is NaN and why, or a flag.
    a00_fixed : bool
        True when a₀₀ was not measurable from the ramp (see :data:`A00_MAX_ERR_NO_PRIOR`)
        and was fixed to ``a00_used`` (the prior, or 0 without one; said in ``reason``).
    a00_used : float, 1/electron
        The a₀₀ of the model actually fitted (measured or fixed).
    chi2, dof : float, int
        χ² and degrees of freedom of the final fit (calibrated only with ``n_pixels``).
    """

    gain: float
    gain_err: float
    noise_e: float
    a00: float
    turnoff_adu: float
    full_well_e: float
    mu_adu: np.ndarray
    var_adu2: np.ndarray
    used: np.ndarray
    model_var_adu2: np.ndarray
    reason: str = ""
    a00_err: float = math.nan
    noise_err_e: float = math.nan
    turnoff_err_adu: float = math.nan
    full_well_err_e: float = math.nan
    turnoff_is_lower_limit: bool = False
    turnoff_kept_adu: float = math.nan
    a00_fixed: bool = False
    a00_used: float = math.nan
    chi2: float = math.nan
    dof: int = 0


def ptc_model_astier(mu_adu: np.ndarray, a00: float, gain: float, noise2_e2: float) -> np.ndarray:
    """Astier et al. 2019 eq. 16: per-frame variance (adu²) at mean ``mu_adu`` (adu).

    ``a00`` in 1/electron, ``gain`` in electron/adu, ``noise2_e2`` in electron². Exact
    at ``a00 == 0`` (μ/g + n/g²): the exponential is evaluated as ``expm1(x)/x``.
    """
    mu = np.asarray(mu_adu, dtype=np.float64)
    x = 2.0 * a00 * mu * gain
    small = np.abs(x) < 1e-12
    safe = np.where(small, 1.0, x)
    ratio = np.where(small, 1.0 + 0.5 * x, np.expm1(safe) / safe)
    return mu / gain * ratio + noise2_e2 / (gain * gain)


def fit_ptc_astier(
    mu_adu: np.ndarray,
    var_adu2: np.ndarray,
    *,
    sigma_cut: float = SIGMA_CUT_PTC_OUTLIERS,
    max_iter: int = MAX_ITERATIONS_PTC_OUTLIERS,
    min_points: int = PTC_MIN_POINTS,
    max_signal_initial_adu: float = MAX_SIGNAL_INITIAL_PTC_OUTLIER_FIT_ADU,
    max_delta_initial_adu: float = MAX_DELTA_INITIAL_PTC_OUTLIER_FIT_ADU,
    n_pixels: np.ndarray | float | None = None,
    a00_prior: float | None = None,
    a00_prior_err: float | None = None,
    exptime_s: np.ndarray | None = None,
    k2_per_adu: float | None = None,
    cti_variance_loss: float = 0.0,
    noise_excess_frac: float = 0.0,
) -> PtcResult:
    """Fit the PTC of one amp with the EXPAPPROXIMATION model (Astier et al. 2019 eq. 16).

    Parameters
    ----------
    mu_adu : (n_points,) float, adu
        Mean signal of each flat pair (:attr:`PairStats.mu_adu`), any order.
    var_adu2 : (n_points,) float, adu²
        Per-frame variance of each pair (:attr:`PairStats.var_adu2`).
    sigma_cut : float
        Outlier cut on (var − model)/√var (cp_pipe ``sigmaCutPtcOutliers``).
    max_iter : int
        Outlier-rejection passes (cp_pipe ``maxIterationsPtcOutliers``); 0 fits all points.
    min_points : int
        Fewer usable points (finite, mean > 0, var > 0) or kept points give NaN.
    max_signal_initial_adu : float, adu
        Upper mean of the initial fit (cp_pipe ``maxSignalInitialPtcOutlierFit``).
    max_delta_initial_adu : float, adu
        Largest gap allowed after rejected points (``maxDeltaInitialPtcOutlierFit``).
    n_pixels : (n_points,) or scalar, optional
        Pixels behind each variance (:attr:`PairStats.n_pixels`). The statistical error
        of a per-frame variance from a difference of N pixels is var·√(2/N) (0.14 % for
        10⁶, 1.2 % for 15 000 pixels): with it the final fit's weights are absolute and
        its covariance calibrated. The outlier residual scale is max(√var, var·√(2/N)):
        cp_pipe's √var presumes ~10⁶ pixels, so on small amps good points are not cut;
        on full-size amps it is cp_pipe's √var exactly. None: relative weights 1/var
        and errors scaled by the reduced χ² (cp_pipe).
    a00_prior, a00_prior_err : float, 1/electron, optional
        The amp's a₀₀ from elsewhere (e.g. its latest full PTC) and its 1σ error, used
        when this ramp does not measure a₀₀ (too few points, or too low a signal for
        the brighter-fatter curvature): a₀₀ is then fixed to the prior and the prior's
        error is propagated into the gain and noise errors. ``a00_prior_err`` None is 0.
    exptime_s : (n_points,) float, s, optional
        Exposure time of each pair (or any quantity proportional to the illumination).
        It locates the roll-off: the ramp step above the turnoff is measured in linear
        signal, m_k·(t_next/t_k − 1), because the mean of a saturated pair stops growing
        at the full well and would shorten the step (see :class:`PtcResult`).
    k2_per_adu : float, 1/adu, optional
        Quadratic nonlinearity μ_meas = x + k₂·x² (:attr:`LinearityResult.k2_per_adu`).
        Given, every point is linearized before the fit: x = 2μ/(1 + √(1 + 4k₂μ)) and
        var/(1 + 2k₂x)² (the derivative of the response squared), as cp_pipe linearizes
        the frames before measuring the PTC. Without it the fitted a₀₀ is the effective
        a₀₀ + 3k₂/g (per electron; var ∝ μ(1 + (a₀₀g + 3k₂)μ) to first order) and the
        gain is biased by ~(−k₂μ) over the ramp. The output arrays stay the inputs.
    cti_variance_loss : float, dimensionless
        Fraction of the pixel variance moved into neighbour covariances by serial
        charge-transfer inefficiency: a pixel read after n transfers keeps (1 − n·cti)
        of its charge and receives n·cti of its predecessor's, so its variance is
        (1 − 2·n·cti) of the true one while the mean is unchanged. Pass
        2·cti·n̄ (n̄ the mean number of serial transfers of the data columns, prescan +
        (data columns + 1)/2); the variances are divided by (1 − loss). Without it the
        gain reads high by the loss: +0.11–0.23 % on full-size simulated amps
        (cti 2–4.5·10⁻⁶), 2–4 of the gain's σ there. The loss's own error (EPER ~5 %)
        is ≪ the gain error and is not propagated.
    noise_excess_frac : float, dimensionless
        Fraction of the read-noise variance that the processing adds to every pixel of
        a pair difference, e.g. the per-row serial-overscan level subtracted from each
        row: the median of n columns has variance π/2·σ²/n, so π/(2n) (n = columns used;
        7 % on small simulated amps, 3 % on full-size ones). The noise term is divided
        by (1 + frac), so ``noise_e`` is the amplifier's read noise rather than the
        processed image's (+3.5 % and +1.6 % in noise otherwise; measured +4 % and
        +2.5 % on simulated nights, 0.6 and 2.8 of the noise's σ).

    Returns
    -------
    PtcResult
        See the class for each quantity's definition. Never raises for bad data:
        too few points, no photon signal (dead amp), failed fits give NaN values with
        ``reason``; a ramp that does not roll off gives turnoff and full well as lower
        limits (``turnoff_is_lower_limit``).

    Notes
    -----
    Steps for ≥ :data:`MIN_POINTS_OUTLIER_REJECTION` usable points (cp_pipe ``fitPtc``):
    (0) points with a non-finite mean or variance, a mean outside (0, 10⁶) adu
    (``minMeanSignal``/``maxMeanSignal``) or a non-positive variance are never used;
    (1) an unweighted fit bounded as :data:`INITIAL_LOWER`/:data:`INITIAL_UPPER` to the
    points with mean ≤ ``max_signal_initial_adu`` — and below the first point after which
    the variance falls twice in a row above :data:`MIN_VAR_PIVOT_SEARCH_ADU2`; (2) keep
    every point with |var − model|/√var < ``sigma_cut``; walking up the kept points, a
    kept point that follows a rejected one and lies more than ``max_delta_initial_adu``
    above the previous kept point ends the curve there; refit on the kept points,
    ``max_iter`` passes in all; (3) final unbounded weighted fit (iteratively
    reweighted, σ(var_i) = model_i·√(2/N_i)), re-selecting the kept points with it.
    With 2 or 3 usable points (a daily_PTC) every point is fitted.

    What the data support: the full model (g, n, a₀₀) is fitted to ≥ 3 points and kept
    when a₀₀'s error is below ``a00_prior_err`` (or :data:`A00_MAX_ERR_NO_PRIOR`
    without a prior); otherwise — and always for 2 points — a₀₀ is fixed to the prior
    (0 without one, said in ``reason``; the gain then carries the brighter-fatter bias
    ≈ a₀₀·g·μ of the ramp's points) and only g and n are fitted.
    """
    mu = np.asarray(mu_adu, dtype=np.float64).ravel()
    var = np.asarray(var_adu2, dtype=np.float64).ravel()
    if mu.shape != var.shape:
        raise ValueError(f"mu_adu and var_adu2 differ in length: {mu.size} vs {var.size}")
    n_pts = mu.size
    npix = (
        np.full(n_pts, np.inf)
        if n_pixels is None
        else np.broadcast_to(np.asarray(n_pixels, dtype=np.float64), mu.shape).astype(np.float64)
    )
    t_all = None if exptime_s is None else np.asarray(exptime_s, dtype=np.float64).ravel()
    if t_all is not None and t_all.shape != mu.shape:
        raise ValueError(f"exptime_s and mu_adu differ in length: {t_all.size} vs {mu.size}")
    used = np.zeros(n_pts, dtype=bool)
    nan_model = np.full(n_pts, math.nan)

    def fail(reason: str, used_mask: np.ndarray = used) -> PtcResult:
        return PtcResult(
            math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
            mu, var, used_mask, nan_model, reason,
        )  # fmt: skip

    with np.errstate(invalid="ignore"):
        usable = (
            np.isfinite(mu)
            & np.isfinite(var)
            & (npix > 1.0)
            & (mu > MIN_MEAN_SIGNAL_ADU)
            & (mu < MAX_MEAN_SIGNAL_ADU)
            & (var > 0.0)
            & (var < MAX_MEAN_SIGNAL_ADU**2)
        )
    min_points = max(2, min_points)
    if np.count_nonzero(usable) < min_points:
        return fail(f"too few usable points: {int(np.count_nonzero(usable))} < {min_points}")

    order = np.argsort(np.where(usable, mu, np.inf), kind="stable")
    n_use = int(np.count_nonzero(usable))
    idx = order[:n_use]  # usable points, sorted by mean
    ms, vs, ns = mu[idx], var[idx], npix[idx]
    k2 = 0.0
    if k2_per_adu is not None and math.isfinite(k2_per_adu) and k2_per_adu != 0.0:
        k2 = float(k2_per_adu)
        with np.errstate(invalid="ignore"):
            lin = 2.0 * ms / (1.0 + np.sqrt(1.0 + 4.0 * k2 * ms))
        if not np.all(np.isfinite(lin)):
            return fail(f"k2_per_adu {k2:.3g}/adu cannot be inverted at these means")
        vs = vs / (1.0 + 2.0 * k2 * lin) ** 2
        ms = lin
    if cti_variance_loss:
        if not 0.0 <= cti_variance_loss < 0.5:
            raise ValueError(f"cti_variance_loss must be in [0, 0.5), got {cti_variance_loss}")
        vs = vs / (1.0 - cti_variance_loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.maximum(np.sqrt(vs), vs * np.sqrt(2.0 / ns))

    if not _shows_photon_noise(ms, vs):
        return fail("variance does not grow with signal: no photon signal (dead amp?)")

    if n_use < MIN_POINTS_OUTLIER_REJECTION:
        keep = np.ones(n_use, dtype=bool)
        pars = _to_internal(np.array(INITIAL_PARS, dtype=np.float64))
        if n_use >= 3:
            fitted = _fit_bounded(ms, vs, keep, pars)
            if fitted is not None:
                pars = fitted
    else:
        selected = _select_points(
            ms, vs, scale, sigma_cut, max_iter, max_signal_initial_adu, max_delta_initial_adu
        )
        if isinstance(selected, str):
            return fail(selected)
        keep, pars = selected

    n_keep = int(np.count_nonzero(keep))
    if n_keep < min_points:
        used[idx[keep]] = True
        return fail(f"too few points kept by the fit: {n_keep} < {min_points}", used)

    # (3) final weighted fit; re-select the kept points with it until the set is stable
    # (at most REFINE_PASSES), so a point the final fit agrees with is used and the
    # turnoff is not left one or two ramp steps early (calibmon choice).
    prior = (a00_prior, a00_prior_err)
    final = _final_fit(ms[keep], vs[keep], ns[keep], pars, prior)
    refine = REFINE_PASSES if (max_iter > 0 and n_use >= MIN_POINTS_OUTLIER_REJECTION) else 0
    for _ in range(refine):
        if final is None:
            break
        with np.errstate(all="ignore"):
            model = ptc_model_astier(ms, final.a00, final.gain, final.noise2)
            resid = (vs - model) / scale
        new_keep = np.isfinite(resid) & (np.abs(resid) < sigma_cut)
        _apply_jump_rule(ms, new_keep, max_delta_initial_adu)
        if np.array_equal(new_keep, keep) or np.count_nonzero(new_keep) < min_points:
            break
        keep = new_keep
        final = _final_fit(ms[keep], vs[keep], ns[keep], final.internal, prior)
    used[idx[keep]] = True
    if final is None:
        return fail("final PTC fit failed", used)
    f = final
    with np.errstate(invalid="ignore", over="ignore"):
        x_all = np.nan_to_num(mu)
        if k2 != 0.0:
            x_all = 2.0 * x_all / (1.0 + np.sqrt(np.maximum(1.0 + 4.0 * k2 * x_all, 0.0)))
        model_all = np.where(
            np.isfinite(mu),
            ptc_model_astier(x_all, f.a00, f.gain, f.noise2)
            * (1.0 + 2.0 * k2 * x_all) ** 2
            * (1.0 - cti_variance_loss),
            math.nan,
        )
    if not (math.isfinite(f.gain) and GAIN_RANGE[0] <= f.gain <= GAIN_RANGE[1]):
        return PtcResult(
            math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
            mu, var, used, model_all, f"fitted gain {f.gain:.4g} e-/adu outside {GAIN_RANGE}",
        )  # fmt: skip

    notes = list(f.notes)
    if noise_excess_frac < 0.0:
        raise ValueError(f"noise_excess_frac must be >= 0, got {noise_excess_frac}")
    noise_e = math.sqrt(abs(f.noise2) / (1.0 + noise_excess_frac))
    noise_err = (
        0.5 * f.noise2_err / (1.0 + noise_excess_frac) / noise_e if noise_e > 0.0 else math.nan
    )
    if f.noise2 < 0.0:
        notes.append("fitted noise term negative; noise_e = sqrt(|n|)")
    elif not f.noise2_err < 0.5 * f.noise2:
        notes.append(
            f"noise term poorly constrained by the ramp (n = {f.noise2:.3g} ± "
            f"{f.noise2_err:.2g} e-2): noise_e error not Gaussian"
        )

    k_top = int(np.flatnonzero(keep)[-1])
    turnoff_kept = float(ms[k_top])
    # Saturation shows as points above the turnoff whose variance fell below the model by
    # more than the outlier cut. Points above it with excess variance (a bad pair at the
    # top of a ramp) or on the model (cut by the jump rule) do not make the turnoff a
    # full-well measurement.
    with np.errstate(all="ignore"):
        collapsed = (vs - ptc_model_astier(ms, f.a00, f.gain, f.noise2)) / scale < -sigma_cut
    rolled_off = bool(np.any(~keep & (ms > turnoff_kept) & collapsed)) and k_top + 1 < n_use
    if rolled_off:
        step = _step_above(ms, k_top, None if exptime_s is None else t_all[idx])
        turnoff = turnoff_kept + 0.5 * step
        turnoff_err = step / math.sqrt(12.0)
        full_well = turnoff * f.gain
        full_well_err = math.hypot(f.gain * turnoff_err, turnoff * f.gain_err)
    else:
        turnoff, turnoff_err = turnoff_kept, math.nan
        full_well, full_well_err = turnoff_kept * f.gain, math.nan
        if turnoff_kept >= float(ms[-1]):
            notes.append(f"{NOTE_LOWER_LIMIT} (the highest ramp point is on the model)")
        else:
            notes.append(
                f"{NOTE_LOWER_LIMIT} (points above the turnoff were rejected as outliers "
                "or by the jump rule, not for a saturation roll-off)"
            )
    if k2 != 0.0:
        # turnoffs back to measured adu (the means the caller passed); the full well is
        # the linear signal × gain
        turnoff_err *= 1.0 + 2.0 * k2 * turnoff
        turnoff = turnoff + k2 * turnoff**2
        turnoff_kept = float(mu[idx[k_top]])
    return PtcResult(
        gain=float(f.gain),
        gain_err=float(f.gain_err),
        noise_e=float(noise_e),
        a00=float(f.a00) if not f.a00_fixed else math.nan,
        turnoff_adu=float(turnoff),
        full_well_e=float(full_well),
        mu_adu=mu,
        var_adu2=var,
        used=used,
        model_var_adu2=model_all,
        reason="; ".join(notes),
        a00_err=float(f.a00_err) if not f.a00_fixed else math.nan,
        noise_err_e=float(noise_err),
        turnoff_err_adu=float(turnoff_err),
        full_well_err_e=float(full_well_err),
        turnoff_is_lower_limit=not rolled_off,
        turnoff_kept_adu=turnoff_kept,
        a00_fixed=f.a00_fixed,
        a00_used=float(f.a00),
        chi2=float(f.chi2),
        dof=int(f.dof),
    )


def _step_above(ms: np.ndarray, k: int, ts: np.ndarray | None) -> float:
    """Ramp step (adu) from the highest kept point ``k`` to the next pair above.

    With exposure times: the linear signal of the next longer exposure minus ms[k],
    ms[k]·(t_next/t_k − 1) (a saturated pair's mean has stopped growing, so its mean
    would understate the step: on clipping pixels the midpoint of the means then sits
    ~w/4 low, measured −1.3σ on 30-pair Monte Carlo ramps). Otherwise (or when the times
    do not order the points) the difference of the means, ms[k+1] − ms[k].
    """
    fallback = float(ms[k + 1] - ms[k])
    if ts is None or not math.isfinite(float(ts[k])) or not ts[k] > 0.0:
        return fallback
    with np.errstate(invalid="ignore"):
        later = ts[np.isfinite(ts) & (ts > ts[k])]
    if later.size == 0:
        return fallback
    return float(ms[k] * (float(np.min(later)) / float(ts[k]) - 1.0))


def _shows_photon_noise(ms: np.ndarray, vs: np.ndarray) -> bool:
    """Whether sorted points (mean ``ms`` adu, variance ``vs`` adu²) show photon noise.

    Either the variance grows by :data:`MIN_VARIANCE_DYNAMIC_RANGE` over the ramp, or
    (short ramps) the means span ≥ :data:`MIN_MEAN_SPAN_ADU` and the variance grows at a
    rate Δvar/Δμ = 1/g with g inside :data:`GAIN_RANGE`.
    """
    lowest_var = float(np.min(vs[: max(1, min(3, vs.size))]))
    if float(np.max(vs)) >= MIN_VARIANCE_DYNAMIC_RANGE * lowest_var:
        return True
    span = float(ms[-1] - ms[0])
    if span < MIN_MEAN_SPAN_ADU:
        return False
    rate = float(vs[-1] - vs[0]) / span
    return 1.0 / GAIN_RANGE[1] <= rate <= 1.0 / GAIN_RANGE[0]


def _select_points(
    ms: np.ndarray,
    vs: np.ndarray,
    scale: np.ndarray,
    sigma_cut: float,
    max_iter: int,
    max_signal_initial_adu: float,
    max_delta_initial_adu: float,
) -> tuple[np.ndarray, np.ndarray] | str:
    """cp_pipe's steps (1)–(2) on sorted usable points: (kept mask, internal params), or
    the reason of a failure."""
    n_use = ms.size
    initial = ms <= max_signal_initial_adu
    pivot = _variance_pivot(vs)
    if pivot is not None:
        initial[pivot + 1 :] = False
    if np.count_nonzero(initial) < MIN_INITIAL_FIT_POINTS:
        # A sparse ramp (tens of pairs, log-spaced) has too few points under the cap to pin
        # a00 down; the extrapolated model then cuts good high points. Use every point up
        # to the variance pivot instead (cp_pipe's legacy minVarPivotSearch range).
        # Without a clean two-decrease pivot (saturated pairs jitter in mean and variance,
        # so sorted by mean their variances need not fall twice in a row) the largest
        # variance marks the start of the roll-off.
        top = pivot if pivot is not None else int(np.argmax(vs))
        initial = np.arange(n_use) <= top
    if np.count_nonzero(initial) < 3:
        # Ramps starting above the initial cap: use the lowest points (≥ 3 parameters).
        initial[:] = False
        initial[: min(n_use, 3)] = True

    keep = initial.copy()
    pars = _to_internal(np.array(INITIAL_PARS, dtype=np.float64))
    if max_iter == 0:
        keep[:] = True
        fitted = _fit_bounded(ms, vs, keep, pars)
        return "initial PTC fit failed" if fitted is None else (keep, fitted)
    last = None
    for _ in range(max_iter):
        fitted = _fit_bounded(ms, vs, keep, pars)
        if fitted is None:
            return "initial PTC fit failed"
        pars = fitted
        with np.errstate(all="ignore"):
            model = ptc_model_astier(ms, pars[0] * _A00_SCALE, pars[1], pars[2])
            resid = (vs - model) / scale
        keep = np.isfinite(resid) & (np.abs(resid) < sigma_cut)
        if np.count_nonzero(keep) < 2:
            return "all points rejected as outliers"
        _apply_jump_rule(ms, keep, max_delta_initial_adu)
        if last is not None and np.array_equal(keep, last):
            break
        last = keep.copy()
    return keep, pars


def _variance_pivot(vs: np.ndarray) -> int | None:
    """Index after which the variance falls over consecutive points (cp_pipe legacy).

    Returns the first index p with vs[p] > :data:`MIN_VAR_PIVOT_SEARCH_ADU2` that starts
    a run of :data:`CONSECUTIVE_POINTS_VAR_DECREASES` decreases, or None.
    """
    dec = np.diff(vs) < 0.0
    k = CONSECUTIVE_POINTS_VAR_DECREASES
    if dec.size < k:
        return None
    # run[p] is True when dec[p], ..., dec[p+k-1] are all True
    run = np.ones(dec.size - k + 1, dtype=bool)
    for s in range(k):
        run &= dec[s : s + dec.size - k + 1]
    cand = np.flatnonzero(run & (vs[: run.size] > MIN_VAR_PIVOT_SEARCH_ADU2))
    return int(cand[0]) if cand.size else None


def _apply_jump_rule(ms: np.ndarray, keep: np.ndarray, max_delta: float) -> None:
    """Drop all points from the first kept point that follows rejected ones too far up.

    ``ms`` sorted ascending; ``keep`` modified in place (cp_pipe fitPtc, Seth Digel's
    rule from the EO test pipeline).
    """
    kept = np.flatnonzero(keep)
    if kept.size < 2:
        return
    after_gap = kept[1:][np.diff(kept) > 1]  # kept points whose predecessor was rejected
    if after_gap.size == 0:
        return
    prev_kept = kept[:-1][np.diff(kept) > 1]
    jumps = ms[after_gap] - ms[prev_kept]
    bad = np.flatnonzero(jumps >= max_delta)
    if bad.size:
        keep[after_gap[bad[0]] :] = False


def _residuals(p: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        r = ptc_model_astier(x, p[0] * _A00_SCALE, p[1], p[2]) - y
    if w is not None:
        r = r * w
    return np.clip(np.where(np.isfinite(r), r, 1e30), -1e30, 1e30)


def _fit_bounded(
    ms: np.ndarray, vs: np.ndarray, sel: np.ndarray, start: np.ndarray
) -> np.ndarray | None:
    """Unweighted bounded fit of the selected points; parameters in internal units
    (a00 in units of :data:`_A00_SCALE`)."""
    if np.count_nonzero(sel) < 3:
        return None
    lower = np.array(INITIAL_LOWER) / np.array([_A00_SCALE, 1.0, 1.0])
    upper = np.array(INITIAL_UPPER) / np.array([_A00_SCALE, 1.0, 1.0])
    p0 = np.clip(np.array(start, dtype=np.float64), lower, upper)
    try:
        with np.errstate(all="ignore"):
            res = least_squares(
                _residuals, p0, bounds=(lower, upper), args=(ms[sel], vs[sel], None)
            )
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(res.x)):
        return None
    return res.x


def _to_internal(p: np.ndarray) -> np.ndarray:
    q = p.copy()
    q[0] = p[0] / _A00_SCALE
    return q


@dataclass(frozen=True)
class _Final:
    """Final weighted fit: values in physical units (a00 1/e, gain e/adu, noise2 e²)."""

    internal: np.ndarray  # (a00/_A00_SCALE, gain, noise2), the next fit's start
    a00: float
    gain: float
    noise2: float
    a00_err: float
    gain_err: float
    noise2_err: float
    a00_fixed: bool
    chi2: float
    dof: int
    notes: tuple[str, ...]


def _final_fit(
    x: np.ndarray,
    y: np.ndarray,
    npix: np.ndarray,
    start: np.ndarray,
    prior: tuple[float | None, float | None],
) -> _Final | None:
    """Weighted fit of the kept points with a₀₀ free when measurable, else fixed.

    ``prior`` = (a00_prior, a00_prior_err) in 1/e. See :func:`fit_ptc_astier`.
    """
    a00_prior, a00_prior_err = prior
    prior_err = 0.0 if a00_prior_err is None or not math.isfinite(a00_prior_err) else a00_prior_err
    has_prior = a00_prior is not None and math.isfinite(a00_prior)
    free = _wls(x, y, npix, start, None) if x.size >= 3 else None
    if free is not None:
        limit = prior_err if has_prior and prior_err > 0.0 else A00_MAX_ERR_NO_PRIOR
        a00_err = free[1][0] * _A00_SCALE
        if math.isfinite(a00_err) and a00_err < limit:
            p, perr, chi2, dof = free
            return _Final(
                p, p[0] * _A00_SCALE, p[1], p[2], a00_err, perr[1], perr[2], False, chi2, dof, ()
            )
    a00_fix = float(a00_prior) if has_prior else 0.0  # type: ignore[arg-type]
    start2 = np.array([a00_fix / _A00_SCALE, start[1], start[2]])
    fixed = _wls(x, y, npix, start2, a00_fix / _A00_SCALE)
    if fixed is None:
        return None
    p, perr, chi2, dof = fixed
    gain_err, noise2_err = perr[1], perr[2]
    why = "too few points" if x.size < 3 else "curvature not measured by the ramp"
    if has_prior:
        note = f"a00 not measurable ({why}): fixed to the prior {a00_fix:.3g}/e"
        if prior_err > 0.0:
            # Propagate the prior's error: refit with a₀₀ one prior-σ away (the fit is
            # close to linear in a₀₀ over that range).
            shifted = _wls(x, y, npix, p, (a00_fix + prior_err) / _A00_SCALE)
            if shifted is None:
                return None
            dg = shifted[0][1] - p[1]
            dn = shifted[0][2] - p[2]
            gain_err = math.hypot(gain_err, dg)
            noise2_err = math.hypot(noise2_err, dn)
            note += f" ± {prior_err:.2g}/e (propagated into the gain error)"
    else:
        note = (
            f"a00 not measurable ({why}) and no prior: fixed to 0, the gain carries the "
            "brighter-fatter bias"
        )
    return _Final(p, a00_fix, p[1], p[2], math.nan, gain_err, noise2_err, True, chi2, dof, (note,))


def _chi2_limit(dof: int) -> float:
    """χ² above which the scatter exceeds the weights' (p < :data:`CHI2_EXCESS_P`)."""
    return float(chi2_dist.isf(CHI2_EXCESS_P, dof))


def _wls(
    x: np.ndarray, y: np.ndarray, npix: np.ndarray, start: np.ndarray, a00_fixed: float | None
) -> tuple[np.ndarray, np.ndarray, float, int] | None:
    """Iteratively reweighted least squares of eq. 16 (internal units).

    σ(y_i) = model_i·√(2/N_i), the model from the previous pass (first pass: y_i). With
    ``a00_fixed`` (internal units) only gain and noise² are fitted. Returns (params,
    1σ errors (a00's 0 when fixed), χ², dof); errors from (JᵀJ)⁻¹ of the weighted
    residuals, × √(χ²/dof) when that exceeds 1 — or always when N is unknown (relative
    weights). NaN errors when the covariance is singular.
    """
    known = bool(np.all(np.isfinite(npix)))
    rel = np.sqrt(2.0 / npix) if known else np.ones_like(y)
    free_idx = [0, 1, 2] if a00_fixed is None else [1, 2]
    p = np.array(start, dtype=np.float64)
    if a00_fixed is not None:
        p[0] = a00_fixed
    sig = y * rel
    res = None
    for _ in range(IRLS_PASSES):
        w = 1.0 / sig

        def resid(q: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            full = p.copy()
            full[free_idx] = q
            return _residuals(full, x, y, w)

        try:
            with np.errstate(all="ignore"):
                res = least_squares(
                    resid, p[free_idx], method="lm" if x.size >= len(free_idx) else "trf"
                )
        except (ValueError, np.linalg.LinAlgError):
            return None
        if not np.all(np.isfinite(res.x)):
            return None
        p[free_idx] = res.x
        with np.errstate(all="ignore"):
            model = ptc_model_astier(x, p[0] * _A00_SCALE, p[1], p[2])
        if not np.all(np.isfinite(model) & (model > 0.0)):
            break
        sig = model * rel
    assert res is not None
    dof = x.size - len(free_idx)
    chi2 = float(np.sum(res.fun**2))
    perr = np.zeros(3)
    try:
        with np.errstate(all="ignore"):
            cov = np.linalg.inv(res.jac.T @ res.jac)
    except np.linalg.LinAlgError:
        cov = np.full((len(free_idx), len(free_idx)), math.nan)
    if known:
        factor = chi2 / dof if dof > 0 and chi2 > _chi2_limit(dof) else 1.0
    else:
        factor = chi2 / dof if dof > 0 else math.nan
    perr[free_idx] = np.sqrt(np.abs(np.diag(cov)) * factor)
    return p, perr, chi2, dof
