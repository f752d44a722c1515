"""Real servers for tests and benchmarks, started on free 127.0.0.1 ports in temp dirs.

- :class:`InfluxD1` — Debian's ``influxd`` 1.x with its own config (meta/data/wal dirs,
  HTTP and RPC bound to loopback, reporting, UDP/graphite/collectd/opentsdb, monitor
  store, continuous queries and retention service off). ``stop()``/``kill()``/``start()``
  keep the same data dir and ports, for outage tests.
- :class:`VictoriaMetrics` — Debian's ``victoria-metrics``: accepts InfluxDB v2 writes
  (``/api/v2/write``) and is read back through ``/api/v1/export``.
- :class:`KafkaRestProxy` — a small ``http.server`` standing in for Sasquatch's Kafka REST
  proxy: it validates each produce request (path, content type, body, Avro schema and
  records against it, with fastavro) and answers what the test asks.

Nothing here is a fixture itself: ``tests/sinks/conftest.py`` wraps these, and
``benchmarks/bench_influx_push.py`` imports this file by path.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

INFLUXD = "influxd"
VICTORIA_METRICS = "victoria-metrics"
START_TIMEOUT_S = 30.0


class ServerMissing(RuntimeError):
    """The server binary is not installed (tests skip on this, and only on this)."""


def find_binary(name: str) -> str:
    """Absolute path of ``name`` on PATH or in /usr/bin, else :class:`ServerMissing`."""
    path = shutil.which(name) or (
        f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None
    )
    if path is None:
        raise ServerMissing(f"{name} is not installed (Debian package: see the Makefile)")
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    # influxd reads INFLUXDB_* overrides and honours proxies: give it none of ours.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}


class _Process:
    """A server process with a log file, started and stopped by its owner."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # subclasses: command() and ready()
    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the process and wait until :meth:`ready`; raise with the log tail if not."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_clean_env(),
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} at start:\n{self.log_tail()}"
                )
            try:
                if self.ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} not ready after {timeout_s} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM and wait (SIGKILL if it hangs)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the crash an outage test wants (no clean shutdown, WAL left as is)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop (if running) and start again on the same ports and data dir."""
        self.stop()
        self.start()

    def log_tail(self, n_chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "(no log)"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InfluxD1(_Process):
    """``influxd`` 1.x on 127.0.0.1 with its own directories.

    ``url`` is the HTTP API. With ``auth_enabled`` the first :meth:`create_admin` makes the
    admin user (allowed while no user exists); later calls to :meth:`query` pass ``auth``.
    """

    name = "influxd"

    def __init__(self, workdir: Path, *, auth_enabled: bool = False) -> None:
        super().__init__(workdir)
        self.binary = find_binary(INFLUXD)
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.auth_enabled = auth_enabled
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config_path = self.workdir / "influxdb.conf"
        self.config_path.write_text(self._config())

    def _config(self) -> str:
        d = self.workdir
        return f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d / "meta"}"
  logging-enabled = false

[data]
  dir = "{d / "data"}"
  wal-dir = "{d / "wal"}"
  query-log-enabled = false
  trace-logging-enabled = false

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.http_port}"
  auth-enabled = {str(self.auth_enabled).lower()}
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false

[ifql]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[[graphite]]
  enabled = false
[[collectd]]
  enabled = false
[[opentsdb]]
  enabled = false
[[udp]]
  enabled = false
"""

    def command(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config_path)]

    def ready(self) -> bool:
        return requests.get(f"{self.url}/ping", timeout=1).status_code == 204

    # -- convenience for tests -------------------------------------------------------
    def query(
        self,
        q: str,
        *,
        db: str | None = None,
        auth: tuple[str, str] | None = None,
        post: bool = False,
    ) -> dict[str, Any]:
        """Run InfluxQL, return the decoded JSON (raises on HTTP error or statement error)."""
        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        if post:
            resp = requests.post(f"{self.url}/query", params=params, auth=auth, timeout=30)
        else:
            resp = requests.get(f"{self.url}/query", params=params, auth=auth, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        for result in body.get("results", []):
            if "error" in result:
                raise RuntimeError(f"InfluxQL error for {q!r}: {result['error']}")
        return body

    def create_database(self, name: str, auth: tuple[str, str] | None = None) -> None:
        self.query(f'CREATE DATABASE "{name}"', auth=auth, post=True)

    def create_admin(self, user: str, password: str) -> None:
        self.query(
            f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES", post=True
        )

    def series(
        self, q: str, *, db: str, auth: tuple[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """The ``series`` of the first result of ``q`` (empty list when none)."""
        body = self.query(q, db=db, auth=auth)
        return body["results"][0].get("series", [])

    def count_points(
        self, measurement: str, field_name: str, *, db: str, auth: tuple[str, str] | None = None
    ) -> int:
        """Number of points of ``measurement`` that have ``field_name``."""
        s = self.series(f'SELECT count("{field_name}") FROM "{measurement}"', db=db, auth=auth)
        return int(s[0]["values"][0][1]) if s else 0


class VictoriaMetrics(_Process):
    """``victoria-metrics`` single node on 127.0.0.1; InfluxDB writes at ``/api/v2/write``."""

    name = "victoria-metrics"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = find_binary(VICTORIA_METRICS)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=100y",
            # One sample per series and millisecond, like InfluxDB's overwrite of a point
            # re-sent with the same tags and time.
            "-dedup.minScrapeInterval=1ms",
            "-loggerLevel=WARN",
        ]

    def ready(self) -> bool:
        return requests.get(f"{self.url}/health", timeout=1).status_code == 200

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of the series matching ``match`` (after a flush), one dict a series.

        VictoriaMetrics stores InfluxDB field ``f`` of measurement ``m`` as metric ``m_f``
        with the tags as labels; string fields are kept as 0 and are not read here.
        """
        requests.get(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()
        resp = requests.get(f"{self.url}/api/v1/export", params={"match[]": match}, timeout=30)
        resp.raise_for_status()
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


# -- Kafka REST proxy stand-in -----------------------------------------------------------


@dataclass
class ProduceRequest:
    """One validated produce request: topic, parsed Avro schema, decoded records."""

    topic: str
    schema: dict[str, Any]
    records: list[dict[str, Any]]
    headers: dict[str, str]


@dataclass
class KafkaRestProxy:
    """A local stand-in for Sasquatch's Kafka REST proxy (Confluent REST v2 + v3 topics).

    Each produce request is checked: ``POST /topics/<topic>``, ``Content-Type:
    application/vnd.kafka.avro.v2+json``, JSON body with ``value_schema`` (a *string*
    holding an Avro record schema that fastavro parses, whose ``namespace.name`` is the
    topic) and ``records`` (each ``{"value": ...}`` decoding against the schema in Avro-JSON
    form, every schema field present, no other key). A bad request gets 422 with the reason
    (as the real proxy answers), recorded in :attr:`errors`. Tests queue answers with
    :meth:`respond` — ``(status, body)`` used for the next produce requests, in order; then
    the default 200 with one offset per record.
    """

    token: str | None = None
    clusters_id: str = "test-cluster"
    produced: list[ProduceRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    topics_created: list[str] = field(default_factory=list)
    _answers: deque[tuple[int, Any]] = field(default_factory=deque)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def respond(self, status: int, body: Any = None) -> None:
        """Answer the next produce request with ``status`` and ``body`` (JSON)."""
        self._answers.append((status, body))

    def start(self) -> KafkaRestProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.kafka.v2+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if proxy.token is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {proxy.token}":
                    return True
                self._send(401, {"error_code": 40101, "message": "Unauthorized"})
                return False

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path == "/v3/clusters":
                    self._send(
                        200,
                        {"kind": "KafkaClusterList", "data": [{"cluster_id": proxy.clusters_id}]},
                    )
                else:
                    self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self._authorized():
                    return
                if self.path == f"/v3/clusters/{proxy.clusters_id}/topics":
                    name = json.loads(raw)["topic_name"]
                    with proxy._lock:
                        exists = name in proxy.topics_created
                        proxy.topics_created.append(name)
                    if exists:
                        self._send(
                            400, {"error_code": 40002, "message": f"Topic '{name}' already exists."}
                        )
                    else:
                        self._send(201, {"kind": "KafkaTopic", "topic_name": name})
                    return
                if not self.path.startswith("/topics/"):
                    self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
                    return
                topic = self.path[len("/topics/") :]
                try:
                    req = proxy._validate(topic, dict(self.headers), raw)
                except ValueError as exc:
                    with proxy._lock:
                        proxy.errors.append(str(exc))
                    self._send(422, {"error_code": 42203, "message": str(exc)})
                    return
                with proxy._lock:
                    answer = proxy._answers.popleft() if proxy._answers else None
                    if answer is None or 200 <= answer[0] < 300:
                        proxy.produced.append(req)
                if answer is None:
                    offsets = [
                        {"partition": 0, "offset": i, "error_code": None, "error": None}
                        for i in range(len(req.records))
                    ]
                    self._send(
                        200, {"offsets": offsets, "key_schema_id": None, "value_schema_id": 1}
                    )
                else:
                    self._send(answer[0], answer[1])

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _validate(self, topic: str, headers: dict[str, str], raw: bytes) -> ProduceRequest:
        import fastavro
        from fastavro.validation import validate

        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if ctype.split(";")[0].strip() != "application/vnd.kafka.avro.v2+json":
            raise ValueError(f"wrong Content-Type {ctype!r}")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"body is not JSON: {exc}") from None
        if not isinstance(body, dict) or set(body) != {"value_schema", "records"}:
            raise ValueError(f"body keys must be value_schema and records, got {sorted(body)}")
        if not isinstance(body["value_schema"], str):
            raise ValueError("value_schema must be a JSON string (stringified schema)")
        schema = json.loads(body["value_schema"])
        try:
            parsed = fastavro.parse_schema(schema)
        except Exception as exc:  # fastavro raises several types
            raise ValueError(f"value_schema is not an Avro schema: {exc}") from None
        if schema.get("type") != "record":
            raise ValueError("value_schema must be an Avro record")
        fullname = f"{schema.get('namespace')}.{schema['name']}"
        if fullname != topic:
            raise ValueError(f"schema {fullname} does not match topic {topic}")
        names = [f["name"] for f in schema["fields"]]
        records = []
        if not isinstance(body["records"], list) or not body["records"]:
            raise ValueError("records must be a non-empty list")
        for i, rec in enumerate(body["records"]):
            if not isinstance(rec, dict) or set(rec) != {"value"}:
                raise ValueError(f"record {i} must be {{'value': ...}}")
            value = rec["value"]
            if set(value) != set(names):
                raise ValueError(
                    f"record {i} fields {sorted(value)} != schema fields {sorted(names)}"
                )
            try:
                decoded = next(iter(fastavro.json_reader(io.StringIO(json.dumps(value)), parsed)))
                validate(decoded, parsed, raise_errors=True)
            except Exception as exc:
                raise ValueError(f"record {i} does not match the schema: {exc}") from None
            records.append(decoded)
        return ProduceRequest(topic, schema, records, headers)
