"""``calibmon serve`` (the scheduler daemon with its Prometheus endpoint) and
``calibmon dayobs`` (print a day_obs, for cron lines and timers).

``register(subparsers)`` adds both commands to the CLI (:mod:`calibmon.cli.main`). After
each day the daemon runs :func:`calibmon.service.postrun.after_run` (sinks, then alerts);
staleness jobs go to :func:`calibmon.service.postrun.evaluate_staleness`.

Stopping: the first SIGTERM or SIGINT lets the running detector-day finish (or stops
between detector-days), shuts the scheduler and the endpoint down and exits 0 with the
log line ``calibmon serve: stopped cleanly``; a second signal (at least a second later) exits at once with 128+signum.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from calibmon.cli.common import add_command, add_common, load, open_store, require_cluster_extra
from calibmon.errors import ConfigError

log = logging.getLogger("calibmon.serve")

SHIPPED_SCHEDULES = Path(__file__).resolve().parent.parent / "schedules_shipped"
DEFAULT_METRICS_PORT = 9120
DEFAULT_METRICS_HOST = "127.0.0.1"
FORCE_DEBOUNCE_S = 1.0


def _instant(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _positive_float(text: str) -> float:
    v = float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return v


# --------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from calibmon.service.postrun import after_run, evaluate_staleness
    from calibmon.service.prometheus import MetricsServer, build_metrics
    from calibmon.service.scheduler import (
        Service,
        item_name,
        jobstore_path,
        shifted_clock,
        system_clock,
    )
    from calibmon.service.schedules import check_against_settings, load_schedules

    settings = load(args, log_format=args.log_format)
    require_cluster_extra(settings)
    if args.metrics_port is None:
        args.metrics_port = settings.metrics_port
    if args.metrics_host is None:
        args.metrics_host = settings.metrics_host
    # --schedules, else schedules_dir from the config, else the shipped Rubin cadence
    # (the repository's schedules/, reached through the package's schedules_shipped link
    # or the copy a wheel carries)
    sched_dir = args.schedules or settings.schedules_dir or SHIPPED_SCHEDULES
    jobs = load_schedules(sched_dir)
    if not jobs:
        raise ConfigError(f"no enabled jobs in {sched_dir}")
    sink_names = [item_name(s) for s in settings.sinks]
    check_against_settings(jobs, sink_names, [item_name(n) for n in settings.notifiers])
    if args.input is not None and "{day_obs}" not in args.input and not os.path.isdir(args.input):
        raise ConfigError(f"--input {args.input} is not a directory")
    for job in jobs:
        if args.input is None and job.input is None and not job.is_staleness:
            raise ConfigError(f"{job.source}: input: job {job.name!r} has no input; set it "
                              "or pass --input DIR")  # fmt: skip
    clock = shifted_clock(args.test_now) if args.test_now else system_clock

    with open_store(settings) as store, _single_instance(store.path):
        registry = CollectorRegistry()
        metrics = build_metrics(
            registry, store=store, sink_names=sink_names, jobs=[j.name for j in jobs],
            staleness_jobs=[j.name for j in jobs if j.is_staleness],
        )  # fmt: skip
        service = Service(
            settings, store, jobs, metrics=metrics, input_override=args.input,
            after_run=after_run, clock=clock, tick_seconds=args.test_tick_seconds,
            staleness_hook=evaluate_staleness,
            jobstore_url=f"sqlite:///{settings.jobstore}" if settings.jobstore else None,
        )  # fmt: skip
        if args.once:
            return _run_once(service, jobs)

        stop = threading.Event()
        received: list[tuple[int, float]] = []

        def on_signal(signum: int, _frame: Any) -> None:
            # A repeat within FORCE_DEBOUNCE_S is the same request delivered twice (GNU
            # timeout and process-group kills do that), not an operator insisting.
            now = time.monotonic()
            if received and now - received[0][1] >= FORCE_DEBOUNCE_S:
                os.write(2, f"calibmon serve: second {signal.Signals(signum).name}: exiting now\n"
                         .encode())  # fmt: skip
                os._exit(128 + signum)
            if not received:
                received.append((signum, now))
            service.request_stop()
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        server = None
        try:
            if args.metrics_port >= 0:  # bind first: a taken port fails before any work
                server = MetricsServer(registry, service.health, args.metrics_host,
                                       args.metrics_port)  # fmt: skip
                try:
                    server.start()
                except OSError as exc:
                    server = None
                    raise ConfigError(
                        f"--metrics-port {args.metrics_port} on {args.metrics_host}: "
                        f"{exc.strerror or exc}"
                    ) from None
            service.start()
            log.info(
                "calibmon serve: started: %d job(s) (%s), store %s, job store %s, metrics %s",
                len(jobs), ", ".join(j.name for j in jobs), store.path,
                settings.jobstore or jobstore_path(store.path),
                f"{server.url}/metrics" if server else "off",
            )  # fmt: skip
            if args.test_tick_seconds or args.test_now:
                log.warning(
                    "calibmon serve: TEST CLOCK (for tests only): jobs fire %s; now is %s",
                    f"every {args.test_tick_seconds:g} s" if args.test_tick_seconds else "on their cron",
                    args.test_now.isoformat() if args.test_now else "the real time",
                )  # fmt: skip
            while not stop.wait(0.5):
                pass
            name = signal.Signals(received[0][0]).name if received else "stop"
            log.info("calibmon serve: %s received: finishing the current detector-day", name)
        finally:
            service.shutdown(wait=True)
            if server is not None:
                server.stop()
            for s, h in previous.items():
                signal.signal(s, h)
    log.info("calibmon serve: stopped cleanly")
    return 0


@contextmanager
def _single_instance(store_path: Any) -> Iterator[None]:
    """One ``calibmon serve`` per store: an exclusive lock on ``<store>.serve.lock``
    (released by the kernel if the process dies)."""
    import fcntl
    from pathlib import Path

    lock_path = Path(store_path).with_name(Path(store_path).stem + ".serve.lock")
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(
                f"another calibmon serve ({holder}) is running on this store ({lock_path})"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_once(service: Any, jobs: list[Any]) -> int:
    """``serve --once``: one firing of every job (catch-up), then exit 0/1."""
    from calibmon.store.ledger import SUCCESS_OUTCOMES

    worst = 0
    for job in jobs:
        firing = service.fire(job.name)
        if firing is None or firing.outcome not in SUCCESS_OUTCOMES or firing.outcome == "rejected":
            worst = 1
    log.info("calibmon serve --once: done")
    return worst


# --------------------------------------------------------------------------------------
# dayobs
# --------------------------------------------------------------------------------------
def cmd_dayobs(args: argparse.Namespace) -> int:
    from calibmon.dayobs import day_obs_for, shift_day_obs

    offset = args.offset
    if args.previous:
        offset -= 1
    if args.next:
        offset += 1
    print(shift_day_obs(day_obs_for(args.at or datetime.now(UTC)), offset))
    return 0


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------
def register(subs: Any) -> None:
    """Add ``serve`` and ``dayobs`` to the CLI's sub-parsers."""
    p = add_command(
        subs, "serve",
        "run the scheduler daemon (schedules/*.yaml) and the Prometheus endpoint "
        "(/metrics, /healthz) until stopped; SIGTERM/SIGINT stop it cleanly (exit 0)",
        "calibmon serve --config /etc/calibmon/calibmon.yaml "
        "--schedules /etc/calibmon/schedules --metrics-port 9120",
        cmd_serve,
    )  # fmt: skip
    p.add_argument("--schedules", help="directory of schedules/*.yaml (default: schedules_dir "
                   "from the config)")  # fmt: skip
    p.add_argument("--input", help="raw data directory for every job, overriding the jobs' "
                   "input (may contain {day_obs})")  # fmt: skip
    p.add_argument("--metrics-port", type=int, default=None,
                   help="port of /metrics and /healthz (default: metrics_port from the config, "
                   f"{DEFAULT_METRICS_PORT}; 0: any free port; -1: no endpoint)")  # fmt: skip
    p.add_argument("--metrics-host", default=None,
                   help="address to bind (default: metrics_host from the config, "
                   f"{DEFAULT_METRICS_HOST}; 0.0.0.0 in a container)")  # fmt: skip
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log line format (default: log_format from the config)")  # fmt: skip
    p.add_argument("--once", action="store_true",
                   help="fire every job once (catching up its window) and exit")  # fmt: skip
    p.add_argument("--test-tick-seconds", type=_positive_float, metavar="S",
                   help="TESTING ONLY: fire every job every S seconds instead of its cron")  # fmt: skip
    p.add_argument("--test-now", type=_instant, metavar="ISO",
                   help="TESTING ONLY: pretend the clock starts at this UTC time (chooses "
                   "day_obs)")  # fmt: skip
    add_common(p)

    p = add_command(
        subs, "dayobs",
        "print Rubin's day_obs (the date in UTC-12; it rolls over at 12:00 UTC) for now or "
        "--at a time, e.g. for cron: calibmon run --day-obs $(calibmon dayobs --previous)",
        "calibmon dayobs --previous", cmd_dayobs,
    )  # fmt: skip
    p.add_argument("--at", type=_instant, metavar="ISO", help="this UTC time instead of now")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--previous", action="store_true", help="the day_obs before")
    g.add_argument("--next", action="store_true", help="the day_obs after")
    p.add_argument("--offset", type=int, default=0, help="shift by N day_obs (negative: earlier)")
