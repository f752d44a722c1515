"""Verification of a day's raw calibration exposures against certified masters (cp_verify).

Spec: DMTN-101 ("Calibration Products Verification"), as implemented by lsst/cp_verify
(``verifyBias.py``, ``verifyDark.py``, ``verifyFlat.py``, ``verifyStats.py`` at 5855743).
Each function takes arrays of one amplifier (trimmed, overscan corrected) and returns
numbers; which products and frames go in is the caller's business
(:mod:`calibmon.pipeline.verify_steps`). Facts taken over from cp_verify:

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
  (:func:`profile_nsigma`), failing above a z derived from the false-alarm budget
  (below; ≈ 6.5 for a full-size amp);
- flat NOISE compares the relative scatter with its full expectation (Poisson scaled
  from the flat pairs measured at build time, read noise, the master flat's own noise)
  within :data:`FLAT_NOISE_TOLERANCE`; cp_verify's bare ``√MEAN`` ignores the last two
  and would fail every flat built from fewer than ~30 frames;
- flat LEVEL (no spec): a response change confined to one amp shifts only that amp's
  mean; the 5 % detector scatter would need a > 20 % change of one amp of 16, so each
  amp's mean is compared with the robust detector reference
  (:data:`FLAT_AMP_LEVEL_TOLERANCE`);
- new defects (no DMTN-101 test; cp_verify's verifyDefects): hot pixels/columns of the
  day's darks and cold ones of its flats not in the certified defects, each a decision
  against the noise of the day's data (:func:`find_new_defects`).

Every test is a decision at a stated false-alarm rate (DESIGN §6; issue 12): the
physical tolerance (5 % noise, 2 % level, 10 new defect pixels) is widened by ``z`` times
the test statistic's own standard error, with ``z`` derived so that a *stable* amp's
``verify_<type>_pass`` drops below the alert limit (:data:`PASS_FRACTION_ALERT`, the
``low: 0.5`` of the ``*_verification_failing`` rules) with probability at most
:data:`FALSE_FAIL_PER_AMP_NIGHT` per amp-night, on whatever cadence the day has:

- the pass fraction of N exposures is below 0.5 when at least ``m = ⌊N/2⌋ + 1``
  exposures fail (:func:`failures_to_alert`: 2 of LATISS's 3 biases, 8 of 15);
- the exposures are *not* independent (they share the master they are compared with
  and the expectation recorded with it), so no binomial product is used but Markov's
  inequality, valid for any correlation: ``P(n_fail ≥ m) ≤ E[n_fail]/m = N·T·p/m`` for
  T tests of per-exposure false-failure probability p. A day-level test that fails every
  exposure at once (new defects) takes half the budget outright. So
  ``p = b·m/(N·T)`` (:func:`exposure_false_fail`), e.g. 2.2e-7 for LATISS's 3 biases
  (T = 3), 1.8e-7 for 15 LSSTCam biases;
- ``z`` is the normal quantile of p (one-sided for NOISE, which fails only on an
  increase; two-sided for MEAN and LEVEL; divided over the points tested for
  STRUCTURE's profiles and the new-defect census) — :func:`normal_z`. Typical values
  are 5.0–6.6.

Detector-level references (the flat LEVEL test) are robust: the median of the amps'
levels after excluding the amps that would themselves fail LEVEL against the median of
all amps (:func:`robust_reference`), so a dead or changed amp fails alone and its
neighbours are judged against the others. cp_verify's detector SCATTER (DMTN-101 10.Y)
is recorded (robust, outliers excluded) but no longer fails the amps of a detector: an
amp whose own level moved fails LEVEL.

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
# Profiles (STRUCTURE) are means of the residual winsorised at this many σ of its noise.
PROFILE_WINSOR_NSIGMA = 5.0
# calibmon: tolerance of the flat NOISE test around its full expectation (the same 5 % as
# DMTN-101 4.3/5.3; brighter-fatter makes flats ~1.5 % *less* noisy at 15 ke-).
FLAT_NOISE_TOLERANCE = 0.05
# calibmon (no spec): an amp's flat-corrected mean may differ from the detector median of
# the amps' means by this fraction (night-to-night gain drift is ~0.1 %).
FLAT_AMP_LEVEL_TOLERANCE = 0.02
# calibmon (no spec; cp_verify's verifyDefects has no DMTN-101 test yet): new bad pixels
# (hot for the dark, cold for the flat, columns counted by pixel) allowed before the
# day fails verification. A new column is ≥ 1000 pixels on a real amp; a few marginal
# pixels may come and go.
NEW_DEFECT_PIXELS_ALLOWED = 10
# Issue 12 / DESIGN §6: a stable amp's verify_<type>_pass may drop below the alert limit
# by noise with at most this probability per amp-night (3216 LSSTCam amps × 3 types:
# ~1e-2 false verification alerts a night for the whole camera).
FALSE_FAIL_PER_AMP_NIGHT = 1e-6
# metrics/verify.yaml: the *_verification_failing rules fire below this pass fraction.
PASS_FRACTION_ALERT = 0.5


def _winsorised(
    residual: np.ndarray, centre: float, noise: float, bad_mask: np.ndarray | None
) -> np.ndarray:
    """``residual`` (float32 copy) clipped to ``centre ± PROFILE_WINSOR_NSIGMA·noise``, with
    non-finite and masked pixels set to ``centre``; the input of the row/column profiles."""
    half = PROFILE_WINSOR_NSIGMA * noise
    work = np.clip(residual, np.float32(centre - half), np.float32(centre + half),
                   dtype=np.float32)  # fmt: skip
    bad = ~np.isfinite(work)
    if bad_mask is not None:
        bad |= np.asarray(bad_mask, dtype=bool)
    if bad.any():
        work[bad] = np.float32(centre)
    return work


def failures_to_alert(n_exposures: int, alert_fraction: float = PASS_FRACTION_ALERT) -> int:
    """Fewest failing exposures of ``n_exposures`` that make the pass fraction
    ``< alert_fraction``: ``⌊N·(1 − f)⌋ + 1`` (2 of 3, 8 of 15, 1 of 1)."""
    n = max(int(n_exposures), 1)
    return min(math.floor(n * (1.0 - alert_fraction) + 1e-9) + 1, n)


def exposure_false_fail(
    n_exposures: int,
    n_tests: int,
    *,
    day_level: bool = False,
    budget: float = FALSE_FAIL_PER_AMP_NIGHT,
    alert_fraction: float = PASS_FRACTION_ALERT,
) -> float:
    """Allowed false-failure probability of one per-exposure test.

    Markov's inequality holds for exposures correlated in any way (shared master,
    shared expectation): ``P(n_fail ≥ m) ≤ N·T·p/m``, so ``p = b·m/(N·T)`` keeps the
    pass fraction of a stable amp above ``alert_fraction`` with probability ``≥ 1 − b``
    (``m`` from :func:`failures_to_alert`). With a ``day_level`` test (new defects: one
    decision failing every exposure) the exposures' tests get half of ``budget``.
    """
    n = max(int(n_exposures), 1)
    b = budget / 2.0 if day_level else budget
    return b * failures_to_alert(n, alert_fraction) / (n * max(int(n_tests), 1))


def day_false_fail(budget: float = FALSE_FAIL_PER_AMP_NIGHT) -> float:
    """Allowed false-failure probability of a day-level test (half the budget, the other
    half going to the per-exposure tests, :func:`exposure_false_fail`)."""
    return budget / 2.0


def normal_z(p: float, *, two_sided: bool = False, n_points: int = 1) -> float:
    """Normal quantile z with ``P(any of n_points exceeds z) ≤ p`` (union bound):
    ``Φ̄(z) = p/n_points`` (halved again when ``two_sided``)."""
    from scipy import stats  # heavy (≈ 0.5 s): imported by the verification that needs it

    q = p / max(int(n_points), 1)
    if two_sided:
        q /= 2.0
    return float(stats.norm.isf(q))


@functools.cache
def median_variance_factor(n: int) -> float:
    """``n·Var(median)/σ²`` of the median of n independent normal values.

    1 for n ≤ 2 (the median is the mean), → π/2 for large n; measured once per n by a
    seeded Monte Carlo of 200 000 draws (relative error 0.3 %).
    """
    n = int(n)
    if n <= 2:
        return 1.0
    rng = np.random.default_rng(7_000_003 + n)
    x = rng.standard_normal((200_000, n))
    return float(np.var(np.median(x, axis=1)) * n)


def median_error(errors: Sequence[float], common_fraction: float = 0.0) -> float:
    """1σ error of the median over exposures of values with per-exposure 1σ ``errors``.

    A fraction ``common_fraction`` of each value's variance is shared by every exposure
    (the master they were all compared with) and does not average down; the rest does,
    as a median: ``σ²·(ρ + (1 − ρ)·c(N)/N)`` with c from :func:`median_variance_factor`
    and σ the median of the per-exposure errors. NaN without a finite error.
    """
    e = [x for x in errors if math.isfinite(x)]
    if not e:
        return math.nan
    n = len(e)
    rho = min(max(float(common_fraction), 0.0), 1.0) if math.isfinite(common_fraction) else 0.0
    s = float(np.median(e))
    return s * math.sqrt(rho + (1.0 - rho) * median_variance_factor(n) / n)


def _median_of(values: Sequence[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.median(v)) if v else math.nan


def common_variance_fraction(
    master_noise: float, total_noise: float, *, of_std: bool = True
) -> float:
    """Fraction of a residual statistic's variance shared by all exposures of the day.

    Every exposure is compared with the same master, of per-pixel noise σ_M within the
    residual's σ (``total_noise``), ρ = σ_M²/σ². Of a residual *mean*'s variance the
    shared part is ρ (the master's pixel noise averages the same way in every
    exposure); of a residual *std*² it is ρ² (``Var(s²) = 2σ⁴/n``, of which the master's
    own sample variance, ``2σ_M⁴/n``, is common). 0 when unknown.
    """
    if not (math.isfinite(master_noise) and math.isfinite(total_noise) and total_noise > 0):
        return 0.0
    rho = min((master_noise / total_noise) ** 2, 1.0)
    return rho * rho if of_std else rho


def std_error(std: float, n_pixels: int) -> float:
    """1σ error of a (clipped) std of n Gaussian pixels: ``σ/√(2n)``."""
    return std / math.sqrt(2.0 * n_pixels) if n_pixels > 0 else math.nan


def mean_error_rows(
    residual: np.ndarray, noise: float, centre: float = 0.0, bad_mask: np.ndarray | None = None
) -> float:
    """1σ error of the mean of a residual image, from the scatter of its row means.

    The mean of the image is the mean of its row means; rows are independent (pixel noise,
    the per-row overscan level of each frame, the master's pixel noise), while the
    pixels of a row are not (they share that row's overscan level), so
    ``σ_mean = σ_rows/√n_rows`` with σ_rows the robust (1.4826·MAD) scatter of the row
    means — never less than the pixel term ``noise/√n_pixels``. Pixels are winsorised at
    ``centre ± 5·noise`` (hot pixels, masked defects set to ``centre``) as in
    :func:`profile_nsigma`. Same unit as ``residual``; NaN when ``noise`` is not positive.
    """
    if not (math.isfinite(noise) and noise > 0) or residual.ndim != 2:
        return math.nan
    work = _winsorised(residual, centre, noise, bad_mask)
    n_rows, n_cols = work.shape
    row = work.mean(axis=1, dtype=np.float64)
    rows_sigma = SIGMA_PER_MAD * float(np.median(np.abs(row - np.median(row))))
    return max(rows_sigma / math.sqrt(n_rows), noise / math.sqrt(n_rows * n_cols))


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
    work = _winsorised(residual, centre, noise, bad_mask)
    n_rows, n_cols = work.shape
    col = work.mean(axis=0, dtype=np.float64)
    row = work.mean(axis=1, dtype=np.float64)
    col_dev = np.abs(col - np.median(col))
    row_dev = np.abs(row - np.median(row))
    col_sigma = noise / math.sqrt(n_rows)
    row_sigma = max(noise / math.sqrt(n_cols), SIGMA_PER_MAD * float(np.median(row_dev)))
    return float(col_dev.max() / col_sigma), float(row_dev.max() / row_sigma)


def noise_ratio_error(ratio: float, n_pixels: int, expected_rel_error: float = 0.0) -> float:
    """1σ error of NOISE's ratio measured/expected: the measured std's ``1/√(2n)`` and the
    expectation's own relative error, in quadrature, times the ratio."""
    if not (math.isfinite(ratio) and n_pixels > 0):
        return math.nan
    e = expected_rel_error if math.isfinite(expected_rel_error) else 0.0
    return ratio * math.sqrt(1.0 / (2.0 * n_pixels) + e * e)


def expected_noise_rel_error(n_pixels: int, n_frames: int) -> float:
    """Relative 1σ error of a per-frame noise measured from the disjoint frame pairs of a
    product (:func:`frame_noise_from_pairs`): ``1/√(2·n_pixels·⌊N/2⌋)``, the error of a std
    of ``n_pixels·⌊N/2⌋`` values (pair differences of N frames). 0 when unknown."""
    pairs = max(int(n_frames) // 2, 1)
    return 1.0 / math.sqrt(2.0 * n_pixels * pairs) if n_pixels > 0 else 0.0


def _noise_test(
    noise: float, expected: float, n: int, expected_rel_error: float, tolerance: float, z: float
) -> tuple[float, float, bool | None]:
    """NOISE (one-sided): ``ratio − 1 ≤ tolerance + z·σ_ratio``; (ratio, σ_ratio, passed or
    None when there is no expectation)."""
    ratio = noise / expected if expected > 0 else math.nan
    if not math.isfinite(ratio):
        return math.nan, math.nan, None
    err = noise_ratio_error(ratio, n, expected_rel_error)
    return ratio, err, bool(ratio - 1.0 <= tolerance + z * (err if math.isfinite(err) else 0.0))


def verify_bias_exposure(
    residual_adu: np.ndarray,
    expected_noise_adu: float,
    exposure_id: int = 0,
    bad_mask: np.ndarray | None = None,
    *,
    n_exposures: int = 1,
    expected_rel_error: float = 0.0,
    noise_tolerance: float = NOISE_TOLERANCE,
    structure_nsigma: float | None = None,
    false_fail: float | None = None,
) -> ExposureCheck:
    """DMTN-101 4.2 MEAN, 4.3 NOISE and calibmon's STRUCTURE on (bias − master bias).

    Each test is a decision at the per-exposure false-failure probability
    ``p = false_fail`` (default :func:`exposure_false_fail` for ``n_exposures`` and the
    three tests):

    - MEAN (two-sided): ``|mean| ≤ σ_exp + z·σ_mean`` — cp_verify's ``|mean| < noise``
      with the *expected* noise σ_exp of the difference (an increase of the noise must
      not loosen MEAN), widened by the mean's own error (:func:`mean_error_rows`);
      ``z = Φ̄⁻¹(p/2)``;
    - NOISE (one-sided): ``noise/σ_exp − 1 ≤ noise_tolerance + z·σ_ratio`` with
      σ_ratio from the std's ``1/√(2n)`` and the expectation's ``expected_rel_error``
      (:func:`noise_ratio_error`); ``z = Φ̄⁻¹(p)``;
    - STRUCTURE (two-sided, every column and row profile point):
      ``max(col, row) nsigma ≤ z`` with ``z = Φ̄⁻¹(p/(2·(n_rows + n_cols)))``
      (:func:`profile_nsigma`) unless ``structure_nsigma`` is given.

    Parameters
    ----------
    residual_adu : (n_rows, n_cols) float, adu: overscan-corrected bias minus master bias
    expected_noise_adu : :func:`bias_expected_noise_adu` of the certified master; NaN
        leaves the NOISE test out (``detail['noise_ratio']`` NaN) and MEAN uses the
        measured noise
    exposure_id : for the caller's bookkeeping
    bad_mask : optional bool, True = certified defect (left out)
    n_exposures : exposures of the day being verified (sets the false-fail budget)
    expected_rel_error : relative 1σ error of ``expected_noise_adu``

    Returns
    -------
    ExposureCheck with mean and noise in adu; ``detail`` holds the statistics, their
    errors (``mean_error``, ``noise_error``, adu) and the limits applied.
    """
    mean, noise, n = residual_stats(residual_adu, bad_mask)
    if n < 2 or not math.isfinite(noise):
        return ExposureCheck(exposure_id, math.nan, math.nan, expected_noise_adu,
                             {"PROCESSING": False}, {})  # fmt: skip
    p = exposure_false_fail(n_exposures, 3) if false_fail is None else false_fail
    mean_err = mean_error_rows(residual_adu, noise, mean, bad_mask)
    ref = expected_noise_adu if expected_noise_adu > 0 else noise
    z_mean = normal_z(p, two_sided=True)
    mean_limit = ref + z_mean * (mean_err if math.isfinite(mean_err) else 0.0)
    tests = {"MEAN": bool(abs(mean) <= mean_limit)}
    ratio, ratio_err, ok = _noise_test(noise, expected_noise_adu, n, expected_rel_error,
                                       noise_tolerance, normal_z(p))  # fmt: skip
    if ok is not None:
        tests["NOISE"] = ok
    n_rows, n_cols = residual_adu.shape
    z_struct = (normal_z(p, two_sided=True, n_points=n_rows + n_cols)
                if structure_nsigma is None else structure_nsigma)  # fmt: skip
    col_ns, row_ns = profile_nsigma(residual_adu, noise, mean, bad_mask)
    tests["STRUCTURE"] = bool(max(col_ns, row_ns) <= z_struct)
    return ExposureCheck(
        exposure_id, mean, noise, expected_noise_adu, tests,
        {"noise_ratio": ratio, "noise_ratio_error": ratio_err, "column_nsigma": col_ns,
         "row_nsigma": row_ns, "mean_error": mean_err, "noise_error": std_error(noise, n),
         "mean_limit": mean_limit, "noise_ratio_limit": 1.0 + noise_tolerance
         + normal_z(p) * (ratio_err if math.isfinite(ratio_err) else 0.0),
         "structure_nsigma_limit": z_struct, "false_fail": p, "n_pixels": float(n)},
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
    n_exposures: int = 1,
    expected_rel_error: float = 0.0,
    noise_tolerance: float = NOISE_TOLERANCE,
    false_fail: float | None = None,
    day_level: bool = True,
) -> ExposureCheck:
    """DMTN-101 5.2 MEAN and 5.3 NOISE on a dark residual, as decisions.

    Both use the *expected* noise of the difference (:func:`dark_expected_noise_e`), not
    a fixed e−/s tolerance: a 1-s dark is read-noise dominated (σ ≈ 6 e−/s a pixel),
    a 30-s dark ≈ 0.2 e−/s. MEAN (two-sided): ``|mean| ≤ σ_exp/t + z·σ_mean``;
    NOISE (one-sided): ``noise·t/σ_exp − 1 ≤ noise_tolerance + z·σ_ratio``; p from
    :func:`exposure_false_fail` (two tests, and with ``day_level`` the new-defect test
    holding half the budget) unless ``false_fail`` is given; z as for the bias.

    Parameters
    ----------
    residual_e_per_s : (n_rows, n_cols) float, electron/s: (bias-subtracted dark) × gain /
        dark time − certified master dark
    darktime_s : s, of this exposure (the NOISE test is made in electrons)
    expected_noise_e : :func:`dark_expected_noise_e`, electron; NaN leaves NOISE out
    bad_mask : optional bool, True = certified defect (left out)
    n_exposures, expected_rel_error : as for :func:`verify_bias_exposure`

    Returns
    -------
    ExposureCheck with mean and noise in electron/s, ``expected_noise`` in electron;
    ``detail`` with ``mean_error``/``noise_error`` (electron/s) and the limits.
    """
    mean, noise, n = residual_stats(residual_e_per_s, bad_mask)
    if n < 2 or not math.isfinite(noise):
        return ExposureCheck(exposure_id, math.nan, math.nan, expected_noise_e,
                             {"PROCESSING": False}, {})  # fmt: skip
    p = exposure_false_fail(n_exposures, 2, day_level=day_level) if false_fail is None \
        else false_fail  # fmt: skip
    mean_err = mean_error_rows(residual_e_per_s, noise, mean, bad_mask)
    ref = expected_noise_e / darktime_s if expected_noise_e > 0 and darktime_s > 0 else noise
    mean_limit = ref + normal_z(p, two_sided=True) * (mean_err if math.isfinite(mean_err)
                                                       else 0.0)  # fmt: skip
    tests = {"MEAN": bool(abs(mean) <= mean_limit)}
    ratio, ratio_err, ok = _noise_test(noise * darktime_s, expected_noise_e, n,
                                       expected_rel_error, noise_tolerance, normal_z(p))  # fmt: skip
    if ok is not None:
        tests["NOISE"] = ok
    return ExposureCheck(
        exposure_id, mean, noise, expected_noise_e, tests,
        {"noise_ratio": ratio, "noise_ratio_error": ratio_err, "mean_error": mean_err,
         "noise_error": std_error(noise, n), "mean_limit": mean_limit,
         "false_fail": p, "n_pixels": float(n)},
    )  # fmt: skip


@dataclass(frozen=True, eq=False)  # holds an array: identity equality
class NewDefects:
    """Defects of the day that the certified defects do not have, found as a decision.

    ``n_pixels``: new bad pixels, columns counted by pixel (certified pixels of a new
    column left out); ``columns``: new bad columns; ``mask``: every new bad pixel;
    ``pixel_limit``/``column_limit``: the offsets from the amp's clipped mean a pixel /
    a column median had to exceed (image unit); ``z_pixel``/``z_column``: the noise
    multiples behind them; ``pixel_noise``: the per-pixel noise used.
    """

    n_pixels: int
    columns: tuple[int, ...]
    mask: np.ndarray
    pixel_limit: float
    column_limit: float
    z_pixel: float
    z_column: float
    pixel_noise: float

    @property
    def ok(self) -> bool:
        return self.n_pixels <= NEW_DEFECT_PIXELS_ALLOWED


def find_new_defects(
    image: np.ndarray,
    certified_mask: np.ndarray | None,
    offset: float,
    *,
    cold: bool = False,
    pixel_noise: float = math.nan,
    false_fail: float | None = None,
) -> NewDefects:
    """Hot (or ``cold``) pixels and columns of ``image`` not in ``certified_mask``.

    cp_pipe's census (:mod:`calibmon.science.defects`) thresholds at a fixed offset from
    the amp's clipped mean (3 e−/s for darks, 10 % for flats), which on a noisy master
    (three 1-s darks: σ ≈ 6 e−/s a pixel) marks a third of the pixels and, through its
    column rules, every column. Verification instead decides:

    - a column is bad when the *median* of its uncertified pixels is beyond the offset
      (cp_pipe's "≥ 50 % of the column's pixels bad") and beyond
      ``z_col·1.2533·σ/√n_rows`` (the median's noise), ``z_col = Φ̄⁻¹(p/2 / n_cols)``;
    - a pixel outside those columns is bad when beyond the offset and beyond ``z_pix·σ``,
      ``z_pix = Φ̄⁻¹(p/2 / n_pixels)`` (union bound over the pixels) — the detection
      limit per pixel, stated in ``pixel_limit``;

    so noise alone makes even one new pixel or column with probability ≤ p
    (``false_fail``, default :func:`day_false_fail`): the count is free of noise (not
    merely below :data:`NEW_DEFECT_PIXELS_ALLOWED`, which stays the physical allowance),
    so that it can be trended and alerted on. σ is the larger of the image's
    clipped std (3σ, 3 iterations, certified defects left out — it includes the real
    pixel-to-pixel non-uniformity) and ``pixel_noise`` (the expected noise of the
    master, if known).

    Parameters
    ----------
    image : (n_rows, n_cols) float: the day's combined dark rate (electron/s), or its
        combined flat (any scale)
    certified_mask : bool, True = certified defect; None = nothing certified
    offset : the census threshold offset, image unit (> 0; for ``cold`` the drop below
        the clipped mean, e.g. 0.1 × mean)
    cold : look below the mean instead of above

    Returns
    -------
    NewDefects
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got {img.shape}")
    n_rows, n_cols = img.shape
    cert = (np.zeros(img.shape, dtype=bool) if certified_mask is None
            else np.asarray(certified_mask, dtype=bool))  # fmt: skip
    if cert.shape != img.shape:
        raise ValueError(f"mask shapes differ: {img.shape} vs {cert.shape}")
    p = day_false_fail() if false_fail is None else false_fail
    bad_in = cert | ~np.isfinite(img)
    mean, std, n = clipped_stats_fast(img, 3.0, 3, bad_mask=bad_in)
    empty = np.zeros(img.shape, dtype=bool)
    if n < 2 or not math.isfinite(mean):
        return NewDefects(0, (), empty, math.nan, math.nan, math.nan, math.nan, math.nan)
    sigma = max(std, pixel_noise) if math.isfinite(pixel_noise) else std
    z_col = normal_z(p / 2.0, n_points=n_cols)
    z_pix = normal_z(p / 2.0, n_points=n)
    col_limit = max(offset, z_col * 1.2533 * sigma / math.sqrt(n_rows))
    pix_limit = max(offset, z_pix * sigma)
    # median of a column's uncertified pixels > L  ⟺  more than half of them are > L:
    # one comparison and a count instead of a median per column
    excess = np.subtract(img, np.float32(mean), dtype=np.float32)
    if cold:
        np.negative(excess, out=excess)
    with np.errstate(invalid="ignore"):
        above = excess > np.float32(col_limit)
    above &= ~cert
    n_good = n_rows - np.count_nonzero(cert, axis=0)
    cols = tuple(int(c) for c in np.flatnonzero(2 * np.count_nonzero(above, axis=0) > n_good))
    with np.errstate(invalid="ignore"):
        mask = excess > np.float32(pix_limit)
    if cols:
        mask[:, list(cols)] = True
    mask &= ~cert
    return NewDefects(int(np.count_nonzero(mask)), cols, mask, pix_limit, col_limit,
                      z_pix, z_col, sigma)  # fmt: skip


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
    n_pixels: int = 0  # pixels in the clipped statistics (0: unknown, errors NaN)
    expected_rel_error: float = 0.0  # relative 1σ error of expected_scatter
    master_rel_noise: float = 0.0  # the certified flat's relative per-pixel noise


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
) -> tuple[float, float, int]:
    """(clipped mean in electrons, clipped std / mean, pixels used) of a flat ratio image
    (5σ, 3 iterations); NaNs when the mean is not positive."""
    mean, std, n = residual_stats(ratio_e, bad_mask)
    if n < 2 or not (math.isfinite(mean) and mean > 0):
        return math.nan, math.nan, int(n)
    return mean, std / mean, int(n)


@dataclass(frozen=True)
class RobustReference:
    """A detector-level reference over amps: median and σ_MAD of the inlier amps.

    ``error``: 1σ of the median (``1.2533·σ_MAD/√n_inliers``); ``outliers``: the amps
    left out.
    """

    median: float
    sigma_mad: float
    n_inliers: int
    outliers: tuple[str, ...]

    @property
    def error(self) -> float:
        if self.n_inliers < 1 or not math.isfinite(self.sigma_mad):
            return math.nan
        return 1.2533 * self.sigma_mad / math.sqrt(self.n_inliers)


def robust_reference(values: Mapping[str, float], rel_tolerance: float) -> RobustReference:
    """Median and σ_MAD of amp values with the outlier amps excluded.

    An amp is an outlier when not finite or when it differs from the median of all
    finite amps by more than ``rel_tolerance`` (relative) — i.e. when it would fail the
    test the reference is for; median and σ_MAD (1.4826·MAD) are then taken over the
    rest. With fewer than half the finite amps left (no majority to define "normal")
    every finite amp is kept.
    """
    fin = {a: float(v) for a, v in values.items() if math.isfinite(v)}
    if not fin:
        return RobustReference(math.nan, math.nan, 0, tuple(sorted(values)))
    arr = np.asarray(list(fin.values()))
    med = float(np.median(arr))
    inl = {a: v for a, v in fin.items() if med > 0 and abs(v / med - 1.0) <= rel_tolerance}
    if 2 * len(inl) < len(fin):
        inl = fin
    vals = np.asarray(list(inl.values()))
    m = float(np.median(vals))
    mad = SIGMA_PER_MAD * float(np.median(np.abs(vals - m))) if vals.size > 1 else math.nan
    return RobustReference(m, mad, len(inl), tuple(sorted(set(values) - set(inl))))


@dataclass(frozen=True)
class FlatVerdict:
    """Flat verification of one amp over the day's exposures."""

    pass_fraction: float
    scatter: float  # median relative scatter over exposures
    checks: tuple[ExposureCheck, ...]
    scatter_error: float = math.nan  # 1σ of ``scatter`` (relative)


def finish_flat_verification(
    per_amp: Mapping[str, Sequence[FlatExposure]],
    *,
    day_ok: Mapping[str, bool] | None = None,
    noise_tolerance: float = FLAT_NOISE_TOLERANCE,
    level_tolerance: float = FLAT_AMP_LEVEL_TOLERANCE,
    false_fail: float | None = None,
) -> dict[str, FlatVerdict]:
    """Per-amp verdicts from every amp's per-exposure flat statistics of one detector.

    For each exposure the detector reference is :func:`robust_reference` of the amps'
    means (amps that would fail LEVEL, dead amps, are left out), and each amp is judged
    on its own, with p from :func:`exposure_false_fail` (two tests; the day-level new
    cold defects hold half the budget):

    - NOISE (one-sided, DMTN-101 10.X): ``scatter/expected − 1 ≤ noise_tolerance +
      z·σ_ratio`` (:func:`noise_ratio_error` with the exposure's ``expected_rel_error``);
    - LEVEL (two-sided): ``|mean/reference − 1| ≤ level_tolerance + z·σ_level`` with
      σ_level from the amp mean's error (``scatter/√n``) and the reference's
      (:attr:`RobustReference.error`), relative, in quadrature.

    cp_verify's DET_SCATTER (10.Y) is the robust σ_MAD/median over the inlier amps,
    recorded in ``detail['detector_scatter']`` but no longer a test of each amp: with
    the outliers excluded it can only fail when most amps are scattered, and then each
    amp that moved fails LEVEL on its own. ``day_ok[amp]`` False (new cold defects)
    fails every exposure of that amp.

    Returns
    -------
    {amp: FlatVerdict}; an amp without exposures is left out.
    """
    by_exp: dict[int, dict[str, float]] = {}
    for amp, exps in per_amp.items():
        for e in exps:
            by_exp.setdefault(e.exposure_id, {})[amp] = e.mean_e
    refs = {eid: robust_reference(means, level_tolerance) for eid, means in by_exp.items()}
    out: dict[str, FlatVerdict] = {}
    for amp, exps in per_amp.items():
        if not exps:
            continue
        p = exposure_false_fail(len(exps), 2, day_level=True) if false_fail is None \
            else false_fail  # fmt: skip
        z1, z2 = normal_z(p), normal_z(p, two_sided=True)
        checks = []
        for e in exps:
            ref = refs.get(e.exposure_id, RobustReference(math.nan, math.nan, 0, ()))
            if not (math.isfinite(e.mean_e) and math.isfinite(e.scatter)):
                checks.append(ExposureCheck(e.exposure_id, math.nan, math.nan,
                                            e.expected_scatter, {"PROCESSING": False}, {}))  # fmt: skip
                continue
            med = ref.median
            level = e.mean_e / med - 1.0 if med > 0 else math.nan
            n = e.n_pixels
            amp_rel = e.scatter / math.sqrt(n) if n > 0 else 0.0
            ref_rel = ref.error / med if med > 0 and math.isfinite(ref.error) else 0.0
            level_err = math.hypot(amp_rel, ref_rel)
            level_limit = level_tolerance + z2 * level_err
            tests: dict[str, bool] = {}
            ratio, ratio_err, ok = _noise_test(e.scatter, e.expected_scatter, n,
                                               e.expected_rel_error, noise_tolerance, z1)  # fmt: skip
            if ok is not None:
                tests["NOISE"] = ok
            tests["LEVEL"] = bool(abs(level) <= level_limit)
            det_scatter = ref.sigma_mad / med if med > 0 else math.nan
            checks.append(
                ExposureCheck(
                    e.exposure_id, e.mean_e, e.scatter, e.expected_scatter, tests,
                    {"noise_ratio": ratio, "noise_ratio_error": ratio_err,
                     "level_deviation": level, "level_error": level_err,
                     "level_limit": level_limit, "detector_scatter": det_scatter,
                     "reference_e": med, "n_outlier_amps": float(len(ref.outliers)),
                     "noise_error": std_error(e.scatter, n) if n > 0 else math.nan,
                     "false_fail": p},
                )
            )  # fmt: skip
        ok_day = True if day_ok is None else bool(day_ok.get(amp, True))
        scatters = [c.noise for c in checks if math.isfinite(c.noise)]
        # the master flat's noise is common to every exposure: a fraction (m/scatter)⁴ of
        # the variance of each scatter² (see :func:`common_variance_fraction`)
        rho = common_variance_fraction(exps[0].master_rel_noise, _median_of(scatters))
        out[amp] = FlatVerdict(
            pass_fraction=pass_fraction(checks, ok_day),
            scatter=float(np.median(scatters)) if scatters else math.nan,
            checks=tuple(checks),
            scatter_error=median_error(
                [c.detail.get("noise_error", math.nan) for c in checks], rho
            ),
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
