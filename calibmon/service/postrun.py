"""What follows a run: deliver the outbox to the remote sinks, then evaluate alerts.

Called explicitly by the CLI (``run``, ``demo``, ``push``) and handed to the scheduler
daemon as its ``after_run`` step; the staleness jobs of ``calibmon serve`` use
:func:`evaluate_staleness`. Neither step ever loses the run's stored records: a failure
is logged and the next step still runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from calibmon.alerts import Expectation, alerts_config, evaluate_and_deliver
from calibmon.catalogue import load_catalogue
from calibmon.service.schedules import ALERT_CALIB_TYPE
from calibmon.sinks import build_sink
from calibmon.store.outbox import deliver_all

log = logging.getLogger(__name__)


def flush_sinks(
    settings: Any, store: Any, summary: Any = None, sink_names: Sequence[str] | None = None
) -> list:
    """Deliver what the outbox holds to the configured remote sinks (all, or only
    ``sink_names``); never raises for an unavailable sink. With ``summary``, its
    ``sink_reports`` get one line per sink (:func:`format_sink_report`)."""
    configs = [c for c in settings.sinks if not sink_names or c.name in sink_names]
    sinks = [build_sink(c) for c in configs]
    try:
        reports = deliver_all(store, sinks)
    finally:
        for s in sinks:
            s.close()
    if summary is not None:
        summary.sink_reports = [format_sink_report(r) for r in reports]
    return reports


def format_sink_report(rep: Any) -> str:
    """One line per sink: ``name: ok|REJECTED|unavailable, N delivered, M pending (error)``."""
    status = "ok" if rep.ok else ("REJECTED" if rep.rejected else "unavailable")
    line = f"{rep.sink}: {status}, {rep.delivered} delivered, {rep.pending} pending"
    if rep.error:
        line += f" ({rep.error})"
    return line


def evaluate_run_alerts(settings: Any, store: Any, summary: Any) -> None:
    """Evaluate alerts for every day_obs of ``summary`` and deliver notifications; sets
    ``summary.alert_report``. Staleness is left to the scheduler (a run may hold only part
    of a day). Notifier failures are retried later, never raised."""
    cfg = alerts_config(settings)
    days = list(getattr(summary, "day_obs", []) or [])
    if not cfg.enabled or not days:
        return
    catalogue = load_catalogue(getattr(settings, "catalogue_dir", None))
    summary.alert_report = evaluate_and_deliver(store, catalogue, cfg, day_obs=days, expected=[])


def after_run(settings: Any, store: Any, summary: Any) -> None:
    """Flush the outbox to the remote sinks, then evaluate alerts (when configured). A
    failing step is logged (ERROR) and the next one still runs."""
    for step in (flush_sinks, evaluate_run_alerts):
        try:
            step(settings, store, summary)
        except Exception as exc:  # post-run work must never lose the run's records
            log.error("post-run step %s failed: %s", step.__name__, exc)


def evaluate_staleness(spec: Any, settings: Any, store: Any, day_obs: str) -> None:
    """A staleness job of the scheduler → the alert engine: evaluate ``day_obs`` with the
    job's expected calibrations (``stale_<calib_type>`` alerts, notified like any other).
    Expectations over several days (``within_days`` > 1) stay with the job's own check."""
    instrument = spec.instrument or settings.instrument
    if instrument is None or not alerts_config(settings).enabled:
        return
    types = sorted({ALERT_CALIB_TYPE[e.kind] for e in spec.expected if e.within_days == 1})
    if not types:
        return
    expected = [
        Expectation(instrument=instrument, calib_type=t, detectors=spec.detector_list)
        for t in types
    ]
    report = evaluate_and_deliver(
        store, load_catalogue(settings.catalogue_dir), settings, day_obs=[day_obs],
        instrument=instrument, expected=expected,
    )  # fmt: skip
    log.info("job %s: alerts for %s: %s", spec.name, day_obs, report)


__all__ = [
    "after_run",
    "evaluate_run_alerts",
    "evaluate_staleness",
    "flush_sinks",
    "format_sink_report",
]
