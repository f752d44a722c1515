"""The scheduled service behind ``calibmon serve`` (DESIGN.md §7).

:class:`Service` runs the jobs of ``schedules/*.yaml`` with APScheduler 3.x:

- a ``BackgroundScheduler`` whose cron jobs live in a persistent ``SQLAlchemyJobStore``
  (a SQLite file beside the store, ``<store>.jobs.sqlite``), with ``coalesce=True``,
  ``max_instances=1`` and each job's ``misfire_grace_time``; one worker thread, so one
  firing runs at a time (the pipeline parallelises inside it);
- on start, one immediate firing of every job: each firing processes every day_obs of its
  window (target day_obs and ``catch_up_days`` before it) that the run ledger
  (:mod:`calibmon.store.ledger`) does not hold as finished. So a missed firing or a
  restart catches up, and a finished detector-day is never redone;
- a day's detector-days (units) go to one executor as one batch: each unit is its own
  run (``run_directory(..., detectors=[name], executor=shared)``), several run at once
  (:func:`unit_concurrency`; one at a time with ``executor: serial``), so the workers
  never idle between detectors. A failed detector is recorded in the ledger (and
  retried up to ``max_attempts``) while the others go on; a stop request starts no new
  unit and lets the running ones finish;
- a day is marked ``pending`` in the ledger before its first unit and ``finalised``
  after its camera summaries, sinks and alerts: a firing killed in between leaves it
  pending, and the next firing finishes it even when every unit is done.

The job store pickles a reference to :func:`fire_job` plus the job name; ``fire_job``
finds the running service through the module's ``_ACTIVE`` slot (set by ``start``,
cleared by ``shutdown``) because a persisted job cannot hold a live object.

Testing only: ``tick_seconds`` replaces every cron trigger by an interval of that many
seconds, and ``clock`` (``serve --test-now``) shifts "now" for choosing day_obs, so a test
can exercise days of schedule in seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from calibmon import clock as service_clock
from calibmon.catalogue import load_catalogue
from calibmon.config import Settings
from calibmon.dayobs import day_obs_for, day_obs_window, previous_day_obs, shift_day_obs
from calibmon.io.discover import Discovery, discover
from calibmon.pipeline import in_flight_limit, new_run_context
from calibmon.service.cluster import open_executor
from calibmon.service.prometheus import LOCAL_SINK, CalibmonMetrics, store_opens
from calibmon.service.run import RunSummary, run_directory, write_camera_summaries
from calibmon.service.schedules import EXPECTED_EVIDENCE, JobSpec
from calibmon.store.ledger import (
    DAY_FINALISED,
    DAY_PENDING,
    DONE_STATUSES,
    Ledger,
    evidence_present,
)
from calibmon.store.sqlite import Store

log = logging.getLogger(__name__)

FIRE_REF = "calibmon.service.scheduler:fire_job"
JOBSTORE_SUFFIX = ".jobs.sqlite"
DELIVERY_INTERVAL_S = 60.0
"""How often the service retries the sink outbox and pending notifications (seconds of
real time; with ``tick_seconds``, every tick)."""

_ACTIVE: Service | None = None  # the running service, for fire_job (see module doc)


def fire_job(job_name: str) -> None:
    """Entry point the scheduler calls (persisted by reference in the job store)."""
    service = _ACTIVE
    if service is None:
        log.error("job %s fired but no calibmon service is running", job_name)
        return
    service.fire(job_name)


def jobstore_path(store_path: str | Path) -> Path:
    """The APScheduler job store file beside the calibmon store."""
    p = Path(store_path)
    return p.with_name(p.stem + JOBSTORE_SUFFIX)


def system_clock() -> datetime:
    return datetime.now(UTC)


def shifted_clock(start: datetime) -> Callable[[], datetime]:
    """A clock that reads ``start`` now and advances in real time (testing only)."""
    t0 = time.monotonic()
    start = start.astimezone(UTC)

    def now() -> datetime:
        from datetime import timedelta

        return start + timedelta(seconds=time.monotonic() - t0)

    return now


@dataclass
class Firing:
    """What one firing of a job did."""

    job: str
    outcome: str = "idle"  # success | rejected | idle | stale | failure | interrupted
    day_obs: list[str] = field(default_factory=list)  # day_obs where work was done
    units_done: int = 0
    units_failed: int = 0
    units_waiting: int = 0  # files still settling
    n_files: int = 0
    n_rejected: int = 0
    n_records: int = 0
    missing: list[str] = field(default_factory=list)  # staleness: "20251121 bias"
    error: str | None = None
    seconds: float = 0.0


class Service:
    """Scheduled processing of ``jobs`` into ``store``.

    ``runner`` is :func:`calibmon.service.run.run_directory` (a test may wrap it);
    ``after_run(settings, store, summary)`` delivers to sinks and evaluates alerts (the
    CLI passes its post-run step); ``staleness_hook(job, settings, store, day_obs)`` hands
    a staleness job's target day_obs to the alert engine; ``metrics`` may be None;
    ``executor_factory(settings)`` makes the executor a day's batch runs on (default
    :func:`settings_executor`; a cluster passes its own).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        jobs: Sequence[JobSpec],
        *,
        metrics: CalibmonMetrics | None = None,
        input_override: str | Path | None = None,
        runner: Callable[..., Any] = run_directory,
        after_run: Callable[[Settings, Store, Any], None] | None = None,
        clock: Callable[[], datetime] = system_clock,
        tick_seconds: float | None = None,
        jobstore_url: str | None = None,
        staleness_hook: Callable[[JobSpec, Settings, Store, str], None] | None = None,
        executor_factory: Callable[[Settings], AbstractContextManager[Executor]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.jobs = {j.name: j for j in jobs}
        self.metrics = metrics
        self.input_override = input_override
        self.runner = runner
        self.after_run = after_run
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.jobstore_url = jobstore_url or f"sqlite:///{jobstore_path(store.path)}"
        self.staleness_hook = staleness_hook
        self.executor_factory = executor_factory or settings_executor
        self.ledger = Ledger(store)
        self._stop = threading.Event()
        self._work_lock = threading.Lock()
        self._scheduler: Any = None

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start the scheduler: persistent cron jobs plus one catch-up firing per job."""
        global _ACTIVE
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        if _ACTIVE is not None and _ACTIVE is not self:
            raise RuntimeError("another calibmon service is already running in this process")
        self._stop.clear()
        sched = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(url=self.jobstore_url),
                "volatile": MemoryJobStore(),
            },
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        _ACTIVE = self
        sched.start(paused=True)
        self._scheduler = sched
        self._sync_persistent_jobs()
        now = datetime.now(UTC)
        for name in self.jobs:
            sched.add_job(
                fire_job, "date", run_date=now, args=[name], id=f"{name}@start",
                name=f"{name} (catch-up at start)", jobstore="volatile",
                misfire_grace_time=None,
            )  # fmt: skip
        self._schedule_delivery(sched)
        sched.resume()
        for job in sched.get_jobs(jobstore="default"):
            log.info("job %s: next run %s", job.id, job.next_run_time)

    def _sync_persistent_jobs(self) -> None:
        """Make the job store hold exactly our jobs; a job whose trigger is unchanged keeps
        its stored next run time, so a run missed while stopped fires on start (within
        its misfire grace)."""
        sched = self._scheduler
        start = None
        if self.tick_seconds:
            from datetime import timedelta

            start = datetime.now(UTC) + timedelta(seconds=self.tick_seconds)
        stored = {j.id: j for j in sched.get_jobs(jobstore="default")}
        for name, spec in self.jobs.items():
            trigger = spec.trigger(self.tick_seconds, start)
            old = stored.pop(name, None)
            options = {
                "misfire_grace_time": spec.misfire_grace_seconds,
                "coalesce": True,
                "max_instances": 1,
            }
            if (
                old is not None
                and repr(old.trigger) == repr(trigger)
                and old.func_ref == FIRE_REF
                and tuple(old.args) == (name,)
            ):
                sched.modify_job(name, jobstore="default", **options)
                continue
            sched.add_job(
                FIRE_REF, trigger, args=[name], id=name, name=name, jobstore="default",
                replace_existing=True, **options,
            )  # fmt: skip
        for stale in stored:
            log.info("job %s is no longer in the schedules: removed from the job store", stale)
            sched.remove_job(stale, jobstore="default")

    def request_stop(self) -> None:
        """Ask running work to stop at the next detector-day boundary (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def shutdown(self, wait: bool = True) -> None:
        """Stop between detector-days, wait for the running firing, close the scheduler."""
        global _ACTIVE
        self._stop.set()
        if self._scheduler is not None:
            if self._scheduler.running:
                self._scheduler.shutdown(wait=wait)
            self._scheduler = None
        if _ACTIVE is self:
            _ACTIVE = None
            service_clock.install(None)

    @property
    def running(self) -> bool:
        return self._scheduler is not None and bool(self._scheduler.running)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, detail) for ``/healthz``: the scheduler runs and the store opens."""
        store_ok, store_msg = store_opens(self.store.path)
        detail: dict[str, Any] = {
            "scheduler": "running" if self.running else "stopped",
            "store": store_msg,
        }
        if self.running:
            detail["jobs"] = {
                j.id: j.next_run_time.isoformat() if j.next_run_time else None
                for j in self._scheduler.get_jobs(jobstore="default")
            }
        return self.running and store_ok and not self.stopping, detail

    # -- one firing --------------------------------------------------------------------
    def target_day_obs(self, spec: JobSpec) -> str:
        today = day_obs_for(self.clock())
        return previous_day_obs(today) if spec.day_obs == "previous" else today

    def fire(self, job_name: str) -> Firing | None:
        """Run one firing of ``job_name`` (what the scheduler calls; usable directly).

        Returns None when the service is stopping (nothing was started).
        """
        spec = self.jobs.get(job_name)
        if spec is None:
            log.error("job %s is not in the schedules", job_name)
            return None
        with self._work_lock:
            if self.stopping:
                return None
            t0 = time.perf_counter()
            firing = Firing(job=job_name)
            window = day_obs_window(self.target_day_obs(spec), spec.catch_up_days)
            try:
                if spec.is_staleness:
                    self._check_staleness(spec, window, firing)
                else:
                    self._process(spec, window, firing)
            except Exception as exc:  # a firing must never kill the scheduler thread
                log.exception("job %s failed: %s", job_name, exc)
                firing.outcome, firing.error = "failure", f"{type(exc).__name__}: {exc}"
            firing.seconds = time.perf_counter() - t0
            self._account(spec, firing)
            return firing

    def _account(self, spec: JobSpec, f: Firing) -> None:
        try:
            self.ledger.record_firing(f.job, f.outcome, error=f.error)
        except Exception as exc:
            log.error("job %s: cannot record the firing in the ledger: %s", f.job, exc)
        if self.metrics is not None:
            self.metrics.job_runs.labels(job=f.job, outcome=f.outcome).inc()
            self.metrics.job_duration.labels(job=f.job).observe(f.seconds)
        days = ",".join(f.day_obs) or "-"
        if spec.is_staleness:
            log.info(
                "job %s: %s, %d expected calibration(s) missing (%s), %.1f s",
                f.job, f.outcome, len(f.missing), "; ".join(f.missing) or "none", f.seconds,
            )  # fmt: skip
        else:
            # An idle poll (every few minutes for ptc-ramp) is DEBUG; work is INFO.
            level = logging.DEBUG if f.outcome == "idle" else logging.INFO
            log.log(
                level,
                "job %s: %s, day_obs %s, %d detector-days done, %d failed, %d waiting, "
                "%d files, %d rejected, %d records, %.1f s",
                f.job, f.outcome, days, f.units_done, f.units_failed, f.units_waiting,
                f.n_files, f.n_rejected, f.n_records, f.seconds,
            )  # fmt: skip

    # -- processing jobs -----------------------------------------------------------------
    def job_settings(self, spec: JobSpec) -> Settings:
        """Settings for one job: its instrument, and only its sinks and notifiers."""
        update: dict[str, Any] = {}
        if spec.instrument:
            update["instrument"] = spec.instrument
        if spec.sinks is not None:
            update["sinks"] = [s for s in self.settings.sinks if item_name(s) in spec.sinks]
        if spec.notifiers is not None:
            update["notifiers"] = [
                n for n in self.settings.notifiers if item_name(n) in spec.notifiers
            ]
        return self.settings.model_copy(update=update) if update else self.settings

    def _process(self, spec: JobSpec, window: Sequence[str], f: Firing) -> None:
        settings = self.job_settings(spec)
        instrument = settings.instrument
        for day in window:
            if spec.butler is not None and self.input_override is None:
                from calibmon.service.butler_day import process_butler_day

                process_butler_day(self, spec, settings, day, instrument, f)
                continue
            for input_dir in spec.input_dirs(day, self.input_override):
                if self.stopping:
                    f.outcome = "interrupted"
                    return
                self._process_day(spec, settings, input_dir, day, instrument, f)
        if not f.units_done and not self.stopping:
            self._flush_outbox(spec, settings)
        if f.outcome != "interrupted":
            if f.units_failed:
                f.outcome = "failure"
                f.error = f"{f.units_failed} detector-day(s) failed"
            elif f.n_rejected:
                f.outcome = "rejected"
            elif f.units_done:
                f.outcome = "success"
            else:
                f.outcome = "idle"

    def _process_day(
        self,
        spec: JobSpec,
        settings: Settings,
        input_dir: Path,
        day: str,
        instrument: str | None,
        f: Firing,
        disc: Discovery | None = None,
        store: Any = None,
    ) -> None:
        """``disc``/``store``: a scan made elsewhere (a Butler query) and the store the
        records go through (the Butler's provenance); default: scan ``input_dir``."""
        disc = disc if disc is not None else discover(
            input_dir, day_obs=day, instrument=instrument, detectors=spec.detector_list,
            kinds=spec.discover_kinds, instruments_extra=settings.instruments_extra,
        )  # fmt: skip
        # Files rejected from their header alone belong to no detector: every
        # per-detector run sees them again, so they are counted once, here.
        header_rejected = {e.path for e in disc.rejected}
        entries = self.ledger.entries(spec.name, day)
        was_pending = self.ledger.day_status(spec.name, day) == DAY_PENDING
        unfinalised = was_pending
        summaries: list[RunSummary] = []
        counted_header_rejects = False

        def before_unit() -> None:
            """Before each unit is started (main thread)."""
            nonlocal unfinalised, counted_header_rejects
            if not unfinalised:
                # before the day's first unit: "units written since the day's camera
                # summaries and alerts"; a kill before _finalise_day leaves the day for
                # the next firing to finish
                self.ledger.mark_day(spec.name, day, DAY_PENDING)
                unfinalised = True
            if header_rejected and not counted_header_rejects:
                counted_header_rejects = True
                for err in disc.rejected:
                    log.warning("%s", err)
                f.n_rejected += len(header_rejected)
                if self.metrics is not None:
                    self.metrics.files_rejected.inc(len(header_rejected))

        try:
            todo: list[_Unit] = []
            for (inst, _day, det), groups in disc.by_detector().items():
                unit = f"{inst}/{det}"
                exposures = [e for g in groups for e in g.exposures]
                entry = entries.get(unit)
                if entry is not None and entry.finished(len(exposures), spec.max_attempts):
                    continue
                if spec.settle_seconds and not _settled(exposures, spec.settle_seconds):
                    f.units_waiting += 1
                    log.info("job %s %s %s: files still arriving; waiting", spec.name, day, unit)
                    continue
                todo.append(_Unit(inst, det, unit, len(exposures)))
            for summary in self._run_units(
                spec, settings, input_dir, day, todo, header_rejected, f, disc, store, before_unit
            ):
                if summary is not None:
                    summaries.append(summary)
                if day not in f.day_obs:
                    f.day_obs.append(day)
        finally:
            # Sinks and alerts once per day_obs, over the detector-days just done (also
            # when a stop request cut the day short); or over the day as stored when an
            # earlier firing was killed between its last unit and this step.
            if summaries or (was_pending and not self.stopping):
                if not summaries:
                    summaries = [self._stored_day_summary(spec, day, disc, entries)]
                    if day not in f.day_obs:
                        f.day_obs.append(day)
                self._finalise_day(spec, settings, day, summaries)

    def _stored_day_summary(
        self, spec: JobSpec, day: str, disc: Discovery, entries: dict[str, Any]
    ) -> RunSummary:
        """What the post-run steps need of a day processed by earlier firings: its day_obs
        and the detector-days the ledger holds as processed."""
        done = [
            (inst, d, det) for inst, d, det in disc.by_detector()
            if (e := entries.get(f"{inst}/{det}")) is not None and e.status in DONE_STATUSES
        ]  # fmt: skip
        return RunSummary(run_id=f"serve:{spec.name}:finalise", day_obs=[day], detector_days=done)

    def _finalise_day(
        self, spec: JobSpec, settings: Settings, day: str, summaries: list[RunSummary]
    ) -> None:
        """Camera summaries, sinks and alerts of ``day``, then the day's ledger mark
        (``finalised``, :meth:`Ledger.mark_day`): a kill before the mark repeats this
        step on the next firing (each part is idempotent), never skips it."""
        self._camera_summaries(settings, day, summaries)
        self._after_run(spec, settings, merge_summaries(day, summaries))
        self.ledger.mark_day(spec.name, day, DAY_FINALISED)

    def _camera_summaries(self, settings: Settings, day: str, summaries: list[RunSummary]) -> None:
        """Camera summaries once per day_obs, after its detector-days (not once per unit)."""
        instruments = sorted({inst for s in summaries for inst, _, _ in s.detector_days})
        if not instruments:
            return
        try:
            catalogue = load_catalogue(settings.catalogue_dir)
            rc = new_run_context(settings.science_hash())
            n = write_camera_summaries(self.store, catalogue, rc, instruments, [day])
            summaries[-1].n_records += n
            if self.metrics is not None:
                self.metrics.records_written.labels(sink=LOCAL_SINK).inc(n)
        except Exception as exc:  # summaries can be recomputed; never lose the day's work
            log.error("camera summaries for %s failed: %s", day, exc)

    def _after_run(self, spec: JobSpec, settings: Settings, summary: RunSummary) -> None:
        """The post-run step (sinks, alerts); what the sinks acknowledged is counted from
        the store's cursors, the one record of it that cannot disagree."""
        if self.after_run is None:
            return
        names = [item_name(s) for s in settings.sinks]
        before = {n: self.store.pending_count(n) for n in names}
        try:
            self.after_run(settings, self.store, summary)
        except Exception as exc:  # delivery/alerts never lose the stored records
            log.error("job %s: post-run step failed: %s", spec.name, exc)
        if self.metrics is None:
            return
        for name, n_before in before.items():
            n_after = self.store.pending_count(name)
            if n_before > n_after:
                self.metrics.records_written.labels(sink=name).inc(n_before - n_after)
            if n_before and n_after:
                self.metrics.sink_errors.labels(sink=name).inc()

    def _flush_outbox(self, spec: JobSpec, settings: Settings) -> None:
        """A firing with no new work still retries what the job's sinks have pending, and
        the notifications its notifiers have pending (on the service clock)."""
        names = [item_name(s) for s in settings.sinks]
        if self.after_run is not None and any(self.store.pending_count(n) for n in names):
            self._after_run(spec, settings, RunSummary(run_id=f"serve:{spec.name}:outbox"))
        self._deliver_notifications(settings)

    # -- periodic delivery ---------------------------------------------------------------
    def _schedule_delivery(self, sched: Any) -> None:
        """Put the service clock in force for delivery (:mod:`calibmon.clock`) and add the
        periodic job that retries the sink outbox and pending notifications, so an outage
        that ends on a day without new data is still delivered."""
        service_clock.install(self.clock)
        sched.add_job(
            self.deliver_pending, "interval", seconds=self.tick_seconds or DELIVERY_INTERVAL_S,
            id="deliver", name="deliver (sink outbox, notifications)", jobstore="volatile",
            coalesce=True, max_instances=1, misfire_grace_time=None,
        )  # fmt: skip

    def deliver_pending(self) -> None:
        """Retry every sink's outbox and every notifier's pending notifications once (what
        the periodic job runs; one try per call, the next call is the retry)."""
        with self._work_lock:
            if self.stopping:
                return
            self._deliver_sinks(self.settings)
            self._deliver_notifications(self.settings)

    def _deliver_sinks(self, settings: Settings) -> None:
        from calibmon.sinks.registry import build_sink
        from calibmon.store.outbox import deliver_all

        configs = [c for c in settings.sinks if self.store.pending_count(item_name(c))]
        if not configs:
            return
        try:
            sinks = [build_sink(c) for c in configs]  # type: ignore[arg-type]
            try:
                reports = deliver_all(self.store, sinks, max_attempts=1)
            finally:
                for s in sinks:
                    s.close()
        except Exception as exc:  # the next call retries; never kill the scheduler thread
            log.error("periodic delivery to sinks failed: %s", exc)
            return
        if self.metrics is not None:
            for rep in reports:
                if rep.delivered:
                    self.metrics.records_written.labels(sink=rep.sink).inc(rep.delivered)
                if rep.error:
                    self.metrics.sink_errors.labels(sink=rep.sink).inc()

    def _deliver_notifications(self, settings: Settings) -> None:
        from calibmon.alerts.deliver import deliver_pending

        try:
            for rep in deliver_pending(self.store, settings, now=self.clock()):
                if rep.delivered or rep.error:
                    log.info("%s", rep)
        except Exception as exc:  # the next call retries
            log.error("periodic delivery of notifications failed: %s", exc)

    def _run_units(
        self,
        spec: JobSpec,
        settings: Settings,
        input_dir: Path,
        day: str,
        todo: Sequence[_Unit],
        header_rejected: set[str],
        f: Firing,
        disc: Discovery,
        store: Any,
        before_unit: Callable[[], None],
    ) -> Iterator[RunSummary | None]:
        """Run the day's units as one batch; yield each one's summary (None: failed) as
        it completes, after its ledger entry.

        All units share one executor (the settings', made once for the day): up to
        :func:`unit_concurrency` units run at once, each submitting its amp tasks, so the
        workers never wait for the slowest detector of a unit before the next. A stop
        request starts no new unit and lets the running ones finish. A serial executor
        runs the units one after the other in this thread."""
        if not todo:
            return
        n_at_once = 1 if settings.executor == "serial" else unit_concurrency(settings.workers)
        n_at_once = min(n_at_once, len(todo))

        def call(u: _Unit, executor: Executor | None) -> RunSummary:
            unit_settings = settings
            if not settings.instrument:
                unit_settings = settings.model_copy(update={"instrument": u.instrument})
            kw: dict[str, Any] = {} if executor is None else {"executor": executor}
            return self.runner(
                input_dir, unit_settings, store or self.store, day_obs=day,
                detectors=[u.detector], kinds=list(spec.discover_kinds),
                command=f"serve:{spec.name}", discovery=disc, camera_summaries=False, **kw,
            )  # fmt: skip

        if n_at_once == 1:
            for u in todo:
                if self.stopping:
                    f.outcome = "interrupted"
                    return
                before_unit()
                yield self._account_unit(
                    spec, day, u, header_rejected, f, lambda u=u: call(u, None)
                )
            return
        with (
            self.executor_factory(settings) as ex,
            ThreadPoolExecutor(n_at_once, thread_name_prefix="calibmon-unit") as threads,
        ):
            # a process pool forks all its workers at its first task: do that here,
            # before any other thread exists (a fork copies locks held by other threads)
            ex.submit(int).result()
            queue = iter(todo)
            running: dict[Future, _Unit] = {}
            while True:
                while len(running) < n_at_once and not self.stopping:
                    u = next(queue, None)
                    if u is None:
                        break
                    before_unit()
                    running[threads.submit(call, u, ex)] = u
                if not running:
                    break
                ready, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in ready:
                    yield self._account_unit(spec, day, running.pop(fut), header_rejected, f,
                                             fut.result)  # fmt: skip
            if next(queue, None) is not None:
                f.outcome = "interrupted"

    def _account_unit(
        self,
        spec: JobSpec,
        day: str,
        u: _Unit,
        header_rejected: set[str],
        f: Firing,
        result: Callable[[], RunSummary],
    ) -> RunSummary | None:
        """The unit's run summary (``result()``: raises what the run raised) into the
        firing's counts, the metrics and the ledger (main thread)."""
        unit, n_exposures = u.unit, u.n_exposures
        try:
            summary = result()
        except Exception as exc:
            f.units_failed += 1
            msg = f"{type(exc).__name__}: {exc}"
            log.error("job %s %s %s failed: %s", spec.name, day, unit, msg, exc_info=True)
            self.ledger.record(spec.name, day, unit, "failed", n_exposures=n_exposures,
                               detail={"error": msg})  # fmt: skip
            return None
        own_rejected = sorted(e.path for e in summary.rejected if e.path not in header_rejected)
        n_used = max(0, summary.n_files - summary.n_skipped - summary.n_rejected)
        f.units_done += 1
        f.n_files += n_used
        f.n_rejected += len(own_rejected)
        f.n_records += summary.n_records
        if self.metrics is not None:
            self.metrics.files_processed.inc(n_used)
            self.metrics.files_rejected.inc(len(own_rejected))
            self.metrics.records_written.labels(sink=LOCAL_SINK).inc(summary.n_records)
        self.ledger.record(
            spec.name, day, unit, "rejected" if own_rejected else "ok",
            n_exposures=n_exposures, run_id=summary.run_id,
            detail={"files": n_used, "records": summary.n_records, "rejected": own_rejected[:50]},
        )  # fmt: skip
        return summary

    def _account_sinks(self, summary: Any) -> None:
        """Sink delivery reports left on the run summary by the post-run step."""
        if self.metrics is None:
            return
        for rep in getattr(summary, "sink_reports", None) or ():
            sink = getattr(rep, "sink", None)
            if not sink:
                continue
            delivered = int(getattr(rep, "delivered", 0) or 0)
            if delivered:
                self.metrics.records_written.labels(sink=sink).inc(delivered)
            if getattr(rep, "error", None):
                self.metrics.sink_errors.labels(sink=sink).inc()

    # -- staleness -----------------------------------------------------------------------
    def _check_staleness(self, spec: JobSpec, window: Sequence[str], f: Firing) -> None:
        instrument = spec.instrument or self.settings.instrument
        detectors = spec.detector_list
        for day in window:
            entries = self.ledger.entries(spec.name, day)
            for exp in spec.expected:
                unit = f"expected:{exp.kind}"
                entry = entries.get(unit)
                if entry is not None and entry.status == "ok":
                    continue
                column, value = EXPECTED_EVIDENCE[exp.kind]
                first = shift_day_obs(day, -(exp.within_days - 1))
                if detectors:
                    absent = [
                        d for d in detectors
                        if not evidence_present(self.store, column, value, first_day_obs=first,
                                                last_day_obs=day, instrument=instrument,
                                                detector_name=d)
                    ]  # fmt: skip
                else:
                    present = evidence_present(self.store, column, value, first_day_obs=first,
                                               last_day_obs=day, instrument=instrument)  # fmt: skip
                    absent = [] if present else ["all"]
                status = "missing" if absent else "ok"
                self.ledger.record(spec.name, day, unit, status,
                                   detail={"detectors": absent} if absent else None)  # fmt: skip
                if absent:
                    where = "" if absent == ["all"] else f" for {', '.join(absent)}"
                    since = (
                        ""
                        if exp.within_days == 1
                        else f" in the {exp.within_days} day_obs up to it"
                    )
                    log.warning(
                        "staleness: job %s day_obs %s%s: expected %s calibration missing%s%s",
                        spec.name, day, f" {instrument}" if instrument else "", exp.kind,
                        where, since,
                    )  # fmt: skip
                    f.missing.append(f"{day} {exp.kind}")
        f.outcome = "stale" if f.missing else "success"
        if self.staleness_hook is not None and window:
            try:
                self.staleness_hook(spec, self.job_settings(spec), self.store, window[-1])
            except Exception as exc:  # alerting trouble never hides the check's result
                log.error("job %s: staleness alerts for %s failed: %s", spec.name, window[-1], exc)


def settings_executor(settings: Settings) -> AbstractContextManager[Executor]:
    """The executor the settings name (``executor``, ``workers``, ``dask``), closed on exit."""
    return open_executor(settings)


@dataclass(frozen=True)
class _Unit:
    """One detector-day of a job's day: ``instrument/detector`` in the ledger."""

    instrument: str
    detector: str
    unit: str
    n_exposures: int


# Units run at once per worker with a parallel executor: a science CCD is two tasks of
# eight amps, so this keeps IN_FLIGHT_PER_WORKER tasks per worker in flight.
def unit_concurrency(workers: int | None) -> int:
    """Units (detector-days) of a day run at once on ``workers`` workers."""
    return max(2, in_flight_limit(workers) // 2)


def item_name(item: Any) -> str:
    """``name`` of a configured sink or notifier (a config model or a plain mapping)."""
    if isinstance(item, dict):
        return str(item.get("name"))
    return str(getattr(item, "name", ""))


def merge_summaries(day_obs: str, summaries: Sequence[RunSummary]) -> RunSummary:
    """One :class:`RunSummary` for a day_obs processed one detector-day at a time (what the
    post-run steps see: sinks deliver once, alerts judge the whole day once)."""
    out = RunSummary(run_id=summaries[-1].run_id, day_obs=[day_obs])
    rejected: dict[str, Any] = {}
    for s in summaries:
        out.n_files = max(out.n_files, s.n_files)  # each run scanned the same directory
        out.n_records += s.n_records
        out.detector_days.extend(s.detector_days)
        out.not_measured.extend(s.not_measured)
        out.seconds += s.seconds
        for err in s.rejected:
            rejected.setdefault(err.path, err)
    out.rejected = sorted(rejected.values(), key=lambda e: e.path)
    out.n_rejected = len(out.rejected)
    return out


def _settled(exposures: Sequence[Any], settle_seconds: float) -> bool:
    """True when the newest of these files was last modified ``settle_seconds`` ago."""
    newest = 0.0
    for e in exposures:
        try:
            newest = max(newest, os.stat(e.path).st_mtime)
        except OSError:
            return False
    return time.time() - newest >= settle_seconds
