"""Prometheus metrics about calibmon itself, and the HTTP endpoint that serves them.

Everything hangs off a registry passed in (``build_metrics(registry)``); there are no
module-level metric objects, so every test builds a fresh ``CollectorRegistry``. Two kinds
of metric:

- counted by the service as it works (labels ``job``, ``outcome``, ``sink``):
  ``calibmon_job_runs_total``, ``calibmon_job_duration_seconds`` (histogram),
  ``calibmon_files_processed_total``, ``calibmon_files_rejected_total``,
  ``calibmon_records_written_total`` (``sink="store"`` is the local store),
  ``calibmon_sink_errors_total``;
- computed at scrape time from the store, so they cannot drift from it and survive a
  restart: ``calibmon_outbox_pending{sink}`` (``Store.pending_count``),
  ``calibmon_alerts_firing`` (``alert_state`` rows with ``state='firing'``),
  ``calibmon_last_success_timestamp_seconds{job}`` (the run ledger) and
  ``calibmon_calibs_missing{job,kind}`` (the staleness jobs' latest verdicts).

The endpoint (:class:`MetricsServer`) serves ``/metrics`` (prometheus_client's WSGI app)
and ``/healthz`` (200 when the scheduler runs and the store opens, 503 otherwise) from a
wsgiref server in a daemon thread.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer

from calibmon.errors import StoreError
from calibmon.store.ledger import Ledger, firing_alert_count
from calibmon.store.sqlite import Store

log = logging.getLogger(__name__)

# Outcomes of one firing of a job (label values of calibmon_job_runs_total).
OUTCOMES = ("success", "rejected", "idle", "stale", "failure", "interrupted")
# Job durations span an idle poll (< 1 s) to a full-camera catch-up (hours).
DURATION_BUCKETS_S = (0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200)
LOCAL_SINK = "store"


@dataclass
class CalibmonMetrics:
    """The service's own metrics, all registered in ``registry``."""

    registry: CollectorRegistry
    job_runs: Counter
    job_duration: Histogram
    files_processed: Counter
    files_rejected: Counter
    records_written: Counter
    sink_errors: Counter
    store_collector: StoreCollector | None = None

    def init_labels(self, jobs: Iterable[str], sinks: Iterable[str]) -> None:
        """Create every (job, outcome) and sink series at 0, so ``increase()`` in alert
        rules sees the first failure instead of a series appearing at 1."""
        for job in jobs:
            for outcome in OUTCOMES:
                self.job_runs.labels(job=job, outcome=outcome)
        for sink in [LOCAL_SINK, *sinks]:
            self.records_written.labels(sink=sink)
            if sink != LOCAL_SINK:
                self.sink_errors.labels(sink=sink)


class StoreCollector:
    """Metrics read from the store when Prometheus scrapes (a one-method Collector).

    ``sink_names`` are the configured remote sinks; ``jobs`` the scheduled job names and
    ``staleness_jobs`` those that check for missing calibrations. A store that cannot be
    read drops these samples from the scrape (logged), never the whole scrape.
    """

    def __init__(
        self,
        store: Store,
        sink_names: Sequence[str] = (),
        jobs: Sequence[str] = (),
        staleness_jobs: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.sink_names = list(sink_names)
        self.jobs = list(jobs)
        self.staleness_jobs = list(staleness_jobs)
        self._ledger: Ledger | None = None

    def _families(self) -> dict[str, GaugeMetricFamily]:
        return {
            "pending": GaugeMetricFamily(
                "calibmon_outbox_pending",
                "Records stored but not yet acknowledged by the remote sink.",
                labels=["sink"],
            ),
            "firing": GaugeMetricFamily(
                "calibmon_alerts_firing", "Alert identities currently firing (alert_state)."
            ),
            "last_success": GaugeMetricFamily(
                "calibmon_last_success_timestamp_seconds",
                "Unix time of the job's last successful firing (from the run ledger).",
                labels=["job"],
            ),
            "missing": GaugeMetricFamily(
                "calibmon_calibs_missing",
                "1 when a staleness job's latest checked day_obs lacks an expected calibration.",
                labels=["job", "kind"],
            ),
        }

    def describe(self) -> Iterator[Metric]:
        # Names only: registering must not touch the store.
        return iter(self._families().values())

    def collect(self) -> Iterator[Metric]:
        fams = self._families()
        try:
            if self._ledger is None:
                self._ledger = Ledger(self.store)
            for sink in self.sink_names:
                fams["pending"].add_metric([sink], float(self.store.pending_count(sink)))
            fams["firing"].add_metric([], float(firing_alert_count(self.store)))
            for job, ts in sorted(self._ledger.last_success_epoch(self.jobs).items()):
                fams["last_success"].add_metric([job], ts)
            missing = set(self._ledger.missing_expected(self.staleness_jobs))
            for job, kind in sorted(missing):
                fams["missing"].add_metric([job, kind], 1.0)
        except (sqlite3.Error, StoreError) as exc:
            log.warning("metrics: cannot read the store %s: %s", self.store.path, exc)
            return iter(())
        return iter(fams.values())


def build_metrics(
    registry: CollectorRegistry,
    *,
    store: Store | None = None,
    sink_names: Sequence[str] = (),
    jobs: Sequence[str] = (),
    staleness_jobs: Sequence[str] = (),
) -> CalibmonMetrics:
    """Create calibmon's metrics in ``registry`` (and the store collector when ``store``
    is given)."""
    m = CalibmonMetrics(
        registry=registry,
        job_runs=Counter(
            "calibmon_job_runs", "Firings of a scheduled job, by outcome.",
            ["job", "outcome"], registry=registry,
        ),
        job_duration=Histogram(
            "calibmon_job_duration_seconds", "Wall-clock duration of one firing of a job.",
            ["job"], buckets=DURATION_BUCKETS_S, registry=registry,
        ),
        files_processed=Counter(
            "calibmon_files_processed", "Raw files measured by scheduled jobs.",
            registry=registry,
        ),
        files_rejected=Counter(
            "calibmon_files_rejected", "Raw files rejected (unreadable or inconsistent).",
            registry=registry,
        ),
        records_written=Counter(
            "calibmon_records_written",
            "Metric records written: sink=\"store\" to the local store, else acknowledged "
            "by the remote sink.",
            ["sink"], registry=registry,
        ),
        sink_errors=Counter(
            "calibmon_sink_errors", "Failed deliveries to a remote sink.", ["sink"],
            registry=registry,
        ),
    )  # fmt: skip
    if store is not None:
        m.store_collector = StoreCollector(store, sink_names, jobs, staleness_jobs)
        registry.register(m.store_collector)
    m.init_labels(jobs, sink_names)
    return m


# --------------------------------------------------------------------------------------
# HTTP endpoint
# --------------------------------------------------------------------------------------
def store_opens(path: Any, timeout_s: float = 2.0) -> tuple[bool, str]:
    """Can the store file be opened and read? (a separate read-only connection, so a
    job's write transaction never blocks the health check)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_s)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return False, str(exc)
    return True, "ok"


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to DEBUG, not stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s " + format, self.client_address[0], *args)


def make_app(
    registry: CollectorRegistry, health: Callable[[], tuple[bool, dict[str, Any]]]
) -> Callable:
    """WSGI app: ``/metrics`` (Prometheus text format) and ``/healthz`` (JSON)."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            try:
                ok, detail = health()
            except Exception as exc:  # a broken check is an unhealthy service, not a 500
                ok, detail = False, {"error": f"{type(exc).__name__}: {exc}"}
            body = json.dumps({"status": "ok" if ok else "unavailable", **detail}).encode()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"),
                                    ("Content-Length", str(len(body)))])  # fmt: skip
            return [body]
        if path == "/":
            body = b"calibmon: /metrics /healthz\n"
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (port 0: any free port) in a thread."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port
        self._httpd: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port."""
        self._httpd = make_server(
            self.host, self.port, make_app(self.registry, self.health),
            server_class=ThreadingWSGIServer, handler_class=_QuietHandler,
        )  # fmt: skip
        self.port = int(self._httpd.server_port)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="calibmon-metrics", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
