"""The sink seam: ``Sink.write(batch) -> Ack`` and ``close()``.

A sink takes a batch of records and either acknowledges all of it or raises:

- :class:`~calibmon.errors.SinkUnavailable` — connection refused/reset, timeout, HTTP 5xx,
  408 or 429: the same batch may succeed later, the outbox retries it;
- :class:`~calibmon.errors.SinkRejected` — any other 4xx (bad credentials 401/403, unknown
  database 404, unparsable data 400, schema conflict 409/422): retrying won't help; the
  message carries the server's own words.

Messages never carry secrets: every sink passes them through
:func:`calibmon.redact.redact` with its own secret values. The outbox
(:mod:`calibmon.store.outbox`) decides from these two types only. One class per server
type, built from its config by :func:`calibmon.sinks.registry.build_sink`; HTTP statuses
are classified by :func:`calibmon.http.status_is_transient`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from calibmon.records import MetricRecord


@dataclass(frozen=True, slots=True)
class Ack:
    """The server acknowledged a whole batch: ``n_points`` points in ``seconds``."""

    n_points: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch encoded for its server: ``payload`` (bytes), ``n_points``, encoding ``seconds``."""

    payload: bytes
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


@runtime_checkable
class PreparingSink(Sink, Protocol):
    """A sink whose ``write`` is ``send(prepare(batch))``: ``prepare`` encodes without I/O
    (raises SinkRejected for what cannot be encoded), so the outbox can encode batch n+1
    in a worker while the server digests batch n."""

    def prepare(self, batch: Sequence[MetricRecord]) -> Prepared:
        """Encode ``batch``; no I/O."""
        ...

    def send(self, prepared: Prepared) -> Ack:
        """Write a prepared batch all-or-nothing; raise SinkUnavailable or SinkRejected."""
        ...
