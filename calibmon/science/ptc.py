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
1/σ(var) ∝ 1/var (the variance of a variance is 2var²/N). The PTC turnoff is the highest
mean kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

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
# cp_pipe fails an amp with fewer points than the 3 parameters; calibmon asks for one more
# so that the parameter errors (scaled by the reduced χ²) exist.
PTC_MIN_POINTS = 4
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

# a00 is ~1e-6 1/e: fit it in units of 1e-6 so the three parameters are O(1).
_A00_SCALE = 1e-6


@dataclass(frozen=True, eq=False)  # holds arrays: identity equality
class PtcResult:
    """Result of :func:`fit_ptc_astier` for one amp.

    Attributes
    ----------
    gain : float, electron/adu
        Fitted g (``ptc_gain``).
    gain_err : float, electron/adu
        1σ error of g from the fit covariance scaled by the reduced χ² (as cp_pipe).
    noise_e : float, electron
        √|n|: the noise term of the fit (``ptc_noise``). cp_pipe reports the same
        quantity; n/g² is the read-noise variance in adu² (so noise_e = √(n/g²)·g).
    a00 : float, 1/electron
        Brighter-fatter coefficient (``ptc_a00``); negative for brighter-fatter.
    turnoff_adu : float, adu
        Largest mean kept by the fit (``ptc_turnoff``). If the highest point of the ramp
        is kept the ramp did not reach saturation: the value is that point, and
        ``reason`` says so.
    full_well_e : float, electron
        ``turnoff_adu × gain`` (``full_well``); NaN when the ramp did not reach
        saturation, i.e. no point above the turnoff has a variance below the model by
        more than ``sigma_cut``·√var (the turnoff is then only a lower limit, and a lower
        limit would trip the full-well alert).
    mu_adu, var_adu2 : (n_points,) float64, adu and adu²
        The input points, in input order.
    used : (n_points,) bool
        Points kept by the final fit.
    model_var_adu2 : (n_points,) float64, adu²
        The fitted model at every input mean (NaN where the mean is not finite).
    reason : str
        Empty when everything was measured; otherwise what is NaN and why, or a flag.
    a00_err : float, 1/electron
    noise_err_e : float, electron
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
        Pixels behind each variance (:attr:`PairStats.n_pixels`). cp_pipe scales the
        outlier residual by √var, which presumes ~10⁶ pixels an amp: the statistical
        error of a variance from N pixels is var·√(2/N) (0.14 % for 10⁶, 1.2 % for
        15 000 pixels). The residual scale is max(√var, var·√(2/N)), so on small amps
        (test stands, binned data, simulations) good points are not cut as outliers;
        on full-size amps this is cp_pipe's √var exactly.

    Returns
    -------
    PtcResult
        See the class for each quantity's definition. Never raises for bad data:
        too few points, no photon signal (dead amp), failed fits give NaN values with
        ``reason``; a ramp that does not reach saturation gives ``full_well_e = NaN``
        and ``turnoff_adu`` = its highest point, flagged in ``reason``.

    Notes
    -----
    Steps (cp_pipe ``fitPtc``): (0) points with a non-finite mean or variance, a mean
    outside (0, 10⁶) adu (``minMeanSignal``/``maxMeanSignal``) or a non-positive variance
    are never used; (1) an unweighted fit bounded as
    :data:`INITIAL_LOWER`/:data:`INITIAL_UPPER` to the points with mean ≤
    ``max_signal_initial_adu`` — and below the first point after which the variance
    falls twice in a row above :data:`MIN_VAR_PIVOT_SEARCH_ADU2`; (2) keep every point
    with |var − model|/√var < ``sigma_cut``; walking up the kept points, a kept point
    that follows a rejected one and lies more than ``max_delta_initial_adu`` above the
    previous kept point ends the curve there; refit on the kept points, ``max_iter``
    passes in all; (3) final unbounded fit weighted by 1/var.
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
            & (mu > MIN_MEAN_SIGNAL_ADU)
            & (mu < MAX_MEAN_SIGNAL_ADU)
            & (var > 0.0)
            & (var < MAX_MEAN_SIGNAL_ADU**2)
        )
    if np.count_nonzero(usable) < min_points:
        return fail(f"too few usable points: {int(np.count_nonzero(usable))} < {min_points}")

    order = np.argsort(np.where(usable, mu, np.inf), kind="stable")
    n_use = int(np.count_nonzero(usable))
    idx = order[:n_use]  # usable points, sorted by mean
    ms, vs = mu[idx], var[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.maximum(np.sqrt(vs), vs * np.sqrt(2.0 / npix[idx]))

    lowest_var = float(np.min(vs[: max(1, min(3, n_use))]))
    if float(np.max(vs)) < MIN_VARIANCE_DYNAMIC_RANGE * lowest_var:
        return fail("variance does not grow with signal: no photon signal (dead amp?)")

    # (1) initial fit range.
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
        initial = np.arange(ms.size) <= top
    if np.count_nonzero(initial) < 3:
        # Ramps starting above the initial cap: use the lowest points (≥ 3 parameters).
        initial[:] = False
        initial[: min(n_use, max(3, min_points))] = True

    keep = initial.copy()
    pars = _to_internal(np.array(INITIAL_PARS, dtype=np.float64))
    if max_iter == 0:
        keep[:] = True
        pars = _fit_bounded(ms, vs, keep, pars)
        if pars is None:
            return fail("initial PTC fit failed")
    else:
        last = None
        for _ in range(max_iter):
            fitted = _fit_bounded(ms, vs, keep, pars)
            if fitted is None:
                return fail("initial PTC fit failed")
            pars = fitted
            with np.errstate(all="ignore"):
                model = ptc_model_astier(ms, pars[0] * _A00_SCALE, pars[1], pars[2])
                resid = (vs - model) / scale
            keep = np.isfinite(resid) & (np.abs(resid) < sigma_cut)
            if np.count_nonzero(keep) < 2:
                return fail("all points rejected as outliers")
            _apply_jump_rule(ms, keep, max_delta_initial_adu)
            if last is not None and np.array_equal(keep, last):
                break
            last = keep.copy()

    n_keep = int(np.count_nonzero(keep))
    if n_keep < min_points:
        used[idx[keep]] = True
        return fail(f"too few points kept by the fit: {n_keep} < {min_points}", used)

    # (3) final weighted fit: weights 1/σ(var) ∝ 1/var (Var(var) = 2var²/N). The kept set
    # came from the previous (unweighted) model; re-select with the final model until the
    # set is stable (at most REFINE_PASSES), so a point the final fit agrees with is used
    # and the turnoff is not left one or two ramp steps early (calibmon choice).
    final = _fit_weighted(ms[keep], vs[keep], pars)
    for _ in range(REFINE_PASSES if max_iter > 0 else 0):
        if final is None:
            break
        with np.errstate(all="ignore"):
            model = ptc_model_astier(ms, final[0][0] * _A00_SCALE, final[0][1], final[0][2])
            resid = (vs - model) / scale
        new_keep = np.isfinite(resid) & (np.abs(resid) < sigma_cut)
        _apply_jump_rule(ms, new_keep, max_delta_initial_adu)
        if np.array_equal(new_keep, keep) or np.count_nonzero(new_keep) < min_points:
            break
        keep = new_keep
        final = _fit_weighted(ms[keep], vs[keep], final[0])
    if final is None:
        used[idx[keep]] = True
        return fail("final PTC fit failed", used)
    p, perr = final
    a00, gain, noise2 = p[0] * _A00_SCALE, p[1], p[2]
    a00_err, gain_err, noise2_err = perr[0] * _A00_SCALE, perr[1], perr[2]
    used[idx[keep]] = True
    with np.errstate(invalid="ignore", over="ignore"):
        model_all = np.where(
            np.isfinite(mu), ptc_model_astier(np.nan_to_num(mu), a00, gain, noise2), math.nan
        )

    notes = []
    if not (math.isfinite(gain) and GAIN_RANGE[0] <= gain <= GAIN_RANGE[1]):
        return PtcResult(
            math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
            mu, var, used, model_all, f"fitted gain {gain:.4g} e-/adu outside {GAIN_RANGE}",
        )  # fmt: skip
    noise_e = math.sqrt(abs(noise2))
    noise_err = 0.5 * noise2_err / noise_e if noise_e > 0.0 else math.nan
    if noise2 < 0.0:
        notes.append("fitted noise term negative; noise_e = sqrt(|n|)")

    turnoff = float(np.max(ms[keep]))
    # Saturation shows as points above the turnoff whose variance fell below the model by
    # more than the outlier cut. Points above it with excess variance (a bad pair at the
    # top of a ramp) or on the model (cut by the jump rule) do not make the turnoff a
    # full-well measurement.
    with np.errstate(all="ignore"):
        collapsed = (vs - ptc_model_astier(ms, a00, gain, noise2)) / scale < -sigma_cut
    if np.any(~keep & (ms > turnoff) & collapsed):
        full_well = turnoff * gain
    else:
        full_well = math.nan
        if turnoff >= float(ms[-1]):
            notes.append(
                "ramp did not reach saturation: turnoff is the highest ramp point (a lower "
                "limit); full_well not measured"
            )
        else:
            notes.append(
                "points above the turnoff were rejected without a saturation roll-off "
                "(outliers or the jump rule): full_well not measured"
            )
    return PtcResult(
        gain=float(gain),
        gain_err=float(gain_err),
        noise_e=float(noise_e),
        a00=float(a00),
        turnoff_adu=turnoff,
        full_well_e=float(full_well),
        mu_adu=mu,
        var_adu2=var,
        used=used,
        model_var_adu2=model_all,
        reason="; ".join(notes),
        a00_err=float(a00_err),
        noise_err_e=float(noise_err),
    )


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


def _fit_weighted(
    x: np.ndarray, y: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Final fit weighted by 1/y; returns (params, 1σ errors) in internal units."""
    n = x.size
    w = 1.0 / y
    try:
        with np.errstate(all="ignore"):
            res = least_squares(_residuals, start, method="lm", args=(x, y, w))
    except (ValueError, np.linalg.LinAlgError):
        return None
    p = res.x
    if not np.all(np.isfinite(p)):
        return None
    perr = np.full(3, math.nan)
    if n > 3:
        chi2_red = float(np.sum(res.fun**2)) / (n - 3)
        try:
            with np.errstate(all="ignore"):
                cov = np.linalg.inv(res.jac.T @ res.jac) * chi2_red
                perr = np.sqrt(np.abs(np.diag(cov)))
        except np.linalg.LinAlgError:
            pass
    return p, perr
