"""Dark current of one amplifier from a combined (master) dark.

``dark_current`` is the median and ``dark_current_p95`` the 95th percentile of the
bias-subtracted combined dark divided by the dark time, in electron/s (DESIGN §4). The
conversion to electrons uses the amp's gain: the caller says which gain (PTC, flat pair
or nominal) in provenance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibmon.science.robust import interpolated_quantile

# The upper statistic reported: 95th percentile (DESIGN §4 ``dark_current_p95``).
DARK_PERCENTILE = 95.0


@dataclass(frozen=True)
class DarkMetrics:
    """Dark-current statistics of one amp, electron/s.

    Attributes
    ----------
    dark_current : float, electron/s
        Median over the usable pixels.
    dark_current_p95 : float, electron/s
        95th percentile over the same pixels (linear interpolation between order
        statistics, numpy's default ``percentile`` method).
    reason : str
        Empty when measured; otherwise why the values are NaN.
    n_pixels : int
        Pixels used.
    """

    dark_current: float
    dark_current_p95: float
    reason: str = ""
    n_pixels: int = 0


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


def dark_metrics(dark_rate_e_per_s: np.ndarray, bad_mask: np.ndarray | None = None) -> DarkMetrics:
    """Median and 95th percentile of a dark-current image.

    Parameters
    ----------
    dark_rate_e_per_s : (n_rows, n_cols) float, electron/s (:func:`dark_current_image`).
    bad_mask : optional (n_rows, n_cols) bool, True = pixel not used (e.g. known defects;
        the contract metric uses all pixels, so the pipeline passes None).

    Returns
    -------
    DarkMetrics; NaN values with a reason when no pixel is usable.
    """
    rate = np.asarray(dark_rate_e_per_s)
    if bad_mask is not None:
        bm = np.asarray(bad_mask, dtype=bool)
        if bm.shape != rate.shape:
            raise ValueError(f"bad_mask shape {bm.shape} != image shape {rate.shape}")
        vals = rate[~bm]
    else:
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
    p95 = interpolated_quantile(vals, DARK_PERCENTILE / 100.0)
    return DarkMetrics(med, p95, "", n)


def _positive(x: float) -> bool:
    return x is not None and math.isfinite(x) and x > 0.0
