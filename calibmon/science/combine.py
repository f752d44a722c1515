"""Combining a stack of overscan-corrected amplifier frames into a master (per amp).

Masters are combined with a **sigma-clipped mean** (:func:`clipped_mean_stack`), as
cp_pipe's default MEANCLIP combine: 3σ about the per-pixel median, σ the amp's robust
frame-to-frame scatter. The clipped mean was chosen over the plain median because raw
frames are integers: with dark signals of a fraction of an adu, a per-pixel median of 15
integer-valued frames is itself quantised and its pixel median lands on 0 (measured on
simulated darks of 0.004 e-/s × 30 s: −100 %), while the mean is continuous; it is also
1.25× less noisy than the median (:func:`median_noise_factor`), which the daily
verification against the master needs. Cosmic rays and glitches in one frame are far
outside 3σ and are rejected. :func:`median_stack` remains for callers that want it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from calibmon.science.robust import SIGMA_PER_MAD


def median_stack(stack: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel median of ``stack`` along axis 0.

    Parameters
    ----------
    stack : (n_exp, n_rows, n_cols) float32, any unit. Modified in place (partitioned).
    out : optional (n_rows, n_cols) float32 buffer to write into.

    Returns
    -------
    (n_rows, n_cols) float32 master, same unit as the stack.
    """
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(f"stack must be (n_exp, rows, cols) with n_exp >= 1, got {stack.shape}")
    n = stack.shape[0]
    if n == 1:
        res = stack[0]
    elif n % 2:
        k = n // 2
        stack.partition(k, axis=0)
        res = stack[k]
    else:
        k = n // 2
        stack.partition((k - 1, k), axis=0)
        res = 0.5 * (stack[k - 1] + stack[k])
    if out is None:
        return np.array(res, dtype=np.float32, copy=True)
    out[...] = res
    return out


def clipped_mean_stack(stack: np.ndarray, nsigma: float = 3.0) -> np.ndarray:
    """Per-pixel sigma-clipped mean along axis 0 (one pass about the per-pixel median).

    Parameters
    ----------
    stack : (n_exp, n_rows, n_cols) float32, any unit (not modified).
    nsigma : reject values further than ``nsigma``·σ from the pixel's median, σ being the
        amp-wide robust (1.4826·MAD) scatter of the frames about their per-pixel median.

    Returns
    -------
    (n_rows, n_cols) float32 master, same unit. With 1–2 frames: their mean. A pixel whose
    values are all rejected (cannot happen for nsigma > 0 with ≥ 3 frames: the median
    itself is kept) falls back to the median.
    """
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(f"stack must be (n_exp, rows, cols) with n_exp >= 1, got {stack.shape}")
    n = stack.shape[0]
    if n <= 2:
        return stack.mean(axis=0, dtype=np.float32)
    n_rows = stack.shape[1]
    # amp-wide scatter from every k-th row (~64 rows: >= 10^5 values, plenty for 1 %)
    sub = stack[:, :: max(1, n_rows // SIGMA_SAMPLE_ROWS)]
    dev = np.abs(sub - _robust_centre(sub)[None]).ravel()  # a fresh array: partitioned in place
    sigma = SIGMA_PER_MAD * float(_median_in_place(dev))
    if not sigma > 0:
        return _robust_centre(stack)
    threshold = np.float32(nsigma * sigma)
    out = np.empty(stack.shape[1:], dtype=np.float32)
    # Row blocks of ~2 MB stay in cache through the five passes below (1.8x faster than
    # whole-stack passes on a 15 x 2000 x 509 ITL stack, and no 60 MB temporaries); the
    # block temporaries are allocated once and reused (ufuncs with out=).
    blk_shape = (n, min(COMBINE_BLOCK_ROWS, n_rows), stack.shape[2])
    resid_buf = np.empty(blk_shape, dtype=np.float32)
    keep_buf = np.empty(blk_shape, dtype=bool)
    for r0 in range(0, n_rows, COMBINE_BLOCK_ROWS):
        blk = stack[:, r0 : r0 + COMBINE_BLOCK_ROWS]
        rows_b = blk.shape[1]
        resid = resid_buf[:, :rows_b]
        keep = keep_buf[:, :rows_b]
        centre = _robust_centre(blk)
        np.subtract(blk, centre[None], out=resid)
        np.abs(resid, out=resid)
        np.less_equal(resid, threshold, out=keep)
        # kept count per pixel: an exact small integer, so counted in int then cast
        count = np.count_nonzero(keep, axis=0).astype(np.float32)
        np.multiply(blk, keep, out=resid)  # kept values, 0 elsewhere
        total = resid.sum(axis=0, dtype=np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            res = np.divide(total, count, out=total)
        # A pixel keeping fewer than half its frames (two cosmic rays spoiled the trimmed
        # centre): the exact median for those pixels only.
        weak = count < 0.5 * n
        if weak.any():
            rows, cols = np.nonzero(weak)
            srt = np.sort(blk[:, rows, cols], axis=0)
            res[rows, cols] = 0.5 * (srt[(n - 1) // 2] + srt[n // 2])
        out[r0 : r0 + COMBINE_BLOCK_ROWS] = res
    return out


# Rows per block of clipped_mean_stack and rows sampled for its sigma.
COMBINE_BLOCK_ROWS = 64
SIGMA_SAMPLE_ROWS = 64


def _median_in_place(a: np.ndarray) -> np.floating:
    """``np.median(a)`` of a finite 1-D array, partitioning ``a`` in place (no copy).

    Same value and dtype as ``np.median``: the middle value, or for an even size the two
    middle values added and halved in ``a``'s dtype (as ``np.mean`` of them does).
    """
    n = a.size
    k = n // 2
    if n % 2:
        a.partition(k)
        return a[k]
    a.partition((k - 1, k))
    return np.add(a[k - 1], a[k]) / 2


def _robust_centre(stack: np.ndarray) -> np.ndarray:
    """Per-pixel centre for the clipping: the mean without the lowest and highest frame
    (n ≥ 5), else the median. A trimmed mean is robust to one cosmic ray per pixel and,
    being three contiguous reductions, ~4x cheaper than a per-pixel median of 15 frames;
    pixels hit twice are caught by the fallback in :func:`clipped_mean_stack`."""
    n = stack.shape[0]
    if n < 5:
        return median_stack(stack.copy())
    total = stack.sum(axis=0, dtype=np.float32)
    total -= stack.max(axis=0)
    total -= stack.min(axis=0)
    total /= np.float32(n - 2)
    return total


@functools.cache
def median_noise_factor(n: int) -> float:
    """std(median of n iid Gaussian samples) / (σ/√n), computed exactly by integration.

    n = 1, 2: exactly 1 (the median of two is their mean). For odd n = 2k+1 the median is
    the order statistic X₍ₖ₊₁₎ with density ∝ Φᵏ(1−Φ)ᵏφ; for even n = 2k it is the mean of
    X₍ₖ₎ and X₍ₖ₊₁₎, whose joint density is integrated numerically (David & Nagaraja,
    *Order Statistics*, §2.2). Tends to √(π/2) = 1.2533 for large n.
    """
    if n <= 2:
        return 1.0
    if n > 201:
        return math.sqrt(math.pi / 2.0)
    from scipy import integrate, stats  # heavy (≈ 0.5 s): only this rarely used path

    phi, Phi = stats.norm.pdf, stats.norm.cdf
    if n % 2:
        k = n // 2
        c = math.exp(math.lgamma(n + 1) - 2 * math.lgamma(k + 1))
        var = integrate.quad(
            lambda x: x * x * c * Phi(x) ** k * (1 - Phi(x)) ** k * phi(x), -12, 12, limit=200
        )[0]
    else:
        k = n // 2
        # joint density of X(k) = u <= X(k+1) = v:
        # n!/((k-1)!(k-1)!) Φ(u)^(k-1) φ(u) φ(v) (1-Φ(v))^(k-1)
        c = math.exp(math.lgamma(n + 1) - 2 * math.lgamma(k))
        e_uu = integrate.quad(lambda x: x * x * _order_pdf(x, k, n), -12, 12, limit=200)[0]
        e_uv = integrate.dblquad(
            lambda v, u: u * v * c * Phi(u) ** (k - 1) * phi(u) * phi(v) * (1 - Phi(v)) ** (k - 1),
            -12, 12, lambda u: u, lambda u: 12,
        )[0]  # fmt: skip
        # By symmetry E[X(k)²] = E[X(k+1)²]; Var((u+v)/2) = (2E[u²] + 2E[uv])/4.
        var = 0.5 * (e_uu + e_uv)
    return math.sqrt(var * n)


def _order_pdf(x: float, r: int, n: int) -> float:
    """Density of the r-th order statistic of n standard normals."""
    from scipy import stats

    phi, Phi = stats.norm.pdf, stats.norm.cdf
    c = math.exp(math.lgamma(n + 1) - math.lgamma(r) - math.lgamma(n - r + 1))
    return c * Phi(x) ** (r - 1) * (1 - Phi(x)) ** (n - r) * phi(x)
