"""Notification delivery reads one clock: the service's (``calibmon.clock``), the one the
notifications were queued on — never the wall clock on one side and the daemon's test
clock on the other. A row waits for its retry and expires on that clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alert_helpers import HttpReceiver, free_port, record

from calibmon import clock
from calibmon.alerts.deliver import deliver_pending
from calibmon.alerts.engine import evaluate
from calibmon.store import alerts as db
from calibmon.store.sqlite import Store

DAY = "20251121"
T0 = datetime(2025, 11, 22, 13, 0, tzinfo=UTC)  # a year before the wall clock of the tests


class ManualClock:
    """The daemon's clock, moved by the test."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def service_clock() -> Iterator[ManualClock]:
    c = ManualClock(T0)
    clock.install(c)
    yield c
    clock.install(None)


def _cfg(port: int, **delivery: object) -> dict:
    return {
        "notifiers": [{"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{port}/h"}],
        "alerts": {"delivery": {"max_attempts": 1, "backoff_s": [], **delivery}},
    }


def _queue_one(store: Store, catalogue, **delivery: object) -> tuple[dict, int]:
    """One firing notification queued for a webhook on a free port: (settings, port)."""
    port = free_port()
    cfg = _cfg(port, **delivery)
    settings = cfg["alerts"] | {"notifiers": cfg["notifiers"]}
    store.write_records([record("read_noise", 15.0, DAY)], "t")  # read_noise_high fires
    assert evaluate(store, catalogue, settings, day_obs=DAY).n_queued == 1
    return settings, port


def test_a_row_waits_for_its_retry_on_the_service_clock(
    store: Store, catalogue, service_clock: ManualClock
) -> None:
    settings, port = _queue_one(store, catalogue, retry_after_s=600.0, max_retry_after_s=600.0)
    (row,) = db.outbox_rows(store, "hook")
    assert row.created_at == clock.iso(T0)  # queued on the service clock, not the wall clock

    (rep,) = deliver_pending(store, settings)  # receiver down
    assert rep.delivered == 0 and rep.error and rep.pending == 1
    (row,) = db.outbox_rows(store, "hook")
    assert row.next_attempt_at == clock.iso(T0 + timedelta(seconds=600))

    receiver = HttpReceiver(port=port).start()
    try:
        service_clock.t = T0 + timedelta(seconds=599)
        (rep,) = deliver_pending(store, settings)
        assert rep.delivered == 0 and not receiver.requests  # not due yet
        service_clock.t = T0 + timedelta(seconds=601)
        (rep,) = deliver_pending(store, settings)
        assert rep.delivered == 1 and len(receiver.requests) == 1
        assert deliver_pending(store, settings) == []  # nothing left: no second send
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()
    (row,) = db.outbox_rows(store, "hook")
    assert row.delivered_at == clock.iso(T0 + timedelta(seconds=601))


def test_a_row_expires_after_expire_after_s_on_the_service_clock(
    store: Store, catalogue, service_clock: ManualClock
) -> None:
    settings, _port = _queue_one(store, catalogue, retry_after_s=0.0, expire_after_s=86400.0)
    # nothing listens on the port: every try is refused
    service_clock.t = T0 + timedelta(hours=23)
    (rep,) = deliver_pending(store, settings)
    assert rep.gave_up == 0 and rep.pending == 1  # a day has not passed on this clock
    service_clock.t = T0 + timedelta(hours=25)
    (rep,) = deliver_pending(store, settings)
    assert rep.gave_up == 1 and rep.pending == 0
    (row,) = db.outbox_rows(store, "hook")
    assert row.next_attempt_at == db.GAVE_UP and row.last_error.startswith("expired: ")
