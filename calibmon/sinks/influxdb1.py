"""InfluxDB 1.x sink: ``POST /write?db=&rp=&precision=`` with line protocol.

Also Sasquatch's InfluxDB Enterprise (1.x API). Credentials go in a Basic
``Authorization`` header (never in the query string, so they cannot leak through a URL).
One HTTP request per batch: influxd answers 204 for the whole batch or an error for it.
A ``400 partial write`` may have stored some points; the batch is still reported as
rejected and stays pending, and a later re-send overwrites those points (same measurement,
tags and time), so nothing is doubled.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import NoReturn

import requests

from calibmon.errors import SinkRejected, SinkUnavailable
from calibmon.http import http_request, status_is_transient
from calibmon.records import MetricRecord
from calibmon.sinks.base import Ack, Prepared
from calibmon.sinks.common import ConfiguredSink, clip_message
from calibmon.sinks.config import InfluxDB1Config
from calibmon.sinks.schema import build_points


def server_message(resp: requests.Response) -> str:
    """The error text of an InfluxDB response: JSON ``error``/``message``, else the body."""
    text = ""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        text = str(body.get("error") or body.get("message") or "")
    if not text:
        text = resp.headers.get("X-Influxdb-Error", "") or resp.text.strip() or resp.reason or ""
    return clip_message(text)


class InfluxDB1Sink(ConfiguredSink):
    """Writes records to an InfluxDB 1.x database (DESIGN §5 schema)."""

    def __init__(self, cfg: InfluxDB1Config, *, session: requests.Session | None = None) -> None:
        super().__init__(cfg)
        self._cfg = cfg
        self._session = session or requests.Session()
        self._auth: tuple[str, str] | None = None
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password else ""
            self._auth = (cfg.username, password)
            if password:  # the Basic header's value could leak too
                basic = base64.b64encode(f"{cfg.username}:{password}".encode()).decode()
                self._secrets.append(basic)
        self._params = {"db": cfg.database, "precision": cfg.precision}
        if cfg.retention_policy:
            self._params["rp"] = cfg.retention_policy
        self._database_ready = cfg.create_database is not True
        self._may_create = cfg.create_database is not False

    # -- Sink ----------------------------------------------------------------------------
    def write(self, batch: Sequence[MetricRecord]) -> Ack:
        return self.send(self.prepare(batch))

    def prepare(self, batch: Sequence[MetricRecord]) -> Prepared:
        """Merge and encode ``batch`` (no I/O; the outbox runs it ahead, in a worker)."""
        t0 = time.perf_counter()
        try:
            points = build_points(batch, self._cfg.namespace)
            body = "\n".join(p.to_line(self._cfg.precision) for p in points).encode()
        except ValueError as exc:
            raise SinkRejected(self.name, f"cannot encode batch: {exc}") from exc
        return Prepared(body, len(points), time.perf_counter() - t0)

    def send(self, prepared: Prepared) -> Ack:
        """POST a prepared batch; raise SinkUnavailable or SinkRejected."""
        t0 = time.perf_counter()
        if not prepared.n_points:
            return Ack(0, 0.0)
        body = prepared.payload
        if not self._database_ready:
            self._create_database()
        resp = self._request("POST", "/write", params=self._params, data=body)
        if resp.status_code == 404 and self._may_create and "database not found" in resp.text:
            # A fresh server (or a new site) without the database: create it once, retry.
            self._may_create = False
            self._create_database()
            resp = self._request("POST", "/write", params=self._params, data=body)
        if not resp.ok:
            self._raise_for(resp, "write")
        return Ack(prepared.n_points, prepared.seconds + time.perf_counter() - t0)

    def close(self) -> None:
        self._session.close()

    # -- helpers -------------------------------------------------------------------------
    def _create_database(self) -> None:
        # CREATE DATABASE is idempotent in InfluxDB 1.x.
        db = self._cfg.database.replace("\\", "\\\\").replace('"', '\\"')
        resp = self._request("POST", "/query", params={"q": f'CREATE DATABASE "{db}"'})
        if not resp.ok:
            self._raise_for(resp, "create database")
        self._database_ready = True

    def _request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return http_request(
            self._session, method, self._cfg.url + path, self._cfg.timeout_s, self._redact,
            lambda msg: SinkUnavailable(self.name, msg), auth=self._auth,
            headers={"Content-Type": "text/plain; charset=utf-8"}, **kwargs,
        )  # fmt: skip

    def _raise_for(self, resp: requests.Response, what: str) -> NoReturn:
        msg = self._redact(f"{what}: HTTP {resp.status_code}: {server_message(resp)}")
        if status_is_transient(resp.status_code):
            raise SinkUnavailable(self.name, msg)
        raise SinkRejected(self.name, msg)
