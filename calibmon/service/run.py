"""One processing run: discover → measure → store → (sinks, alerts).

Used by ``calibmon run``, ``calibmon demo`` and the scheduler. Never prints; returns a
:class:`RunSummary` that the CLI renders.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibmon.calibs import registry as calib_registry
from calibmon.calibs.products import CertifiedCalib
from calibmon.catalogue import Catalogue, load_catalogue
from calibmon.config import Settings
from calibmon.errors import InputError
from calibmon.io.discover import Discovery, discover
from calibmon.pipeline import (
    GAIN_METRICS_IN_STORE,
    IMAGE_BIN,
    AmpHints,
    AmpResult,
    DetectorDay,
    Hint,
    RunContext,
    amp_records,
    camera_records,
    detector_days,
    executor_workers,
    finish_detector_verification,
    in_flight_limit,
    new_run_context,
    run_detector_days,
)
from calibmon.records import MetricRecord
from calibmon.service.cluster import open_executor
from calibmon.store.sqlite import Store

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_id: str
    n_files: int = 0
    n_rejected: int = 0
    n_skipped: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: list[InputError] = field(default_factory=list)
    n_records: int = 0
    detector_days: list[tuple[str, str, str]] = field(default_factory=list)
    not_measured: list[str] = field(default_factory=list)  # "R22_S11 C10 gain: reason"
    # detector-days/types without a certified product (calibs.registry.MissingCertified dicts)
    missing_certified: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    day_obs: list[str] = field(default_factory=list)
    sink_reports: list = field(default_factory=list)
    alert_report: object | None = None

    @property
    def ok(self) -> bool:
        return self.n_rejected == 0


def gain_hint_factory(
    store: Store, settings: Settings
) -> Callable[[DetectorDay, str], tuple[float, str] | None]:
    """Gain (e-/adu, source) for read noise/dark current when the day has no PTC/flat gain:
    the latest PTC or flat-pair gain in the store on or before the day, else nominal."""

    def hint(dd: DetectorDay, amp: str) -> tuple[float, str] | None:
        found = store.latest_value(
            GAIN_METRICS_IN_STORE, dd.instrument, dd.detector, amp,
            on_or_before_day_obs=dd.day_obs,
        )  # fmt: skip
        if found is not None:
            metric, value, day = found
            return value, f"{metric} {day} (store)"
        nominal = settings.nominal_gain.get(dd.vendor.upper())
        if nominal is None:
            return None
        return nominal, f"nominal {dd.vendor.upper()}"

    return hint


def amp_hints_factory(store: Store, settings: Settings) -> Callable[[DetectorDay, str], AmpHints]:
    """Earlier measurements of an amp for today's steps: the latest gain (PTC > flat
    pairs; nominal per vendor when none was ever measured), a00 and k2, each with its
    error and the day it was measured."""
    nominal = settings.nominal_gain

    def hints(dd: DetectorDay, amp: str) -> AmpHints:
        def latest(metrics: Sequence[str]) -> Hint | None:
            found = store.latest_measurement(
                metrics, dd.instrument, dd.detector, amp, on_or_before_day_obs=dd.day_obs
            )
            if found is None:
                return None
            metric, value, err, day = found
            return Hint(value, err, f"{metric} (store)", day)

        gain = latest(GAIN_METRICS_IN_STORE)
        if gain is None and dd.vendor.upper() in nominal:
            gain = Hint(nominal[dd.vendor.upper()], math.nan, f"nominal {dd.vendor.upper()}")

        def precise(metric: str) -> Hint | None:
            found = store.most_precise_measurement(
                metric, dd.instrument, dd.detector, amp, on_or_before_day_obs=dd.day_obs
            )
            if found is None:
                return None
            _, value, err, day = found
            return Hint(value, err, f"{metric} (store)", day)

        # a00 and k2 barely change: the most precise recent one (a full ramp, not the
        # last daily_PTC) corrects the flat-pair gain; the gain itself is the latest
        return AmpHints(gain=gain, a00=precise("ptc_a00"), k2=precise("nonlinearity_k2"))

    return hints


def run_directory(
    input_dir: str | Path,
    settings: Settings,
    store: Store,
    *,
    day_obs: str | None = None,
    detectors: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    catalogue: Catalogue | None = None,
    progress: Callable[[int, int], None] | None = None,
    command: str = "run",
    rc: RunContext | None = None,
    discovery: Discovery | None = None,
    camera_summaries: bool = True,
    executor: Executor | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_in_flight: int | None = None,
) -> RunSummary:
    """Process every exposure under ``input_dir`` into ``store``.

    Bad files are rejected with a reason (the rest goes on); each detector-day is written
    in one transaction as soon as its amps are measured, so an interruption loses at most
    the detector in flight. A caller that already scanned the directory passes
    ``discovery`` (the scheduler scans a day once and runs it detector by detector) and
    may leave the camera summaries to :func:`write_camera_summaries` once per day.

    Every detector-day goes to one executor as one batch (bounded in-flight tasks,
    :func:`calibmon.pipeline.run_detector_days`): ``executor`` when given (the caller
    owns it, e.g. the scheduler's for a whole day, or a cluster's), else one made from
    the settings for this run. ``should_stop()`` true: no new detector-day is started.
    ``max_in_flight``: tasks submitted at a time (default: 3 per worker of the executor,
    :func:`calibmon.pipeline.in_flight_limit`).
    """
    t0 = time.perf_counter()
    catalogue = catalogue or load_catalogue(settings.catalogue_dir)
    rc = rc or new_run_context(settings.science_hash())
    summary = RunSummary(run_id=rc.run_id)
    store.begin_run(
        rc.run_id, command, input_dir=str(input_dir), day_obs=day_obs,
        software_version=rc.software_version, config_hash=rc.config_hash,
    )  # fmt: skip
    disc = discovery or discover(
        input_dir, day_obs=day_obs, instrument=settings.instrument, detectors=detectors,
        kinds=kinds, instruments_extra=settings.instruments_extra,
    )  # fmt: skip
    if discovery is not None and detectors:
        disc = disc.restricted(detectors)
    summary.n_files = disc.n_files
    summary.skipped = disc.skipped
    summary.n_skipped = disc.n_skipped
    rejected: dict[str, InputError] = {}
    for err in disc.rejected:
        rejected.setdefault(err.path, err)
        log.warning("%s", err)
    dds = detector_days(disc)
    dds = [dd for dd in dds if _enough_frames(dd, settings, summary)]
    summary.detector_days = [(dd.instrument, dd.day_obs, dd.detector_name) for dd in dds]
    summary.day_obs = sorted({dd.day_obs for dd in dds})
    hints = amp_hints_factory(store, settings)
    calibs = certified_calibs(store, dds, summary)

    def done(dd: DetectorDay, results: list[AmpResult]) -> None:
        t = time.perf_counter()
        finish_detector_verification(results)  # flat verdicts need all amps of the detector
        for res in results:
            for path, reason in res.rejected.items():
                if path not in rejected:
                    rejected[path] = InputError(path, reason)
                    log.warning("%s", rejected[path])
            for metric, reason in res.reasons.items():
                summary.not_measured.append(f"{dd.detector_name} {res.amp} {metric}: {reason}")
        records = amp_records(dd, results, catalogue, rc)
        # one transaction per detector-day: records and pictures land together or not at all
        with store.transaction():
            n = store.write_records(records, rc.run_id)
            store.write_amp_images(
                [(dd.instrument, dd.day_obs, dd.detector, r.amp, kind, img, r.detsec)
                 for r in results for kind, img in r.images.items()],
                rc.run_id, IMAGE_BIN,
            )  # fmt: skip
            store.write_ptc_curves(
                [(dd.instrument, dd.day_obs, dd.detector, r.amp, r.ptc_curve)
                 for r in results if r.ptc_curve is not None],
                rc.run_id,
            )  # fmt: skip
        summary.n_records += n
        log.info(
            "processed %s %s %s: %d files, %d records, %.1f s amp time",
            dd.instrument, dd.day_obs, dd.detector_name,
            sum(len(g.exposures) for g in dd.groups.values()), n,
            sum(r.seconds for r in results),
        )  # fmt: skip
        del t

    if dds:
        with ExitStack() as stack:
            ex = executor or stack.enter_context(open_executor(settings))
            run_detector_days(
                dds, ex, hints, done, progress,
                calibs=lambda dd: calibs.get((dd.instrument, dd.day_obs, dd.detector_name)),
                max_in_flight=max_in_flight or in_flight_limit(executor_workers(ex)
                                                               or settings.workers),
                should_stop=should_stop,
            )  # fmt: skip
    if dds and camera_summaries:
        summary.n_records += write_camera_summaries(
            store, catalogue, rc, sorted({dd.instrument for dd in dds}), summary.day_obs
        )
    summary.rejected = sorted(rejected.values(), key=lambda e: e.path)
    summary.n_rejected = len(summary.rejected)
    for err in summary.rejected:
        store.add_rejection(rc.run_id, err.path, err.reason)
    summary.seconds = time.perf_counter() - t0
    store.finish_run(
        rc.run_id,
        "ok" if summary.ok else "partial",
        n_files=summary.n_files,
        n_rejected=summary.n_rejected,
        n_skipped=summary.n_skipped,
        n_records=summary.n_records,
        notes={
            "not_measured": summary.not_measured[:500],
            "skipped": dict(summary.skipped),
            "missing_certified": summary.missing_certified,
        },
    )
    return summary


CalibsKey = tuple[str, str, str]  # (instrument, day_obs, detector_name)


def certified_calibs(
    store: Store, dds: Sequence[DetectorDay], summary: RunSummary
) -> dict[CalibsKey, dict[str, CertifiedCalib]]:
    """Certified products valid for each detector-day (main process), for verification.

    A verified type (bias, dark, flat) present on a detector-day without a certified
    product is logged once (WARNING), noted in ``summary.not_measured`` and listed in
    ``summary.missing_certified`` (the run's notes), so the staleness rule can see it. An
    instrument with no certification at all in the store is not using verification: one
    INFO line, no warnings.
    """
    out: dict[CalibsKey, dict[str, CertifiedCalib]] = {}
    quiet: set[str] = set()
    for inst in sorted({dd.instrument for dd in dds}):
        if not calib_registry.has_certifications(store, inst):
            quiet.add(inst)
            log.info("no certified calibrations for %s in the store: verification skipped "
                     "(calibmon calibs build/certify)", inst)  # fmt: skip
    for dd in dds:
        if dd.instrument in quiet:
            continue
        flat = dd.groups.get("flat")
        found, missing = calib_registry.certified_for_detector_day(
            store, dd.instrument, dd.detector, dd.detector_name, dd.day_obs, dd.groups,
            flat.key.physical_filter if flat is not None else "",
        )  # fmt: skip
        if found:
            out[(dd.instrument, dd.day_obs, dd.detector_name)] = found
        for m in missing:
            log.warning("%s %s %s: %s", dd.instrument, dd.day_obs, dd.detector_name, m.message())
            summary.not_measured.append(f"{dd.detector_name} verify {m.calib_type}: {m.message()}")
            summary.missing_certified.append(m.as_dict())
    return out


def write_camera_summaries(
    store: Store,
    catalogue: Catalogue,
    rc: RunContext,
    instruments: Sequence[str],
    days: Sequence[str],
) -> int:
    """Camera summaries over everything stored for these days (other runs too); returns
    the number of records written."""
    n = 0
    for inst in instruments:
        for day in days:
            amp_recs = list(store.iter_records(day_obs=day, instrument=inst, level="amp"))
            n += store.write_records(camera_records(amp_recs, catalogue, rc), rc.run_id)
    return n


def _enough_frames(dd: DetectorDay, settings: Settings, summary: RunSummary) -> bool:
    mins = settings.min_frames
    for kind in list(dd.groups):
        need = getattr(mins, kind)
        have = len(dd.groups[kind].exposures)
        if have < need:
            log.warning(
                "%s %s %s: %d %s frame(s), %d needed; not measured",
                dd.instrument, dd.day_obs, dd.detector_name, have, kind, need,
            )  # fmt: skip
            summary.not_measured.append(f"{dd.detector_name} {kind}: {have} frames < {need}")
            del dd.groups[kind]
    return bool(dd.groups)


def records_for_day(store: Store, day_obs: str | None) -> list[MetricRecord]:
    return list(store.iter_records(day_obs=day_obs))
