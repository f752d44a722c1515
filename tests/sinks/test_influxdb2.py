"""InfluxDB v2 write path (influxdb-client, SYNCHRONOUS) against real VictoriaMetrics."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from servers import VictoriaMetrics, free_port
from sink_factory import night_records

from calibmon.errors import SinkRejected, SinkUnavailable
from calibmon.sinks.config import InfluxDB2Config
from calibmon.sinks.influxdb2 import InfluxDB2Sink
from calibmon.sinks.schema import timestamp_ms
from calibmon.store.outbox import deliver
from calibmon.store.sqlite import Store

TOKEN = "v2-Token-Secret-123"


def v2_sink(url: str, monkeypatch: pytest.MonkeyPatch, **kw: object) -> InfluxDB2Sink:
    monkeypatch.setenv("V2_TOKEN", TOKEN)
    cfg = InfluxDB2Config(
        name="v2", type="influxdb2", url=url, org="rubin", token_env="V2_TOKEN", **kw
    )
    return InfluxDB2Sink(cfg)


@pytest.mark.server
def test_v2_write_reads_back_from_victoria_metrics(
    victoria: VictoriaMetrics, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(f) every per-amp value and the summary stats, with their tags and times."""
    records = night_records(
        "20251119", calib_types=["bias", "flat"], detectors=["R22_S11", "R01_S00"], run="run-v2"
    )
    store.write_records(records, run_id="run-v2")
    report = deliver(store, v2_sink(victoria.url, monkeypatch), batch_size=100)
    assert (report.delivered, report.pending, report.error) == (len(records), 0, None)

    # VictoriaMetrics names a field f of measurement m as "m_f"; tags become labels.
    got: dict[tuple, tuple[float, int]] = {}
    for series in victoria.export('{__name__=~"lsst\\\\.cp\\\\..*"}'):
        labels = series["metric"]
        assert len(series["values"]) == 1, series
        key = (
            labels["__name__"], labels.get("level"), labels.get("detector", ""), labels.get("amp", ""),
            labels.get("detector_name", ""), labels.get("physical_filter", ""), labels.get("instrument"),
        )  # fmt: skip
        got[key] = (series["values"][0], series["timestamps"][0])
    for r in records:
        measurement = f"lsst.cp.{r.calib_type}" + ("" if r.level == "amp" else "_summary")
        base = (
            r.level,
            "" if r.detector is None else str(r.detector),
            r.amp or "",
            r.detector_name or "",
            r.physical_filter,
            "LSSTCam",
        )
        value, ts = got[(f"{measurement}_{r.metric}", *base)]
        assert value == pytest.approx(r.value, rel=1e-12)
        assert ts == timestamp_ms(r.timestamp)
        if r.stats is not None:
            assert got[(f"{measurement}_{r.metric}_n", *base)][0] == r.stats.n_points
            assert got[(f"{measurement}_{r.metric}_sigma_mad", *base)][0] == pytest.approx(
                r.stats.sigma_mad, rel=1e-12
            )
            assert got[(f"{measurement}_{r.metric}_median", *base)][0] == pytest.approx(
                r.stats.median, rel=1e-12
            )
    n_exposures = [v for k, v in got.items() if k[0] == "lsst.cp.bias_n_exposures"]
    assert n_exposures and all(v[0] == 15 for v in n_exposures)


@pytest.fixture
def status_server() -> Iterator[tuple[str, list[int]]]:
    """A local HTTP server answering each request with the next status of a list."""
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = statuses.pop(0) if statuses else 204
            body = json.dumps(
                {
                    "code": "x",
                    "message": f"server said {status} (token {self.headers.get('Authorization')})",
                }
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", statuses
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, SinkRejected), (403, SinkRejected), (404, SinkRejected), (400, SinkRejected),
     (429, SinkUnavailable), (500, SinkUnavailable), (503, SinkUnavailable)],
)  # fmt: skip
def test_v2_http_errors_map_to_our_types(
    status_server: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch, status: int, error: type
) -> None:
    url, statuses = status_server
    statuses.append(status)
    sink = v2_sink(url, monkeypatch)
    with pytest.raises(error) as info:
        sink.write(night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False))
    assert f"HTTP {status}" in str(info.value) and info.value.sink == "v2"
    assert TOKEN not in str(info.value)  # the echoed "Authorization: Token ..." is redacted
    sink.close()


def test_v2_connection_refused_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = v2_sink(f"http://127.0.0.1:{free_port()}", monkeypatch, timeout_s=2)
    with pytest.raises(SinkUnavailable):
        sink.write(night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False))
    sink.close()
