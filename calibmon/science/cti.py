"""Serial charge-transfer inefficiency of one amplifier by EPER (extended pixel edge response).

In a flat, the charge the serial register leaves behind while shifting the last data
column appears in the first serial-overscan pixels of each row. With N transfers of
the last column, each losing a fraction ε to the trail, the trail holds ≈ N·ε·S of
signal S (first order in Nε), so

    ε = Σ_rows Σ_{k<n_trail} overscan[row, k] / (Σ_rows last_column[row] × N)

the estimator of eo_pipe's ``eperTask.compute_ctis`` (``scti = (trailed/signal)/(ncol + 1)``,
``overscan_pixels`` = 3 by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Columns of the serial overscan summed as the trail. eo_pipe's EperTaskConfig
# overscan_pixels defaults to 3; calibmon's API default is 2 (ITL and e2v trails are
# essentially contained in the first two columns, and each extra column adds read noise).
EPER_TRAIL_COLS = 2
# Below this mean signal in the last data column (adu) the EPER ratio is dominated by
# noise and bias residuals: a 1e-6 CTI at 1000 adu and ~510 transfers is a 0.5 adu trail.
# calibmon choice (EPER is run on flats at tens of thousands of adu).
EPER_MIN_SIGNAL_ADU = 1000.0


@dataclass(frozen=True)
class EperResult:
    """EPER measurement of one amp.

    Attributes
    ----------
    cti : float, dimensionless
        Serial CTI per transfer (``serial_cti``); NaN when not measurable.
    cti_err : float, dimensionless
        1σ statistical error from the scatter of the far overscan columns (NaN when the
        overscan has no columns beyond the trail).
    signal_adu : float, adu
        Mean of the last data column.
    trail_adu : float, adu
        Mean over rows of the summed trail (first ``n_trail_cols`` overscan columns).
    reason : str
    """

    cti: float
    cti_err: float
    signal_adu: float
    trail_adu: float
    reason: str = ""


def eper_serial(
    overscan_adu: np.ndarray,
    last_data_col_adu: np.ndarray,
    n_transfers: int,
    *,
    n_trail_cols: int = EPER_TRAIL_COLS,
) -> EperResult:
    """Serial CTI by EPER, with its statistical error and the inputs' levels.

    Parameters
    ----------
    overscan_adu : (n_rows, n_os) float, adu
        Serial overscan of the data rows of a flat (or a combined flat), already
        corrected by its per-row level taken from columns *beyond* the trail, so that
        only deferred charge and noise remain in the first columns.
    last_data_col_adu : (n_rows,) float, adu
        The last data column (the one read just before the overscan), overscan
        corrected (bias subtraction is optional: a bias residual of a few adu is
        negligible against the ≥ 1000 adu signal).
    n_transfers : int
        Serial transfers undergone by the last data column. eo_pipe uses the number of
        data columns + 1 (510 for ITL's 509 columns, 513 for e2v's 512); the physical
        count including the prescan (3 ITL, 10 e2v) differs by < 2 %.
    n_trail_cols : int
        Overscan columns summed as the trail.

    Returns
    -------
    EperResult
        ``cti`` NaN with a reason when the last column's mean is below
        :data:`EPER_MIN_SIGNAL_ADU` or nothing is finite.
    """
    os_ = np.asarray(overscan_adu)
    last = np.asarray(last_data_col_adu).ravel()
    if os_.ndim != 2 or os_.shape[0] != last.size:
        raise ValueError(
            f"overscan must be (n_rows, n_os) with n_rows = len(last column), "
            f"got {os_.shape} and {last.shape}"
        )
    if n_transfers <= 0 or n_trail_cols <= 0 or n_trail_cols > os_.shape[1]:
        raise ValueError(
            f"need n_transfers > 0 and 0 < n_trail_cols <= {os_.shape[1]}, "
            f"got {n_transfers}, {n_trail_cols}"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # absurd values give NaN, not warnings
        return _eper(os_, last, n_transfers, n_trail_cols)


def _eper(os_: np.ndarray, last: np.ndarray, n_transfers: int, n_trail_cols: int) -> EperResult:
    """The arithmetic of :func:`eper_serial` on validated inputs."""
    trail_rows = np.sum(os_[:, :n_trail_cols], axis=1, dtype=np.float64)
    ok = np.isfinite(trail_rows) & np.isfinite(last)
    n_ok = int(np.count_nonzero(ok))
    if n_ok == 0:
        return EperResult(math.nan, math.nan, math.nan, math.nan, "no finite rows")
    signal = float(np.mean(last[ok], dtype=np.float64))
    trail = float(np.mean(trail_rows[ok]))
    if not signal >= EPER_MIN_SIGNAL_ADU:
        return EperResult(
            math.nan, math.nan, signal, trail,
            f"last-column signal {signal:.1f} adu < {EPER_MIN_SIGNAL_ADU:.0f} adu",
        )  # fmt: skip
    cti = trail / (signal * n_transfers)
    if not math.isfinite(cti):
        return EperResult(math.nan, math.nan, signal, trail, "non-finite trail or signal")

    # Error: the noise of a far overscan pixel (no trail) × √n_trail per row, over √rows.
    cti_err = math.nan
    far = os_[ok, n_trail_cols + 2 :] if os_.shape[1] > n_trail_cols + 4 else None
    if far is not None:
        far = far[np.isfinite(far)]
    if far is not None and far.size > 1:
        sigma_pix = float(np.std(far, dtype=np.float64))
        cti_err = sigma_pix * math.sqrt(n_trail_cols / n_ok) / (signal * n_transfers)
    return EperResult(cti, cti_err, signal, trail)


def serial_cti_eper(
    overscan_adu: np.ndarray,
    last_data_col_adu: np.ndarray,
    n_transfers: int,
    *,
    n_trail_cols: int = EPER_TRAIL_COLS,
) -> float:
    """Serial CTI per transfer by EPER (dimensionless); NaN if the signal is too low.

    The value of :func:`eper_serial` (see there for the parameters): the first
    ``n_trail_cols`` overscan columns summed over rows, divided by the last data
    column summed over the same rows and by ``n_transfers``.
    """
    return eper_serial(overscan_adu, last_data_col_adu, n_transfers, n_trail_cols=n_trail_cols).cti
