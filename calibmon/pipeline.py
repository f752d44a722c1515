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
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from calibmon import __version__
from calibmon.catalogue import Catalogue
from calibmon.errors import InputError
from calibmon.io import detectors as dets
from calibmon.io.discover import Discovery, Group
from calibmon.io.fits import RawFile
from calibmon.io.geometry import AmpGeometry
from calibmon.records import MetricRecord, Provenance, Stats, iso_utc_ms
from calibmon.science import bias as bias_sci
from calibmon.science.combine import median_stack
from calibmon.science.isr import overscan_correct, overscan_residuals
from calibmon.science.robust import summary_stats

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
class AmpTask:
    instrument: str
    day_obs: str
    detector_name: str
    vendor: str
    amp: str
    frames: dict[str, tuple[Frame, ...]]  # kind -> frames (seqnum order)
    gain_hint: tuple[float, str] | None  # (e-/adu, source) from the store or nominal


@dataclass
class AmpResult:
    """Numbers measured for one amp of one detector-day."""

    amp: str
    values: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # metric -> why it is NaN
    used: dict[str, list[int]] = field(default_factory=dict)  # kind -> exposure ids used
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> provenance
    rejected: dict[str, str] = field(default_factory=dict)  # path -> reason
    seconds: float = 0.0

    def put(self, metric: str, value: float, reason: str = "", **extra: Any) -> None:
        v = float(value)
        self.values[metric] = v
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
) -> tuple[np.ndarray, list[Frame], AmpGeometry | None]:
    """Overscan-correct and trim ``amp`` of each frame into one (n, rows, cols) float32 stack.

    Files that cannot be read are recorded in ``result.rejected`` and left out.
    ``hook(raw_image, geometry, row_levels)`` sees each raw frame (e.g. for overscan noise).
    """
    stack: np.ndarray | None = None
    used: list[Frame] = []
    geom0: AmpGeometry | None = None
    for fr in frames:
        try:
            with RawFile(fr.path) as raw:
                raw.check_segments(detector_name)
                image, geom = raw.read_amp(amp)
        except InputError as err:
            result.rejected[err.path] = err.reason
            continue
        if geom0 is None:
            geom0 = geom
        elif geom != geom0:
            result.rejected[fr.path] = (
                f"Segment{amp[1:]}: geometry {geom.shape} DATASEC differs from the other frames"
            )
            continue
        trimmed, levels = overscan_correct(
            image, geom.data_rows, geom.data_cols, geom.overscan_level_cols
        )
        if stack is None:
            stack = np.empty((len(frames), *trimmed.shape), dtype=np.float32)
        stack[len(used)] = trimmed
        if hook is not None:
            hook(image, geom, levels)
        used.append(fr)
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
    gain: tuple[float, str] | None = None  # (e-/adu, source)


def step_bias(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    frames = task.frames.get("bias", ())
    if not frames:
        return
    noises: list[bias_sci.FrameNoise] = []

    def hook(image: np.ndarray, geom: AmpGeometry, levels: np.ndarray) -> None:
        resid = overscan_residuals(image, geom.data_rows, geom.overscan_level_cols, levels)
        noises.append(bias_sci.overscan_frame_noise(resid, levels))

    stack, used, _ = read_corrected_stack(frames, task.amp, task.detector_name, res, hook)
    res.used["bias"] = [f.exposure_id for f in used]
    if not used:
        for m in ("bias_level", "read_noise_adu", "bias_mean", "bias_noise"):
            res.put(m, math.nan, "no readable bias frame")
        return
    ctx.read_noise_adu = bias_sci.read_noise_adu(noises)
    res.put("bias_level", bias_sci.bias_level_adu(noises))
    res.put("read_noise_adu", ctx.read_noise_adu)
    ctx.master_bias = median_stack(stack)
    del stack
    mean, std = bias_sci.master_bias_stats(ctx.master_bias)
    res.put("bias_mean", mean)
    res.put("bias_noise", std)


def step_read_noise_e(task: AmpTask, res: AmpResult, ctx: AmpContext) -> None:
    """read_noise (e-) = read_noise_adu × gain; the gain's source goes to provenance."""
    if "read_noise_adu" not in res.values:
        return
    gain = ctx.gain or task.gain_hint
    if gain is None:
        res.put("read_noise", math.nan, "no gain available")
        return
    rn = res.values["read_noise_adu"] * gain[0]
    res.put(
        "read_noise",
        rn,
        res.reasons.get("read_noise_adu", ""),
        gain_e_per_adu=gain[0],
        gain_source=gain[1],
    )


STEPS: tuple[Callable[[AmpTask, AmpResult, AmpContext], None], ...] = (
    step_bias,
    step_read_noise_e,
)


def measure_amp(task: AmpTask) -> AmpResult:
    """Run every step for one amp (runs in a worker process)."""
    t0 = time.perf_counter()
    res = AmpResult(amp=task.amp)
    ctx = AmpContext()
    for step in STEPS:
        try:
            step(task, res, ctx)
        except Exception as exc:  # one amp's failure must not lose the detector
            log.exception(
                "step %s failed for %s %s %s", step.__name__, task.detector_name, task.amp,
                task.day_obs,
            )  # fmt: skip
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
    "flat_level": "flat", "gain": "flat", "dark_pixels": "flat", "dark_columns": "flat",
    "serial_cti": "flat",
    "ptc_gain": "ptc", "ptc_noise": "ptc", "ptc_turnoff": "ptc", "full_well": "ptc",
    "ptc_a00": "ptc", "linearity_turnoff": "ptc", "max_frac_nonlinearity": "ptc",
    "defect_fraction": "dark",
}  # fmt: skip


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
            kind = METRIC_KIND.get(metric, catalogue.calib_type(metric))
            group = dd.groups.get(kind)
            if group is None:
                continue
            used = res.used.get(kind, group.exposure_ids)
            prov = Provenance(
                run=rc.run_id,
                exposures=used,
                n_exposures=len(used),
                software_version=rc.software_version,
                config_hash=rc.config_hash,
                input_calibs=dict(input_calibs or {}),
                processed_at=rc.processed_at,
                **res.extra.get(metric, {}),
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
                )
            )
            per_metric.setdefault(metric, []).append(value)
    for metric, values in per_metric.items():
        kind = METRIC_KIND.get(metric, catalogue.calib_type(metric))
        group = dd.groups[kind]
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
    return ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1)


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


def run_detector_days(
    dds: Sequence[DetectorDay],
    executor: Executor,
    gain_hints: Callable[[DetectorDay, str], tuple[float, str] | None],
    on_detector_done: Callable[[DetectorDay, list[AmpResult]], None],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Submit every amp of every detector-day; call ``on_detector_done`` as each completes."""
    pending: dict[Any, tuple[int, str]] = {}
    results: dict[int, list[AmpResult]] = {i: [] for i in range(len(dds))}
    n_amps = {i: len(dd.amps) for i, dd in enumerate(dds)}
    total = sum(n_amps.values())
    for i, dd in enumerate(dds):
        frames = dd.frames()
        for amp in dd.amps:
            task = AmpTask(
                dd.instrument, dd.day_obs, dd.detector_name, dd.vendor, amp, frames,
                gain_hints(dd, amp),
            )  # fmt: skip
            pending[executor.submit(measure_amp, task)] = (i, amp)
    for done, fut in enumerate(as_completed(list(pending)), start=1):
        i, amp = pending.pop(fut)
        try:
            res = fut.result()
        except Exception as exc:  # a crashed worker loses one amp, not the run
            log.error("amp %s of %s failed: %s", amp, dds[i].detector_name, exc)
            res = AmpResult(amp=amp, reasons={"_worker": f"{type(exc).__name__}: {exc}"})
        results[i].append(res)
        if progress:
            progress(done, total)
        if len(results[i]) == n_amps[i]:
            order = {a: k for k, a in enumerate(dds[i].amps)}
            on_detector_done(dds[i], sorted(results.pop(i), key=lambda r: order[r.amp]))
