"""Group → ISR-lite → science → records.

The unit of work is one amplifier of one detector-day: a worker opens that detector's
files for the day and reads only that amp's HDU from each (bounded memory: one amp's
stack at a time), runs the per-kind steps, and returns numbers. The main process turns
numbers into :class:`MetricRecord` objects, adds detector and camera summaries and writes
each detector-day in one store transaction.

Per-kind steps (banzai's ordered stages, kept readable in one screen)::

    bias : overscan_correct → trim → stack(median) → bias_level, read_noise_adu,
           bias_mean, bias_noise
    flat : overscan_correct → trim → −master bias → pairs → flat_level, gain,
           dark_pixels/columns, serial_cti
    ptc  : overscan_correct → trim → −master bias → pair stats → PTC fit, linearity
    dark : overscan_correct → trim → stack → −master bias → ×gain/DARKTIME → dark metrics,
           bright defects
    then : read_noise = read_noise_adu × gain (PTC today > flat today > store > nominal)

With certified calibrations in ``task.calibs``, ``calibs.steps.verify_bias``/``verify_flat``/
``verify_dark`` follow the bias, flat and dark steps and verify each exposure of the stack
that step read (kept in ``ctx.stacks`` until then) against them (cp_verify style).
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from calibmon import __version__
from calibmon.calibs import steps as calib_steps
from calibmon.calibs.products import CertifiedCalib
from calibmon.catalogue import Catalogue
from calibmon.errors import InputError
from calibmon.io import detectors as dets
from calibmon.io.discover import Discovery, Group
from calibmon.io.fits import RawFile
from calibmon.io.geometry import AmpGeometry
from calibmon.records import MetricRecord, Provenance, Stats, iso_utc_ms
from calibmon.science import bias as bias_sci
from calibmon.science import cti as cti_sci
from calibmon.science import dark as dark_sci
from calibmon.science import defects as defects_sci
from calibmon.science import flat as flat_sci
from calibmon.science import linearity as lin_sci
from calibmon.science import ptc as ptc_sci
from calibmon.science.combine import clipped_mean_stack
from calibmon.science.isr import overscan_correct_into
from calibmon.science.robust import summary_stats
from calibmon.science.verify import master_noise_factor

# Binning of the master images kept for pictures (report mosaics): 16x16 pixels.
IMAGE_BIN = 16

log = logging.getLogger(__name__)

KIND_ORDER = ("bias", "flat", "ptc", "dark")
GAIN_METRICS_IN_STORE = ("ptc_gain", "gain")


# --------------------------------------------------------------------------------------
# Work description (picklable: sent to worker processes)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    path: str
    exposure_id: int
    exptime_s: float
    darktime_s: float


@dataclass(frozen=True)
class Hint:
    """A number measured on an earlier day (or nominal) that today's steps may need."""

    value: float
    error: float  # 1σ, same unit; NaN when unknown
    source: str  # e.g. "ptc_gain 20251101 (store)", "nominal E2V"
    day_obs: str = ""  # day it was measured ("" for nominal values)


@dataclass(frozen=True)
class AmpHints:
    """Earlier measurements of one amp: gain (e-/adu), a00 (1/e-), k2 (1/adu)."""

    gain: Hint | None = None
    a00: Hint | None = None
    k2: Hint | None = None


@dataclass(frozen=True)
class AmpTask:
    """One amp of one detector-day, as the steps see it."""

    instrument: str
    day_obs: str
    detector_name: str
    vendor: str
    amp: str
    frames: dict[str, tuple[Frame, ...]]  # kind -> frames (seqnum order)
    hints: AmpHints  # earlier gain / a00 / k2 of this amp (store or nominal)
    cache: FileCache | None = field(default=None, compare=False)
    calibs: dict[str, CertifiedCalib] | None = None  # kind -> certified product (verify steps)


@dataclass(frozen=True)
class AmpSetTask:
    """Several amps of one detector-day, measured one after the other by one worker.

    The worker opens each file once for the whole set (CFITSIO parses every HDU header on
    open: ~4 ms a file, 25 % of a full-size CCD's decompression if paid once per amp),
    and holds one amp's stack at a time.
    """

    instrument: str
    day_obs: str
    detector_name: str
    vendor: str
    amps: tuple[str, ...]
    frames: dict[str, tuple[Frame, ...]]
    hints: dict[str, AmpHints]
    calibs: dict[str, CertifiedCalib] | None = None  # kind -> certified product (verify steps)


class FileCache:
    """Open raw files for the duration of a task; a file that fails stays failed."""

    def __init__(self, detector_name: str) -> None:
        self.detector_name = detector_name
        self._open: dict[str, RawFile] = {}
        self._failed: dict[str, InputError] = {}
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, path: str) -> RawFile:
        if path in self._failed:
            raise self._failed[path]
        raw = self._open.get(path)
        if raw is None:
            try:
                raw = RawFile(path)
                try:
                    raw.check_segments(self.detector_name)
                except InputError:
                    raw.close()
                    raise
            except InputError as err:
                self._failed[path] = err
                raise
            self._open[path] = raw
        return raw

    def buffer(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of ``shape`` reused across the task's amps (one per ``key``).

        Fresh 60 MB stacks per amp and kind cost a page fault per 4 kB on first touch
        (measured: 10 ms of a 14 ms overscan correction of a full-size frame); reusing one
        buffer per kind keeps the memory mapped. Contents are garbage until written."""
        need = int(np.prod(shape))
        buf = self._buffers.get(key)
        if buf is None or buf.size < need:
            buf = np.empty(need, dtype=np.float32)
            self._buffers[key] = buf
        return buf[:need].reshape(shape)

    def close(self) -> None:
        for raw in self._open.values():
            raw.close()
        self._open.clear()
        self._buffers.clear()


@dataclass
class AmpResult:
    """Numbers measured for one amp of one detector-day."""

    amp: str
    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)  # metric -> 1-sigma, same unit
    reasons: dict[str, str] = field(default_factory=dict)  # metric -> why it is NaN
    used: dict[str, list[int]] = field(default_factory=dict)  # kind -> exposure ids used
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> provenance
    rejected: dict[str, str] = field(default_factory=dict)  # path -> reason
    images: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> binned master
    detsec: str | None = None  # the amp's DETSEC (pictures)
    ptc_curve: dict[str, list] | None = None  # PTC points and fit (plots)
    verify: dict[str, Any] = field(default_factory=dict)  # per-exposure flat verification
    seconds: float = 0.0

    def put(
        self,
        metric: str,
        value: float,
        reason: str = "",
        *,
        error: float | None = None,
        **extra: Any,
    ) -> None:
        """Record ``value`` (NaN with ``reason`` when not measurable) and its 1σ ``error``
        (same unit; None where the metric has no statistical uncertainty, e.g. counts)."""
        v = float(value)
        self.values[metric] = v
        if error is not None and math.isfinite(float(error)):
            self.errors[metric] = float(error)
        if not math.isfinite(v):
            self.reasons[metric] = reason or "not measurable"
        if extra:
            self.extra[metric] = extra


# --------------------------------------------------------------------------------------
# Reading one amp's frames
# --------------------------------------------------------------------------------------
FrameHook = Callable[[np.ndarray, AmpGeometry, np.ndarray], None]


def read_corrected_stack(
    frames: Sequence[Frame],
    amp: str,
    detector_name: str,
    result: AmpResult,
    hook: FrameHook | None = None,
    cache: FileCache | None = None,
    buffer_key: str | None = None,
) -> tuple[np.ndarray, list[Frame], AmpGeometry | None]:
    """Overscan-correct and trim ``amp`` of each frame into one (n, rows, cols) float32 stack.

    Files that cannot be read are recorded in ``result.rejected`` and left out.
    ``hook(raw_image, geometry, row_levels)`` sees each raw frame (e.g. for overscan noise).
    """
    stack: np.ndarray | None = None
    used: list[Frame] = []
    geom0: AmpGeometry | None = None
    own_cache = cache is None
    cache = cache or FileCache(detector_name)
    for fr in frames:
        try:
            raw = cache.get(fr.path)
            image, geom = raw.read_amp(amp)
        except InputError as err:
            result.rejected[err.path] = err.reason
            continue
        if geom0 is None:
            geom0 = geom
            if result.detsec is None:
                result.detsec = str(raw.amp_header(amp).get("DETSEC", "") or "") or None
        elif geom != geom0:
            result.rejected[fr.path] = (
                f"Segment{amp[1:]}: geometry {geom.shape} DATASEC differs from the other frames"
            )
            continue
        if stack is None:
            shape = (len(frames), geom.n_data_rows, geom.n_data_cols)
            stack = cache.buffer(buffer_key, shape) if buffer_key else np.empty(shape, np.float32)
        # overscan-correct and trim straight into the stack (no temporary frame)
        levels = overscan_correct_into(
            image, geom.data_rows, geom.data_cols, geom.overscan_level_cols, stack[len(used)]
        )
        if hook is not None:
            hook(image, geom, levels)
        used.append(fr)
    if own_cache:
        cache.close()
    if stack is None:
        return np.empty((0, 0, 0), dtype=np.float32), used, None
    return stack[: len(used)], used, geom0


# --------------------------------------------------------------------------------------
# Per-kind steps (pure numbers after reading)
# --------------------------------------------------------------------------------------
@dataclass
class AmpContext:
    """What earlier steps of the same amp hand to later ones."""

    master_bias: np.ndarray | None = None
    read_noise_adu: float = math.nan
    read_noise_err_adu: float = math.nan
    # noise realisation of the master bias (dark_sci.half_difference) and its factor
    bias_half: tuple[np.ndarray, float] | None = None
    gain: Hint | None = None  # measured today (PTC > flat pairs)
    a00: Hint | None = None  # measured today (PTC)
    k2: Hint | None = None  # measured today (PTC linearity)
    # flat-pair variance corrections from the day's geometry and EPER (science.ptc):
    # serial CTI smooths the variance by 2·cti·n̄ transfers; the per-row overscan median
    # adds π/(2·n_overscan) of the read-noise variance to every processed pixel
    cti_variance_loss: float = 0.0
    noise_excess_frac: float = 0.0
    pairs: list[flat_sci.PairStats] = field(default_factory=list)  # flat + PTC pairs
    dark_census: defects_sci.DefectCensus | None = None  # cold pixels/columns (flat)
    bright_census: defects_sci.DefectCensus | None = None  # hot pixels/columns (dark)
    data_shape: tuple[int, int] | None = None
    # kind -> (stack, frames used), held for that kind's verify step (calibs.steps)
    stacks: dict[str, tuple[np.ndarray, list[Frame]]] = field(default_factory=dict)

    def best_gain(self, task: AmpTask) -> Hint | None:
        """Gain for ADU→electron: measured today (PTC > flat pairs), else the amp's
        latest measured gain from the store, else nominal."""
        return self.gain or task.hints.gain

    def best(self, task: AmpTask, name: str) -> Hint | None:
        """Today's a00/k2 if measured, else the store's."""
        return getattr(self, name) or getattr(task.hints, name)


def bin_image(image: np.ndarray, factor: int = IMAGE_BIN) -> np.ndarray:
    """Mean over factor×factor blocks (edges cropped), float32; for pictures only."""
    r, c = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    if r == 0 or c == 0:
        return image.astype(np.float32)
    blocks = image[:r, :c].reshape(r // factor, factor, c // factor, factor)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks (dead amp)
        return np.nanmean(blocks, axis=(1, 3)).astype(np.float32)


def _keep_for_verify(
    task: AmpTask, ctx: AmpContext, kind: str, stack: np.ndarray, used: Sequence[Frame]
) -> None:
    """Hold the stack for the kind's verify step when a certified product of it is known."""
    if task.calibs and kind in task.calibs:
        ctx.stacks[kind] = (stack, list(used))


def _subtract_bias(stack: np.ndarray, ctx: AmpContext) -> str:
    """Subtract the day's master bias from every frame in place; say if there was none."""
    if ctx.master_bias is not None and ctx.master_bias.shape == stack.shape[1:]:
        stack -= ctx.master_bias[None]
        return ""
    return "no master bias of the day: fixed bias structure not removed"


def _pairs(frames: Sequence[Frame]) -> list[tuple[Frame, Frame]]:
    """Consecutive frames with the same exposure time, in seqnum order (flat pairs)."""
    out, i = [], 0
    while i + 1 < len(frames):
        a, b = frames[i], frames[i + 1]
        if math.isclose(a.exptime_s, b.exptime_s, rel_tol=1e-3, abs_tol=1e-3):
            out.append((a, b))
            i += 2
        else:
            i += 1
    return out


def _frame_means_hook(means: list[float]) -> FrameHook:
    """A hook collecting each frame's mean overscan-corrected data level (adu)."""

    def hook(image: np.ndarray, geom: AmpGeometry, levels: np.ndarray) -> None:
        data = image[geom.data_rows, geom.data_cols]
        means.append(float(data.mean(dtype=np.float64) - levels.mean(dtype=np.float64)))

    return hook


def step_bias(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    frames = task.frames.get("bias", ())
    if not frames:
        return
    noises: list[bias_sci.FrameNoise] = []

    def hook(image: np.ndarray, geom: AmpGeometry, levels: np.ndarray) -> None:
        overscan = image[geom.data_rows, geom.overscan_level_cols]
        noises.append(bias_sci.overscan_frame_noise_rows(overscan, levels))

    stack, used, geom = read_corrected_stack(
        frames, task.amp, task.detector_name, res, hook, task.cache, buffer_key="bias"
    )
    res.used["bias"] = [f.exposure_id for f in used]
    if geom is not None:
        n_os = geom.overscan_level_cols.stop - geom.overscan_level_cols.start
        ctx.noise_excess_frac = math.pi / (2.0 * max(n_os, 1))
    if not used:
        for m in ("bias_level", "read_noise_adu", "bias_mean", "bias_noise"):
            res.put(m, math.nan, "no readable bias frame")
        return
    rn, rn_err = bias_sci.read_noise_adu_with_error(noises)
    ctx.read_noise_adu, ctx.read_noise_err_adu = rn, rn_err
    level, level_err = bias_sci.bias_level_with_error(noises)
    res.put("bias_level", level, error=level_err)
    res.put("read_noise_adu", rn, error=rn_err)
    if len(used) >= 2:
        ctx.bias_half = dark_sci.half_difference(stack)
    ctx.master_bias = clipped_mean_stack(stack)
    ctx.data_shape = ctx.master_bias.shape
    _keep_for_verify(task, ctx, "bias", stack, used)
    del stack
    st = bias_sci.master_bias_stats_with_errors(ctx.master_bias)
    res.put("bias_mean", st.mean_adu, error=st.mean_err_adu)
    res.put("bias_noise", st.noise_adu, error=st.noise_err_adu)
    res.images["bias"] = bin_image(ctx.master_bias)


def step_flat(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """Daily flats: flat level, pair statistics (for the gain step), cold defects, serial
    CTI (EPER)."""
    frames = task.frames.get("flat", ())
    if not frames:
        return
    eper: dict[str, Any] = {"n": 0}
    frame_means: list[float] = []
    level_hook = _frame_means_hook(frame_means)

    def hook(image: np.ndarray, geom: AmpGeometry, levels: np.ndarray) -> None:
        level_hook(image, geom, levels)
        # EPER needs the raw overscan incl. its first (trail) columns, levelled by the
        # far columns (``levels``), and the last data column.
        os_ = image[geom.data_rows, geom.serial_overscan_cols].astype(np.float64)
        os_ -= levels[:, None]
        last = image[geom.data_rows, geom.data_cols.stop - 1].astype(np.float64) - levels
        if eper["n"] == 0:
            eper.update(
                os=os_, last=last, transfers=geom.data_cols.stop, prescan=geom.data_cols.start
            )
        else:
            eper["os"] += os_
            eper["last"] += last
        eper["n"] += 1

    stack, used, _ = read_corrected_stack(
        frames, task.amp, task.detector_name, res, hook, task.cache, buffer_key="flat"
    )
    res.used["flat"] = [f.exposure_id for f in used]
    if not used:
        for m in ("flat_level", "dark_pixels", "dark_columns", "serial_cti"):
            res.put(m, math.nan, "no readable flat frame")
        return
    note = _subtract_bias(stack, ctx)
    by_id = {f.exposure_id: k for k, f in enumerate(used)}
    flat_pairs = [
        flat_sci.pair_statistics(stack[by_id[a.exposure_id]], stack[by_id[b.exposure_id]])
        for a, b in _pairs(used)
    ]
    ctx.pairs.extend(flat_pairs)
    master = clipped_mean_stack(stack)
    _keep_for_verify(task, ctx, "flat", stack, used)
    del stack
    ctx.data_shape = master.shape
    level = flat_sci.flat_level(master)
    res.put(
        "flat_level", level, "flat has no usable pixels",
        error=flat_sci.flat_level_error(frame_means), **({"note": note} if note else {}),
    )  # fmt: skip
    # cold defects on the normalised master flat; the master's per-pixel noise relative
    # to its level from the pairs' variance (per frame) over the frames combined
    pair_vars = [p.var_adu2 for p in flat_pairs if math.isfinite(p.var_adu2)]
    noise_rel = None
    if pair_vars and math.isfinite(level) and level > 0:
        noise_rel = math.sqrt(float(np.median(pair_vars)) / len(used)) / level
    norm = master / np.float32(level) if math.isfinite(level) and level > 0 else master * np.nan
    census = defects_sci.find_dark_defects(norm, pixel_noise_rel=noise_rel)
    ctx.dark_census = census
    prov = {"detection_limit_frac": census.threshold} if math.isfinite(census.threshold) else {}
    res.put("dark_pixels", census.n_pixels if census.measured else math.nan, census.reason, **prov)
    res.put(
        "dark_columns", census.n_columns if census.measured else math.nan, census.reason, **prov
    )
    res.images["flat"] = bin_image(norm)
    # serial CTI by EPER on the mean of the flats
    n = eper["n"]
    last = eper["last"] / n
    if ctx.master_bias is not None:
        last = last - ctx.master_bias[:, -1]
    ep = cti_sci.eper_serial(eper["os"] / n, last, int(eper["transfers"]))
    if math.isfinite(ep.cti) and ep.cti > 0:
        n_prescan = int(eper["prescan"])
        n_cols = int(eper["transfers"]) - n_prescan
        ctx.cti_variance_loss = 2.0 * ep.cti * (n_prescan + (n_cols + 1) / 2.0)
    res.put(
        "serial_cti", ep.cti, ep.reason, error=ep.cti_err, cti_err=ep.cti_err,
        n_transfers=int(eper["transfers"]),
    )  # fmt: skip


def step_ptc(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """PTC ramp: per-pair mean/variance, Astier fit, turnoff, full well, linearity."""
    frames = task.frames.get("ptc", ())
    if not frames:
        return
    mus, variances, times, npix, used_ids = [], [], [], [], []
    for a, b in _pairs(frames):
        stack, used, _ = read_corrected_stack(
            (a, b), task.amp, task.detector_name, res, cache=task.cache, buffer_key="ptc"
        )
        if len(used) != 2:
            continue
        _subtract_bias(stack, ctx)
        ps = flat_sci.pair_statistics(stack[0], stack[1])
        if math.isfinite(ps.mu_adu) and math.isfinite(ps.var_adu2):
            ctx.pairs.append(ps)
            mus.append(ps.mu_adu)
            variances.append(ps.var_adu2)
            times.append(0.5 * (a.exptime_s + b.exptime_s))
            npix.append(ps.n_pixels)
            used_ids += [a.exposure_id, b.exposure_id]
    res.used["ptc"] = used_ids
    mu, var, t = np.asarray(mus), np.asarray(variances), np.asarray(times)
    n_px = np.asarray(npix, dtype=float)
    # The fit's a00 prior is the nominal one, not the amp's last measurement: a nightly
    # a00 with its small error, used as a prior for the next night's fit, pulled the
    # PTC gain by +1σ over 20 simulated nights (and +2σ without the k2 refit); the
    # store's a00 still corrects the flat-pair gain (step_gain).
    a00_prior = Hint(flat_sci.NOMINAL_A00_PER_E, flat_sci.NOMINAL_A00_ERR_PER_E, "nominal")
    kw: dict[str, Any] = dict(
        n_pixels=n_px, exptime_s=t, a00_prior=a00_prior.value,
        a00_prior_err=_finite_or(a00_prior.error, flat_sci.NOMINAL_A00_ERR_PER_E),
        cti_variance_loss=ctx.cti_variance_loss, noise_excess_frac=ctx.noise_excess_frac,
    )  # fmt: skip
    fit = ptc_sci.fit_ptc_astier(mu, var, **kw)
    lin = lin_sci.linearity_from_ramp(
        t, mu, ptc_turnoff_adu=_finite_or_none(fit.turnoff_kept_adu), var_adu2=var,
        n_pixels=n_px, ptc_turnoff_is_lower_limit=fit.turnoff_is_lower_limit,
    )  # fmt: skip
    # Refit with the ramp's (or the amp's last) k2: a00 then stops absorbing 3·k2 and the
    # gain its −3·k2·μ bias (science.ptc).
    k2 = Hint(lin.k2_per_adu, lin.k2_err_per_adu, "PTC", task.day_obs)
    if not (math.isfinite(k2.value) and math.isfinite(k2.error)):
        k2 = ctx.best(task, "k2")
    if k2 is not None and math.isfinite(fit.gain):
        refit = ptc_sci.fit_ptc_astier(mu, var, k2_per_adu=k2.value, **kw)
        if math.isfinite(refit.gain):
            fit = refit
            ctx.k2 = k2
    n_used = int(np.count_nonzero(fit.used)) if fit.used.size else 0
    extra = {"n_pairs": len(mus), "n_pairs_used": n_used}
    if k2 is not None:
        extra["k2_source"] = f"{k2.source} {k2.day_obs}".strip()
    res.put("ptc_gain", fit.gain, fit.reason, error=fit.gain_err, **extra)
    res.put("ptc_noise", fit.noise_e, fit.reason, error=fit.noise_err_e)
    if fit.a00_fixed:
        res.put(
            "ptc_a00", math.nan, f"a00 not measurable from this ramp: fixed to {a00_prior.source}"
        )
    else:
        res.put("ptc_a00", fit.a00, fit.reason, error=fit.a00_err, **extra)
    lower = bool(fit.turnoff_is_lower_limit)
    if lower and math.isfinite(fit.turnoff_adu):
        why = "no roll-off in the ramp: a lower limit, not a measurement"
        res.put("ptc_turnoff", fit.turnoff_adu, lower_limit=True, note=why)
        if math.isfinite(fit.full_well_e):
            res.put("full_well", fit.full_well_e, lower_limit=True, note=why)
    else:
        res.put("ptc_turnoff", fit.turnoff_adu, fit.reason, error=fit.turnoff_err_adu)
        res.put("full_well", fit.full_well_e, fit.reason, error=fit.full_well_err_e)
    if math.isfinite(fit.gain):
        ctx.gain = Hint(fit.gain, fit.gain_err, "PTC", task.day_obs)
    if not fit.a00_fixed and math.isfinite(fit.a00) and math.isfinite(fit.a00_err):
        ctx.a00 = Hint(fit.a00, fit.a00_err, "PTC", task.day_obs)
    if lin.turnoff_is_lower_limit and math.isfinite(lin.turnoff_adu):
        res.put("linearity_turnoff", lin.turnoff_adu, lower_limit=True,
                note="no linearity roll-off in the ramp: a lower limit")  # fmt: skip
    else:
        res.put("linearity_turnoff", lin.turnoff_adu, lin.reason, error=lin.turnoff_err_adu)
    res.put("max_frac_nonlinearity", lin.max_frac_nonlinearity, lin.reason,
            error=lin.max_frac_nonlinearity_err)  # fmt: skip
    if math.isfinite(lin.k2_per_adu):
        res.put("nonlinearity_k2", lin.k2_per_adu, error=lin.k2_err_per_adu)
    res.ptc_curve = {
        "exptime_s": t.tolist(),
        "mu_adu": mu.tolist(),
        "var_adu2": var.tolist(),
        "model_var_adu2": np.asarray(fit.model_var_adu2, dtype=float).tolist(),
        "used": np.asarray(fit.used, dtype=bool).tolist(),
        "residual_frac": np.asarray(lin.residual_frac, dtype=float).tolist(),
        "gain": fit.gain,
        "turnoff_adu": fit.turnoff_adu,
        "turnoff_is_lower_limit": lower,
        "linearity_turnoff_adu": lin.turnoff_adu,
    }


def step_gain(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """``gain`` from every flat pair of the day — daily flats and PTC/daily_PTC pairs —
    corrected for brighter-fatter (a00) and nonlinearity (k2) with the amp's best known
    values (today's PTC, else the store's, else nominal a00 with its spread as error)."""
    if not ctx.pairs:
        if "flat" in task.frames:
            res.put("gain", math.nan, "no flat pairs")
        return
    # a00 and k2 as a pair from one fit (they are correlated): today's PTC, unless the
    # store's most precise recent ramp is more than twice as precise — a daily_PTC of
    # four pairs measures a00 ~10× less well than a full ramp, and its noise would move
    # the gain (mixing the two sources pair by pair biased the gain by +0.7σ)
    today, stored = ctx.a00, task.hints.a00
    use_store = today is None or (
        stored is not None and _more_precise(today, stored) is stored
        and stored.error * 2.0 < today.error
    )  # fmt: skip
    a00 = stored if use_store else today
    k2 = (task.hints.k2 if use_store else ctx.k2) or ctx.k2 or task.hints.k2
    extra: dict[str, Any] = {}
    if a00 is None:
        a00 = Hint(flat_sci.NOMINAL_A00_PER_E, flat_sci.NOMINAL_A00_ERR_PER_E, "nominal")
        extra["a00_source"] = "nominal (no PTC a00 measured for this amp): spread in the error"
    else:
        extra["a00_source"] = f"{a00.source} {a00.day_obs}".strip()
    if k2 is None and a00.day_obs:
        # A PTC fitted without k2 makes a00 absorb the nonlinearity (a00 + 3·k2/g): the
        # Astier inversion with it corrects both. With k2 known the PTC was refitted with
        # it (step_ptc), a00 is the brighter-fatter one and both are applied here.
        k2 = Hint(0.0, 0.0, "absorbed in the PTC a00")
        extra["k2_source"] = k2.source
    elif k2 is None:
        k2 = Hint(0.0, 0.0, "none")
        extra["k2_source"] = "none (no linearity measured for this amp): not corrected"
    else:
        extra["k2_source"] = f"{k2.source} {k2.day_obs}".strip()
    rn = ctx.read_noise_adu
    if not math.isfinite(rn):
        extra["note"] = "no read noise of the day: not subtracted from the pair variance"
    est = flat_sci.gain_from_pairs(
        ctx.pairs, rn,
        read_noise_err_adu=_finite_or(ctx.read_noise_err_adu, 0.0),
        a00_per_e=a00.value, a00_err_per_e=_finite_or(a00.error, 0.0),
        k2_per_adu=k2.value, k2_err_per_adu=_finite_or(k2.error, 0.0),
        cti_variance_loss=ctx.cti_variance_loss,
    )  # fmt: skip
    extra.update(n_pairs=est.n_pairs, bf_nl_correction=est.bf_correction)
    res.put("gain", est.gain, est.reason, error=est.error, **extra)
    if math.isfinite(est.gain) and ctx.gain is None:
        ctx.gain = Hint(est.gain, est.error, "flat pairs", task.day_obs)


def _more_precise(a: Hint | None, b: Hint | None) -> Hint | None:
    """The hint with the smaller finite error (``a`` when equal or unknown)."""
    if a is None or b is None:
        return a or b
    ea = a.error if math.isfinite(a.error) else math.inf
    eb = b.error if math.isfinite(b.error) else math.inf
    return b if eb < ea else a


def _finite_or(x: float | None, default: float) -> float:
    return float(x) if x is not None and math.isfinite(x) else default


def _finite_or_none(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def step_dark(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """Darks: combined (bias-subtracted) dark rate, dark current metrics, hot defects."""
    frames = task.frames.get("dark", ())
    if not frames:
        return
    stack, used, _ = read_corrected_stack(
        frames, task.amp, task.detector_name, res, cache=task.cache, buffer_key="dark"
    )
    res.used["dark"] = [f.exposure_id for f in used]
    names = ("dark_current", "dark_current_p95", "bright_pixels", "bright_columns")
    if not used:
        for m in names:
            res.put(m, math.nan, "no readable dark frame")
        return
    gain = ctx.best_gain(task)
    if gain is None:
        for m in names:
            res.put(m, math.nan, "no gain to convert adu to electrons")
        return
    note = _subtract_bias(stack, ctx)
    # per-frame dark time, so frames of different length combine correctly (adu/s)
    for k, f in enumerate(used):
        stack[k] /= np.float32(f.darktime_s)
    # the master's noise: half-differences of the darks and of the biases subtracted
    parts: list[tuple[np.ndarray, float, float]] = []
    # (the masters are clipped means: their noise exceeds a mean's by master_noise_factor)
    if len(used) >= 2:
        diff, factor = dark_sci.half_difference(stack)
        parts.append((diff, factor * master_noise_factor(len(used)), gain.value))
    if ctx.bias_half is not None and not note:
        inv_t = float(np.mean([1.0 / f.darktime_s for f in used]))
        n_bias = len(res.used.get("bias", ())) or 1
        parts.append(
            (ctx.bias_half[0], ctx.bias_half[1] * master_noise_factor(n_bias), gain.value * inv_t)
        )
    noise = dark_sci.HalfDifferenceNoise(parts) if len(used) >= 2 else None
    rate_adu = clipped_mean_stack(stack)
    _keep_for_verify(task, ctx, "dark", stack, used)  # adu/s, day's master bias subtracted
    del stack
    ctx.data_shape = rate_adu.shape
    rate = dark_sci.dark_current_image(rate_adu, np.zeros_like(rate_adu), 1.0, gain.value)
    gain_rel = gain.error / gain.value if math.isfinite(gain.error) and gain.value > 0 else 0.0
    pixel_noise = math.sqrt(max(noise.block_var(1), 0.0)) if noise is not None else None
    census = defects_sci.find_bright_defects(rate, pixel_noise_e_per_s=pixel_noise)
    ctx.bright_census = census
    dm = dark_sci.dark_metrics(
        rate, noise=noise, gain_rel_err=gain_rel,
        p95_exclude=census.pixel_mask if census.measured else None,
    )  # fmt: skip
    extra = {"gain_e_per_adu": gain.value, "gain_source": _gain_source(gain, task.day_obs)}
    if note:
        extra["note"] = note
    res.put("dark_current", dm.dark_current, dm.reason, error=dm.dark_current_err, **extra)
    res.put(
        "dark_current_p95", dm.dark_current_p95, dm.reason, error=dm.dark_current_p95_err,
        block_px=dm.block, noise_floor_e_per_s=dm.noise_floor_e_per_s,
        pixel_noise_e_per_s=dm.pixel_noise_e_per_s, **extra,
    )  # fmt: skip
    prov = {}
    if census.measured:
        # detection limit: e-/s above the amp's clipped mean that a pixel must exceed
        limit = defects_sci.DARK_CURRENT_THRESHOLD_E_PER_S
        if pixel_noise is not None and math.isfinite(pixel_noise):
            limit = max(limit, defects_sci.noise_nsigma(rate.size) * pixel_noise)
        prov["detection_limit_e_per_s"] = limit
    res.put(
        "bright_pixels", census.n_pixels if census.measured else math.nan, census.reason, **prov
    )
    res.put(
        "bright_columns", census.n_columns if census.measured else math.nan, census.reason, **prov
    )
    res.images["dark"] = bin_image(rate)


def _gain_source(gain: Hint, day_obs: str) -> str:
    """What provenance says of a gain: where it came from, on which day, how old."""
    if not gain.day_obs:
        return f"{gain.source} (no gain ever measured for this amp)"
    if gain.day_obs == day_obs:
        return f"{gain.source} {gain.day_obs} (today)"
    return f"{gain.source} {gain.day_obs} ({_age_days(gain.day_obs, day_obs)} days old)"


def _age_days(then: str, now: str) -> int:
    try:
        a = datetime.strptime(then, "%Y%m%d")
        b = datetime.strptime(now, "%Y%m%d")
    except ValueError:
        return -1
    return (b - a).days


def step_defects(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """defect_fraction from the union of bright (dark) and cold (flat) defects."""
    if ctx.bright_census is None and ctx.dark_census is None:
        return
    if ctx.bright_census is None or ctx.dark_census is None:
        missing = "dark" if ctx.bright_census is None else "flat"
        res.put("defect_fraction", math.nan, f"no {missing} of the day: census incomplete")
        return
    shape = ctx.bright_census.pixel_mask.shape
    if ctx.dark_census.pixel_mask.shape != shape:
        res.put("defect_fraction", math.nan, "dark and flat geometries differ")
        return
    res.put(
        "defect_fraction", defects_sci.defect_fraction(ctx.bright_census, ctx.dark_census, shape)
    )


def step_read_noise_e(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """read_noise (e-) = read_noise_adu × gain; the gain's source and age go to provenance."""
    if "read_noise_adu" not in res.values:
        return
    gain = ctx.best_gain(task)
    if gain is None:
        res.put("read_noise", math.nan, "no gain available")
        return
    rn_adu = res.values["read_noise_adu"]
    rn = rn_adu * gain.value
    rel = [res.errors.get("read_noise_adu", math.nan) / rn_adu if rn_adu else math.nan]
    rel.append(gain.error / gain.value if gain.value else math.nan)
    err = abs(rn) * math.hypot(*[x for x in rel if math.isfinite(x)] or [math.nan])
    extra: dict[str, Any] = {
        "gain_e_per_adu": gain.value,
        "gain_source": _gain_source(gain, task.day_obs),
    }
    if gain.day_obs:
        extra["gain_day_obs"] = gain.day_obs
        extra["gain_age_days"] = _age_days(gain.day_obs, task.day_obs)
    res.put("read_noise", rn, res.reasons.get("read_noise_adu", ""), error=err, **extra)


STEPS: tuple[Callable[[AmpTask, AmpResult, AmpContext], None], ...] = (
    step_bias,
    calib_steps.verify_bias,
    step_flat,
    calib_steps.verify_flat,
    step_ptc,
    step_gain,
    step_dark,
    calib_steps.verify_dark,
    step_defects,
    step_read_noise_e,
)


def measure_amps(task: AmpSetTask) -> list[AmpResult]:
    """Measure every amp of ``task`` in turn, sharing open files (runs in a worker)."""
    cache = FileCache(task.detector_name)
    try:
        return [
            measure_amp(
                AmpTask(
                    task.instrument,
                    task.day_obs,
                    task.detector_name,
                    task.vendor,
                    amp,
                    task.frames,
                    task.hints.get(amp, AmpHints()),
                    cache,
                    task.calibs,
                )
            )
            for amp in task.amps
        ]
    finally:
        cache.close()


def measure_amp(task: AmpTask) -> AmpResult:
    """Run every step for one amp."""
    t0 = time.perf_counter()
    res = AmpResult(amp=task.amp)
    ctx = AmpContext()
    for step in STEPS:
        try:
            step(task, res, ctx)
        except Exception as exc:  # one amp's failure must not lose the detector
            # one line; the traceback only at DEBUG (``--debug``)
            log.error(
                "step %s failed for %s %s %s: %s: %s", step.__name__, task.detector_name,
                task.amp, task.day_obs, type(exc).__name__, exc,
            )  # fmt: skip
            log.debug("traceback of the failed step", exc_info=True)
            res.reasons[f"_{step.__name__}"] = f"{type(exc).__name__}: {exc}"
    res.seconds = time.perf_counter() - t0
    return res


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunContext:
    run_id: str
    config_hash: str
    processed_at: str
    software_version: str = __version__


def new_run_context(config_hash: str) -> RunContext:
    now = datetime.now(UTC)
    run_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    return RunContext(run_id=run_id, config_hash=config_hash, processed_at=iso_utc_ms(now))


# metric -> the kind whose group gives the record's exposures/timestamp
METRIC_KIND: dict[str, str] = {
    "bias_level": "bias", "read_noise_adu": "bias", "read_noise": "bias",
    "bias_mean": "bias", "bias_noise": "bias",
    "dark_current": "dark", "dark_current_p95": "dark", "bright_pixels": "dark",
    "bright_columns": "dark",
    "flat_level": "flat", "gain": "flat", "nonlinearity_k2": "ptc", "dark_pixels": "flat", "dark_columns": "flat",
    "serial_cti": "flat",
    "ptc_gain": "ptc", "ptc_noise": "ptc", "ptc_turnoff": "ptc", "full_well": "ptc",
    "ptc_a00": "ptc", "linearity_turnoff": "ptc", "max_frac_nonlinearity": "ptc",
    "defect_fraction": "dark",
    "verify_bias_mean": "bias", "verify_bias_noise": "bias", "verify_bias_pass": "bias",
    "verify_dark_mean": "dark", "verify_dark_noise": "dark", "verify_dark_pass": "dark",
    "verify_new_defects": "dark",
    "verify_flat_scatter": "flat", "verify_flat_pass": "flat", "verify_new_cold_defects": "flat",
}  # fmt: skip


def _group_for(dd: DetectorDay, metric: str, catalogue: Catalogue) -> Group | None:
    """The group whose exposures/timestamp a metric's record carries."""
    kind = METRIC_KIND.get(metric, catalogue.calib_type(metric))
    fallback = {"defect_fraction": "flat", "gain": "ptc"}.get(metric)
    return dd.groups.get(kind) or (dd.groups.get(fallback) if fallback else None)


@dataclass
class DetectorDay:
    instrument: str
    day_obs: str
    detector_name: str
    detector: int
    vendor: str
    groups: dict[str, Group]

    @property
    def amps(self) -> tuple[str, ...]:
        return dets.AMP_ORDER_8 if dets.is_wavefront(self.detector_name) else dets.AMP_ORDER_16

    def frames(self) -> dict[str, tuple[Frame, ...]]:
        return {
            kind: tuple(
                Frame(e.path, e.exposure_id, e.exptime_s, e.darktime_s) for e in g.exposures
            )
            for kind, g in self.groups.items()
        }


def amp_records(
    dd: DetectorDay,
    results: Iterable[AmpResult],
    catalogue: Catalogue,
    rc: RunContext,
    input_calibs: dict[str, Any] | None = None,
) -> list[MetricRecord]:
    """Per-amp and detector-summary records of one detector-day (NaNs are not records)."""
    records: list[MetricRecord] = []
    per_metric: dict[str, list[float]] = {}
    for res in results:
        for metric, value in res.values.items():
            if not math.isfinite(value) or metric not in catalogue:
                continue
            group = _group_for(dd, metric, catalogue)
            if group is None:
                continue
            used = res.used.get(group.key.kind, group.exposure_ids)
            extra = dict(res.extra.get(metric, {}))
            calibs_used = extra.pop("input_calibs", None)  # verify records name their own
            prov = Provenance(
                run=rc.run_id,
                exposures=used,
                n_exposures=len(used),
                software_version=rc.software_version,
                config_hash=rc.config_hash,
                input_calibs=dict(calibs_used if calibs_used is not None else input_calibs or {}),
                processed_at=rc.processed_at,
                **extra,
            )
            records.append(
                MetricRecord(
                    metric=metric,
                    value=value,
                    unit=catalogue.unit(metric),
                    calib_type=catalogue.calib_type(metric),
                    level="amp",
                    instrument=dd.instrument,
                    detector=dd.detector,
                    detector_name=dd.detector_name,
                    amp=res.amp,
                    day_obs=dd.day_obs,
                    physical_filter=group.key.physical_filter,
                    vendor=dd.vendor,
                    timestamp=group.timestamp,
                    provenance=prov,
                    error=res.errors.get(metric),
                )
            )
            per_metric.setdefault(metric, []).append(value)
    for metric, values in per_metric.items():
        group = _group_for(dd, metric, catalogue)
        assert group is not None
        st = summary_stats(np.asarray(values))
        records.append(
            MetricRecord(
                metric=metric,
                value=st["median"],
                unit=catalogue.unit(metric),
                calib_type=catalogue.calib_type(metric),
                level="detector",
                instrument=dd.instrument,
                detector=dd.detector,
                detector_name=dd.detector_name,
                amp=None,
                day_obs=dd.day_obs,
                physical_filter=group.key.physical_filter,
                vendor=dd.vendor,
                timestamp=group.timestamp,
                provenance=Provenance(
                    run=rc.run_id,
                    exposures=group.exposure_ids,
                    n_exposures=len(group.exposures),
                    software_version=rc.software_version,
                    config_hash=rc.config_hash,
                    processed_at=rc.processed_at,
                ),
                stats=Stats(**st),
            )
        )
    return records


def camera_records(
    amp_level: Sequence[MetricRecord], catalogue: Catalogue, rc: RunContext
) -> list[MetricRecord]:
    """Camera summaries per (instrument, day_obs, metric) over all stored amp records."""
    buckets: dict[tuple[str, str, str], list[MetricRecord]] = {}
    for r in amp_level:
        if r.level == "amp":
            buckets.setdefault((r.instrument, r.day_obs, r.metric), []).append(r)
    out: list[MetricRecord] = []
    for (instrument, day_obs, metric), recs in sorted(buckets.items()):
        st = summary_stats(np.asarray([r.value for r in recs]))
        exposures = sorted({e for r in recs for e in r.provenance.exposures})
        out.append(
            MetricRecord(
                metric=metric,
                value=st["median"],
                unit=recs[0].unit,
                calib_type=recs[0].calib_type,
                level="camera",
                instrument=instrument,
                detector=None,
                detector_name=None,
                amp=None,
                day_obs=day_obs,
                physical_filter=recs[0].physical_filter,
                vendor="",
                timestamp=min(r.timestamp for r in recs),
                provenance=Provenance(
                    run=rc.run_id,
                    exposures=exposures,
                    n_exposures=len(exposures),
                    software_version=rc.software_version,
                    config_hash=rc.config_hash,
                    processed_at=rc.processed_at,
                ),
                stats=Stats(**st),
            )
        )
    return out


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------
def detector_days(discovery: Discovery) -> list[DetectorDay]:
    out = []
    for (inst, day, name), groups in discovery.by_detector().items():
        by_kind: dict[str, Group] = {}
        for g in groups:
            # one group per kind per detector-day; several flat filters: keep the largest
            if g.key.kind not in by_kind or len(g.exposures) > len(by_kind[g.key.kind].exposures):
                by_kind[g.key.kind] = g
        first = groups[0]
        out.append(DetectorDay(inst, day, name, first.detector, first.vendor, by_kind))
    return out


def make_executor(kind: str, workers: int | None, dask_address: str | None = None) -> Executor:
    """A process pool (default), a dask.distributed client's executor, or serial."""
    if kind == "serial":
        return _SerialExecutor()
    if kind == "dask":
        from distributed import Client, LocalCluster

        if dask_address:
            client = Client(dask_address)
        else:
            client = Client(
                LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                             processes=True, dashboard_address=None)
            )  # fmt: skip
        return client.get_executor()
    return ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, initializer=_worker_init)


def _worker_init() -> None:
    """Worker set-up. SIGINT is ignored: Ctrl-C in a terminal reaches the whole process
    group, and the parent (CLI or daemon) decides how to stop; a worker dying mid-amp
    would lose it. glibc is told to keep freed memory (see :func:`keep_freed_memory`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()


# glibc mallopt parameters (malloc.h): M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> None:
    """Ask glibc to keep large freed blocks instead of returning them to the kernel.

    numpy's per-frame temporaries (4–60 MB) are above glibc's mmap threshold, so each one
    is mmap'ed, page-faulted in and unmapped again; DESIGN.md §8 measured this kernel time
    at ≈ 40 s vs ≈ 10 s per run with ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``
    raised. ``mallopt`` sets the same two knobs from inside the worker (no environment
    needed). A no-op where glibc is not the allocator."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum on 64-bit
        libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):
        pass


class _SerialExecutor(Executor):
    """Runs tasks in the calling process (debugging, --workers 1, tests)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        from concurrent.futures import Future

        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


# Amps per worker task: half a science CCD, so one detector keeps two cores busy.
AMPS_PER_TASK = 8


def run_detector_days(
    dds: Sequence[DetectorDay],
    executor: Executor,
    hints: Callable[[DetectorDay, str], AmpHints],
    on_detector_done: Callable[[DetectorDay, list[AmpResult]], None],
    progress: Callable[[int, int], None] | None = None,
    amps_per_task: int = AMPS_PER_TASK,
    calibs: Callable[[DetectorDay], dict[str, CertifiedCalib] | None] | None = None,
) -> None:
    """Submit every amp of every detector-day; call ``on_detector_done`` as each completes.

    ``calibs(dd)`` gives the certified products a detector-day is verified against
    (looked up once in the main process), or None."""
    pending: dict[Any, tuple[int, tuple[str, ...]]] = {}
    results: dict[int, list[AmpResult]] = {i: [] for i in range(len(dds))}
    n_amps = {i: len(dd.amps) for i, dd in enumerate(dds)}
    total = sum(n_amps.values())
    for i, dd in enumerate(dds):
        frames = dd.frames()
        for k in range(0, len(dd.amps), amps_per_task):
            amps = dd.amps[k : k + amps_per_task]
            task = AmpSetTask(
                dd.instrument, dd.day_obs, dd.detector_name, dd.vendor, amps, frames,
                {a: hints(dd, a) for a in amps}, calibs=calibs(dd) if calibs else None,
            )  # fmt: skip
            pending[executor.submit(measure_amps, task)] = (i, amps)
    done = 0
    for fut in as_completed(list(pending)):
        i, amps = pending.pop(fut)
        try:
            got = fut.result()
        except Exception as exc:  # a crashed worker loses its amps, not the run
            log.error("amps %s of %s failed: %s", ",".join(amps), dds[i].detector_name, exc)
            got = [AmpResult(amp=a, reasons={"_worker": f"{type(exc).__name__}: {exc}"})
                   for a in amps]  # fmt: skip
        results[i].extend(got)
        done += len(got)
        if progress:
            progress(done, total)
        if len(results[i]) == n_amps[i]:
            order = {a: k for k, a in enumerate(dds[i].amps)}
            on_detector_done(dds[i], sorted(results.pop(i), key=lambda r: order[r.amp]))
