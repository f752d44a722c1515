"""A batch of detector-days on an executor: every amp set of every detector-day is a
task (:class:`AmpSetTask`), a bounded number of them in flight, and each detector-day is
handed back (``on_detector_done``) as soon as its last amp set completes — no barrier
between detector-days. Any :class:`concurrent.futures.Executor` works (process pool,
dask.distributed's ``Client.get_executor()``, serial)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait

from calibmon.calibs.products import CertifiedCalib
from calibmon.io.discover import Discovery, Group
from calibmon.pipeline.measure import measure_amps
from calibmon.pipeline.tasks import AmpHints, AmpResult, AmpSetTask, DetectorDay

log = logging.getLogger(__name__)


def detector_days(discovery: Discovery) -> list[DetectorDay]:
    """One :class:`DetectorDay` per (instrument, day_obs, detector) of ``discovery``."""
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


# Amps per worker task: half a science CCD, so one detector keeps two cores busy.
AMPS_PER_TASK = 8


# Tasks in flight per worker: enough to keep every worker busy while the main process
# turns finished tasks into records, few enough to bound memory (each pending result
# holds a detector's binned images) and to let a stop request take effect soon.
IN_FLIGHT_PER_WORKER = 3


def in_flight_limit(workers: int | None) -> int:
    """Tasks kept in flight for ``workers`` workers (None: this machine's cores)."""
    return IN_FLIGHT_PER_WORKER * max(1, workers or os.cpu_count() or 1)


def run_detector_days(
    dds: Sequence[DetectorDay],
    executor: Executor,
    hints: Callable[[DetectorDay, str], AmpHints],
    on_detector_done: Callable[[DetectorDay, list[AmpResult]], None],
    progress: Callable[[int, int], None] | None = None,
    amps_per_task: int = AMPS_PER_TASK,
    calibs: Callable[[DetectorDay], dict[str, CertifiedCalib] | None] | None = None,
    max_in_flight: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[DetectorDay]:
    """Measure every amp of every detector-day on ``executor``, as one batch.

    At most ``max_in_flight`` tasks (default :func:`in_flight_limit` of this machine) are
    submitted at a time, more as each completes, in detector order; no barrier between
    detector-days. ``on_detector_done(dd, results)`` is called (in this thread) as soon
    as a detector-day's last task completes. ``calibs(dd)`` gives the certified products
    a detector-day is verified against (looked up once in the main process), or None.
    ``should_stop()`` true: no task of a new detector-day is submitted (the detector-days
    started are finished). Returns the detector-days done."""
    limit = max(1, max_in_flight or in_flight_limit(None))
    results: dict[int, list[AmpResult]] = {i: [] for i in range(len(dds))}
    n_amps = {i: len(dd.amps) for i, dd in enumerate(dds)}
    total = sum(n_amps.values())
    tasks = _tasks(dds, hints, amps_per_task, calibs)
    in_flight: dict[Future, tuple[int, tuple[str, ...]]] = {}
    finished: list[DetectorDay] = []
    started: set[int] = set()
    done = 0

    def submit_more() -> None:
        nonlocal tasks
        while len(in_flight) < limit:
            nxt = next(tasks, None)
            if nxt is None:
                return
            i, task = nxt
            if i not in started:
                if should_stop is not None and should_stop():
                    tasks = iter(())
                    return
                started.add(i)
            in_flight[executor.submit(measure_amps, task)] = (i, task.amps)

    submit_more()
    while in_flight:
        ready, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for fut in ready:
            i, amps = in_flight.pop(fut)
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
                finished.append(dds[i])
        submit_more()
    return finished


def _tasks(
    dds: Sequence[DetectorDay],
    hints: Callable[[DetectorDay, str], AmpHints],
    amps_per_task: int,
    calibs: Callable[[DetectorDay], dict[str, CertifiedCalib] | None] | None,
) -> Iterator[tuple[int, AmpSetTask]]:
    """(detector index, task) for every amp set of every detector-day, lazily (the hints
    are store look-ups made as tasks are submitted)."""
    for i, dd in enumerate(dds):
        frames = dd.frames()
        for k in range(0, len(dd.amps), amps_per_task):
            amps = dd.amps[k : k + amps_per_task]
            yield i, AmpSetTask(
                dd.instrument, dd.day_obs, dd.detector_name, dd.vendor, amps, frames,
                {a: hints(dd, a) for a in amps}, calibs=calibs(dd) if calibs else None,
            )  # fmt: skip
