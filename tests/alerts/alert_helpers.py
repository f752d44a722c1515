"""Helpers of the alert tests (imported by conftest.py and the tests): synthetic records,
a local webhook receiver, the Alertmanager process, an SMTP sink."""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from calibmon.catalogue import load_catalogue
from calibmon.records import MetricRecord, Provenance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/servers.py
from servers import ServerMissing, _Process, find_binary, free_port

AMPS_16: tuple[str, ...] = tuple(f"C1{i}" for i in range(8)) + tuple(f"C0{i}" for i in range(8))
REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------
# Synthetic records
# --------------------------------------------------------------------------------------
def nights(n: int, start: date = date(2025, 11, 1)) -> list[str]:
    """``n`` consecutive day_obs strings."""
    return [(start + timedelta(days=k)).strftime("%Y%m%d") for k in range(n)]


def record(
    metric: str,
    value: float,
    day_obs: str,
    amp: str | None = "C10",
    *,
    detector: int = 94,
    detector_name: str = "R22_S11",
    instrument: str = "LSSTCam",
    vendor: str = "E2V",
    level: str = "amp",
    physical_filter: str = "",
    error: float | None = None,
    **provenance_extra: Any,
) -> MetricRecord:
    """A record as the pipeline writes it (unit and calib_type from the catalogue);
    ``provenance_extra`` adds keys such as ``lower_limit=True``."""
    m = load_catalogue()[metric]
    return MetricRecord(
        metric=metric, value=value, unit=m.unit, calib_type=m.calib_type, level=level,
        instrument=instrument, detector=detector, detector_name=detector_name, amp=amp,
        day_obs=day_obs, vendor=vendor, physical_filter=physical_filter, error=error,
        timestamp=f"{day_obs[:4]}-{day_obs[4:6]}-{day_obs[6:]}T18:00:00.000Z",
        provenance=Provenance(run="test", software_version="test", config_hash="test",
                              processed_at="2025-11-01T00:00:00Z", **provenance_extra),
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# Webhook receiver (also Alertmanager's receiver)
# --------------------------------------------------------------------------------------
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """``http.server`` on 127.0.0.1 recording every POST; answers queued statuses first."""

    requests: list[Received] = field(default_factory=list)
    answers: deque[int] = field(default_factory=deque)
    port: int = 0  # 0: any free port; an outage test restarts it on the same one
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _event: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HttpReceiver:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with recv._lock:
                    status = recv.answers.popleft() if recv.answers else 200
                    if status < 300:
                        recv.requests.append(Received(self.path, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with recv._event:
                    recv._event.notify_all()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def wait_for(self, pred: Callable[[list[Received]], bool], timeout_s: float = 15.0) -> bool:
        with self._event:
            return self._event.wait_for(lambda: pred(list(self.requests)), timeout=timeout_s)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# --------------------------------------------------------------------------------------
# Alertmanager
# --------------------------------------------------------------------------------------
class Alertmanager(_Process):
    """Debian's ``prometheus-alertmanager`` on 127.0.0.1, clustering off, own storage."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config_text: str) -> None:
        super().__init__(workdir)
        try:
            self.binary = find_binary("prometheus-alertmanager")
        except ServerMissing:
            self.binary = find_binary("alertmanager")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(config_text)

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def ready(self) -> bool:
        return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (active, not yet ended alerts)."""
        resp = requests.get(f"{self.url}/api/v2/alerts", params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()


AM_TEST_CONFIG = """\
route:
  receiver: hook
  group_by: [alertname, instrument, detector]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}/am
        send_resolved: true
"""


# --------------------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------------------
@dataclass
class SmtpSink:
    """aiosmtpd handler keeping every envelope."""

    envelopes: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"
