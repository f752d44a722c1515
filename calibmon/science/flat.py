"""Flat-field metrics of one amplifier: flat level, flat-pair statistics and gain.

Inputs are overscan-corrected, trimmed amplifier images, shape ``(n_rows, n_cols)``, in
adu (float32 preferred; other dtypes are converted). Masks are boolean, True = bad.

Pair statistics follow cp_pipe's ``PhotonTransferCurveExtractTask``
(``measureMeanVarCov``): clipped means of the two flats, the variance of their
mean-ratio-scaled difference, and the covariances of that difference computed by FFT
as in Astier et al. 2019 ("The shape of the photon transfer curve of CCD sensors",
A&A 629, A36; arXiv:1905.08677), appendix A.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft

from calibmon.science.robust import (
    DEFAULT_MAXITER,
    DEFAULT_NSIGMA,
    clipped_stats_fast,
    fast_sum,
)

# Clipping of the pair statistics: cp_pipe PhotonTransferCurveExtractConfig
# nSigmaClipPtc = 5.5 and nIterSigmaClipPtc = 3.
PTC_CLIP_NSIGMA = 5.5
PTC_CLIP_MAXITER = 3

# Fewer good pixels than this and a pair's covariances are not measured: cp_pipe
# PhotonTransferCurveExtractConfig.minNumberGoodPixelsForCovariance = 10000.
MIN_PAIR_PIXELS_COVARIANCE = 10_000
# A pair's mean and variance need far fewer pixels: the variance of N pixels is known to
# √(2/N) (relative), 3.2 % at 2000 pixels — a measurement with a stated error, which the
# gain's error carries (:func:`gain_from_pairs`). Below 2000 the 5.5σ clipping itself is
# unreliable (a handful of pixels beyond 4σ). cp_pipe's 10 000 is a covariance minimum.
MIN_PAIR_PIXELS = 2_000

# Up to this lag the covariances are summed directly over shifted slices (~3 ms a lag on
# an ITL amp: 5 lags for max_lag=1, 13 for 2) instead of by FFT (~40–50 ms whatever the
# range, measured); both give the same numbers (tested). At max_lag=2 they break even.
DIRECT_COV_MAX_LAG = 1

# Physical range of a CCD gain, e-/adu: the bounds cp_pipe's PhotonTransferCurveSolveTask
# puts on the gain of its initial EXPAPPROXIMATION fit ([0.1, 10]).
GAIN_MIN_E_PER_ADU = 0.1
GAIN_MAX_E_PER_ADU = 10.0

# A pair is used for the gain only if the photon (shot) variance var − rn² is at least
# this fraction of the total variance. Below it the read-noise subtraction dominates the
# error and a dead amp (flat = bias + noise, shot fraction ≈ 0) is not mistaken for a
# measurement. A flat at 100 adu with gain 1.5 and 6 adu read noise has 0.65. calibmon choice.
MIN_SHOT_VARIANCE_FRACTION = 0.5

# Brighter-fatter a00 (1/electron) assumed for an amp whose PTC was never measured, and
# its spread (1σ) carried into the gain's error: Astier et al. 2019 (Fig. 11) find
# a00 ≈ −2e-6 /e- for LSST sensors; ITL and e2v amps range over about −1 … −3e-6.
NOMINAL_A00_PER_E = -2.0e-6
NOMINAL_A00_ERR_PER_E = 1.0e-6


@dataclass(frozen=True, eq=False)  # holds arrays: identity equality
class PairStats:
    """Statistics of one pair of flats taken at the same exposure time.

    Attributes
    ----------
    mu_adu : float, adu
        ``(μ₁ + μ₂)/2``, the mean of the two frames' clipped means (5.5σ, 3 iterations).
    var_adu2 : float, adu²
        Per-frame variance: half the clipped variance (5.5σ, 3 iterations) of the
        mean-ratio-scaled difference ``(μ₂·F₁ − μ₁·F₂)/μ``. The scaling cancels a
        different illumination level of the two frames; for μ₁ = μ₂ it is ``F₁ − F₂``.
        Equals ``μ/g + σ_read²`` (adu) for a linear sensor without correlations.
    cov : (max_lag+1, max_lag+1) float64 array, adu², or None
        Per-frame covariances ``cov[i, j]`` = half the covariance of the difference
        image at lag ``i`` columns (serial direction, x) and ``j`` rows (parallel, y),
        averaged over (i, j) and (i, −j) — Astier et al. 2019 C_ij; ``cov[0, 0]`` is
        the variance over the same pixels. None when ``max_lag == 0`` or unmeasurable.
    n_pixels : int
        Pixels kept by the clipping of the difference image.
    reason : str
        Empty when measured; otherwise why not (values are then NaN).
    """

    mu_adu: float
    var_adu2: float
    cov: np.ndarray | None
    n_pixels: int
    reason: str = ""


def flat_level(flat_adu: np.ndarray, bad_mask: np.ndarray | None = None) -> float:
    """Clipped mean of a flat (3σ, up to 5 iterations), adu.

    Parameters
    ----------
    flat_adu : (n_rows, n_cols) float array, adu, overscan corrected and trimmed.
    bad_mask : optional (n_rows, n_cols) bool, True = pixel not used.

    Returns
    -------
    float, adu; NaN when fewer than 2 usable pixels.
    """
    mean, _, _ = clipped_stats_fast(flat_adu, DEFAULT_NSIGMA, DEFAULT_MAXITER, bad_mask=bad_mask)
    return mean


def pair_statistics(
    flat1_adu: np.ndarray,
    flat2_adu: np.ndarray,
    *,
    max_lag: int = 0,
    mask: np.ndarray | None = None,
) -> PairStats:
    """Mean, variance and (optionally) covariances of a pair of flats.

    Parameters
    ----------
    flat1_adu, flat2_adu : (n_rows, n_cols) float arrays, adu
        Overscan-corrected, trimmed flats of the same amp and exposure time (bias
        subtraction is not needed: it cancels in the difference, but the means then
        include the bias residual).
    max_lag : int
        Largest lag (in pixels, both directions) of the covariances; 0 computes none.
        cp_pipe measures up to 10 (``maximumRangeCovariancesAstier``).
    mask : optional (n_rows, n_cols) bool, True = pixel not used (defects, edges).

    Returns
    -------
    PairStats
        See the class for the exact definitions. With fewer than
        :data:`MIN_PAIR_PIXELS` usable pixels every value is NaN and ``reason`` says why.

    Notes
    -----
    If either clipped mean is not positive (dead amp, bias-only frames) the difference
    is taken unscaled, ``F₁ − F₂``, so the variance stays the read-noise variance; the
    gain estimators then reject the pair. Non-finite pixels are treated as masked.
    """
    f1 = _as_float(flat1_adu)
    f2 = _as_float(flat2_adu)
    if f1.ndim != 2 or f1.shape != f2.shape:
        raise ValueError(f"flats must be 2-D and of one shape, got {f1.shape} and {f2.shape}")
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    bad = None
    if mask is not None:
        bad = np.asarray(mask, dtype=bool)
        if bad.shape != f1.shape:
            raise ValueError(f"mask shape {bad.shape} != image shape {f1.shape}")
    fin = np.isfinite(f1) & np.isfinite(f2)
    if not fin.all():
        bad = ~fin if bad is None else bad | ~fin
    n_good = f1.size if bad is None else f1.size - int(np.count_nonzero(bad))
    if max_lag > 0 and n_good < MIN_PAIR_PIXELS_COVARIANCE:
        return _nan_pair(
            f"only {n_good} usable pixels for covariances (< {MIN_PAIR_PIXELS_COVARIANCE})",
            n_good,
        )
    if n_good < MIN_PAIR_PIXELS:
        return _nan_pair(f"only {n_good} usable pixels (< {MIN_PAIR_PIXELS})", n_good)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd values: NaN, not warnings
        return _pair(f1, f2, bad, n_good, max_lag)


def _pair(
    f1: np.ndarray, f2: np.ndarray, bad: np.ndarray | None, n_good: int, max_lag: int
) -> PairStats:
    """The arithmetic of :func:`pair_statistics` on validated inputs."""
    mu1, _, _ = clipped_stats_fast(f1, PTC_CLIP_NSIGMA, PTC_CLIP_MAXITER, bad_mask=bad)
    mu2, _, _ = clipped_stats_fast(f2, PTC_CLIP_NSIGMA, PTC_CLIP_MAXITER, bad_mask=bad)
    mu = 0.5 * (mu1 + mu2)
    if not (math.isfinite(mu1) and math.isfinite(mu2)):
        return _nan_pair("clipped mean not finite", n_good)

    # (μ₂F₁ − μ₁F₂)/μ, as cp_pipe's measureMeanVarCov; unscaled if a mean is not positive.
    dtype = f1.dtype.type
    if mu1 > 0.0 and mu2 > 0.0:
        diff = np.multiply(f1, dtype(mu2 / mu))
        diff -= np.multiply(f2, dtype(mu1 / mu))
    else:
        diff = np.subtract(f1, f2)
    if bad is not None:
        diff[bad] = 0.0  # masked pixels never enter the statistics below

    dmean, dstd, n_used, keep = clipped_stats_fast(
        diff, PTC_CLIP_NSIGMA, PTC_CLIP_MAXITER, bad_mask=bad, return_mask=True
    )
    if n_used < MIN_PAIR_PIXELS or keep is None:
        return _nan_pair(f"only {n_used} pixels left after clipping", n_used)
    var = 0.5 * dstd * dstd
    if not (math.isfinite(mu) and math.isfinite(var)):
        return _nan_pair("non-finite statistics (absurd pixel values?)", n_used)

    cov = None
    if max_lag > 0:
        diff -= dtype(dmean)
        diff[~keep] = 0.0
        if max_lag <= DIRECT_COV_MAX_LAG:
            cov = _covariances_direct(diff, keep, max_lag)
        else:
            cov = _covariances_fft(diff, keep, max_lag)
        if cov is None:
            reason = f"too few pixel pairs for lags up to {max_lag}"
            return PairStats(float(mu), float(var), None, int(n_used), reason)
    return PairStats(mu_adu=float(mu), var_adu2=float(var), cov=cov, n_pixels=int(n_used))


def _covariances_fft(
    d: np.ndarray, keep: np.ndarray, max_lag: int, dtype: type = np.float32
) -> np.ndarray | None:
    """Per-frame covariances of a masked difference image, Astier et al. 2019 appendix A.

    ``d`` is the difference image with its mean removed and zeros where ``keep`` is False.
    With D, W the zero-padded FFTs of ``d`` and ``keep``, the inverse FFTs of D·D*, D·W*
    and W·W* give, for each lag τ, Σ d(p+τ)d(p), the sums of each member of the valid
    pairs, and the number of valid pairs; the padding (≥ image + lag) makes the circular
    correlations exact for lags up to ``max_lag``.

    The transforms run in float32 by default (2× faster than float64 on an ITL amp): their
    round-off is ~10⁻⁶ of Σd², i.e. ~10⁻⁶ of C₀₀ on every lag, a thousand times below the
    statistical error of a covariance from 10⁶ pixels (C₀₀/√N = 10⁻³ C₀₀).
    """
    n_rows, n_cols = d.shape
    shape = (
        scipy.fft.next_fast_len(n_rows + max_lag + 1, real=True),
        scipy.fft.next_fast_len(n_cols + max_lag + 1, real=True),
    )
    tim = scipy.fft.rfft2(d.astype(dtype, copy=False), s=shape)
    tmask = scipy.fft.rfft2(keep.astype(dtype), s=shape)
    p_cov = scipy.fft.irfft2(tim * tim.conj(), s=shape).astype(np.float64)
    p_mean = scipy.fft.irfft2(tim * tmask.conj(), s=shape).astype(np.float64)
    p_count = np.rint(scipy.fft.irfft2(tmask * tmask.conj(), s=shape).astype(np.float64))

    lags = np.arange(max_lag + 1)
    dy = lags[None, :]  # row lag (j)
    dx = lags[:, None]  # column lag (i)

    def one_side(sy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = p_count[sy, dx]
        with np.errstate(divide="ignore", invalid="ignore"):
            c = p_cov[sy, dx] / n - p_mean[sy, dx] * p_mean[-sy, -dx] / (n * n)
        return c, n

    c1, n1 = one_side(np.broadcast_to(dy, (max_lag + 1, max_lag + 1)))
    c2, n2 = one_side(np.broadcast_to(-dy, (max_lag + 1, max_lag + 1)))
    if (n1 < 1).any() or (n2 < 1).any():
        return None
    both = (dx != 0) & (dy != 0)
    cov = np.where(both, 0.5 * (c1 + c2), c1)
    return 0.5 * cov  # difference of two frames → per-frame covariance


def _covariances_direct(d: np.ndarray, keep: np.ndarray, max_lag: int) -> np.ndarray | None:
    """Same result as :func:`_covariances_fft`, summing products of shifted slices.

    For the lag τ = (dy rows, dx columns) the pairs are (p, p+τ) with both pixels kept;
    with d zero where not kept, Σd(p)d(p+τ), Σd(p)w(p+τ), Σw(p)d(p+τ) and Σw(p)w(p+τ) over
    the overlap of the image and its shift give the covariance as in Astier's appendix A.
    """
    n_rows, n_cols = d.shape
    w = keep.astype(d.dtype)

    def lag_cov(dx: int, dy: int) -> float:
        r0, r1 = max(0, -dy), n_rows - max(0, dy)
        a, b = d[r0:r1, : n_cols - dx], d[r0 + dy : r1 + dy, dx:]
        wa, wb = w[r0:r1, : n_cols - dx], w[r0 + dy : r1 + dy, dx:]
        n = fast_sum(wa * wb)
        if n < 1:
            return math.nan
        s_ab = fast_sum(a * b)
        s_a = fast_sum(a * wb)
        s_b = fast_sum(wa * b)
        return s_ab / n - s_a * s_b / (n * n)

    cov = np.empty((max_lag + 1, max_lag + 1))
    for dx in range(max_lag + 1):
        for dy in range(max_lag + 1):
            c = lag_cov(dx, dy)
            if dx and dy:
                c = 0.5 * (c + lag_cov(dx, -dy))
            cov[dx, dy] = c
    if not np.all(np.isfinite(cov)):
        return None
    return 0.5 * cov  # difference of two frames → per-frame covariance


def gain_from_flat_pairs(pairs: Sequence[PairStats], read_noise_adu: float) -> tuple[float, str]:
    """Gain from flat pairs: g = μ / (var − σ_read²), median over the pairs.

    Parameters
    ----------
    pairs : sequence of :class:`PairStats`
        Usually pairs of the daily flats, all at one level.
    read_noise_adu : float, adu
        Read noise of the amp (per frame). NaN: not subtracted, which biases the gain
        low by the fraction σ_read²/var (≈ 0.1 % at 30 000 adu), said in the reason.

    Returns
    -------
    gain : float, electron/adu
        Median of the per-pair gains that pass the checks (median: robust to one bad
        pair; its efficiency loss is irrelevant next to each pair's ≈ √(2/N) ≈ 0.14 %).
        The estimate is that of a linear sensor without pixel correlations: brighter-
        fatter (a₀₀ < 0) makes it high by ≈ −a₀₀·μ·g, a quadratic nonlinearity
        s = x + k₂x² by ≈ −3k₂μ (first order).
    reason : str
        Empty on success; otherwise why the gain is NaN (or a caveat).

    Notes
    -----
    A pair is rejected when its mean is not positive, its shot variance var − σ_read²
    is below :data:`MIN_SHOT_VARIANCE_FRACTION` of the variance (dead amp: flat =
    bias + noise), or its gain falls outside [:data:`GAIN_MIN_E_PER_ADU`,
    :data:`GAIN_MAX_E_PER_ADU`].
    """
    if len(pairs) == 0:
        return math.nan, "no flat pairs"
    notes = []
    rn2 = 0.0
    if read_noise_adu is None or not math.isfinite(read_noise_adu):
        notes.append("read noise unknown, not subtracted")
    else:
        rn2 = float(read_noise_adu) ** 2
    gains = []
    rejected = {"unmeasured": 0, "no signal": 0, "out of range": 0}
    for p in pairs:
        mu, var = float(p.mu_adu), float(p.var_adu2)
        if not (math.isfinite(mu) and math.isfinite(var)) or var <= 0.0:
            rejected["unmeasured"] += 1
            continue
        shot = var - rn2
        if mu <= 0.0 or shot < MIN_SHOT_VARIANCE_FRACTION * var:
            rejected["no signal"] += 1
            continue
        g = mu / shot
        if not GAIN_MIN_E_PER_ADU <= g <= GAIN_MAX_E_PER_ADU:
            rejected["out of range"] += 1
            continue
        gains.append(g)
    detail = ", ".join(f"{v} {k}" for k, v in rejected.items() if v)
    if detail:
        notes.append(f"pairs rejected: {detail}")
    if not gains:
        if rejected["no signal"]:
            notes.insert(0, "no photon signal in any pair (dead amp or unilluminated?)")
        else:
            notes.insert(0, "no usable flat pair")
        return math.nan, "; ".join(notes)
    return float(np.median(gains)), "; ".join(notes)


@dataclass(frozen=True)
class GainEstimate:
    """Flat-pair gain with its 1σ error (electron/adu) and how it was corrected.

    Attributes
    ----------
    gain, error : float, electron/adu
    n_pairs : int
        Pairs used.
    error_stat, error_sys : float, electron/adu
        The statistical part (pair variances, combined over pairs) and the part common
        to all pairs (read noise, a00, k2 uncertainties), added in quadrature in ``error``.
    bf_correction : float
        Fractional correction applied for brighter-fatter and nonlinearity at the
        pairs' mean level (g_corrected / g_uncorrected − 1).
    reason : str
        Empty on success; otherwise why the gain is NaN, or notes.
    """

    gain: float
    error: float
    n_pairs: int
    error_stat: float = math.nan
    error_sys: float = math.nan
    bf_correction: float = 0.0
    reason: str = ""


def gain_from_pair_model(
    mu_adu: float, var_adu2: float, read_noise_adu: float, a00_per_e: float, k2_per_adu: float
) -> float:
    """Gain g (e-/adu) of one pair, inverting the Astier et al. 2019 eq. 16 PTC model.

    The measured mean and per-frame variance are modelled as
    ``μ_m = μ + k₂μ²`` (output-chain nonlinearity, μ the linear signal in adu) and
    ``var_m = (1 + 2k₂μ)²·C₀₀(μ) + σ_read²`` with
    ``C₀₀(μ) = (exp(2·a₀₀·g·μ) − 1)/(2·a₀₀·g²)`` (brighter-fatter). Given a₀₀ (1/e-) and
    k₂ (1/adu) the linear μ and C₀₀ follow to first order in k₂, and g solves
    ``g = (μ/C₀₀)·h(2a₀₀gμ)`` with ``h(y) = (eʸ − 1)/y``, a contraction for |2a₀₀gμ| ≪ 1
    (≈ 0.06 at 15 ke-): five fixed-point steps converge to < 1e-9. With a₀₀ = k₂ = 0 this
    is the contract's ``μ / (var − σ_read²)``. NaN when the shot variance is not positive.
    """
    mu_lin = mu_adu - k2_per_adu * mu_adu * mu_adu
    c00 = (var_adu2 - read_noise_adu * read_noise_adu) / (1.0 + 2.0 * k2_per_adu * mu_lin) ** 2
    if not (mu_lin > 0.0 and c00 > 0.0):
        return math.nan
    g0 = mu_lin / c00
    g = g0
    for _ in range(5):
        y = 2.0 * a00_per_e * g * mu_lin
        g = g0 * (math.expm1(y) / y if y != 0.0 else 1.0)
    return g


def gain_from_pairs(
    pairs: Sequence[PairStats],
    read_noise_adu: float,
    *,
    read_noise_err_adu: float = 0.0,
    a00_per_e: float = 0.0,
    a00_err_per_e: float = 0.0,
    k2_per_adu: float = 0.0,
    k2_err_per_adu: float = 0.0,
    outlier_nsigma: float = 5.0,
) -> GainEstimate:
    """Gain from flat pairs at any levels (daily flats, daily_PTC pairs), with its error.

    Each pair gives g_i by :func:`gain_from_pair_model` (brighter-fatter and nonlinearity
    corrected when a₀₀/k₂ are known; the contract's μ/(var − σ_read²) otherwise). Its
    statistical error follows from the variance of a variance of N Gaussian pixels,
    σ(var)/var = √(2/N) (a per-frame variance is half that of the difference of the two
    frames, same relative error), so σ(g_i)/g_i = √(2/N)·var/C₀₀ (the mean's own error,
    √(var/N)/μ, is ~100× smaller and neglected). Pairs are combined by inverse-variance
    weighting after rejecting pairs more than ``outlier_nsigma`` of their own error
    from the median (a flat with a glitch, a pair taken across a lamp change).

    The error common to all pairs comes from σ_read (∂g/∂σ_read² = g/C₀₀), a₀₀
    (∂ln g/∂a₀₀ ≈ g·μ, the signal in electrons) and k₂ (∂ln g/∂k₂ ≈ 3μ); it is added in
    quadrature. Pairs are rejected as in :func:`gain_from_flat_pairs` (no signal, out
    of the physical range).
    """
    if len(pairs) == 0:
        return GainEstimate(math.nan, math.nan, 0, reason="no flat pairs")
    rn = float(read_noise_adu) if read_noise_adu is not None else math.nan
    notes: list[str] = []
    if not math.isfinite(rn):
        notes.append("read noise unknown, not subtracted")
        rn, read_noise_err_adu = 0.0, 0.0
    gains, errs, sys_parts, raw = [], [], [], []
    rejected = {"unmeasured": 0, "no signal": 0, "out of range": 0}
    for p in pairs:
        mu, var, n = float(p.mu_adu), float(p.var_adu2), int(p.n_pixels)
        if not (math.isfinite(mu) and math.isfinite(var)) or var <= 0.0 or n < 2:
            rejected["unmeasured"] += 1
            continue
        shot = var - rn * rn
        if mu <= 0.0 or shot < MIN_SHOT_VARIANCE_FRACTION * var:
            rejected["no signal"] += 1
            continue
        g = gain_from_pair_model(mu, var, rn, a00_per_e, k2_per_adu)
        if not (math.isfinite(g) and GAIN_MIN_E_PER_ADU <= g <= GAIN_MAX_E_PER_ADU):
            rejected["out of range"] += 1
            continue
        gains.append(g)
        raw.append(mu / shot)
        errs.append(g * math.sqrt(2.0 / n) * var / shot)
        sys_parts.append(
            (
                g * 2.0 * rn * read_noise_err_adu / shot,
                g * g * mu * a00_err_per_e,
                g * 3.0 * mu * k2_err_per_adu,
            )
        )
    detail = ", ".join(f"{v} {k}" for k, v in rejected.items() if v)
    if detail:
        notes.append(f"pairs rejected: {detail}")
    if not gains:
        lead = "no photon signal in any pair (dead amp or unilluminated?)"
        if not rejected["no signal"]:
            lead = "no usable flat pair"
        return GainEstimate(math.nan, math.nan, 0, reason="; ".join([lead, *notes]))
    g_arr, e_arr = np.asarray(gains), np.asarray(errs)
    med = float(np.median(g_arr))
    keep = np.abs(g_arr - med) <= outlier_nsigma * e_arr
    if not keep.any():
        keep = np.ones_like(keep)
    if not keep.all():
        notes.append(f"{int((~keep).sum())} pair(s) more than {outlier_nsigma}σ from the median")
    w = 1.0 / e_arr[keep] ** 2
    g_mean = float(np.sum(w * g_arr[keep]) / np.sum(w))
    err_stat = float(1.0 / math.sqrt(np.sum(w)))
    sp = np.asarray(sys_parts)[keep]
    # common to all pairs: weight-averaged partial errors, components in quadrature
    err_sys = float(np.sqrt(np.sum((np.sum(w[:, None] * sp, axis=0) / np.sum(w)) ** 2)))
    raw_mean = float(np.sum(w * np.asarray(raw)[keep]) / np.sum(w))
    return GainEstimate(
        gain=g_mean,
        error=math.hypot(err_stat, err_sys),
        n_pairs=int(keep.sum()),
        error_stat=err_stat,
        error_sys=err_sys,
        bf_correction=g_mean / raw_mean - 1.0,
        reason="; ".join(notes),
    )


def flat_level_error(frame_means_adu: Sequence[float]) -> float:
    """1σ error (adu) of the mean level of a set of flats from their frame-to-frame
    scatter: std(ddof=1)/√n (lamp flicker dominates a flat's level; the pixel noise of
    one frame's mean over 10⁶ pixels is ~10⁻⁴ of it). NaN with fewer than 2 frames."""
    m = np.asarray([x for x in frame_means_adu if math.isfinite(x)], dtype=float)
    if m.size < 2:
        return math.nan
    return float(np.std(m, ddof=1) / math.sqrt(m.size))


def _as_float(a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype != np.float32 and arr.dtype != np.float64:
        arr = arr.astype(np.float32)
    return arr


def _nan_pair(reason: str, n: int) -> PairStats:
    return PairStats(math.nan, math.nan, None, int(n), reason)
