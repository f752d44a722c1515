"""Dark current of one amplifier from a combined (master) dark.

``dark_current`` is the median and ``dark_current_p95`` the 95th percentile of the
bias-subtracted combined dark divided by the dark time, in electron/s (DESIGN §4). The
conversion to electrons uses the amp's gain: the caller says which gain (PTC, flat pair
or nominal) in provenance.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from calibmon.science.robust import SIGMA_PER_MAD, interpolated_quantile, partition_median

# The upper statistic reported: 95th percentile (DESIGN §4 ``dark_current_p95``).
DARK_PERCENTILE = 95.0


# Normal quantile of the 95th percentile, Φ⁻¹(0.95): the offset of a Gaussian's 95th
# percentile from its median, in σ.
Z95 = 1.6448536269514722
# The p95 is estimated on block means of the rate image whose noise σ_block is at most
# this (e-/s): the deconvolution of a noise floor c = Z95·σ_block from the 95th
# percentile leaves ≈ √(2·c·σ_q) of ambiguity (σ_q the quantile's sampling error), a few
# 1e-3 e-/s at σ_block = 0.01 — far below the 0.2 e-/s spec it is judged against.
P95_BLOCK_NOISE_TARGET_E_PER_S = 0.01
# Blocks are never so large that fewer than this many remain: a 95th percentile of 200
# values has 10 above it (sampling error ≈ 0.015/f(q), f the density at q).
P95_MIN_BLOCKS = 200
# Defect pixels are left out of the p95's blocks only while they are a small fraction.
P95_MAX_EXCLUDED_FRACTION = 0.02


@dataclass(frozen=True)
class DarkMetrics:
    """Dark-current statistics of one amp, electron/s.

    Attributes
    ----------
    dark_current : float, electron/s
        Median over the usable pixels (interpolated quantile).
    dark_current_p95 : float, electron/s
        95th percentile of the dark-current *distribution*: the median plus the spread
        of the upper tail with the master's noise removed (:func:`dark_metrics`); may fall
        below the median by noise when the dark current has no spread (unbiased).
    reason : str
        Empty when measured; otherwise why the values are NaN.
    n_pixels : int
        Pixels used.
    dark_current_err, dark_current_p95_err : float, electron/s
        1σ statistical errors (NaN when no noise model was given).
    block : int
        Side of the square blocks the p95 was estimated on (1 = pixels).
    noise_floor_e_per_s : float, electron/s
        Z95·σ of the master's noise at that block size, removed from the p95 (0 without
        a noise model).
    pixel_noise_e_per_s : float, electron/s
        σ of the master dark rate's noise per pixel (NaN without a noise model).
    """

    dark_current: float
    dark_current_p95: float
    reason: str = ""
    n_pixels: int = 0
    dark_current_err: float = math.nan
    dark_current_p95_err: float = math.nan
    block: int = 1
    noise_floor_e_per_s: float = 0.0
    pixel_noise_e_per_s: float = math.nan


class MasterNoise(Protocol):
    """The noise of a master rate image (electron/s), e.g. :class:`HalfDifferenceNoise`."""

    def block_var(self, b: int) -> float:
        """Variance of the noise averaged over b×b blocks ((e-/s)²; b = 1: per pixel)."""

    def mean_var(self) -> float:
        """Variance of the noise's mean over the whole image ((e-/s)²)."""

    def band_var(self, b: int) -> float:
        """Variance of the noise averaged over bands of b full rows ((e-/s)²)."""


def half_difference(stack: np.ndarray) -> tuple[np.ndarray, float]:
    """Noise realisation of a stack's mean: mean(even frames) − mean(odd frames).

    Parameters
    ----------
    stack : (n_frames, n_rows, n_cols) float, any unit; n_frames ≥ 2.

    Returns
    -------
    diff : (n_rows, n_cols) float32
        Everything fixed (signal, defects, bias structure) cancels; what is left is the
        frames' noise (read, row-level overscan, shot), with the same spatial correlations.
    factor : float
        Var(mean of all frames) = factor · Var(diff): with n_a, n_b frames in the halves
        and N = n_a + n_b, Var(diff) = σ²(1/n_a + 1/n_b) and Var(mean) = σ²/N, so
        factor = n_a·n_b/N². (The master is a clipped mean; for Gaussian noise its
        efficiency differs from the mean's by < 2 %.)
    """
    n = stack.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 frames, got {n}")
    a = stack[0::2].mean(axis=0, dtype=np.float64)
    b = stack[1::2].mean(axis=0, dtype=np.float64)
    na, nb = (n + 1) // 2, n // 2
    return (a - b).astype(np.float32), na * nb / float(n * n)


def block_means(image: np.ndarray, b: int) -> np.ndarray:
    """Means over b×b blocks (edges cropped; NaNs ignored), float64, shape (rows//b, cols//b)."""
    img = np.asarray(image)
    r, c = (img.shape[0] // b) * b, (img.shape[1] // b) * b
    if b <= 1:
        return img.astype(np.float64, copy=False)
    blocks = img[:r, :c].reshape(r // b, b, c // b, b)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(blocks, axis=(1, 3), dtype=np.float64)


def robust_var(x: np.ndarray) -> float:
    """(1.4826·MAD)² of the finite values: a variance that ignores a few defects."""
    v = np.array(x, dtype=np.float64).ravel()  # a fresh copy: reordered in place below
    finite = np.isfinite(v)
    if not finite.all():
        v = v[finite]
    if v.size < 2:
        return math.nan
    # np.median's values without its copies: partition v in place, then |v − med| into v.
    med = partition_median(v)
    np.subtract(v, med, out=v)
    np.abs(v, out=v)
    return float((SIGMA_PER_MAD * partition_median(v)) ** 2)


class HalfDifferenceNoise:
    """:class:`MasterNoise` from half-differences of the stacks a master was built from.

    ``parts`` are ``(diff, factor, scale)`` from :func:`half_difference` of each stack
    that enters the master (the darks; the biases subtracted from them), with ``scale``
    converting the diff's unit to electron/s (gain / dark time). The master's noise
    variance at block size b is Σ factor·scale²·Var(block_means(diff, b)), measured
    robustly (a hot pixel's shot noise does not inflate it), so it holds whatever the
    noise's spatial correlations. The variance of the image mean comes from the diff's
    row means — rows are independent, but the pixels of one row share its overscan
    level, a correlation block means would miss — as Var(row means)/n_rows.
    """

    def __init__(self, parts: Sequence[tuple[np.ndarray, float, float]]) -> None:
        self._parts = list(parts)
        self._cache: dict[int, float] = {}

    def block_var(self, b: int) -> float:
        if b not in self._cache:
            self._cache[b] = float(
                sum(f * sc * sc * robust_var(block_means(d, b)) for d, f, sc in self._parts)
            )
        return self._cache[b]

    def band_var(self, b: int) -> float:
        key = -b
        if key not in self._cache:
            total = 0.0
            for d, f, sc in self._parts:
                r = (d.shape[0] // b) * b
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    bands = np.nanmean(d[:r].reshape(r // b, -1), axis=1, dtype=np.float64)
                total += f * sc * sc * robust_var(bands)
            self._cache[key] = total
        return self._cache[key]

    def mean_var(self) -> float:
        total = 0.0
        for d, f, sc in self._parts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                rows = np.nanmean(d, axis=1, dtype=np.float64)
            total += f * sc * sc * robust_var(rows) / max(int(np.isfinite(rows).sum()), 1)
        return total


def dark_current_image(
    master_dark_adu: np.ndarray,
    master_bias_adu: np.ndarray,
    dark_time_s: float,
    gain_e_per_adu: float,
) -> np.ndarray:
    """Per-pixel dark current: (dark − bias) × gain / dark time.

    Parameters
    ----------
    master_dark_adu : (n_rows, n_cols) float, adu
        Combined dark of raw frames (overscan corrected, trimmed; *not* bias subtracted).
    master_bias_adu : (n_rows, n_cols) float, adu
        Combined bias of the same amp, overscan corrected and trimmed.
    dark_time_s : float, s
        Dark time of the frames (``DARKTIME``, else ``EXPTIME``).
    gain_e_per_adu : float, electron/adu

    Returns
    -------
    (n_rows, n_cols) float32, electron/s. All NaN if the dark time or gain is not a
    positive finite number (a dark time of 0 is bad input, not a programming error).
    """
    dark = np.asarray(master_dark_adu)
    bias = np.asarray(master_bias_adu)
    if dark.shape != bias.shape or dark.ndim != 2:
        raise ValueError(f"dark {dark.shape} and bias {bias.shape} must be 2-D and equal")
    if not (_positive(dark_time_s) and _positive(gain_e_per_adu)):
        return np.full(dark.shape, np.nan, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd values → inf/NaN quietly
        out = np.subtract(dark, bias, dtype=np.float32)
        out *= np.float32(gain_e_per_adu / dark_time_s)
    return out


def dark_metrics(
    dark_rate_e_per_s: np.ndarray,
    bad_mask: np.ndarray | None = None,
    *,
    noise: MasterNoise | None = None,
    gain_rel_err: float = 0.0,
    p95_exclude: np.ndarray | None = None,
) -> DarkMetrics:
    """Median and 95th percentile of the dark current, with their errors.

    Parameters
    ----------
    dark_rate_e_per_s : (n_rows, n_cols) float, electron/s (:func:`dark_current_image`).
    bad_mask : optional (n_rows, n_cols) bool, True = pixel not used (e.g. known defects;
        the contract metric uses all pixels, so the pipeline passes None).
    noise : optional :class:`MasterNoise` of the master. Without it the p95
        is the plain 95th percentile of the pixels (noise included) and there are no errors.
    gain_rel_err : relative 1σ error of the gain that converted adu to electrons.
    p95_exclude : optional (n_rows, n_cols) bool, True = pixel left out of the p95's
        blocks: the hot pixels and columns already counted by the defect census. A block
        mean spreads a hot column over b columns of blocks (on a 100-column amp with 8-px
        blocks, 8 % of them), so the 95th percentile would report the column instead of
        the dark current of the other > 95 % of the pixels. Ignored when it covers more
        than :data:`P95_MAX_EXCLUDED_FRACTION` (then the "defects" are the amp's dark
        current and belong in its p95).

    Returns
    -------
    DarkMetrics; NaN values with a reason when no pixel is usable.

    Notes
    -----
    *p95.* A master of N short darks is mostly noise: with three 1-s darks and 6 e- read
    noise each pixel's rate scatters by ~5 e-/s, and the 95th percentile of the pixels is
    1.645 × that — read noise, not dark current. The p95 of the dark current itself is
    estimated on b×b block means, b chosen so the blocks' noise σ_b ≤
    :data:`P95_BLOCK_NOISE_TARGET_E_PER_S` (but ≥ :data:`P95_MIN_BLOCKS` blocks), and the
    noise is removed in quadrature: p95 = median + √max(0, (q₉₅ − m)² − (Z95·σ_b)²) with
    q₉₅, m the blocks' 95th percentile and median — exact when the dark current's spread
    and the noise are Gaussian. It describes the dark current on the scale of a block:
    single hot pixels are counted by ``bright_pixels``, not here (fewer than 5 % of the
    pixels are never the p95 anyway).

    *Errors.* The median's: the noise of the image mean, from the noise realisation's row
    means (row-correlated overscan noise included), plus the
    median-vs-mean term (π/2 − 1)·σ_pixel²/N. The p95's: the quantile's sampling error
    √(q(1−q)/n)/f (f the blocks' density at q95, from the 94th–96th percentiles)
    propagated through the square root (≈ √(2·c·σ_q) when the tail is all noise), in
    quadrature with the median's; and the noise model's own uncertainty (a robust
    variance of as many block differences). Both include the gain's relative error.
    """
    rate = np.asarray(dark_rate_e_per_s)
    if bad_mask is not None:
        bm = np.asarray(bad_mask, dtype=bool)
        if bm.shape != rate.shape:
            raise ValueError(f"bad_mask shape {bm.shape} != image shape {rate.shape}")
        rate = np.where(bm, np.float32(np.nan), rate)
    vals = rate.ravel()
    finite = np.isfinite(vals)
    if not finite.all():
        vals = vals[finite]
    n = int(vals.size)
    if n == 0:
        return DarkMetrics(
            math.nan, math.nan, "no usable pixels (all masked/NaN, or bad dark time or gain)", 0
        )
    # Interpolated quantiles: the combined dark of integer raws lies on a grid of
    # 1/(2·n_frames) adu, finer than many dark signals (robust.interpolated_quantile).
    med = interpolated_quantile(vals, 0.5)
    if noise is None or rate.ndim != 2:
        p95 = interpolated_quantile(vals, DARK_PERCENTILE / 100.0)
        return DarkMetrics(med, p95, "", n)
    block_img = rate
    if p95_exclude is not None:
        ex = np.asarray(p95_exclude, dtype=bool)
        if ex.shape == rate.shape and 0 < ex.mean() <= P95_MAX_EXCLUDED_FRACTION:
            block_img = np.where(ex, np.float32(np.nan), rate)
    with np.errstate(all="ignore"):
        return _dark_metrics_with_noise(rate, block_img, vals, med, noise, gain_rel_err)


def _dark_metrics_with_noise(
    rate: np.ndarray,
    block_img: np.ndarray,
    vals: np.ndarray,
    med: float,
    noise: MasterNoise,
    gain_rel_err: float,
) -> DarkMetrics:
    n = vals.size
    var1 = max(noise.block_var(1), 0.0)
    sigma_pix = math.sqrt(var1)
    b_max = max(1, int(math.sqrt(rate.size / P95_MIN_BLOCKS)))
    b = min(b_max, max(1, math.ceil(sigma_pix / P95_BLOCK_NOISE_TARGET_E_PER_S)))
    err_med = math.sqrt(max(noise.mean_var(), 0.0) + (math.pi / 2.0 - 1.0) * var1 / n)
    blocks = block_means(block_img, b).ravel()
    blocks = blocks[np.isfinite(blocks)]
    if blocks.size < 20:
        p95 = interpolated_quantile(vals, DARK_PERCENTILE / 100.0)
        return DarkMetrics(med, p95, "", n, err_med, math.nan, 1, 0.0, sigma_pix)
    sigma_b = math.sqrt(max(noise.block_var(b), 0.0))
    c = Z95 * sigma_b
    q = DARK_PERCENTILE / 100.0
    q95 = interpolated_quantile(blocks, q)
    m = interpolated_quantile(blocks, 0.5)
    d = q95 - m
    # signed square root: when the tail is all noise the excess scatters around 0 and the
    # estimate around the median, unbiased (a clipped √max(0, ·) would always add noise)
    excess2 = d * d - c * c
    e = math.copysign(math.sqrt(abs(excess2)), excess2)
    p95 = med + e
    # Blocks of one band of rows share that band's overscan-level noise: the effective
    # number of independent blocks is n/deff with the design effect
    # deff = 1 + (m − 1)ρ = m·Var(band mean)/Var(block mean), m blocks a band (Kish).
    m = max(1, rate.shape[1] // b)
    block_var = max(noise.block_var(b), 1e-300)
    deff = max(1.0, m * max(noise.band_var(b), 0.0) / block_var)
    n_eff = max(blocks.size / deff, 2.0)
    # sampling error of q95: density from the 94th–96th percentiles
    width = interpolated_quantile(blocks, q + 0.01) - interpolated_quantile(blocks, q - 0.01)
    sigma_q = math.sqrt(q * (1.0 - q) / n_eff) * (width / 0.02) if width > 0 else 0.0
    # error of e² = d² − c²: d's sampling error (2d·σ_q) and the noise model's — c² is a
    # robust (MAD) variance of as many block differences, relative error √(2·1.36/n)
    # (the MAD's efficiency for a Gaussian is 1/1.36 of the standard deviation's)
    var_e2 = (2.0 * d * sigma_q) ** 2 + (c * c * math.sqrt(2.72 / n_eff)) ** 2
    s_e2 = math.sqrt(var_e2)
    # ∂e/∂(e²) = 1/(2|e|); within √σ(e²) of zero the signed root's spread is ≈ √σ(e²)
    err_e = s_e2 / (2.0 * abs(e)) if abs(e) > math.sqrt(s_e2) else math.sqrt(s_e2)
    err_p95 = math.hypot(err_med, err_e)
    return DarkMetrics(
        dark_current=med,
        dark_current_p95=p95,
        reason="",
        n_pixels=n,
        dark_current_err=math.hypot(err_med, gain_rel_err * abs(med)),
        dark_current_p95_err=math.hypot(err_p95, gain_rel_err * abs(p95)),
        block=b,
        noise_floor_e_per_s=c,
        pixel_noise_e_per_s=sigma_pix,
    )


def _positive(x: float) -> bool:
    return x is not None and math.isfinite(x) and x > 0.0
