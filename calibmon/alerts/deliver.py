"""Delivering the notification outbox: oldest first, retried with backoff, never raising.

Each notifier's rows go out in ``id`` order. Within one call a failing send is retried
(:func:`calibmon.retry.call_with_retry`: ``max_attempts``, ``backoff_s``); if it still
fails the row waits ``retry_after_s`` (doubling with each failed call, up to
``max_retry_after_s``) and that notifier stops for now, so a later "resolved" never
overtakes its "firing". :class:`NotifierRejected` gives the row up at once (the receiver
refused it). Rows older than ``expire_after_s`` are given up. Every time here — when a
row is due, when it expires, when it was sent — is read from one clock: ``now`` if given,
else :func:`calibmon.clock.now` (the daemon's clock under ``serve --test-now``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from calibmon import clock
from calibmon.alerts.config import DeliveryConfig, alerts_config
from calibmon.alerts.notifiers.base import Notification, Notifier, NotifierRejected
from calibmon.alerts.notifiers.registry import build_notifiers
from calibmon.errors import NotifierError
from calibmon.redact import redact
from calibmon.retry import call_with_retry
from calibmon.store import alerts as db
from calibmon.store.sqlite import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NotifyReport:
    """Outcome of delivering one notifier's outbox rows."""

    notifier: str
    delivered: int
    pending: int
    gave_up: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __str__(self) -> str:
        s = f"notifier {self.notifier}: {self.delivered} delivered, {self.pending} pending"
        if self.gave_up:
            s += f", {self.gave_up} given up"
        if self.error:
            s += f" ({self.error})"
        return s


def deliver_notifications(
    store: Store,
    notifiers: Iterable[Notifier],
    *,
    delivery: DeliveryConfig | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    limit: int = 500,
) -> list[NotifyReport]:
    """Send what the outbox holds for each notifier; never raises (see module doc).

    Any exception from a notifier other than :class:`NotifierError` is treated as
    retryable and logged with its traceback (a bug in a notifier must not stop a run).
    ``now`` fixes the time of this call; ``sleep`` waits between tries (tests inject it).
    """
    cfg = delivery or DeliveryConfig()
    return [_deliver_one(store, n, cfg, now, sleep, limit) for n in notifiers]


def has_pending(store: Store, settings_alerts: Any) -> bool:
    """True when a configured notifier has an undelivered row (due or not)."""
    cfg = alerts_config(settings_alerts)
    return any(db.pending_notifications(store, nc.name, 1) for nc in cfg.notifiers)


def deliver_pending(
    store: Store,
    settings_alerts: Any,
    *,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[NotifyReport]:
    """Deliver what is due for the configured notifiers, without evaluating anything:
    the periodic retry of the service (an outage ends on a day with no new data)."""
    cfg = alerts_config(settings_alerts)
    if not cfg.enabled or not has_pending(store, cfg):
        return []
    notifiers = build_notifiers(cfg.notifiers)
    try:
        return deliver_notifications(store, notifiers, delivery=cfg.delivery, now=now, sleep=sleep)
    finally:
        for n in notifiers:
            n.close()


def _send(
    notifier: Notifier,
    n: Notification,
    cfg: DeliveryConfig,
    secrets: list[str],
    sleep: Callable[[float], None],
) -> str | None:
    """Send ``n`` with retries; None when delivered, else the (redacted) last error.
    Raises :class:`NotifierRejected` when the receiver refused it."""
    name = notifier.name

    def describe(exc: BaseException) -> str:
        if isinstance(exc, NotifierError):
            return str(exc)
        return redact(f"notifier {name}: unexpected {type(exc).__name__}: {exc}", secrets)

    def before_sleep(attempt: int, exc: BaseException, wait_s: float) -> None:
        if not isinstance(exc, NotifierError):
            log.warning("%s", describe(exc), exc_info=exc)
        err = redact(describe(exc), secrets)
        log.warning("%s; retry %d/%d in %.1f s", err, attempt, cfg.max_attempts - 1, wait_s)

    try:
        call_with_retry(
            lambda: notifier.send(n),
            max_attempts=cfg.max_attempts,
            backoff_s=cfg.backoff_s,
            is_transient=lambda exc: not isinstance(exc, NotifierRejected),
            sleep=sleep,
            before_sleep=before_sleep,
        )
    except NotifierRejected:
        raise
    except Exception as exc:
        if not isinstance(exc, NotifierError):
            log.warning("%s", describe(exc), exc_info=exc)
        return redact(describe(exc), secrets)
    return None


def _deliver_one(
    store: Store,
    notifier: Notifier,
    cfg: DeliveryConfig,
    now: datetime | None,
    sleep: Callable[[float], None],
    limit: int,
) -> NotifyReport:
    name = notifier.name
    config = getattr(notifier, "config", None)
    secrets = config.secret_values() if config is not None else []
    t_now = now or clock.now()
    gave_up = db.give_up_older(
        store, name, clock.iso(t_now - timedelta(seconds=cfg.expire_after_s))
    )
    if gave_up:
        log.warning("notifier %s: gave up %d notifications older than %.0f s", name, gave_up,
                    cfg.expire_after_s)  # fmt: skip
    delivered, error = 0, None
    now_iso = clock.iso(t_now)
    for row in db.pending_notifications(store, name, limit):
        if row.next_attempt_at > now_iso:
            break  # waiting for its retry; later rows must not overtake it
        try:
            n = Notification.model_validate_json(row.payload)
        except ValueError as exc:
            db.mark_failed(store, row.id, f"unreadable payload: {exc}"[:500], db.GAVE_UP)
            gave_up += 1
            continue
        t0 = time.perf_counter()
        try:
            err = _send(notifier, n, cfg, secrets, sleep)
        except NotifierRejected as exc:
            db.mark_failed(store, row.id, redact(str(exc), secrets), db.GAVE_UP, tries=1)
            gave_up += 1
            log.error("notifier %s refused notification %s, given up: %s", name, n.id,
                      redact(str(exc), secrets))  # fmt: skip
            continue
        seconds = time.perf_counter() - t0
        if err is None:
            db.mark_sent(store, row.id, clock.iso(now or clock.now()))
            delivered += 1
            if n.kind != "refresh":
                log.info("notifier=%s notification=%s kind=%s items=%d status=ok seconds=%.3f",
                         name, n.id, n.kind, len(n.items), seconds)  # fmt: skip
            continue
        failed_calls = row.attempts // max(cfg.max_attempts, 1)
        delay = min(cfg.retry_after_s * (2**failed_calls), cfg.max_retry_after_s)
        retry_at = clock.iso(t_now + timedelta(seconds=delay))
        db.mark_failed(store, row.id, err, retry_at, cfg.max_attempts)
        log.warning("notifier %s: delivery stopped, retry in %.0f s: %s", name, delay, err)
        error = err
        break
    pending = sum(
        1
        for r in db.outbox_rows(store, name)
        if r.delivered_at is None and r.next_attempt_at != db.GAVE_UP
    )
    return NotifyReport(name, delivered, pending, gave_up, error)
