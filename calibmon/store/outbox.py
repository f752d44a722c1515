"""The outbox: deliver stored records to remote sinks (DESIGN.md §1).

The store is the source of truth; each sink has a cursor, the highest ``seq`` its server
acknowledged. :func:`deliver` reads the records after the cursor in ``seq`` order, writes
them a batch at a time, and moves the cursor to the batch's last ``seq`` only after the
sink returned an :class:`~calibmon.sinks.base.Ack`. So:

- an outage delays data and never loses it: records stay pending until acknowledged;
- a retry never duplicates it: a re-sent batch rewrites the same points (same measurement,
  tags and time), and a record re-written in the store gets a new ``seq`` and is re-sent
  to overwrite its point.

``SinkUnavailable`` is retried with backoff up to ``max_attempts`` times
(:func:`calibmon.retry.call_with_retry`), then delivery to that sink stops for now; ``SinkRejected`` stops it at once and the server's message is
reported (``calibmon push`` shows it). Neither raises: the run goes on. Each batch logs one
INFO line (sink, records, points, status, seconds); messages are already redacted by the
sinks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from calibmon.errors import SinkRejected, SinkUnavailable
from calibmon.redact import redact
from calibmon.retry import call_with_retry
from calibmon.sinks.base import Ack, Prepared, PreparingSink, Sink
from calibmon.store.sqlite import Store

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_BATCH_SIZE = 5000
DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Outcome of one :func:`deliver` call for one sink.

    ``delivered`` records were acknowledged in this call; ``pending`` are still waiting;
    ``error`` is the last failure (redacted) and ``rejected`` whether the server refused it.
    """

    sink: str
    delivered: int
    pending: int
    error: str | None = None
    rejected: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def deliver(
    store: Store,
    sink: Sink,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
    sleep: Callable[[float], None] = time.sleep,
    log: logging.Logger = logger,
    prefetch: bool = True,
) -> DeliveryReport:
    """Deliver everything pending for ``sink``; never raises for sink errors.

    Parameters
    ----------
    store : Store
        The embedded store holding records and the sink's cursor.
    sink : Sink
        Where to write; ``sink.name`` keys the cursor.
    batch_size : int
        Records per ``sink.write`` call (points after merging are fewer).
    max_attempts : int
        Tries per batch while the sink is unavailable (1 = no retry).
    backoff_s : sequence of float, seconds
        Wait before retry *n* is ``backoff_s[n-1]`` (the last value repeats).
    sleep, log
        Injected clock and logger (tests pass their own).
    prefetch : bool
        Read (and, for a :class:`~calibmon.sinks.base.PreparingSink`, encode) the next
        batch while the server handles the current one.
    """
    if batch_size < 1 or max_attempts < 1:
        raise ValueError("batch_size and max_attempts must be at least 1")
    name = sink.name
    delivered = 0
    prepare = sink.prepare if isinstance(sink, PreparingSink) else None

    def fetch(after_seq: int | None) -> _Batch | None:
        """The next batch after ``after_seq`` (None: the cursor), encoded when the sink
        can encode ahead; an encoding error travels with the batch it belongs to."""
        rows = store.pending_records(name, batch_size, after_seq)
        if not rows:
            return None
        batch = _Batch([r for _, r in rows], rows[-1][0])
        if prepare is not None:
            try:
                batch.prepared = prepare(batch.records)
            except Exception as exc:
                batch.error = exc
        return batch

    # While the server digests batch n, a worker thread reads batch n+1 from the store
    # (records after batch n's last seq) and, for a PreparingSink, encodes it. The cursor
    # still moves strictly in order, after each acknowledgement.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outbox-{name}") as pool:
        current = fetch(None)
        while current is not None:
            records, last_seq = current.records, current.last_seq
            upcoming = pool.submit(fetch, last_seq) if prefetch else None
            t0 = time.perf_counter()

            def on_retry(
                attempt: int,
                exc: BaseException,
                wait_s: float,
                n: int = len(records),
                t0: float = t0,
            ) -> None:
                _log_batch(log, name, n, None, "unavailable", time.perf_counter() - t0)
                log.warning("sink %s: %s; retry %d/%d in %.1f s", name, exc, attempt,
                            max_attempts - 1, wait_s)  # fmt: skip

            try:
                ack = call_with_retry(
                    partial(_write, sink, current),
                    max_attempts=max_attempts,
                    backoff_s=backoff_s,
                    is_transient=lambda exc: isinstance(exc, SinkUnavailable),
                    sleep=sleep,
                    before_sleep=on_retry,
                )
            except SinkRejected as exc:
                return _stop(store, sink, log, records, t0, delivered, str(exc), rejected=True)
            except SinkUnavailable as exc:
                return _stop(store, sink, log, records, t0, delivered, str(exc), rejected=False)
            except Exception as exc:  # a bug in a sink must not stop the run either
                secrets = getattr(sink, "secret_values", list)()
                msg = redact(f"sink {name}: unexpected {type(exc).__name__}: {exc}", secrets)
                log.warning("%s", msg)
                log.debug("sink %s: traceback of the unexpected error", name, exc_info=exc)
                return _stop(store, sink, log, records, t0, delivered, msg, rejected=False)
            store.mark_delivered(name, last_seq)
            delivered += len(records)
            _log_batch(log, name, len(records), ack.n_points, "ok", time.perf_counter() - t0)
            current = upcoming.result() if upcoming is not None else fetch(last_seq)
    return DeliveryReport(name, delivered, store.pending_count(name))


@dataclass(slots=True)
class _Batch:
    """Records read for one write, their last ``seq``, and what ``prepare`` made of them."""

    records: list[Any]
    last_seq: int
    prepared: Prepared | None = None
    error: BaseException | None = None


def _write(sink: Sink, batch: _Batch) -> Ack:
    """One try at writing ``batch``: its prepared payload when there is one."""
    if batch.error is not None:
        raise batch.error
    if batch.prepared is not None:
        return sink.send(batch.prepared)  # type: ignore[attr-defined]
    return sink.write(batch.records)


def deliver_all(
    store: Store,
    sinks: Iterable[Sink],
    *,
    batch_size: int | None = None,
    **kwargs: Any,
) -> list[DeliveryReport]:
    """:func:`deliver` to each sink in turn; a failing sink does not stop the others.

    ``batch_size``, ``max_attempts`` and ``backoff_s`` default to each sink's own
    attributes (from its config); ``kwargs`` given here override them for every sink.
    """
    reports = []
    for sink in sinks:
        size = batch_size or int(getattr(sink, "batch_size", DEFAULT_BATCH_SIZE))
        options: dict[str, Any] = {
            "max_attempts": int(getattr(sink, "max_attempts", DEFAULT_MAX_ATTEMPTS)),
            "backoff_s": tuple(getattr(sink, "backoff_s", DEFAULT_BACKOFF_S)),
            **kwargs,
        }
        reports.append(deliver(store, sink, batch_size=size, **options))
    return reports


def _stop(
    store: Store,
    sink: Sink,
    log: logging.Logger,
    records: Sequence[object],
    t0: float,
    delivered: int,
    message: str,
    *,
    rejected: bool,
) -> DeliveryReport:
    status = "rejected" if rejected else "unavailable"
    _log_batch(log, sink.name, len(records), None, status, time.perf_counter() - t0)
    store.mark_sink_failure(sink.name, message)
    pending = store.pending_count(sink.name)
    log.warning("sink %s: delivery stopped, %d records pending: %s", sink.name, pending, message)
    return DeliveryReport(sink.name, delivered, pending, message, rejected)


def _log_batch(
    log: logging.Logger,
    sink: str,
    n_records: int,
    n_points: int | None,
    status: str,
    seconds: float,
) -> None:
    log.info(
        "sink=%s records=%d points=%s status=%s seconds=%.3f",
        sink,
        n_records,
        "-" if n_points is None else n_points,
        status,
        seconds,
    )
