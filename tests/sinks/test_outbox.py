"""Outbox delivery against a real influxd: outages, a crash mid-delivery, re-runs (DESIGN §1)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from servers import InfluxD1
from sink_factory import many_nights, night_records

from calibmon.errors import SinkRejected, SinkUnavailable
from calibmon.records import MetricRecord
from calibmon.sinks.base import Ack
from calibmon.sinks.config import InfluxDB1Config
from calibmon.sinks.influxdb1 import InfluxDB1Sink
from calibmon.sinks.schema import build_points, measurement_name
from calibmon.store.outbox import DeliveryReport, deliver, deliver_all
from calibmon.store.sqlite import Store

DB = "lsst.cp"


def influx_sink(server: InfluxD1, name: str = "influx", **kw: object) -> InfluxDB1Sink:
    cfg = InfluxDB1Config(name=name, type="influxdb1", url=server.url, database=DB, **kw)
    return InfluxDB1Sink(cfg)


def server_counts(server: InfluxD1, records: Sequence[MetricRecord]) -> tuple[int, int]:
    """(metric values, points) stored in influxd for the measurements/metrics of ``records``."""
    metrics: dict[str, set[str]] = {}
    for r in records:
        metrics.setdefault(measurement_name(r), set()).add(r.metric)
    values = points = 0
    for measurement, names in metrics.items():
        cols = ", ".join(f'count("{m}")' for m in sorted(names))
        s = server.series(f'SELECT {cols}, count("run") FROM "{measurement}"', db=DB)
        if s:
            row = s[0]["values"][0][1:]
            values += sum(row[:-1])
            points += row[-1]
    return values, points


def expected_points(records: Sequence[MetricRecord]) -> int:
    return len(build_points(records))


# -- with a real server ------------------------------------------------------------------


@pytest.mark.server
def test_outage_keeps_records_pending_then_delivers_exactly(
    influxd: InfluxD1, store: Store
) -> None:
    """(b) server down: nothing is lost or marked; server back: counts match exactly."""
    influxd.create_database(DB)
    records = night_records(calib_types=["bias", "dark"], detectors=["R22_S11", "R22_S12"])
    store.write_records(records, run_id="r1")
    influxd.stop()
    slept: list[float] = []
    report = deliver(store, influx_sink(influxd), batch_size=50, max_attempts=3, sleep=slept.append)
    assert report.delivered == 0 and report.pending == len(records)
    assert report.error and "cannot connect" in report.error and not report.rejected
    assert slept == [0.5, 1.0]
    (status,) = store.sink_status()
    assert status["sink"] == "influx" and status["seq"] == 0 and status["consecutive_failures"] == 1
    assert store.pending_count("influx") == len(records)

    influxd.start()
    report = deliver(store, influx_sink(influxd), batch_size=50, sleep=slept.append)
    assert report == DeliveryReport("influx", len(records), 0, None, False)
    assert server_counts(influxd, records) == (len(records), expected_points(records))
    assert store.sink_status()[0]["consecutive_failures"] == 0


@pytest.mark.server
def test_kill_during_large_delivery_then_resend_doubles_nothing(
    influxd: InfluxD1, store: Store, tmp_path: Path
) -> None:
    """(c) SIGKILL influxd in the middle of ~50k points in many batches; restart; deliver again."""
    influxd.create_database(DB)
    # defect_fraction: one metric per amp → one point per record; 3216 amps × 16 nights.
    records = many_nights(16, metric_types=("defects",))
    assert len(records) == expected_points(records) > 50_000
    store.write_records(records, run_id="r1")
    seen = Store(store.path)  # a second connection, as another process would have
    killed_at: list[int] = []

    def killer() -> None:
        while seen.sink_cursor("influx") < 15_000:
            time.sleep(0.002)
        influxd.kill()  # no clean shutdown; a batch is likely in flight
        killed_at.append(seen.sink_cursor("influx"))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    first = deliver(
        store, influx_sink(influxd), batch_size=1000, max_attempts=2, sleep=lambda s: None
    )
    thread.join(30)
    seen.close()
    assert killed_at, "the delivery finished before the kill"
    assert first.error is not None and not first.rejected
    assert 15_000 <= first.delivered < len(records)
    assert first.pending == len(records) - first.delivered

    influxd.start()  # same data dir: the WAL is replayed
    second = deliver(store, influx_sink(influxd), batch_size=1000)
    assert second.error is None and second.pending == 0
    assert first.delivered + second.delivered == len(records)
    assert server_counts(influxd, records) == (len(records), len(records))


@pytest.mark.server
def test_rewritten_records_overwrite_their_points(influxd_shared: InfluxD1, store: Store) -> None:
    """(d) the same records written again (new seq) are re-sent; the point count is unchanged."""
    server = influxd_shared
    server.query(f'DROP DATABASE "{DB}"', post=True)
    server.create_database(DB)
    records = night_records(calib_types=["bias"], detectors=["R22_S11", "R22_S12"])
    store.write_records(records, run_id="r1")
    assert deliver(store, influx_sink(server), batch_size=64).pending == 0
    counts = server_counts(server, records)

    store.write_records(records, run_id="r2")  # same identities: replaced, new seq
    assert store.pending_count("influx") == len(records)
    again = deliver(store, influx_sink(server), batch_size=64)
    assert again.delivered == len(records) and again.pending == 0
    assert server_counts(server, records) == counts == (len(records), expected_points(records))

    # A re-run with new numbers: same points, new values.
    changed = [r.model_copy(update={"value": r.value + 1.0}) for r in records]
    store.write_records(changed, run_id="r3")
    deliver(store, influx_sink(server), batch_size=64)
    assert server_counts(server, records) == counts
    s = server.series(
        """SELECT read_noise FROM "lsst.cp.bias" WHERE amp='C10' AND detector='94'""", db=DB
    )
    (new,) = [r for r in changed if (r.metric, r.amp, r.detector) == ("read_noise", "C10", 94)]
    assert s[0]["values"] == [[1763748000123, new.value]]


@pytest.mark.server
def test_one_info_line_per_batch_without_secrets(
    influxd_auth: InfluxD1,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxd_auth.create_admin("admin", "Log-Test-Pw-77")
    influxd_auth.create_database(DB, auth=("admin", "Log-Test-Pw-77"))
    monkeypatch.setenv("U", "admin")
    monkeypatch.setenv("P", "Log-Test-Pw-77")
    records = night_records(calib_types=["bias"], detectors=["R22_S11", "R22_S12"])
    store.write_records(records, run_id="r1")
    caplog.set_level(logging.DEBUG)
    sink = influx_sink(influxd_auth, username_env="U", password_env="P")
    report = deliver(store, sink, batch_size=60)
    assert report.pending == 0
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "calibmon.store.outbox" and r.levelno == logging.INFO
    ]
    assert len(lines) == -(-len(records) // 60)
    pattern = re.compile(r"^sink=influx records=\d+ points=\d+ status=ok seconds=\d+\.\d{3}$")
    assert all(pattern.match(line) for line in lines), lines
    assert "Log-Test-Pw-77" not in caplog.text


# -- sink behaviour without a server (the outbox's own rules) --------------------------


class ScriptedSink:
    """A sink whose answers are scripted: the outbox's decisions tested apart from HTTP."""

    def __init__(self, name: str, script: list[object]) -> None:
        self.name = name
        self.batch_size = 10
        self.script = script
        self.batches: list[list[MetricRecord]] = []

    def write(self, batch: Sequence[MetricRecord]) -> Ack:
        self.batches.append(list(batch))
        outcome = self.script.pop(0) if self.script else "ok"
        if isinstance(outcome, Exception):
            raise outcome
        return Ack(len(batch), 0.0)

    def close(self) -> None:
        pass


def test_rejected_stops_at_once_and_keeps_records(store: Store) -> None:
    records = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    store.write_records(records, run_id="r1")
    sink = ScriptedSink("s", ["ok", SinkRejected("s", "write: HTTP 400: field type conflict")])
    slept: list[float] = []
    report = deliver(store, sink, batch_size=10, sleep=slept.append)
    assert report.rejected and "field type conflict" in (report.error or "")
    assert report.delivered == 10 and report.pending == len(records) - 10
    assert slept == [] and len(sink.batches) == 2
    assert store.sink_status()[0]["last_error"] == "sink s: write: HTTP 400: field type conflict"


def test_unavailable_is_retried_with_backoff_then_succeeds(store: Store) -> None:
    records = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    store.write_records(records, run_id="r1")
    down = SinkUnavailable("s", "HTTP 503")
    sink = ScriptedSink("s", [down, down, down, "ok"])
    slept: list[float] = []
    report = deliver(store, sink, batch_size=100, backoff_s=(0.5, 1, 2), sleep=slept.append)
    assert report == DeliveryReport("s", len(records), 0)
    assert slept == [0.5, 1, 2]
    # The retried batch was the same records each time; the cursor moved only once.
    assert all(b == sink.batches[0] for b in sink.batches[:4])


def test_backoff_repeats_its_last_value(store: Store) -> None:
    store.write_records(
        night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False), "r"
    )
    down = SinkUnavailable("s", "timeout")
    slept: list[float] = []
    report = deliver(
        store,
        ScriptedSink("s", [down] * 9),
        batch_size=500,
        max_attempts=5,
        backoff_s=(1, 3),
        sleep=slept.append,
    )
    assert slept == [1, 3, 3, 3] and report.error == "sink s: timeout"


def test_a_buggy_sink_does_not_raise(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    store.write_records(
        night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False), "r"
    )
    report = deliver(store, ScriptedSink("s", [KeyError("oops")]), batch_size=500)
    assert report.error and "KeyError" in report.error and report.delivered == 0


def test_deliver_all_goes_on_after_a_failing_sink(store: Store) -> None:
    records = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    store.write_records(records, run_id="r1")
    bad = ScriptedSink("bad", [SinkRejected("bad", "HTTP 401: authorization failed")])
    good = ScriptedSink("good", [])
    reports = deliver_all(store, [bad, good])
    assert [(r.sink, r.delivered, r.rejected) for r in reports] == [
        ("bad", 0, True),
        ("good", len(records), False),
    ]
    assert len(good.batches) == -(-len(records) // good.batch_size)  # its own batch size
    assert store.pending_count("bad") == len(records) and store.pending_count("good") == 0


def test_nothing_pending_is_a_clean_report(store: Store) -> None:
    assert deliver(store, ScriptedSink("s", []), batch_size=10) == DeliveryReport("s", 0, 0)


@pytest.mark.server
def test_a_batch_that_cannot_be_encoded_stops_delivery_after_the_good_ones(
    influxd: InfluxD1, store: Store
) -> None:
    """The worker encodes batch n+1 while batch n is sent; an encoding error belongs to its
    own batch: the batches before it are delivered and acknowledged, it is rejected, and
    it and everything after it stay pending."""
    influxd.create_database(DB)
    good = night_records(calib_types=["bias"], detectors=["R22_S11"])
    store.write_records(good, run_id="r1")
    bad = night_records(calib_types=["dark"], detectors=["R22_S12"])
    bad = [r.model_copy(update={"physical_filter": "line\nbreak"}) for r in bad]
    store.write_records(bad, run_id="r2")
    sink = InfluxDB1Sink(InfluxDB1Config(name="enc", type="influxdb1", url=influxd.url,
                                         database=DB))  # fmt: skip
    report = deliver(store, sink, batch_size=len(good))
    assert report.delivered == len(good) and report.pending == len(bad)
    assert report.rejected and report.error and "cannot encode batch" in report.error
    assert server_counts(influxd, good) == (len(good), expected_points(good))
