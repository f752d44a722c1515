"""Bias-family metrics of one amplifier (DESIGN.md §4, calib_type ``bias``).

* ``bias_level`` (adu): mean raw serial-overscan level.
* ``read_noise_adu`` (adu): clipped std of the overscan-corrected serial overscan,
  corrected for the noise removed with the per-row level and for integer quantisation.
* ``bias_mean`` / ``bias_noise`` (adu): clipped mean / std of the overscan-corrected
  combined bias — cp_verify's MEAN and NOISE statistics (DMTN-101 test 4.2/4.3) applied
  to the master.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibmon.science.isr import residual_std_factor
from calibmon.science.robust import clipped_stats_fast

# Variance of the rounding of a continuous signal to integer ADU: uniform on a unit
# interval, 1/12 adu² (Sheppard's correction). Removed from read-noise variances so that
# ``read_noise_adu`` is the analogue noise of the amplifier, not amplifier + digitiser.
QUANTISATION_VAR_ADU2 = 1.0 / 12.0

# Clipping of the read-noise statistic: 4σ keeps the truncation correction below 0.1 %
# while still removing the rare glitch in the overscan.
READ_NOISE_CLIP_NSIGMA = 4.0


@dataclass(frozen=True)
class FrameNoise:
    """Per-frame serial-overscan statistics (adu)."""

    level_adu: float
    noise_var_adu2: float  # corrected variance (see read_noise_from_overscan)
    n_pixels: int


def overscan_frame_noise(overscan_residuals: np.ndarray, row_levels: np.ndarray) -> FrameNoise:
    """Level and noise of one frame's serial overscan.

    Parameters
    ----------
    overscan_residuals : (n_rows, n_cols) float, adu
        Overscan pixels minus their row's level (``isr.overscan_residuals``), data rows only.
    row_levels : (n_rows,) float, adu
        The per-row overscan levels that were subtracted.

    Returns
    -------
    FrameNoise with the mean level (adu) and the noise variance (adu²) corrected for
    (i) the 1 dof per row removed by subtracting the row median
    (``isr.residual_std_factor``) and (ii) quantisation (``QUANTISATION_VAR_ADU2``).
    """
    n_cols = overscan_residuals.shape[1]
    _, std, n = clipped_stats_fast(overscan_residuals, READ_NOISE_CLIP_NSIGMA)
    std /= residual_std_factor(n_cols)
    var = std * std - QUANTISATION_VAR_ADU2
    return FrameNoise(float(np.mean(row_levels)), max(var, 0.0), n)


def read_noise_adu(frames: list[FrameNoise]) -> float:
    """Read noise (adu) of an amp from several frames: √(mean corrected variance)."""
    vals = [f.noise_var_adu2 for f in frames if math.isfinite(f.noise_var_adu2)]
    return math.sqrt(float(np.mean(vals))) if vals else math.nan


def bias_level_adu(frames: list[FrameNoise]) -> float:
    """Mean raw serial-overscan level (adu) over frames."""
    vals = [f.level_adu for f in frames if math.isfinite(f.level_adu)]
    return float(np.mean(vals)) if vals else math.nan


def master_bias_stats(master_bias_adu: np.ndarray) -> tuple[float, float]:
    """cp_verify MEAN and NOISE of the overscan-corrected combined bias: (mean, std), adu.

    3σ-clipped, truncation-corrected std (cp_verify uses afw's MEANCLIP/STDEVCLIP).
    """
    mean, std, _ = clipped_stats_fast(master_bias_adu, 3.0)
    return mean, std
