"""One amp, every step: :data:`STEPS` in order (the verify steps right after the step
that read their kind's stack), and the worker entry points :func:`measure_amp` and
:func:`measure_amps` (several amps of one detector-day sharing open files)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from calibmon.pipeline import verify_steps
from calibmon.pipeline.reading import FileCache
from calibmon.pipeline.steps import (
    AmpContext,
    step_bias,
    step_dark,
    step_defects,
    step_flat,
    step_gain,
    step_ptc,
    step_read_noise_e,
)
from calibmon.pipeline.tasks import AmpHints, AmpResult, AmpSetTask, AmpTask

log = logging.getLogger(__name__)

STEPS: tuple[Callable[[AmpTask, AmpResult, AmpContext], None], ...] = (
    step_bias,
    verify_steps.verify_bias,
    step_flat,
    verify_steps.verify_flat,
    step_ptc,
    step_gain,
    step_dark,
    verify_steps.verify_dark,
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
