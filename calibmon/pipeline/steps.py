"""Per-kind steps of one amp (banzai's ordered stages, kept readable in one screen)::

    bias : overscan_correct → trim → stack(median) → bias_level, read_noise_adu,
           bias_mean, bias_noise
    flat : overscan_correct → trim → −master bias → pairs → flat_level, gain,
           dark_pixels/columns, serial_cti
    ptc  : overscan_correct → trim → −master bias → pair stats → PTC fit, linearity
    dark : overscan_correct → trim → stack → −master bias → ×gain/DARKTIME → dark metrics,
           bright defects
    then : read_noise = read_noise_adu × gain (PTC today > flat today > store > nominal)

Each ``step_<kind>(task, res, ctx)`` reads its kind's frames
(:func:`calibmon.pipeline.reading.read_corrected_stack`) and hands arrays to
``measure_<kind>``, which takes the overscan-corrected, trimmed stack (adu) and the
per-frame numbers gathered while reading, and fills the :class:`AmpResult`; the
``measure_*`` functions never touch a file, so they can be tested on stacks built in
memory. Earlier steps of the same amp hand numbers to later ones through
:class:`AmpContext`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibmon.dayobs import parse_day_obs
from calibmon.io.geometry import AmpGeometry
from calibmon.pipeline.reading import FrameHook, read_corrected_stack
from calibmon.pipeline.tasks import AmpResult, AmpTask, Frame, Hint
from calibmon.science import bias as bias_sci
from calibmon.science import cti as cti_sci
from calibmon.science import dark as dark_sci
from calibmon.science import defects as defects_sci
from calibmon.science import flat as flat_sci
from calibmon.science.combine import clipped_mean_stack
from calibmon.science.verify import master_noise_factor

# Binning of the master images kept for pictures (report mosaics): 16x16 pixels.
IMAGE_BIN = 16


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
    # kind -> (stack, frames used), held for that kind's verify step (verify_steps)
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
    if not np.isnan(image).any():  # the same sums and counts, without nanmean's copy
        return blocks.mean(axis=(1, 3)).astype(np.float32)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks (dead amp)
        return np.nanmean(blocks, axis=(1, 3)).astype(np.float32)


def _keep_for_verify(
    task: AmpTask, ctx: AmpContext, kind: str, stack: np.ndarray, used: Sequence[Frame]
) -> None:
    """Hold the stack for the kind's verify step when a certified product of it is known."""
    if task.calibs and kind in task.calibs:
        ctx.stacks[kind] = (stack, list(used))


def _stack_buffer(ctx: AmpContext, kind: str) -> str:
    """The task's buffer a kind's stack is read into (:meth:`FileCache.buffer`).

    The kinds are read one after the other and a stack is dead once its step (and its
    verify step, which pops ``ctx.stacks``) is done, so they share one buffer: a worker
    then holds one ~60 MB stack instead of one per kind (bias, flat, dark: ≈ 120 MB less
    peak RSS). While any stack is still held for verification, the kind's own buffer.
    """
    return "stack" if not ctx.stacks else f"stack-{kind}"


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


def _overscan_noise_hook(noises: list[bias_sci.FrameNoise]) -> FrameHook:
    """A hook collecting each frame's serial-overscan noise per row (bias frames)."""

    def hook(image: np.ndarray, geom: AmpGeometry, levels: np.ndarray) -> None:
        overscan = image[geom.data_rows, geom.overscan_level_cols]
        noises.append(bias_sci.overscan_frame_noise_rows(overscan, levels))

    return hook


def step_bias(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """Read the amp's biases and measure them (:func:`measure_bias`)."""
    frames = task.frames.get("bias", ())
    if not frames:
        return
    noises: list[bias_sci.FrameNoise] = []
    stack, used, geom = read_corrected_stack(
        frames, task.amp, task.detector_name, res, _overscan_noise_hook(noises), task.cache,
        buffer_key=_stack_buffer(ctx, "bias"),
    )  # fmt: skip
    measure_bias(stack, used, geom, noises, task, res, ctx)


def measure_bias(
    stack: np.ndarray,
    used: Sequence[Frame],
    geom: AmpGeometry | None,
    noises: Sequence[bias_sci.FrameNoise],
    task: AmpTask,
    res: AmpResult,
    ctx: AmpContext,
) -> None:
    """Bias level and read noise (adu) from the frames' overscan ``noises``; master bias
    (clipped mean of ``stack``, (n, rows, cols) adu, overscan corrected and trimmed),
    its mean and noise (adu). ``used``: the frames of the stack; ``geom``: their amp
    geometry (None when no frame was readable)."""
    res.used["bias"] = [f.exposure_id for f in used]
    if geom is not None:
        n_os = geom.overscan_level_cols.stop - geom.overscan_level_cols.start
        ctx.noise_excess_frac = math.pi / (2.0 * max(n_os, 1))
    if not used:
        for m in ("bias_level", "read_noise_adu", "bias_mean", "bias_noise"):
            res.put(m, math.nan, "no readable bias frame")
        return
    rn, rn_err = bias_sci.read_noise_adu_with_error(list(noises))
    ctx.read_noise_adu, ctx.read_noise_err_adu = rn, rn_err
    level, level_err = bias_sci.bias_level_with_error(list(noises))
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


@dataclass
class EperSums:
    """Sums over flat frames for serial EPER: the raw serial overscan incl. its first
    (trail) columns and the last data column, each levelled by the far overscan columns
    (adu, per row); ``n`` frames."""

    n: int = 0
    os: np.ndarray | None = None
    last: np.ndarray | None = None
    transfers: int = 0
    prescan: int = 0

    def add(self, image: np.ndarray, geom: AmpGeometry, levels: np.ndarray) -> None:
        """Add one raw frame (a :data:`FrameHook`)."""
        os_ = image[geom.data_rows, geom.serial_overscan_cols].astype(np.float64)
        os_ -= levels[:, None]
        last = image[geom.data_rows, geom.data_cols.stop - 1].astype(np.float64) - levels
        if self.n == 0:
            self.os, self.last = os_, last
            self.transfers, self.prescan = geom.data_cols.stop, geom.data_cols.start
        else:
            self.os += os_
            self.last += last
        self.n += 1


def step_flat(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """Read the amp's daily flats and measure them (:func:`measure_flat`)."""
    frames = task.frames.get("flat", ())
    if not frames:
        return
    eper = EperSums()
    frame_means: list[float] = []
    level_hook = _frame_means_hook(frame_means)

    def hook(image: np.ndarray, geom: AmpGeometry, levels: np.ndarray) -> None:
        level_hook(image, geom, levels)
        eper.add(image, geom, levels)

    stack, used, _ = read_corrected_stack(
        frames,
        task.amp,
        task.detector_name,
        res,
        hook,
        task.cache,
        buffer_key=_stack_buffer(ctx, "flat"),
    )
    measure_flat(stack, used, frame_means, eper, task, res, ctx)


def measure_flat(
    stack: np.ndarray,
    used: Sequence[Frame],
    frame_means: Sequence[float],
    eper: EperSums,
    task: AmpTask,
    res: AmpResult,
    ctx: AmpContext,
) -> None:
    """Daily flats: flat level (adu), pair statistics (for the gain step), cold defects,
    serial CTI (EPER). ``stack``: (n, rows, cols) adu, overscan corrected and trimmed
    (the day's master bias is subtracted here, in place); ``frame_means``: each frame's
    overscan-corrected mean level (adu); ``eper``: the frames' overscan sums."""
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
    n = eper.n
    assert eper.os is not None and eper.last is not None
    last = eper.last / n
    if ctx.master_bias is not None:
        last = last - ctx.master_bias[:, -1]
    ep = cti_sci.eper_serial(eper.os / n, last, int(eper.transfers))
    if math.isfinite(ep.cti) and ep.cti > 0:
        n_prescan = int(eper.prescan)
        n_cols = int(eper.transfers) - n_prescan
        ctx.cti_variance_loss = 2.0 * ep.cti * (n_prescan + (n_cols + 1) / 2.0)
    res.put(
        "serial_cti", ep.cti, ep.reason, error=ep.cti_err, cti_err=ep.cti_err,
        n_transfers=int(eper.transfers),
    )  # fmt: skip


def step_ptc(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """Read the amp's PTC ramp one pair at a time and measure it (:func:`measure_ptc`)."""
    frames = task.frames.get("ptc", ())
    if not frames:
        return
    ramp: list[tuple[Frame, Frame, flat_sci.PairStats]] = []
    for a, b in _pairs(frames):
        stack, used, _ = read_corrected_stack(
            (a, b),
            task.amp,
            task.detector_name,
            res,
            cache=task.cache,
            buffer_key=_stack_buffer(ctx, "ptc"),
        )
        if len(used) != 2:
            continue
        _subtract_bias(stack, ctx)
        ramp.append((a, b, flat_sci.pair_statistics(stack[0], stack[1])))
    measure_ptc(ramp, task, res, ctx)


def measure_ptc(
    ramp: Sequence[tuple[Frame, Frame, flat_sci.PairStats]],
    task: AmpTask,
    res: AmpResult,
    ctx: AmpContext,
) -> None:
    """PTC ramp: Astier fit, turnoff, full well, linearity from each flat pair's
    statistics (mean adu, variance adu², of the bias-subtracted pair)."""
    # Imported here: their scipy.stats/scipy.optimize imports (≈ 0.5 s, ≈ 40 MB per
    # worker) are only needed by a PTC ramp, not by the daily bias/dark/flat set.
    from calibmon.science import linearity as lin_sci
    from calibmon.science import ptc as ptc_sci

    mus, variances, times, npix, used_ids = [], [], [], [], []
    for a, b, ps in ramp:
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
    """Read the amp's darks and measure them (:func:`measure_dark`)."""
    frames = task.frames.get("dark", ())
    if not frames:
        return
    stack, used, _ = read_corrected_stack(
        frames,
        task.amp,
        task.detector_name,
        res,
        cache=task.cache,
        buffer_key=_stack_buffer(ctx, "dark"),
    )
    measure_dark(stack, used, task, res, ctx)


def measure_dark(
    stack: np.ndarray, used: Sequence[Frame], task: AmpTask, res: AmpResult, ctx: AmpContext
) -> None:
    """Darks: combined (bias-subtracted) dark rate (e-/s), dark current metrics, hot
    defects. ``stack``: (n, rows, cols) adu, overscan corrected and trimmed (changed in
    place: bias subtracted, divided by each frame's DARKTIME)."""
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
        a, b = parse_day_obs(then), parse_day_obs(now)
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
