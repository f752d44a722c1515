"""InfluxDB 2.x/3.x sink: influxdb-client's ``WriteApi`` with SYNCHRONOUS writes.

One ``POST /api/v2/write?org=&bucket=&precision=ms`` per batch (bucket + org + token).
The client's own retries are switched off (``retries=False``): the outbox owns retrying,
so a failure surfaces at once as :class:`~calibmon.errors.SinkUnavailable` or
:class:`~calibmon.errors.SinkRejected`. Any server speaking the v2 write API works,
VictoriaMetrics included (tests use it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS

from calibmon.errors import SinkRejected, SinkUnavailable
from calibmon.http import status_is_transient
from calibmon.records import MetricRecord
from calibmon.sinks.base import Ack
from calibmon.sinks.common import ConfiguredSink, clip_message
from calibmon.sinks.config import InfluxDB2Config
from calibmon.sinks.schema import build_points


class InfluxDB2Sink(ConfiguredSink):
    """Writes records to an InfluxDB 2.x bucket (DESIGN §5 schema)."""

    def __init__(self, cfg: InfluxDB2Config) -> None:
        super().__init__(cfg)
        self._cfg = cfg
        token = cfg.token.get_secret_value() if cfg.token else ""
        self._client = InfluxDBClient(
            url=cfg.url,
            token=token,
            org=cfg.org,
            timeout=int(cfg.timeout_s * 1000),
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, batch: Sequence[MetricRecord]) -> Ack:
        t0 = time.perf_counter()
        if not batch:
            return Ack(0, 0.0)
        try:
            points = [p.to_point("ms") for p in build_points(batch, self._cfg.namespace)]
        except ValueError as exc:
            raise SinkRejected(self.name, f"cannot encode batch: {exc}") from exc
        try:
            self._write_api.write(
                bucket=self._cfg.bucket,
                org=self._cfg.org,
                record=points,
                write_precision=WritePrecision.MS,
            )
        except InfluxDBError as exc:
            status = int(getattr(exc, "status", 0) or getattr(exc.response, "status", 0) or 0)
            text = clip_message(str(exc.message or "").strip())
            msg = self._redact(f"write: HTTP {status}: {text}")
            if status == 0 or status_is_transient(status):
                raise SinkUnavailable(self.name, msg) from exc
            raise SinkRejected(self.name, msg) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # Connection refused/reset, read timeout, protocol errors (urllib3.HTTPError
            # covers MaxRetryError, NewConnectionError, ReadTimeoutError, ProtocolError).
            raise SinkUnavailable(self.name, self._redact(f"cannot write: {exc}")) from exc
        return Ack(len(points), time.perf_counter() - t0)

    def close(self) -> None:
        self._write_api.close()
        self._client.close()
