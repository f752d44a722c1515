"""calibmon's own Prometheus metrics: a fresh CollectorRegistry per test, values read
back with get_sample_value; the store collectors computed at scrape time; the endpoint."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from calibmon.service.prometheus import MetricsServer, build_metrics
from calibmon.store.ledger import Ledger
from calibmon.store.sqlite import Store, utc_now_iso


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "calibmon.sqlite") as s:
        yield s


def _insert_records(store: Store, n: int) -> None:
    """Bare rows in ``records`` (only ``seq`` matters to the outbox count)."""
    with store.transaction() as c:
        first = store._next_seq(n)
        for i in range(n):
            c.execute(
                "INSERT INTO records(seq, metric, level, instrument, detector, amp, timestamp,"
                " value, unit, calib_type, day_obs, provenance, run_id)"
                " VALUES (?, 'read_noise', 'amp', 'LSSTCam', 94, ?, '2025-11-21T18:00:00.000Z',"
                " 5.0, 'electron', 'bias', '20251121', '{}', 'r1')",
                (first + i, f"C{i:02d}"),
            )


def _alert(store: Store, amp: str, state: str) -> None:
    store.execute(
        "INSERT INTO alert_state(rule, instrument, detector, amp, state, updated_at)"
        " VALUES ('read_noise_max', 'LSSTCam', 94, ?, ?, ?)",
        (amp, state, utc_now_iso()),
    )


def test_counters_start_at_zero_for_every_job_outcome_and_sink() -> None:
    registry = CollectorRegistry()
    m = build_metrics(registry, jobs=["daily"], sink_names=["sasquatch"])
    get = registry.get_sample_value
    assert get("calibmon_job_runs_total", {"job": "daily", "outcome": "failure"}) == 0
    assert get("calibmon_job_runs_total", {"job": "daily", "outcome": "success"}) == 0
    assert get("calibmon_records_written_total", {"sink": "store"}) == 0
    assert get("calibmon_records_written_total", {"sink": "sasquatch"}) == 0
    assert get("calibmon_sink_errors_total", {"sink": "sasquatch"}) == 0
    assert get("calibmon_files_processed_total") == 0

    m.job_runs.labels(job="daily", outcome="success").inc()
    m.job_duration.labels(job="daily").observe(42.0)
    m.files_processed.inc(45)
    m.files_rejected.inc(2)
    m.records_written.labels(sink="store").inc(1000)
    assert get("calibmon_job_runs_total", {"job": "daily", "outcome": "success"}) == 1
    assert get("calibmon_job_duration_seconds_count", {"job": "daily"}) == 1
    assert get("calibmon_job_duration_seconds_bucket", {"job": "daily", "le": "60.0"}) == 1
    assert get("calibmon_job_duration_seconds_bucket", {"job": "daily", "le": "15.0"}) == 0
    assert get("calibmon_files_processed_total") == 45
    assert get("calibmon_files_rejected_total") == 2
    assert get("calibmon_records_written_total", {"sink": "store"}) == 1000
    # no store: no store collectors
    assert get("calibmon_alerts_firing") is None


def test_two_registries_do_not_share_metrics() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    build_metrics(a).files_processed.inc(3)
    build_metrics(b)
    assert a.get_sample_value("calibmon_files_processed_total") == 3
    assert b.get_sample_value("calibmon_files_processed_total") == 0


def test_outbox_pending_and_alerts_firing_are_read_at_scrape_time(store: Store) -> None:
    registry = CollectorRegistry()
    build_metrics(registry, store=store, sink_names=["sasquatch", "influx2"])
    get = registry.get_sample_value
    assert get("calibmon_outbox_pending", {"sink": "sasquatch"}) == 0
    assert get("calibmon_alerts_firing") == 0

    _insert_records(store, 5)
    _alert(store, "C10", "firing")
    _alert(store, "C11", "firing")
    _alert(store, "C12", "resolved")
    assert get("calibmon_outbox_pending", {"sink": "sasquatch"}) == 5
    assert get("calibmon_outbox_pending", {"sink": "influx2"}) == 5
    assert get("calibmon_alerts_firing") == 2

    store.mark_delivered("sasquatch", 3)  # the server acknowledged seq 1..3
    assert get("calibmon_outbox_pending", {"sink": "sasquatch"}) == 2
    assert get("calibmon_outbox_pending", {"sink": "influx2"}) == 5
    store.execute("UPDATE alert_state SET state='resolved' WHERE amp='C10'")
    assert get("calibmon_alerts_firing") == 1


def test_last_success_and_missing_calibs_come_from_the_ledger(store: Store) -> None:
    registry = CollectorRegistry()
    build_metrics(registry, store=store, jobs=["daily", "staleness"],
                  staleness_jobs=["staleness"])  # fmt: skip
    get = registry.get_sample_value
    ledger = Ledger(store)
    ledger.record_firing("daily", "failure", error="boom")
    assert get("calibmon_last_success_timestamp_seconds", {"job": "daily"}) is None
    t0 = time.time()
    ledger.record_firing("daily", "success")
    ledger.record_firing("daily", "failure", error="boom again")  # keeps the last success
    last = get("calibmon_last_success_timestamp_seconds", {"job": "daily"})
    assert last is not None and abs(last - t0) < 5

    ledger.record("staleness", "20251120", "expected:dark", "missing")
    ledger.record("staleness", "20251121", "expected:dark", "ok")
    ledger.record("staleness", "20251121", "expected:gain", "missing")
    # only the latest checked day_obs counts
    assert get("calibmon_calibs_missing", {"job": "staleness", "kind": "gain"}) == 1
    assert get("calibmon_calibs_missing", {"job": "staleness", "kind": "dark"}) is None


def test_registering_does_not_touch_the_store_and_a_broken_store_drops_only_its_samples(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = Store(tmp_path / "calibmon.sqlite")
    s.close()  # closed before registration: registering must not query it
    registry = CollectorRegistry()
    m = build_metrics(registry, store=s, sink_names=["sasquatch"], jobs=["daily"])
    m.files_processed.inc(7)
    text = generate_latest(registry).decode()  # the scrape still works
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert "calibmon_files_processed_total 7.0" in samples
    assert not [line for line in samples if line.startswith("calibmon_outbox_pending")]
    assert "cannot read the store" in caplog.text


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_endpoint_serves_metrics_and_health(store: Store) -> None:
    registry = CollectorRegistry()
    m = build_metrics(registry, store=store, jobs=["daily"])
    m.job_runs.labels(job="daily", outcome="success").inc()
    healthy = {"ok": True}
    server = MetricsServer(registry, lambda: (healthy["ok"], {"scheduler": "x"}), port=0)
    port = server.start()
    try:
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert 'calibmon_job_runs_total{job="daily",outcome="success"} 1.0' in body
        assert "calibmon_alerts_firing 0.0" in body
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        healthy["ok"] = False
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and json.loads(body) == {"status": "unavailable", "scheduler": "x"}
        assert _get(f"http://127.0.0.1:{port}/other")[0] == 404
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_a_failing_health_check_is_503_not_500(store: Store) -> None:
    def broken() -> tuple[bool, dict]:
        raise RuntimeError("no scheduler")

    server = MetricsServer(CollectorRegistry(), broken, port=0)
    port = server.start()
    try:
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
    finally:
        server.stop()
    assert status == 503 and "no scheduler" in body
