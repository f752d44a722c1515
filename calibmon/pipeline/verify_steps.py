"""The pipeline's verify steps: each day's exposures against the certified products.

``verify_bias``, ``verify_flat`` and ``verify_dark`` are steps of
:data:`calibmon.pipeline.measure.STEPS` (signature ``(task, res, ctx)``), each run right after
the step that read the kind's stack: that step leaves the stack in ``ctx.stacks`` when
``task.calibs`` holds a certified product of its kind, and the verify step takes it
from there — the raws are read once. The certified products arrive in ``task.calibs``
(looked up in the main process, :func:`calibmon.calibs.registry.certified_for_detector_day`);
each step reads its amp's HDU of the product file. With no product of a kind the step
does nothing (the run reports the missing product once per detector and type).

The residual images, by kind (all overscan corrected and trimmed, as the pipeline's
stacks are):

- bias: ``exposure − certified master bias`` (adu);
- dark: ``(exposure − the day's master bias) × gain / DARKTIME − certified master dark``
  (electron/s), with the gain recorded in the certified dark so that master and frame
  are scaled alike; the day's own master bias is subtracted (as the pipeline's dark step
  does), so a bias problem is reported by the bias verification and not twice. Without
  a bias of the day the certified bias is used;
- flat: ``(exposure − the day's master bias) × gain / certified flat`` (electrons; the
  flat is normalised per detector, so amps keep their relative response).

Flat verdicts need every amp of the detector (the detector scatter and each amp's level
against the detector median), so the flat step leaves its per-exposure numbers in
``res.verify["flat"]`` and :func:`finish_detector_verification` (main process, once all
amps of a detector-day are back) turns them into records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from calibmon.calibs.products import AmpPlane, CertifiedCalib, amp_float, read_amp
from calibmon.errors import CalibError
from calibmon.pipeline.steps import AmpContext
from calibmon.pipeline.tasks import AmpResult, AmpTask
from calibmon.science import defects as defects_sci
from calibmon.science import verify as vsci
from calibmon.science.robust import clipped_stats_fast

BIAS_METRICS = ("verify_bias_mean", "verify_bias_noise", "verify_bias_pass")
DARK_METRICS = ("verify_dark_mean", "verify_dark_noise", "verify_dark_pass")
FLAT_METRICS = ("verify_flat_scatter", "verify_flat_pass")
# cp_pipe census offsets the verification of new defects starts from
# (calibmon.science.defects): hot 3 e-/s above the clipped mean, cold below 0.9 of it.
HOT_OFFSET_E_PER_S = defects_sci.DARK_CURRENT_THRESHOLD_E_PER_S
COLD_OFFSET_FRACTION = 1.0 - defects_sci.FRAC_THRESHOLD_FLAT


def _calib(task: AmpTask, kind: str) -> CertifiedCalib | None:
    return (task.calibs or {}).get(kind)


def _read(cal: CertifiedCalib, amp: str, shape: tuple[int, ...]) -> AmpPlane:
    """The product's plane of ``amp``, checked against the exposures' trimmed shape."""
    plane = read_amp(cal.path, amp)
    if plane.image.shape != tuple(shape):
        raise CalibError(
            f"certified {cal.calib_type} {cal.product_id} has amp shape {plane.image.shape}, "
            f"the exposures {tuple(shape)}"
        )
    return plane


def _defect_mask(task: AmpTask, shape: tuple[int, ...]) -> tuple[np.ndarray | None, dict]:
    """Certified defects of the amp (True = bad) and their input_calibs entry, if any."""
    cal = _calib(task, "defects")
    if cal is None:
        return None, {}
    try:
        return _read(cal, task.amp, shape).image.astype(bool), {"defects": cal.provenance()}
    except CalibError:
        return None, {}


def _count(plane: AmpPlane, key: str, fallback: int = 0) -> int:
    """An integer per-amp key (frame counts); ``fallback`` when absent."""
    v = amp_float(plane, key)
    return int(v) if math.isfinite(v) else int(fallback)


def _nan_all(res: AmpResult, metrics: Sequence[str], reason: str) -> None:
    for m in metrics:
        res.put(m, math.nan, reason)


def _median(values: Sequence[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.median(v)) if v else math.nan


def _details(checks: Sequence[vsci.ExposureCheck], key: str) -> list[float]:
    return [c.detail.get(key, math.nan) for c in checks]


def _decision_prov(checks: Sequence[vsci.ExposureCheck]) -> dict[str, Any]:
    """Provenance of the decision: the per-exposure false-fail probability and the budget."""
    return {
        "false_fail_per_exposure_test": _median(_details(checks, "false_fail")),
        "false_fail_per_amp_night": vsci.FALSE_FAIL_PER_AMP_NIGHT,
    }


def _failures(checks: Sequence[vsci.ExposureCheck]) -> dict[str, Any]:
    """Provenance of a pass fraction: the failing exposures and tests (short)."""
    failed = {str(c.exposure_id): ",".join(c.failed_tests) for c in checks if not c.passed}
    tests = sorted({t for c in checks for t in c.failed_tests})
    return {"n_checked": len(checks), "failed_tests": ",".join(tests),
            "failed_exposures": failed}  # fmt: skip


def _held_with_reference(
    task: AmpTask, res: AmpResult, ctx: AmpContext, kind: str, metrics: Sequence[str]
) -> tuple[np.ndarray, list, CertifiedCalib, AmpPlane] | None:
    """The stack the ``kind`` step kept for verification and the certified product's plane
    for this amp; None when there is nothing to verify (an unreadable product sets the
    metrics NaN with the reason)."""
    held = ctx.stacks.pop(kind, None)
    cal = _calib(task, kind)
    if cal is None or held is None:
        return None
    stack, used = held
    if not used:
        return None
    try:
        plane = _read(cal, task.amp, stack.shape[1:])
    except CalibError as err:
        _nan_all(res, metrics, str(err))
        return None
    return stack, used, cal, plane


# --------------------------------------------------------------------------------------
# bias
# --------------------------------------------------------------------------------------
def verify_bias(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """DMTN-101 4.2/4.3 + STRUCTURE of each bias against the certified master bias.

    Errors: ``verify_bias_mean`` and ``verify_bias_noise`` are medians over exposures of
    values whose 1σ errors come from each residual (:func:`~calibmon.science.verify.
    mean_error_rows`, ``σ/√(2n)``); the master's share, common to every exposure, does
    not average down (:func:`~calibmon.science.verify.median_error`).
    """
    got = _held_with_reference(task, res, ctx, "bias", BIAS_METRICS)
    if got is None:
        return
    stack, used, cal, plane = got
    bad, def_prov = _defect_mask(task, stack.shape[1:])
    n_master = _count(plane, "NFRAMES", cal.n_exposures)
    frame_noise = amp_float(plane, "FRMNOISE")
    master_noise = amp_float(plane, "MNOISE")
    if not math.isfinite(master_noise):  # an imported bias: assume a plain mean of N
        master_noise = vsci.master_noise(frame_noise, n_master, 1.0)
    expected = vsci.bias_expected_noise_adu(frame_noise, master_noise)
    exp_err = vsci.expected_noise_rel_error(int(np.prod(plane.image.shape)), n_master)
    checks = [
        vsci.verify_bias_exposure(stack[k] - plane.image, expected, fr.exposure_id, bad,
                                  n_exposures=len(used), expected_rel_error=exp_err)
        for k, fr in enumerate(used)
    ]  # fmt: skip
    prov = {"input_calibs": {"bias": cal.provenance(), **def_prov}}
    note = "" if math.isfinite(expected) else "certified bias has no FRMNOISE: NOISE not tested"
    res.put(
        "verify_bias_mean", _median([c.mean for c in checks]), "no usable pixels",
        error=vsci.median_error(_details(checks, "mean_error"),
                                vsci.common_variance_fraction(master_noise, expected,
                                                              of_std=False)),
        mean_limit_adu=_median(_details(checks, "mean_limit")), **prov,
    )  # fmt: skip
    res.put(
        "verify_bias_noise", _median([c.noise for c in checks]), "no usable pixels",
        error=vsci.median_error(_details(checks, "noise_error"),
                                vsci.common_variance_fraction(master_noise, expected)),
        noise_expected_adu=expected, certified_frame_noise_adu=frame_noise,
        certified_master_noise_adu=master_noise, n_master=n_master, **prov,
    )  # fmt: skip
    res.put(
        "verify_bias_pass", vsci.pass_fraction(checks), "no exposure checked",
        noise_tolerance=vsci.NOISE_TOLERANCE,
        noise_ratio_limit=_median(_details(checks, "noise_ratio_limit")),
        structure_nsigma=_median(_details(checks, "structure_nsigma_limit")),
        max_structure_nsigma=max(
            (max(c.detail.get("column_nsigma", 0.0), c.detail.get("row_nsigma", 0.0))
             for c in checks), default=math.nan,
        ),
        **({"note": note} if note else {}), **_decision_prov(checks), **_failures(checks),
        **prov,
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# dark
# --------------------------------------------------------------------------------------
def verify_dark(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """DMTN-101 5.2/5.3 of each dark against the certified master dark, and new defects.

    ``verify_new_defects`` counts the day's new bad pixels of every kind: the new hot
    pixels/columns decided here plus the new cold ones the flat step found
    (``verify_new_cold_defects``; a pixel new in both would count twice). New hot
    defects fail the dark (``NEW_DEFECTS``), new cold ones the flat.
    """
    held = ctx.stacks.pop("dark", None)
    cal = _calib(task, "dark")
    cal_def = _calib(task, "defects")
    if cal is None and cal_def is None:
        return
    shape = held[0].shape[1:] if held is not None else (
        ctx.bright_census.pixel_mask.shape if ctx.bright_census is not None else None
    )  # fmt: skip
    if shape is None:
        return
    plane: AmpPlane | None = None
    plane_err = ""
    if cal is not None:
        try:
            plane = _read(cal, task.amp, shape)
        except CalibError as err:
            plane_err = str(err)
    bad, def_prov = _defect_mask(task, shape)
    if cal is None or held is None or plane is None:
        _new_defects(task, res, ctx, plane, cal, bad, def_prov, None)
        if cal is not None and held is not None:
            _nan_all(res, DARK_METRICS, plane_err)
        return
    stack, used = held
    prov: dict[str, Any] = {"input_calibs": {"dark": cal.provenance(), **def_prov}}
    gain = amp_float(plane, "GAIN")
    if not (math.isfinite(gain) and gain > 0):
        _new_defects(task, res, ctx, plane, cal, bad, def_prov, None)
        _nan_all(res, DARK_METRICS, f"certified dark {cal.product_id} has no GAIN")
        return
    fn, dmean = amp_float(plane, "FRMNOISE"), amp_float(plane, "DARKMEAN")
    t_b, n_d = amp_float(plane, "DARKTIME"), _count(plane, "NFRAMES", cal.n_exposures)
    read_noise_e = vsci.dark_read_noise_e(fn, dmean, t_b)
    master_noise = amp_float(plane, "MNOISE")
    if not math.isfinite(master_noise):  # an imported dark: assume plain means
        n_b = max(_count(plane, "NBIAS"), 1)
        master_noise = vsci.dark_master_noise_e_per_s(
            fn, n_d, t_b, read_noise_e / math.sqrt(n_b), 1.0
        )
    bias_subtracted = ctx.master_bias is not None and ctx.master_bias.shape == stack.shape[1:]
    if bias_subtracted:
        # the day's master bias, with the certified read noise (not today's: an increase
        # must show) and the combine's noise factor for its frame count
        n_bias_today = len(res.used.get("bias", ()))
        bias_noise_e = vsci.master_noise(read_noise_e, n_bias_today)
        bias_note = f"day's master bias ({n_bias_today} frames)"
    else:
        cal_bias = _calib(task, "bias")
        if cal_bias is None:
            _new_defects(task, res, ctx, plane, cal, bad, def_prov, None)
            _nan_all(res, DARK_METRICS, "no bias of the day and no certified bias to subtract")
            return
        try:
            bias_plane = _read(cal_bias, task.amp, shape)
        except CalibError as err:
            _new_defects(task, res, ctx, plane, cal, bad, def_prov, None)
            _nan_all(res, DARK_METRICS, str(err))
            return
        for k, fr in enumerate(used):  # the stack is in adu/s (step_dark divided it)
            stack[k] -= bias_plane.image / np.float32(fr.darktime_s)
        bias_noise_adu = amp_float(bias_plane, "MNOISE")
        if not math.isfinite(bias_noise_adu):
            bias_noise_adu = vsci.master_noise(
                amp_float(bias_plane, "FRMNOISE"),
                _count(bias_plane, "NFRAMES", cal_bias.n_exposures), 1.0,
            )  # fmt: skip
        bias_noise_e = bias_noise_adu * gain
        prov["input_calibs"]["bias"] = cal_bias.provenance()
        bias_note = f"certified bias {cal_bias.product_id}"
    # The day's mean dark rate (electron/s) for the new-defect decision, with its
    # expected per-pixel noise: √((rn² + d·t)/N + σ_B²)/t (plain mean of N frames).
    t_day = _median([fr.darktime_s for fr in used])
    day_rate = stack.mean(axis=0, dtype=np.float32) * np.float32(gain)
    d = max(dmean, 0.0) if math.isfinite(dmean) else 0.0
    day_noise = math.sqrt((read_noise_e**2 + d * t_day) / len(used) + bias_noise_e**2) / t_day
    n_new, day_ok = _new_defects(task, res, ctx, plane, cal, bad, def_prov, (day_rate, day_noise))
    del day_rate
    exp_err = vsci.expected_noise_rel_error(int(np.prod(plane.image.shape)), n_d)
    checks = []
    for k, fr in enumerate(used):
        resid = stack[k] * np.float32(gain)
        resid -= plane.image
        expected = vsci.dark_expected_noise_e(fn, dmean, t_b, master_noise, fr.darktime_s,
                                              bias_noise_e)  # fmt: skip
        checks.append(vsci.verify_dark_exposure(resid, fr.darktime_s, expected,
                                                fr.exposure_id, bad, n_exposures=len(used),
                                                expected_rel_error=exp_err))  # fmt: skip
    expected_e = _median([c.expected_noise for c in checks])
    # the master dark's (and master bias's) share of the residual, common to every exposure
    common = math.hypot(t_day * master_noise, bias_noise_e) if math.isfinite(t_day) else math.nan
    extra = {"gain_e_per_adu": gain, "bias_subtracted": bias_note}
    res.put(
        "verify_dark_mean", _median([c.mean for c in checks]), "no usable pixels",
        error=vsci.median_error(_details(checks, "mean_error"),
                                vsci.common_variance_fraction(common, expected_e, of_std=False)),
        mean_limit_e_per_s=_median(_details(checks, "mean_limit")), **extra, **prov,
    )  # fmt: skip
    res.put(
        "verify_dark_noise", _median([c.noise for c in checks]), "no usable pixels",
        error=vsci.median_error(_details(checks, "noise_error"),
                                vsci.common_variance_fraction(common, expected_e)),
        noise_expected_e=expected_e, **extra, **prov,
    )  # fmt: skip
    fail = _failures(checks)
    if not day_ok:
        fail["failed_tests"] = ",".join(sorted({*filter(None, fail["failed_tests"].split(",")),
                                                 "NEW_DEFECTS"}))  # fmt: skip
    res.put(
        "verify_dark_pass", vsci.pass_fraction(checks, day_ok), "no exposure checked",
        noise_tolerance=vsci.NOISE_TOLERANCE, new_defects=n_new,
        new_defects_allowed=vsci.NEW_DEFECT_PIXELS_ALLOWED, **_decision_prov(checks), **fail,
        **prov,
    )  # fmt: skip


def _new_defects(
    task: AmpTask,
    res: AmpResult,
    ctx: AmpContext,
    dark_plane: AmpPlane | None,
    cal_dark: CertifiedCalib | None,
    defect_mask: np.ndarray | None,
    def_prov: dict,
    day: tuple[np.ndarray, float] | None,
) -> tuple[float, bool]:
    """``verify_new_defects``: the day's new hot pixels/columns (plus the new cold ones of
    the flat step) not in the certified defects. Returns (hot count, day_ok).

    With the day's mean dark rate and its expected per-pixel noise (``day``), new hot
    defects are a decision (:func:`~calibmon.science.verify.find_new_defects`: noise
    makes more than the allowed pixels with probability ≤ 5e-7 a day); without it (no
    certified dark to verify against) the day's census is compared directly. The
    reference is the certified defects product; without one, the hot pixels found the
    same way in the certified master dark.
    """
    census = ctx.bright_census
    if census is None:
        return math.nan, True
    if defect_mask is not None:
        ref, prov, source = defect_mask, def_prov, "certified defects"
    elif dark_plane is not None and cal_dark is not None:
        ref = vsci.find_new_defects(dark_plane.image, None, HOT_OFFSET_E_PER_S).mask
        prov, source = {"dark": cal_dark.provenance()}, "hot pixels of the certified dark"
    else:
        return math.nan, True
    if not census.measured:
        res.put("verify_new_defects", math.nan, census.reason or "no defect census of the day")
        return math.nan, True
    extra: dict[str, Any] = {}
    if day is not None:
        found = vsci.find_new_defects(day[0], ref, HOT_OFFSET_E_PER_S, pixel_noise=day[1])
        n_hot, new_cols, ok = found.n_pixels, list(found.columns), found.ok
        extra = {"detection_limit_pixel_e_per_s": found.pixel_limit,
                 "detection_limit_column_e_per_s": found.column_limit,
                 "pixel_noise_e_per_s": found.pixel_noise}  # fmt: skip
    else:
        n_hot = vsci.count_new_defects(census.pixel_mask, ref)
        new_cols = vsci.new_defect_columns(census.column_indices, ref)
        ok = n_hot <= vsci.NEW_DEFECT_PIXELS_ALLOWED
    n_cold = res.verify.get("new_cold_defects", 0)
    res.put(
        "verify_new_defects", n_hot + n_cold, "", reference=source, new_columns=new_cols,
        new_hot_defects=n_hot, new_cold_defects=n_cold,
        new_cold_columns=res.verify.get("new_cold_columns", []),
        new_defects_allowed=vsci.NEW_DEFECT_PIXELS_ALLOWED, input_calibs=prov, **extra,
    )  # fmt: skip
    return float(n_hot), ok


# --------------------------------------------------------------------------------------
# flat
# --------------------------------------------------------------------------------------
def verify_flat(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """Per-exposure ratio statistics of each flat / certified flat (verdicts per detector),
    and the day's new cold pixels/columns against the certified defects.

    Without a certified flat but with certified defects, the new cold defects are those
    of the day's census (``ctx.dark_census``; cp_pipe's 10 % below the mean is ≥ 12σ of a
    single 15 ke− flat's pixel noise, so the census of a flat holds no noise).
    """
    if _calib(task, "flat") is None:
        _census_cold_defects(task, res, ctx)
    got = _held_with_reference(task, res, ctx, "flat", FLAT_METRICS)
    if got is None:
        return
    stack, used, cal, plane = got
    gain = amp_float(plane, "GAIN")
    if not (math.isfinite(gain) and gain > 0):
        _nan_all(res, FLAT_METRICS, f"certified flat {cal.product_id} has no GAIN")
        return
    bad, def_prov = _defect_mask(task, stack.shape[1:])
    _new_cold_defects(task, res, ctx, stack, plane, cal, bad, def_prov)
    master = plane.image
    unusable = ~(np.isfinite(master) & (master > 0))
    bad = unusable if bad is None else (bad | unusable)
    safe = np.where(unusable, np.float32(1.0), master)
    level = amp_float(plane, "AMPMEAN")
    pair_var, signal = amp_float(plane, "PAIRVAR"), amp_float(plane, "SIGNAL")
    master_rel = amp_float(plane, "MNOISE")
    n_master = max(_count(plane, "NFRAMES", cal.n_exposures), 1)
    if not math.isfinite(master_rel) and signal > 0:  # an imported flat: a plain mean of N
        master_rel = math.sqrt(pair_var / n_master) / signal
    # PAIRVAR comes from the product's flat pairs: its σ has the relative error of a std
    # of n_pixels × pairs values
    exp_err = vsci.expected_noise_rel_error(int(np.prod(master.shape)), n_master)
    exps = []
    for k, fr in enumerate(used):
        ratio = stack[k] * np.float32(gain)
        ratio /= safe
        mean_e, scatter, n_pix = vsci.flat_exposure_stats(ratio, bad)
        expected = vsci.flat_expected_scatter(
            mean_e, level, pair_var, signal, amp_float(plane, "RDNOISE"), master_rel
        )
        exps.append(vsci.FlatExposure(fr.exposure_id, mean_e, scatter, expected, n_pix,
                                      exp_err, master_rel))  # fmt: skip
    res.verify["flat"] = exps
    res.verify["flat_provenance"] = {
        "input_calibs": {"flat": cal.provenance(), **def_prov}, "gain_e_per_adu": gain,
    }  # fmt: skip


def _census_cold_defects(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """``verify_new_cold_defects`` from the day's cold-defect census and the certified
    defects (no certified flat to verify against)."""
    census = ctx.dark_census
    if census is None or not census.measured:
        return
    bad, def_prov = _defect_mask(task, census.pixel_mask.shape)
    if bad is None:
        return
    n_new = vsci.count_new_defects(census.pixel_mask, bad)
    cols = vsci.new_defect_columns(census.column_indices, bad)
    res.verify["new_cold_defects"] = n_new
    res.verify["new_cold_columns"] = cols
    res.put(
        "verify_new_cold_defects", n_new, "", reference="certified defects", new_columns=cols,
        new_defects_allowed=vsci.NEW_DEFECT_PIXELS_ALLOWED, input_calibs=def_prov,
        note="day's cold-defect census (no certified flat)",
    )  # fmt: skip


def _new_cold_defects(
    task: AmpTask,
    res: AmpResult,
    ctx: AmpContext,
    stack: np.ndarray,
    flat_plane: AmpPlane,
    cal_flat: CertifiedCalib,
    defect_mask: np.ndarray | None,
    def_prov: dict,
) -> None:
    """``verify_new_cold_defects``: cold pixels/columns of the day's flats (mean of the
    bias-subtracted stack, below 0.9 of its clipped mean as cp_pipe's census) not in the
    certified defects — or, without them, not cold in the certified flat — decided
    against the noise (:func:`~calibmon.science.verify.find_new_defects`). A flat
    without signal (the census's dead amp) makes every uncertified pixel new. Leaves
    the count and the flat's day-level verdict in ``res.verify``.
    """
    if defect_mask is not None:
        ref, prov, source = defect_mask, def_prov, "certified defects"
    else:
        norm = amp_float(flat_plane, "AMPMEAN")
        norm = norm if math.isfinite(norm) and norm > 0 else 1.0
        ref = vsci.find_new_defects(flat_plane.image, None, COLD_OFFSET_FRACTION * norm,
                                    cold=True).mask  # fmt: skip
        prov, source = {"flat": cal_flat.provenance()}, "cold pixels of the certified flat"
    day = stack.mean(axis=0, dtype=np.float32)
    mean, std, n = clipped_stats_fast(day, 3.0, 3, bad_mask=ref)
    extra: dict[str, Any] = {}
    if n < 2 or not math.isfinite(mean):
        res.put("verify_new_cold_defects", math.nan, "no usable pixels in the day's flats")
        return
    if not mean > defects_sci.MIN_FLAT_SIGNAL_TO_NOISE * std:  # dead amp: all dark
        mask = ~ref
        n_new, cols = int(np.count_nonzero(mask)), list(range(day.shape[1]))
        cols = [c for c in cols if not ref[:, c].all()]
        extra["note"] = "flat has no signal: dead amp"
    else:
        found = vsci.find_new_defects(day, ref, COLD_OFFSET_FRACTION * mean, cold=True)
        n_new, cols = found.n_pixels, list(found.columns)
        extra = {"detection_limit_pixel_frac": found.pixel_limit / mean,
                 "detection_limit_column_frac": found.column_limit / mean}  # fmt: skip
    ok = n_new <= vsci.NEW_DEFECT_PIXELS_ALLOWED
    res.verify["new_cold_defects"] = n_new
    res.verify["new_cold_columns"] = cols
    res.verify["flat_day_ok"] = ok
    res.put(
        "verify_new_cold_defects", n_new, "", reference=source, new_columns=cols,
        new_defects_allowed=vsci.NEW_DEFECT_PIXELS_ALLOWED, input_calibs=prov, **extra,
    )  # fmt: skip


def finish_detector_verification(results: Sequence[AmpResult]) -> None:
    """Per-amp flat verdicts over all amps of one detector-day (main process): each amp's
    level is compared with the robust detector reference (outlier amps excluded,
    :func:`~calibmon.science.verify.finish_flat_verification`).

    Puts ``verify_flat_scatter`` (with its error) and ``verify_flat_pass`` into each
    amp's result.
    """
    per_amp = {r.amp: r.verify["flat"] for r in results if r.verify.get("flat")}
    if not per_amp:
        return
    day_ok = {r.amp: bool(r.verify.get("flat_day_ok", True)) for r in results}
    verdicts = vsci.finish_flat_verification(per_amp, day_ok=day_ok)
    for r in results:
        v = verdicts.get(r.amp)
        if v is None:
            continue
        prov = dict(r.verify.get("flat_provenance", {}))
        expected = _median([c.expected_noise for c in v.checks])
        r.put("verify_flat_scatter", v.scatter, "no usable pixels", error=v.scatter_error,
              scatter_expected=expected, **prov)  # fmt: skip
        fail = _failures(v.checks)
        if not day_ok.get(r.amp, True):
            fail["failed_tests"] = ",".join(sorted({*filter(None, fail["failed_tests"].split(",")),
                                                     "NEW_DEFECTS"}))  # fmt: skip
        r.put(
            "verify_flat_pass", v.pass_fraction, "no exposure checked",
            noise_tolerance=vsci.FLAT_NOISE_TOLERANCE,
            level_tolerance=vsci.FLAT_AMP_LEVEL_TOLERANCE,
            level_deviation=_median(_details(v.checks, "level_deviation")),
            level_limit=_median(_details(v.checks, "level_limit")),
            detector_scatter=_median(_details(v.checks, "detector_scatter")),
            outlier_amps=max((int(c.detail.get("n_outlier_amps", 0)) for c in v.checks),
                             default=0),
            new_cold_defects=r.verify.get("new_cold_defects", math.nan),
            **_decision_prov(v.checks), **fail, **prov,
        )  # fmt: skip
