"""Bright and dark pixel/column defects of one amplifier, cp_pipe ``MeasureDefectsTask`` style.

Semantics of cp_pipe's ``MeasureDefectsTask._findHotAndColdPixels`` with the LSSTCam
configuration (``pipelines/LSSTCam/cpDefects.yaml``, thresholdType ``VALUE``):

- bright (hot) pixels, in a combined dark: dark current more than
  ``darkCurrentThreshold`` = 3 e−/s above the amp's clipped mean (cp_pipe subtracts the
  MEANCLIP and thresholds at darkCurrentThreshold·exptime/gain adu);
- dark (cold) pixels, in a combined flat: below ``fracThresholdFlat`` = 0.9 of the
  amp's clipped mean (cp_pipe: value − MEANCLIP < (0.9 − 1)·MEANCLIP);
- intermittent columns (``maskBlocksIfIntermitentBadPixelsInColumn``): in a column with
  at least ``badOnAndOffPixelColumnThreshold`` = 50 bad pixels, the pixels between two
  consecutive bad ones are bad too unless they are ``goodPixelColumnGapThreshold`` = 30
  or more rows apart;
- full columns (``maskBadColumns``): a column with at least
  ``badPixelsToFillColumnThreshold`` = 1000 bad pixels (after the step above) is bad over
  its whole length. 1000 of an ITL/e2v amp's 2000/2002 rows is a fraction 0.5, which is
  how calibmon expresses it (``column_fraction``) so that it scales with the amp height.

Differences, stated: cp_pipe works on assembled detectors, so its intermittent-column
rule sees the two amps sharing a column together; here each amp stands alone. Edges:
cp_pipe's LSSTCam measure tasks search the whole amp (``nPixBorder*`` = 0) and its merge
step then marks the outer 7 rows / 8 columns of the *detector* as defects
(``edgesAsDefects``, ``nPixBorderUpDown`` = 7, ``nPixBorderLeftRight`` = 8); calibmon
counts only measured defects (edge pixels still count if they are bad) and lets the
caller exclude pixels with ``bad_mask``. Saturated-column dilation and bias-frame defects
are not implemented.

Counting (DESIGN §4 ``bright_pixels``/``bright_columns``/``dark_pixels``/``dark_columns``):
a bad column is counted once in ``n_columns`` and its pixels are *not* in ``n_pixels``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibmon.science.robust import DEFAULT_NSIGMA, SIGMA_PER_MAD, clipped_stats_fast

# --- cp_pipe MeasureDefectsTaskConfig, values of pipelines/LSSTCam/cpDefects.yaml ---
# darkCurrentThreshold (LSSTCam and LATISS: 3.0; task default 5, LCA-128/eotest's 5 e-/s).
DARK_CURRENT_THRESHOLD_E_PER_S = 3.0
# nSigmaBright (task default, DM-17490), used only when thresholdType is STDEV; LSSTCam
# uses VALUE. calibmon applies it when ``nsigma`` is given.
NSIGMA_BRIGHT = 4.8
# fracThresholdFlat (LSSTCam and LATISS: 0.9; task default 0.8, LCA-128/eotest's 80 %).
FRAC_THRESHOLD_FLAT = 0.9
# badPixelsToFillColumnThreshold = 1000 px (LSSTCam, LATISS) over the ~2000 rows of an
# ITL (2000) or e2v (2002) amp.
BAD_PIXELS_TO_FILL_COLUMN_THRESHOLD_PX = 1000
ITL_AMP_DATA_ROWS = 2000
COLUMN_FRACTION = BAD_PIXELS_TO_FILL_COLUMN_THRESHOLD_PX / ITL_AMP_DATA_ROWS  # 0.5
# badOnAndOffPixelColumnThreshold and goodPixelColumnGapThreshold (task defaults).
BAD_ON_AND_OFF_PIXEL_COLUMN_THRESHOLD = 50
GOOD_PIXEL_COLUMN_GAP_THRESHOLD = 30
# The background statistics: afw MEANCLIP/STDEVCLIP with the default StatisticsControl
# (3σ, 3 iterations), as cp_pipe computes them without a control object.
DEFECT_CLIP_NSIGMA = DEFAULT_NSIGMA
DEFECT_CLIP_MAXITER = 3
# A flat whose clipped mean is below this many clipped σ carries no signal (dead amp,
# flat = bias + noise): every pixel is then a dark defect. Real flats have mean/σ ≳ 50
# (Poisson + 1 % PRNU); the normalised flat keeps the ratio. calibmon choice.
MIN_FLAT_SIGNAL_TO_NOISE = 5.0
# Noise defects: a census on a noisy master (three 1-s darks: ~5 e-/s per pixel; low
# flats) must not count noise as defects. Thresholds are raised to k·σ of the master's
# noise with k chosen so that the expected number of noise pixels (columns) flagged per
# amp is at most this (Gaussian tail, k = Φ⁻¹(1 − expected/N), N pixels or columns:
# ≈ 5.6 for 10⁶ pixels, 4.8 for 512 columns). 0.01 per amp is ~1 false defect pixel a
# night over all 3216 LSSTCam amps — invisible next to the Poisson noise of real counts.
NOISE_DEFECTS_PER_AMP = 0.01


def noise_nsigma(n_trials: int, expected_false: float = NOISE_DEFECTS_PER_AMP) -> float:
    """k such that n_trials Gaussian values exceed k·σ (one-sided) ``expected_false``
    times on average: Φ⁻¹(1 − expected_false/n_trials)."""
    from scipy.special import ndtri

    p = min(0.5, expected_false / max(int(n_trials), 1))
    return float(-ndtri(p))


@dataclass(frozen=True, eq=False)  # holds arrays: identity equality
class DefectCensus:
    """Defects of one kind (bright or dark) in one amp.

    Attributes
    ----------
    n_pixels : int
        Bad pixels outside bad columns (including pixels filled by the intermittent-
        column rule in columns that did not become full bad columns).
    n_columns : int
        Full bad columns, each counted once.
    pixel_mask : (n_rows, n_cols) bool
        Every bad pixel, bad columns included (True = bad).
    column_indices : tuple of int
        0-based indices of the bad columns, ascending.
    reason : str
        Empty normally; says why when the census is not a normal measurement (no usable
        pixels: nothing found; dead amp: everything dark).
    threshold : float
        The absolute threshold applied (electron/s for bright, flat units for dark).
    measured : bool
        False when nothing could be measured (no usable pixel): the counts are then 0
        but are not measurements, and the pipeline records NaN.
    """

    n_pixels: int
    n_columns: int
    pixel_mask: np.ndarray
    column_indices: tuple[int, ...]
    reason: str = ""
    threshold: float = math.nan
    measured: bool = True


def find_bright_defects(
    dark_rate_e_per_s: np.ndarray,
    *,
    threshold_e_per_s: float | None = DARK_CURRENT_THRESHOLD_E_PER_S,
    nsigma: float | None = None,
    column_fraction: float = COLUMN_FRACTION,
    bad_mask: np.ndarray | None = None,
    pixel_noise_e_per_s: float | None = None,
) -> DefectCensus:
    """Hot pixels and hot columns in a dark-current image.

    Parameters
    ----------
    dark_rate_e_per_s : (n_rows, n_cols) float, electron/s
        Bias-subtracted combined dark / dark time × gain
        (:func:`calibmon.science.dark.dark_current_image`).
    threshold_e_per_s : float or None, electron/s
        A pixel is hot when it exceeds the amp's clipped mean by more than this
        (cp_pipe VALUE mode). None: not used.
    nsigma : float or None
        A pixel is hot when it exceeds the clipped mean by more than ``nsigma`` clipped
        σ (cp_pipe STDEV mode, :data:`NSIGMA_BRIGHT`). None: not used. When both are
        given the larger threshold applies.
    column_fraction : float
        A column is bad when at least this fraction of its rows are bad (0.5).
    bad_mask : optional (n_rows, n_cols) bool, True = pixel excluded from the search.
    pixel_noise_e_per_s : optional σ of the master's noise per pixel (electron/s). The
        pixel threshold is then at least :func:`noise_nsigma` (N pixels) σ above the
        mean, so noise is not counted as hot pixels; and columns are also tested on
        their medians (:func:`_column_outliers`): a hot column too faint for the pixel
        test in short darks is still found when its median exceeds the clipped mean by
        the same threshold, and by noise_nsigma(n columns)·σ of the column medians.
        ``threshold`` in the census is the detection limit actually applied (e-/s above
        the clipped mean is ``threshold − mean``).

    Returns
    -------
    DefectCensus
    """
    img = _as_float(dark_rate_e_per_s)
    if threshold_e_per_s is None and nsigma is None:
        raise ValueError("give threshold_e_per_s, nsigma, or both")
    bad_in = _check_mask(bad_mask, img.shape)
    mean, std, n = clipped_stats_fast(img, DEFECT_CLIP_NSIGMA, DEFECT_CLIP_MAXITER, bad_mask=bad_in)
    if n < 2 or not math.isfinite(mean):
        return _empty(img.shape, "no usable pixels")
    offsets = []
    if threshold_e_per_s is not None:
        offsets.append(float(threshold_e_per_s))
    if nsigma is not None:
        offsets.append(float(nsigma) * std)
    noise_ok = pixel_noise_e_per_s is not None and math.isfinite(pixel_noise_e_per_s)
    if noise_ok:
        offsets.append(noise_nsigma(img.size) * float(pixel_noise_e_per_s))
    thr = mean + max(offsets)
    with np.errstate(invalid="ignore"):
        bad = img > thr
    extra_cols = None
    if noise_ok:
        col_offset = float(threshold_e_per_s) if threshold_e_per_s is not None else 0.0
        extra_cols = _column_outliers(img, bad_in, mean, col_offset, +1)
    return _census(bad, bad_in, column_fraction, "", thr, extra_cols)


def find_dark_defects(
    flat_norm: np.ndarray,
    *,
    frac_threshold: float = FRAC_THRESHOLD_FLAT,
    column_fraction: float = COLUMN_FRACTION,
    bad_mask: np.ndarray | None = None,
    pixel_noise_rel: float | None = None,
) -> DefectCensus:
    """Cold (dark) pixels and columns in a combined flat.

    Parameters
    ----------
    flat_norm : (n_rows, n_cols) float
        Combined flat divided by its clipped mean. Any positive scale works: the
        threshold is ``frac_threshold`` × the clipped mean (3σ, 3 iterations) computed
        here, as cp_pipe does on the unnormalised flat.
    frac_threshold : float
        A pixel is dark below this fraction of the clipped mean (0.9).
    column_fraction : float
        A column is bad when at least this fraction of its rows are bad (0.5).
    bad_mask : optional (n_rows, n_cols) bool, True = pixel excluded from the search.
    pixel_noise_rel : optional σ of the master flat's noise per pixel relative to its
        mean (dimensionless). The threshold is then also at least
        :func:`noise_nsigma` (N pixels) σ below the mean (a low-level flat's noise is
        not counted as cold pixels), and column medians are tested too
        (:func:`_column_outliers`).

    Returns
    -------
    DefectCensus
        A flat without signal (clipped mean < :data:`MIN_FLAT_SIGNAL_TO_NOISE` × its
        clipped σ: dead amp) has every pixel dark, i.e. every column a dark column,
        with the reason stated.
    """
    img = _as_float(flat_norm)
    bad_in = _check_mask(bad_mask, img.shape)
    mean, std, n = clipped_stats_fast(img, DEFECT_CLIP_NSIGMA, DEFECT_CLIP_MAXITER, bad_mask=bad_in)
    if n < 2 or not math.isfinite(mean):
        return _empty(img.shape, "no usable pixels")
    if not mean > MIN_FLAT_SIGNAL_TO_NOISE * std:
        n_cols = img.shape[1]
        return DefectCensus(
            n_pixels=0,
            n_columns=n_cols,
            pixel_mask=np.ones(img.shape, dtype=bool),
            column_indices=tuple(range(n_cols)),
            reason=f"flat has no signal (clipped mean {mean:.3g} ≤ {MIN_FLAT_SIGNAL_TO_NOISE}σ): dead amp",
            threshold=math.nan,
        )
    frac = frac_threshold
    noise_ok = pixel_noise_rel is not None and math.isfinite(pixel_noise_rel)
    if noise_ok:
        frac = min(frac, 1.0 - noise_nsigma(img.size) * float(pixel_noise_rel))
    thr = frac * mean
    with np.errstate(invalid="ignore"):
        bad = img < thr
    extra_cols = None
    if noise_ok:
        extra_cols = _column_outliers(img, bad_in, mean, (1.0 - frac_threshold) * mean, -1)
    return _census(bad, bad_in, column_fraction, "", thr, extra_cols)


def _column_nanmedians(img: np.ndarray) -> np.ndarray:
    """``np.nanmedian(img, axis=0)``, bit for bit, without its per-column Python loop
    (numpy applies a 1-D nanmedian per column when a column is longer than 600; this
    sorts every column once — NaNs last — and averages the middle two of the finite
    values as numpy's median does, in the image's dtype). All-NaN columns give NaN."""
    s = np.sort(img.T, axis=1)
    n = s.shape[1] - np.count_nonzero(np.isnan(s), axis=1)
    rows = np.arange(s.shape[0])
    lo = s[rows, np.maximum((n - 1) // 2, 0)]
    hi = s[rows, np.maximum(n // 2, 0)]
    with np.errstate(invalid="ignore", over="ignore"):
        out = (lo + hi) / np.asarray(2, dtype=s.dtype)
    out[n == 0] = np.nan
    return out


def _column_outliers(
    img: np.ndarray, excluded: np.ndarray | None, mean: float, offset: float, sign: int
) -> np.ndarray:
    """Columns whose median is beyond ``mean + sign·offset`` and beyond the column
    medians' own scatter: |median − centre| > noise_nsigma(n_cols)·σ_col, σ_col the
    1.4826·MAD of all column medians (real column-to-column variation included, which
    only makes the test more conservative). Medians, not means: one 4000 e-/s hot
    pixel moves a 2000-row column mean by 2 e-/s but not its median. Returns indices."""
    work = img
    if excluded is not None and excluded.any():
        work = np.where(excluded, np.float32(np.nan), img)
    meds = _column_nanmedians(work)
    fin = np.isfinite(meds)
    if fin.sum() < 3:
        return np.zeros(0, dtype=np.int64)
    centre = float(np.median(meds[fin]))
    sigma = SIGMA_PER_MAD * float(np.median(np.abs(meds[fin] - centre)))
    k = noise_nsigma(int(fin.sum()))
    with np.errstate(invalid="ignore"):
        if sign > 0:
            hit = (meds > mean + offset) & (meds - centre > k * sigma)
        else:
            hit = (meds < mean - offset) & (centre - meds > k * sigma)
    return np.flatnonzero(hit & fin)


def defect_fraction(bright: DefectCensus, dark: DefectCensus, shape: tuple[int, int]) -> float:
    """Fraction of the amp's data pixels that are defects of any kind (``defect_fraction``).

    Parameters
    ----------
    bright, dark : :class:`DefectCensus` of the same amp
    shape : (n_rows, n_cols) of the trimmed amp (the data pixels)

    Returns
    -------
    float, dimensionless: |bright ∪ dark| / (n_rows·n_cols), bad columns counted by
    their pixels and a pixel bad in both counted once. NaN if either census was not
    measured (:attr:`DefectCensus.measured`).
    """
    shape = tuple(int(s) for s in shape)
    for c in (bright, dark):
        if c.pixel_mask.shape != shape:
            raise ValueError(f"census mask shape {c.pixel_mask.shape} != {shape}")
    size = shape[0] * shape[1]
    if size == 0 or not (bright.measured and dark.measured):
        return math.nan
    n_bad = int(np.count_nonzero(bright.pixel_mask | dark.pixel_mask))
    return n_bad / size


def _census(
    bad: np.ndarray,
    excluded: np.ndarray | None,
    column_fraction: float,
    reason: str,
    threshold: float,
    extra_columns: np.ndarray | None = None,
) -> DefectCensus:
    """Apply the intermittent- and full-column rules to a bad-pixel map and count;
    ``extra_columns`` (indices) are bad columns found by another test."""
    if excluded is not None:
        bad &= ~excluded
    n_rows = bad.shape[0]
    counts = np.count_nonzero(bad, axis=0)
    cand = np.flatnonzero(counts >= BAD_ON_AND_OFF_PIXEL_COLUMN_THRESHOLD)
    if cand.size:
        bad[:, cand] = _fill_column_gaps(bad[:, cand], GOOD_PIXEL_COLUMN_GAP_THRESHOLD)
        if excluded is not None:
            bad[:, cand] &= ~excluded[:, cand]
        counts = np.count_nonzero(bad, axis=0)
    need = max(1, math.ceil(column_fraction * n_rows - 1e-9))
    cols = np.flatnonzero(counts >= need)
    if extra_columns is not None and extra_columns.size:
        cols = np.union1d(cols, extra_columns)
    n_pixels = int(np.count_nonzero(bad)) - int(counts[cols].sum())
    if cols.size:
        bad[:, cols] = True
    return DefectCensus(
        n_pixels=n_pixels,
        n_columns=int(cols.size),
        pixel_mask=bad,
        column_indices=tuple(int(c) for c in cols),
        reason=reason,
        threshold=float(threshold),
    )


def _fill_column_gaps(sub: np.ndarray, gap: int) -> np.ndarray:
    """Fill between consecutive bad pixels of each column closer than ``gap`` rows.

    ``sub`` is (n_rows, k) bool; vectorised over rows and columns with running
    maximum/minimum of the bad rows' indices.
    """
    n_rows = sub.shape[0]
    rows = np.arange(n_rows, dtype=np.int64)[:, None]
    prev = np.maximum.accumulate(np.where(sub, rows, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(sub, rows, np.int64(2) * n_rows + gap)[::-1], axis=0)[::-1]
    fill = (prev >= 0) & (nxt < n_rows) & ((nxt - prev) < gap)
    return sub | fill


def _as_float(a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {arr.shape}")
    if arr.dtype != np.float32 and arr.dtype != np.float64:
        arr = arr.astype(np.float32)
    return arr


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"bad_mask shape {m.shape} != image shape {shape}")
    return m


def _empty(shape: tuple[int, ...], reason: str) -> DefectCensus:
    return DefectCensus(0, 0, np.zeros(shape, dtype=bool), (), reason, math.nan, measured=False)
