"""Group → ISR-lite → science → records.

The unit of work is one amplifier of one detector-day: a worker opens that detector's
files for the day and reads only that amp's HDU from each (bounded memory: one amp's
stack at a time), runs the per-kind steps, and returns numbers. The main process turns
numbers into :class:`MetricRecord` objects, adds detector and camera summaries and writes
each detector-day in one store transaction.

Modules, one concept each:

- :mod:`~calibmon.pipeline.tasks`: task types sent to workers, :class:`AmpResult`,
  :class:`DetectorDay`, :class:`RunContext`;
- :mod:`~calibmon.pipeline.reading`: :class:`FileCache`, :func:`read_corrected_stack`;
- :mod:`~calibmon.pipeline.steps`: the per-kind steps (``step_*`` read, ``measure_*``
  take arrays);
- :mod:`~calibmon.pipeline.verify_steps`: verification against certified products;
- :mod:`~calibmon.pipeline.measure`: :data:`STEPS`, :func:`measure_amp(s)`;
- :mod:`~calibmon.pipeline.records`: :func:`amp_records`, :func:`camera_records`;
- :mod:`~calibmon.pipeline.executors`: :func:`make_executor`, worker set-up;
- :mod:`~calibmon.pipeline.batch`: :func:`detector_days`, :func:`run_detector_days`.

Layering: the pipeline imports science, io, records, catalogue, calibs.products and
config models; never service, cli, alerts or report.
"""

from calibmon.pipeline.batch import (
    AMPS_PER_TASK,
    detector_days,
    in_flight_limit,
    run_detector_days,
)
from calibmon.pipeline.executors import executor_workers, keep_freed_memory, make_executor
from calibmon.pipeline.measure import STEPS, measure_amp, measure_amps
from calibmon.pipeline.reading import (
    FileCache,
    FrameHook,
    correct_frame_into,
    corrected_stack,
    read_corrected_stack,
)
from calibmon.pipeline.records import METRIC_KIND, amp_records, camera_records
from calibmon.pipeline.steps import IMAGE_BIN, AmpContext, bin_image
from calibmon.pipeline.tasks import (
    GAIN_METRICS_IN_STORE,
    KIND_ORDER,
    AmpHints,
    AmpResult,
    AmpSetTask,
    AmpTask,
    DetectorDay,
    Frame,
    Hint,
    RunContext,
    new_run_context,
)
from calibmon.pipeline.verify_steps import finish_detector_verification

__all__ = [
    "AMPS_PER_TASK",
    "GAIN_METRICS_IN_STORE",
    "IMAGE_BIN",
    "KIND_ORDER",
    "METRIC_KIND",
    "STEPS",
    "AmpContext",
    "AmpHints",
    "AmpResult",
    "AmpSetTask",
    "AmpTask",
    "DetectorDay",
    "FileCache",
    "Frame",
    "FrameHook",
    "Hint",
    "RunContext",
    "amp_records",
    "bin_image",
    "camera_records",
    "correct_frame_into",
    "corrected_stack",
    "detector_days",
    "executor_workers",
    "finish_detector_verification",
    "in_flight_limit",
    "keep_freed_memory",
    "make_executor",
    "measure_amp",
    "measure_amps",
    "new_run_context",
    "read_corrected_stack",
    "run_detector_days",
]  # fmt: skip
