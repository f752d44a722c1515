"""ISR-lite for one amplifier: per-row serial-overscan correction and trimming.

Arrays are raw amplifier images in readout order, shape ``(n_rows, n_cols)``, in ADU.
Geometry arrives as slices (``calibmon.io.geometry.AmpGeometry`` carries them), so this
module does no I/O and knows no header.
"""

from __future__ import annotations

import math

import numpy as np

from calibmon.science.robust import SIGMA_PER_MAD

# Outlier rejection of the per-row overscan level: a pixel further than this many
# robust σ from the row's median is left out before the row median is taken again.
OVERSCAN_CLIP_NSIGMA = 3.0
# Rows sampled for the amp-wide σ of the overscan rejection (every k-th row).
SIGMA_SAMPLE_EVERY_ROWS = 8


def overscan_row_levels(overscan: np.ndarray, nsigma: float = OVERSCAN_CLIP_NSIGMA) -> np.ndarray:
    """Per-row level of the serial overscan with outlier rejection.

    Parameters
    ----------
    overscan : (n_rows, n_os) array, adu
        Serial-overscan columns (leading/trailing columns already left out).
    nsigma : reject pixels further than ``nsigma``·σ_MAD(all overscan) from the row median.

    Returns
    -------
    (n_rows,) float64 array, adu: the clipped median of each row.
    """
    os_ = np.asarray(overscan, dtype=np.float32)
    if os_.ndim != 2 or os_.shape[1] == 0:
        raise ValueError(f"overscan must be 2-D with columns, got shape {os_.shape}")
    n_cols = os_.shape[1]
    # Exact medians via partition (2.2x faster than np.median on these shapes).
    row_med = _row_median(os_)
    resid = os_ - row_med[:, None]
    # One σ for the whole amp: the read noise is the same in every row, and a per-row
    # MAD from ~60 pixels would be noisy itself. Every 8th row (~15 000 values for a
    # full-size amp, σ to 1 %) is plenty and 8x cheaper than the whole overscan.
    sample = np.abs(resid[::SIGMA_SAMPLE_EVERY_ROWS])
    sigma = SIGMA_PER_MAD * float(np.median(sample))
    if sigma == 0.0 or not math.isfinite(sigma):
        return row_med.astype(np.float64)
    bad = np.abs(resid) > nsigma * sigma
    if not bad.any():
        return row_med.astype(np.float64)
    if n_cols == 1:
        return os_[:, 0].astype(np.float64)
    # Rows with rejected pixels: median of the good ones only.
    rows = np.flatnonzero(bad.any(axis=1))
    out = row_med.astype(np.float64)
    out[rows] = _masked_row_median(os_[rows], bad[rows], row_med[rows])
    return out


def _masked_row_median(a: np.ndarray, bad: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Median of the good values of each row (vectorised; np.nanmedian loops per row).

    Rejected values are pushed to ±inf on the side they came from, each row is sorted,
    and the median of the good ones is read at index n_low + (n_good − 1)/2.
    """
    resid_sign = a > fallback[:, None]
    work = a.astype(np.float64)
    work[bad & resid_sign] = np.inf
    work[bad & ~resid_sign] = -np.inf
    work.sort(axis=1)
    n_low = np.count_nonzero(bad & ~resid_sign, axis=1)
    n_good = a.shape[1] - np.count_nonzero(bad, axis=1)
    lo = n_low + (n_good - 1) // 2
    hi = n_low + n_good // 2
    idx = np.arange(a.shape[0])
    ok = n_good > 0
    lo_c, hi_c = np.where(ok, lo, 0), np.where(ok, hi, 0)
    med = 0.5 * (work[idx, lo_c] + work[idx, hi_c])
    return np.where(ok, med, fallback)


def _row_median(a: np.ndarray) -> np.ndarray:
    """Exact median along axis 1 using ``np.partition`` (float32 in, float32 out)."""
    n = a.shape[1]
    k = n // 2
    if n % 2:
        return np.partition(a, k, axis=1)[:, k]
    part = np.partition(a, (k - 1, k), axis=1)
    return 0.5 * (part[:, k - 1] + part[:, k])


def residual_std_factor(n_cols: int) -> float:
    """Expected std(x − row median)/σ for white noise with ``n_cols`` overscan columns.

    Subtracting the median of the same ``n`` Gaussian pixels removes part of their noise:
    Var(xᵢ − m) = σ²(1 − 2·Cov(xᵢ,m)/σ² + Var(m)/σ²) with Cov(xᵢ,m) ≈ σ²/n (the mean is the
    efficient estimator) and Var(m) ≈ πσ²/(2n), i.e. σ²(1 − (2 − π/2)/n) to O(1/n²).
    For ITL's 60 used columns this is 0.9964: 0.36 % of read noise.
    """
    if n_cols < 2:
        return math.nan
    return math.sqrt(1.0 - (2.0 - math.pi / 2.0) / n_cols)


def overscan_correct(
    amp_image: np.ndarray,
    data_rows: slice,
    data_cols: slice,
    overscan_cols: slice,
) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the per-row serial-overscan level and trim to DATASEC.

    Parameters
    ----------
    amp_image : (n_rows, n_cols) raw amplifier array, adu
    data_rows, data_cols : DATASEC as 0-based slices
    overscan_cols : serial-overscan columns used for the level (leading/trailing skipped)

    Returns
    -------
    trimmed : (n_data_rows, n_data_cols) float32, adu, overscan subtracted
    row_levels : (n_data_rows,) float64, adu, the subtracted level of each data row
    """
    levels = overscan_row_levels(amp_image[data_rows, overscan_cols])
    trimmed = amp_image[data_rows, data_cols].astype(np.float32)
    trimmed -= levels.astype(np.float32)[:, None]
    return trimmed, levels


def overscan_correct_into(
    amp_image: np.ndarray,
    data_rows: slice,
    data_cols: slice,
    overscan_cols: slice,
    out: np.ndarray,
) -> np.ndarray:
    """:func:`overscan_correct` writing the trimmed frame into ``out`` (float32, shape of
    the data section); returns the per-row levels (adu). Same numbers, no temporary.

    The subtraction runs in float32 (2.5x faster than numpy's int32 − float32 → float64
    loop): an integer pixel below 2²⁴ in magnitude (every ADC up to 24 bits; LSST's are
    18) converts to float32 exactly, and the float32 difference of two float32 numbers is
    their exact difference rounded once — what the float64 loop stored, bit for bit
    (int32 images are taken to hold ADC values, below 2²⁴)."""
    levels = overscan_row_levels(amp_image[data_rows, overscan_cols])
    data = amp_image[data_rows, data_cols]
    exact32 = (data.dtype.kind in "ui" and data.dtype.itemsize <= 2) or data.dtype == np.int32
    np.subtract(
        data, levels.astype(np.float32)[:, None], out=out, casting="unsafe",
        dtype=np.float32 if exact32 or data.dtype == np.float32 else None,
    )  # fmt: skip
    return levels


def overscan_residuals(
    amp_image: np.ndarray, data_rows: slice, overscan_cols: slice, row_levels: np.ndarray
) -> np.ndarray:
    """Serial overscan (data rows) minus its per-row level, float32, adu."""
    os_ = amp_image[data_rows, overscan_cols].astype(np.float32)
    os_ -= row_levels.astype(np.float32)[:, None]
    return os_
