"""A batch of detector-days on an executor: every amp set of every detector-day is a
task (:class:`AmpSetTask`), a bounded number of them in flight, and each detector-day is
handed back (``on_detector_done``) as soon as its last amp set completes — no barrier
between detector-days. Any :class:`concurrent.futures.Executor` works (process pool,
dask.distributed's ``Client.get_executor()``, serial)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from typing import Any

from calibmon.calibs.products import CertifiedCalib
from calibmon.io.discover import Discovery, Group
from calibmon.pipeline.measure import measure_amps
from calibmon.pipeline.tasks import AmpHints, AmpResult, AmpSetTask, DetectorDay

log = logging.getLogger(__name__)


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
