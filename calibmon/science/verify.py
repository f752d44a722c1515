"""Verification of a day's raw calibration exposures against certified masters (cp_verify).

Spec: DMTN-101 ("Calibration Products Verification"), as implemented by lsst/cp_verify
(``verifyBias.py``, ``verifyDark.py``, ``verifyFlat.py``, ``verifyStats.py`` at 5855743).
Each function takes arrays of one amplifier (trimmed, overscan corrected) and returns
numbers; which products and frames go in is the caller's business
(:mod:`calibmon.calibs.steps`). Facts taken over from cp_verify:

- statistics are afw MEANCLIP/STDEVCLIP with ``numSigmaClip`` = 5 and ``clipMaxIter``
  = 3 (``CpVerifyStatsConfig``), pixels of the BAD mask (the certified defects) left
  out — :data:`VERIFY_CLIP_NSIGMA`, :data:`VERIFY_CLIP_MAXITER`. cp_verify's MEAN is
  the unclipped mean of unmasked pixels after cosmic rays are masked as DETECTED;
  calibmon has no CR detection and uses the 5σ-clipped mean instead;
- bias (DMTN-101 4.2, 4.3): MEAN passes when ``|mean| < noise``; NOISE when
  ``(noise − expected)/expected ≤ 0.05`` (one-sided: only an increase fails);
- dark (DMTN-101 5.2, 5.3): the same two tests on the dark residual, in electrons;
- flat (DMTN-101 10.X, 10.Y): per amp ``NOISE ≤ √MEAN`` in electrons (Poisson), and
  per detector ``SCATTER/MEAN ≤ 0.05`` with SCATTER the std of the amps' means.

Where calibmon departs, and why:

- the NOISE expectation is not the nominal PTC read noise (cp_verify's ``readNoise``)
  but the noise recorded with the certified product inflated by the master's own noise:
  for a bias, ``σ_frame·√(1 + F(N)/N)`` — a new frame minus a master of N frames. For a
  plain mean F = 1 (``√(1 + 1/N)``), but the masters are combined by
  :func:`calibmon.science.combine.clipped_mean_stack`, whose clipping about a robust
  centre with an amp-wide robust scale also rejects good values when there are few
  frames, so it is noisier than a mean: F(3) ≈ 1.59, F(5) ≈ 1.13, F(15) ≈ 1.04 for the
  combine of this version (:func:`master_noise_factor` measures it through the function
  itself, so it follows changes; an earlier median-centred version gave F(5) = 1.26,
  which would have read every clean 5-frame bias 2.3 % noisy and a dark 6 %). The
  product records its master's noise (``MNOISE``) at build time. Today's
  read noise would hide an increase; the nominal one ignores the master's noise;
- STRUCTURE (no DMTN-101 number; cp_verify records the serial/parallel profiles,
  ``AMP_HPROJECTION``/``AMP_VPROJECTION``, without testing them): a fixed bias structure
  that changed since the master was built barely moves the mean of a whole amp, so the
  column and row means of the (winsorised) residual are compared with their noise
  (:func:`profile_nsigma`), failing above :data:`STRUCTURE_NSIGMA`;
- flat NOISE compares the relative scatter with its full expectation (Poisson scaled
  from the flat pairs measured at build time, read noise, the master flat's own noise)
  within :data:`FLAT_NOISE_TOLERANCE`; cp_verify's bare ``√MEAN`` ignores the last two
  and would fail every flat built from fewer than ~30 frames;
- flat LEVEL (no spec): a response change confined to one amp shifts only that amp's
  mean; the 5 % detector scatter would need a > 20 % change of one amp of 16, so each
  amp's mean is also compared with the detector median (:data:`FLAT_AMP_LEVEL_TOLERANCE`).

Thresholds are module constants, each with its source, passed as defaults so tests and
callers can see and override them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from calibmon.science.combine import clipped_mean_stack
from calibmon.science.robust import SIGMA_PER_MAD, clipped_stats_fast

# cp_verify CpVerifyStatsConfig: numSigmaClip = 5.0, clipMaxIter = 3.
VERIFY_CLIP_NSIGMA = 5.0
VERIFY_CLIP_MAXITER = 3
# DMTN-101 tests 4.3 (bias) and 5.3 (dark), cp_verify verifyBias/verifyDark:
# (NOISE − expected)/expected ≤ 0.05.
NOISE_TOLERANCE = 0.05
# calibmon (no spec): a column/row median of the residual more than this many of its σ
# from the median profile is a structure change. At 6σ a clean night of 3216 amps ×
# 15 frames × (512 + 2000) profile points has ~2e-4 expected false failures.
STRUCTURE_NSIGMA = 6.0
# Profiles (STRUCTURE) are means of the residual winsorised at this many σ of its noise.
PROFILE_WINSOR_NSIGMA = 5.0
# calibmon: tolerance of the flat NOISE test around its full expectation (the same 5 % as
# DMTN-101 4.3/5.3; brighter-fatter makes flats ~1.5 % *less* noisy at 15 ke-).
FLAT_NOISE_TOLERANCE = 0.05
# calibmon (no spec): an amp's flat-corrected mean may differ from the detector median of
# the amps' means by this fraction (night-to-night gain drift is ~0.1 %).
FLAT_AMP_LEVEL_TOLERANCE = 0.02
# DMTN-101 10.Y, cp_verify verifyFlat: detector SCATTER/MEAN ≤ 0.05.
FLAT_DETECTOR_SCATTER_MAX = 0.05
# calibmon (no spec; cp_verify's verifyDefects has no DMTN-101 test yet): new bad pixels
# (hot, columns counted by pixel) allowed before the dark fails verification. A new hot
# column is ≥ 1000 pixels on a real amp; a few marginal pixels may come and go.
NEW_DEFECT_PIXELS_ALLOWED = 10


@dataclass(frozen=True)
class ExposureCheck:
    """Verification of one exposure of one amp.

    ``mean``/``noise`` are in the unit of the residual the check was given (bias: adu,
    dark: electron/s, flat: ``mean`` electron, ``noise`` relative scatter);
    ``expected_noise`` is in the unit of the NOISE test (bias adu, dark electron, flat
    relative). ``tests`` maps test name → passed; ``detail`` holds the test statistics.
    """

    exposure_id: int
    mean: float
    noise: float
    expected_noise: float
    tests: dict[str, bool] = field(default_factory=dict)
    detail: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.tests) and all(self.tests.values())

    @property
    def failed_tests(self) -> list[str]:
        return [k for k, ok in self.tests.items() if not ok]


def residual_stats(
    residual: np.ndarray, bad_mask: np.ndarray | None = None
) -> tuple[float, float, int]:
    """cp_verify's MEAN and NOISE of a residual image: 5σ-clipped mean and std (3 iterations).

    Parameters
    ----------
    residual : (n_rows, n_cols) float, any unit
    bad_mask : optional bool, True = pixel left out (certified defects)

    Returns
    -------
    mean, std, n_used : same unit as ``residual``; NaN when fewer than 2 usable pixels.
    """
    return clipped_stats_fast(residual, VERIFY_CLIP_NSIGMA, VERIFY_CLIP_MAXITER, bad_mask=bad_mask)  # type: ignore[return-value]


def frame_noise_from_pairs(stack: np.ndarray, bad_mask: np.ndarray | None = None) -> float:
    """Per-frame pixel noise of a stack from differences of consecutive frames.

    ``Var(F₁ − F₂) = 2σ²`` for two frames with the same fixed structure, which cancels,
    so σ is the noise a single frame adds on top of the master (read noise, overscan-level
    noise, Poisson noise of the signal). Disjoint pairs (0,1), (2,3), …; each difference's
    variance is 5σ-clipped (3 iterations); σ = √(mean variance / 2).

    Parameters
    ----------
    stack : (n_exp, n_rows, n_cols) float, any unit
    bad_mask : optional (n_rows, n_cols) bool, True = pixel left out

    Returns
    -------
    float, unit of ``stack``; NaN with fewer than 2 frames.
    """
    if stack.ndim != 3:
        raise ValueError(f"stack must be (n_exp, rows, cols), got {stack.shape}")
    variances = []
    for i in range(0, stack.shape[0] - 1, 2):
        _, std, n = clipped_stats_fast(
            stack[i] - stack[i + 1], VERIFY_CLIP_NSIGMA, VERIFY_CLIP_MAXITER, bad_mask=bad_mask
        )
        if n >= 2 and math.isfinite(std):
            variances.append(std * std / 2.0)
    return math.sqrt(float(np.mean(variances))) if variances else math.nan


# Gaussian pixels per frame of the Monte Carlo behind master_noise_factor: the factor's
# relative error is √(2/100000) = 0.45 %, 0.03 % of a 5-frame bias expectation.
MASTER_NOISE_MC_PIXELS = 100_000


@functools.cache
def master_noise_factor(n_frames: int) -> float:
    """``N·Var(master)/σ²`` of :func:`~calibmon.science.combine.clipped_mean_stack` for N frames.

    1 for a plain mean (N ≤ 2, where the combine takes the mean). Measured once per N on
    ``MASTER_NOISE_MC_PIXELS`` standard-normal pixels with a fixed seed (deterministic),
    through the combine function itself so that it follows any change to it.
    """
    n = int(n_frames)
    if n <= 2:
        return 1.0
    rng = np.random.default_rng(1_000_003 + n)
    frames = rng.standard_normal((n, 250, MASTER_NOISE_MC_PIXELS // 250), dtype=np.float32)
    master = clipped_mean_stack(frames)
    return float(np.var(master, dtype=np.float64) * n)


def master_noise(frame_noise: float, n_frames: int, factor: float | None = None) -> float:
    """Per-pixel noise of a master of ``n_frames`` frames of per-frame noise ``frame_noise``:
    ``σ·√(F/N)`` with F = ``factor`` or :func:`master_noise_factor` (same unit as σ)."""
    if n_frames < 1 or not math.isfinite(frame_noise):
        return math.nan
    f = master_noise_factor(n_frames) if factor is None else factor
    return frame_noise * math.sqrt(f / n_frames)


def bias_expected_noise_adu(frame_noise_adu: float, master_noise_adu: float) -> float:
    """Expected noise of (bias frame − certified master bias), adu.

    ``√(σ_frame² + σ_master²)``: the frame's own noise (as recorded with the product) plus
    the master's (:func:`master_noise`; ``σ_frame·√(1/N)`` for a plain mean of N frames):
    DMTN-101 4.3 with the master's noise included.
    """
    if not (math.isfinite(frame_noise_adu) and math.isfinite(master_noise_adu)):
        return math.nan
    return math.hypot(frame_noise_adu, master_noise_adu)


def profile_nsigma(
    residual: np.ndarray,
    noise: float,
    centre: float = 0.0,
    bad_mask: np.ndarray | None = None,
) -> tuple[float, float]:
    """Largest deviation of the column and row profiles of a residual, in their own σ.

    The column profile is the mean of each column over rows, the row profile the mean of
    each row over columns, of the residual winsorised at ``centre ± 5·noise``
    (:data:`PROFILE_WINSOR_NSIGMA`): a cosmic ray or hot pixel moves a column mean by at
    most 5σ/n_rows, while a structure covering the column moves it fully (dropping
    clipped pixels instead would hide a strong structure). Each profile minus its median
    (common offsets such as the per-row overscan error, shared by every column, cancel)
    is divided by its noise: columns ``noise/√n_rows`` (pixels of a column are
    independent once the master is subtracted); rows the larger of ``noise/√n_cols`` and
    the robust (1.4826·MAD) scatter of the row profile itself, because each row also
    carries the noise of its own overscan level.

    Parameters
    ----------
    residual : (n_rows, n_cols) float, any unit
    noise : per-pixel noise of the residual, same unit (e.g. from :func:`residual_stats`)
    centre : the residual's mean (clipping centre, value given to masked pixels)
    bad_mask : optional bool, True = pixel replaced by ``centre``

    Returns
    -------
    (column_nsigma, row_nsigma), dimensionless; NaN when ``noise`` is not positive.
    """
    if residual.ndim != 2:
        raise ValueError(f"residual must be 2-D, got {residual.shape}")
    if not (math.isfinite(noise) and noise > 0):
        return math.nan, math.nan
    half = PROFILE_WINSOR_NSIGMA * noise
    work = np.clip(residual, np.float32(centre - half), np.float32(centre + half),
                   dtype=np.float32)  # fmt: skip
    bad = ~np.isfinite(work)
    if bad_mask is not None:
        bad |= np.asarray(bad_mask, dtype=bool)
    if bad.any():
        work[bad] = np.float32(centre)
    n_rows, n_cols = work.shape
    col = work.mean(axis=0, dtype=np.float64)
    row = work.mean(axis=1, dtype=np.float64)
    col_dev = np.abs(col - np.median(col))
    row_dev = np.abs(row - np.median(row))
    col_sigma = noise / math.sqrt(n_rows)
    row_sigma = max(noise / math.sqrt(n_cols), SIGMA_PER_MAD * float(np.median(row_dev)))
    return float(col_dev.max() / col_sigma), float(row_dev.max() / row_sigma)


def verify_bias_exposure(
    residual_adu: np.ndarray,
    expected_noise_adu: float,
    exposure_id: int = 0,
    bad_mask: np.ndarray | None = None,
    *,
    noise_tolerance: float = NOISE_TOLERANCE,
    structure_nsigma: float = STRUCTURE_NSIGMA,
) -> ExposureCheck:
    """DMTN-101 4.2 MEAN, 4.3 NOISE and calibmon's STRUCTURE on (bias − master bias).

    Parameters
    ----------
    residual_adu : (n_rows, n_cols) float, adu: overscan-corrected bias minus master bias
    expected_noise_adu : :func:`bias_expected_noise_adu` of the certified master; NaN
        leaves the NOISE test out (``detail['noise_ratio']`` NaN)
    exposure_id : for the caller's bookkeeping
    bad_mask : optional bool, True = certified defect (left out)

    Returns
    -------
    ExposureCheck with mean and noise in adu; tests MEAN (``|mean| < noise``), NOISE
    (``(noise − expected)/expected ≤ noise_tolerance``), STRUCTURE (column and row
    profiles within ``structure_nsigma``, :func:`profile_nsigma`).
    """
    mean, noise, n = residual_stats(residual_adu, bad_mask)
    if n < 2 or not math.isfinite(noise):
        return ExposureCheck(exposure_id, math.nan, math.nan, expected_noise_adu,
                             {"PROCESSING": False}, {})  # fmt: skip
    tests = {"MEAN": bool(abs(mean) < noise)}
    ratio = noise / expected_noise_adu if expected_noise_adu > 0 else math.nan
    if math.isfinite(ratio):
        tests["NOISE"] = bool(ratio - 1.0 <= noise_tolerance)
    col_ns, row_ns = profile_nsigma(residual_adu, noise, mean, bad_mask)
    tests["STRUCTURE"] = bool(max(col_ns, row_ns) <= structure_nsigma)
    return ExposureCheck(
        exposure_id, mean, noise, expected_noise_adu, tests,
        {"noise_ratio": ratio, "column_nsigma": col_ns, "row_nsigma": row_ns},
    )  # fmt: skip


def dark_read_noise_e(frame_noise_e: float, dark_e_per_s: float, darktime_s: float) -> float:
    """Read noise (e-) of a dark frame: ``√(σ_frame² − d·t)``, the dark shot noise removed."""
    d = max(dark_e_per_s, 0.0) if math.isfinite(dark_e_per_s) else 0.0
    return math.sqrt(max(frame_noise_e * frame_noise_e - d * darktime_s, 0.0))


def dark_master_noise_e_per_s(
    frame_noise_e: float,
    n_frames: int,
    darktime_s: float,
    bias_master_noise_e: float,
    factor: float | None = None,
) -> float:
    """Per-pixel noise of a master dark (electron/s) at build time.

    ``√(σ_frame²·F/N + σ_B²)/t``: the combined dark frames (:func:`master_noise`) and the
    master bias subtracted from every one of them (``bias_master_noise_e``, electron).
    """
    if not (darktime_s > 0 and math.isfinite(bias_master_noise_e)):
        return math.nan
    frames = master_noise(frame_noise_e, n_frames, factor)
    return math.hypot(frames, bias_master_noise_e) / darktime_s


def dark_expected_noise_e(
    frame_noise_e: float,
    dark_e_per_s: float,
    master_darktime_s: float,
    master_noise_e_per_s: float,
    darktime_s: float,
    bias_master_noise_e: float,
) -> float:
    """Expected noise of one dark residual ``F − B − D·t`` in electrons.

    With the certified dark recording ``σ_b`` (``frame_noise_e``: per-frame noise of a
    bias-subtracted dark at its dark time ``t_b``, from frame pairs), its clipped-mean
    dark current ``d`` and its own per-pixel noise ``σ_D`` (electron/s), the read noise
    is ``rn² = σ_b² − d·t_b`` (:func:`dark_read_noise_e`) and::

        Var = rn² + d·t          the frame (read noise, dark shot noise)
            + σ_B²               the master bias subtracted from it (electron)
            + (t·σ_D)²           the master dark scaled to the frame's dark time

    Returns
    -------
    float, electron; NaN if an input is missing.
    """
    vals = (frame_noise_e, master_darktime_s, darktime_s)
    if not all(math.isfinite(v) and v > 0 for v in vals):
        return math.nan
    if not (math.isfinite(master_noise_e_per_s) and math.isfinite(bias_master_noise_e)):
        return math.nan
    d = max(dark_e_per_s, 0.0) if math.isfinite(dark_e_per_s) else 0.0
    rn = dark_read_noise_e(frame_noise_e, d, master_darktime_s)
    var = (
        rn * rn + d * darktime_s + bias_master_noise_e**2 + (darktime_s * master_noise_e_per_s) ** 2
    )
    return math.sqrt(var)


def verify_dark_exposure(
    residual_e_per_s: np.ndarray,
    darktime_s: float,
    expected_noise_e: float,
    exposure_id: int = 0,
    bad_mask: np.ndarray | None = None,
    *,
    noise_tolerance: float = NOISE_TOLERANCE,
) -> ExposureCheck:
    """DMTN-101 5.2 MEAN and 5.3 NOISE on a dark residual.

    Parameters
    ----------
    residual_e_per_s : (n_rows, n_cols) float, electron/s: (bias-subtracted dark) × gain /
        dark time − certified master dark
    darktime_s : s, of this exposure (the NOISE test is made in electrons)
    expected_noise_e : :func:`dark_expected_noise_e`, electron; NaN leaves NOISE out
    bad_mask : optional bool, True = certified defect (left out)

    Returns
    -------
    ExposureCheck with mean and noise in electron/s, ``expected_noise`` in electron.
    """
    mean, noise, n = residual_stats(residual_e_per_s, bad_mask)
    if n < 2 or not math.isfinite(noise):
        return ExposureCheck(exposure_id, math.nan, math.nan, expected_noise_e,
                             {"PROCESSING": False}, {})  # fmt: skip
    tests = {"MEAN": bool(abs(mean) < noise)}
    ratio = noise * darktime_s / expected_noise_e if expected_noise_e > 0 else math.nan
    if math.isfinite(ratio):
        tests["NOISE"] = bool(ratio - 1.0 <= noise_tolerance)
    return ExposureCheck(exposure_id, mean, noise, expected_noise_e, tests, {"noise_ratio": ratio})


def count_new_defects(day_bad_mask: np.ndarray, certified_bad_mask: np.ndarray) -> int:
    """Bad pixels of the day (hot pixels and columns, columns by pixel) not in the certified
    defects. Both masks (n_rows, n_cols) bool, True = bad."""
    day = np.asarray(day_bad_mask, dtype=bool)
    cert = np.asarray(certified_bad_mask, dtype=bool)
    if day.shape != cert.shape:
        raise ValueError(f"mask shapes differ: {day.shape} vs {cert.shape}")
    return int(np.count_nonzero(day & ~cert))


def new_defect_columns(day_columns: Sequence[int], certified_bad_mask: np.ndarray) -> list[int]:
    """Bad columns of the day not already fully masked in the certified defects."""
    cert = np.asarray(certified_bad_mask, dtype=bool)
    return [int(c) for c in day_columns if not cert[:, c].all()]


# --------------------------------------------------------------------------------------
# Flats: per-amp statistics in the worker, detector-level tests in the main process
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlatExposure:
    """One flat exposure of one amp divided by the certified flat.

    ``mean_e``: clipped mean of the ratio, electrons (per unit of the normalised flat);
    ``scatter``: its clipped std / mean (relative); ``expected_scatter``: from
    :func:`flat_expected_scatter`.
    """

    exposure_id: int
    mean_e: float
    scatter: float
    expected_scatter: float


def flat_expected_scatter(
    mean_ratio_e: float,
    amp_level: float,
    pair_var_e2: float,
    signal_e: float,
    read_noise_e: float,
    master_rel_noise: float,
) -> float:
    """Expected relative scatter of (flat × gain) / certified flat, one amp.

    Today's per-pixel signal is ``s = mean_ratio_e · amp_level`` electrons (the ratio's
    mean times the amp's level in the normalised flat). At build time the flat recorded
    its per-frame signal ``s_b`` (``signal_e``), the per-frame variance from flat pairs
    ``v_b`` (``pair_var_e2``: shot noise — brighter-fatter included — plus read noise²)
    and its own relative per-pixel noise ``m`` (``master_rel_noise``,
    ``√(v_b·F/N)/s_b``); the shot variance per electron, ``(v_b − rn²)/s_b``, scales the
    day's shot noise. So::

        (σ/μ)² = ((v_b − rn²)/s_b · s + rn²)/s²      the day's frame (DMTN-101 10.X's √MEAN)
               + m²                                 the master flat

    Returns
    -------
    float, dimensionless; NaN when an input is missing or not positive.
    """
    s = mean_ratio_e * amp_level
    vals = (s, pair_var_e2, signal_e)
    if not all(math.isfinite(v) and v > 0 for v in vals) or not math.isfinite(master_rel_noise):
        return math.nan
    rn2 = read_noise_e * read_noise_e if math.isfinite(read_noise_e) else 0.0
    shot_per_e = max(pair_var_e2 - rn2, 0.0) / signal_e
    rel_var = (shot_per_e * s + rn2) / (s * s) + master_rel_noise * master_rel_noise
    return math.sqrt(rel_var)


def flat_exposure_stats(
    ratio_e: np.ndarray, bad_mask: np.ndarray | None = None
) -> tuple[float, float]:
    """(clipped mean in electrons, clipped std / mean) of a flat ratio image (5σ, 3 iter)."""
    mean, std, n = residual_stats(ratio_e, bad_mask)
    if n < 2 or not (math.isfinite(mean) and mean > 0):
        return math.nan, math.nan
    return mean, std / mean


@dataclass(frozen=True)
class FlatVerdict:
    """Detector-level flat verification of one amp over the day's exposures."""

    pass_fraction: float
    scatter: float  # median relative scatter over exposures
    checks: tuple[ExposureCheck, ...]


def finish_flat_verification(
    per_amp: Mapping[str, Sequence[FlatExposure]],
    *,
    noise_tolerance: float = FLAT_NOISE_TOLERANCE,
    level_tolerance: float = FLAT_AMP_LEVEL_TOLERANCE,
    detector_scatter_max: float = FLAT_DETECTOR_SCATTER_MAX,
) -> dict[str, FlatVerdict]:
    """Per-amp verdicts from every amp's per-exposure flat statistics of one detector.

    For each exposure: the detector's amp means give the median and the detector SCATTER
    (std of the amp means / their mean, DMTN-101 10.Y). An amp's exposure passes when
    NOISE (``scatter ≤ (1 + noise_tolerance)·expected``, 10.X), LEVEL (``|mean/median −
    1| ≤ level_tolerance``) and DET_SCATTER (``≤ detector_scatter_max``) all hold.

    Returns
    -------
    {amp: FlatVerdict}; an amp without exposures is left out.
    """
    by_exp: dict[int, dict[str, float]] = {}
    for amp, exps in per_amp.items():
        for e in exps:
            if math.isfinite(e.mean_e):
                by_exp.setdefault(e.exposure_id, {})[amp] = e.mean_e
    det_stats: dict[int, tuple[float, float]] = {}
    for eid, means in by_exp.items():
        vals = np.asarray(list(means.values()), dtype=float)
        med = float(np.median(vals))
        scatter = float(np.std(vals) / np.mean(vals)) if vals.size > 1 else 0.0
        det_stats[eid] = (med, scatter)
    out: dict[str, FlatVerdict] = {}
    for amp, exps in per_amp.items():
        if not exps:
            continue
        checks = []
        for e in exps:
            med, det_scatter = det_stats.get(e.exposure_id, (math.nan, math.nan))
            if not (math.isfinite(e.mean_e) and math.isfinite(e.scatter)):
                checks.append(ExposureCheck(e.exposure_id, math.nan, math.nan,
                                            e.expected_scatter, {"PROCESSING": False}, {}))  # fmt: skip
                continue
            level = e.mean_e / med - 1.0 if med > 0 else math.nan
            ratio = e.scatter / e.expected_scatter if e.expected_scatter > 0 else math.nan
            tests = {}
            if math.isfinite(ratio):
                tests["NOISE"] = bool(ratio - 1.0 <= noise_tolerance)
            tests["LEVEL"] = bool(abs(level) <= level_tolerance)
            tests["DET_SCATTER"] = bool(det_scatter <= detector_scatter_max)
            checks.append(
                ExposureCheck(
                    e.exposure_id, e.mean_e, e.scatter, e.expected_scatter, tests,
                    {"noise_ratio": ratio, "level_deviation": level,
                     "detector_scatter": det_scatter},
                )
            )  # fmt: skip
        n_pass = sum(c.passed for c in checks)
        scatters = [c.noise for c in checks if math.isfinite(c.noise)]
        out[amp] = FlatVerdict(
            pass_fraction=n_pass / len(checks),
            scatter=float(np.median(scatters)) if scatters else math.nan,
            checks=tuple(checks),
        )
    return out


def pass_fraction(checks: Sequence[ExposureCheck], day_ok: bool = True) -> float:
    """Fraction of exposures whose checks all passed (0 for all when ``day_ok`` is False:
    a day-level failure such as new defects fails every exposure). NaN without checks."""
    if not checks:
        return math.nan
    if not day_ok:
        return 0.0
    return sum(c.passed for c in checks) / len(checks)
