"""The sink seam: ``Sink.write(batch) -> Ack`` and ``close()``.

A sink takes a batch of records and either acknowledges all of it or raises:

- :class:`~calibmon.errors.SinkUnavailable` — connection refused/reset, timeout, HTTP 5xx,
  408 or 429: the same batch may succeed later, the outbox retries it;
- :class:`~calibmon.errors.SinkRejected` — any other 4xx (bad credentials 401/403, unknown
  database 404, unparsable data 400, schema conflict 409/422): retrying won't help; the
  message carries the server's own words.

Messages never carry secrets: every sink passes them through
:func:`calibmon.sinks.redact.redact` with its own secret values. The outbox
(:mod:`calibmon.store.outbox`) decides from these two types only. One class per server
type, built from its config by :func:`build_sink`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import requests

from calibmon.errors import SinkUnavailable
from calibmon.records import MetricRecord

if TYPE_CHECKING:
    from calibmon.sinks.config import SinkConfig


@dataclass(frozen=True, slots=True)
class Ack:
    """The server acknowledged a whole batch: ``n_points`` points in ``seconds``."""

    n_points: int
    seconds: float


@runtime_checkable
class Sink(Protocol):
    """A remote time-series sink. ``name`` keys its outbox cursor in the store."""

    name: str

    def write(self, batch: Sequence[MetricRecord]) -> Ack:
        """Write ``batch`` all-or-nothing; raise SinkUnavailable or SinkRejected."""
        ...

    def close(self) -> None:
        """Release connections. The sink is not used afterwards."""
        ...


def status_is_transient(status: int) -> bool:
    """True for HTTP statuses worth retrying: 5xx, 408 Request Timeout, 429 Too Many Requests."""
    return status >= 500 or status in (408, 429)


def http_request(
    session: requests.Session,
    sink: str,
    method: str,
    url: str,
    timeout_s: float,
    redact: Callable[[str], str],
    **kwargs: Any,
) -> requests.Response:
    """One HTTP call of a sink, with requests' errors translated at the boundary: a
    timeout, a refused connection or any transport error is :class:`SinkUnavailable`
    (the outbox retries later); the message is passed through ``redact``."""
    try:
        return session.request(method, url, timeout=timeout_s, **kwargs)
    except requests.Timeout as exc:
        raise SinkUnavailable(sink, redact(f"timeout after {timeout_s} s: {exc}")) from exc
    except requests.ConnectionError as exc:
        raise SinkUnavailable(sink, redact(f"cannot connect: {exc}")) from exc
    except requests.RequestException as exc:
        raise SinkUnavailable(sink, redact(f"request failed: {exc}")) from exc


def build_sink(cfg: SinkConfig) -> Sink:
    """The sink for one ``sinks:`` entry."""
    match cfg.type:
        case "influxdb1":
            from calibmon.sinks.influxdb1 import InfluxDB1Sink

            return InfluxDB1Sink(cfg)
        case "influxdb2":
            from calibmon.sinks.influxdb2 import InfluxDB2Sink

            return InfluxDB2Sink(cfg)
        case "sasquatch_rest":
            from calibmon.sinks.sasquatch_rest import SasquatchRestSink

            return SasquatchRestSink(cfg)
    raise ValueError(f"unknown sink type {cfg.type!r}")
