"""The alert engine: rules over a day's records → state per identity → notifications.

The parts live in their own modules: :mod:`.judge` (rules on a day, no state),
:mod:`.state` (the state machine, pure), :mod:`.evaluate` (state in the store, queuing),
:mod:`.compose` (notifications and trends), :mod:`.deliver` (the outbox, with retries).
This module joins them for the callers: :func:`evaluate_and_deliver`.

:func:`evaluate` judges every catalogue rule on the records of one day_obs (and the
staleness expectations it is given), then, in one store transaction, moves each alert
identity ``(rule, instrument, detector, amp)`` through its states::

    inactive/resolved ──fire──► pending ──fire × K──► firing ──clear × H──► resolved
           ▲                       │ not fire                │ fire or in the hysteresis gap:
           └───────────────────────┘                         └ stays firing, clear count reset

- K is the rule's ``for`` (default 1), H its ``clear_for`` (default 2, ``alerts.clear_for``);
  "clear" needs the value back inside the narrower band (``clear_band`` × drift band), so a
  value flapping around the limit stays one firing alert instead of a page every night.
- A day_obs is one evaluation. Evaluating the same day_obs again first restores the state
  from before that day (kept in the row), so it is idempotent: no double transitions, no
  second page. Evaluating an older day_obs than an identity's last one leaves it alone.
- State lives in the store, so a restart neither re-pages nor forgets.
- Known-bad amps (``known_bad``) and silences (``calibmon alerts silence``) go through the
  same states — ``calibmon alerts`` shows them — but never notify. If a silence ends while
  the alert still fires, it notifies then. A resolution is notified only if the firing was.

Notifications: the firing (and, separately, resolved) transitions of one evaluation on one
detector become ONE notification listing the amps and rules (``alerts.group_by: rule``
makes it one per rule and detector), with recent trends for plots. It is written to
``notify_outbox`` once per configured notifier whose ``min_severity`` it meets. Notifiers
with ``refresh`` (Alertmanager) also get, after each evaluation, one ``refresh`` holding all
still-firing alerts, superseding an undelivered older one: that keeps them active in
Alertmanager without being a new notification.

:func:`deliver_notifications` empties the outbox with retries and backoff and never raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from calibmon.alerts.config import alerts_config
from calibmon.alerts.deliver import NotifyReport, deliver_notifications
from calibmon.alerts.evaluate import EvaluationReport, Transition, evaluate
from calibmon.alerts.notifiers.base import Notification, Notifier
from calibmon.alerts.notifiers.registry import build_notifiers
from calibmon.alerts.rules import Expectation
from calibmon.alerts.state import STATES, advance, new_snapshot
from calibmon.catalogue import Catalogue
from calibmon.store.sqlite import Store

__all__ = [
    "STATES",
    "AlertRunReport",
    "EvaluationReport",
    "NotifyReport",
    "Transition",
    "advance",
    "deliver_notifications",
    "evaluate",
    "evaluate_and_deliver",
    "new_snapshot",
]


# --------------------------------------------------------------------------------------
# Evaluate + deliver (after a run, from the scheduler)
# --------------------------------------------------------------------------------------
@dataclass
class AlertRunReport:
    """Evaluations of several day_obs and the deliveries after them."""

    reports: list[EvaluationReport] = field(default_factory=list)
    deliveries: list[NotifyReport] = field(default_factory=list)

    @property
    def notifications(self) -> list[Notification]:
        return [n for r in self.reports for n in r.notifications]

    def __str__(self) -> str:
        lines = [str(r) for r in self.reports]
        lines += [str(d) for d in self.deliveries if d.delivered or d.pending or d.error]
        return "\n".join(lines) if lines else "alerts: nothing evaluated"


def evaluate_and_deliver(
    store: Store,
    catalogue: Catalogue,
    settings_alerts: Any,
    *,
    day_obs: Iterable[str],
    instrument: str | None = None,
    expected: Sequence[Expectation] | None = None,
    notifiers: Sequence[Notifier] | None = None,
    deliver: bool = True,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> AlertRunReport:
    """:func:`evaluate` each day_obs in order, then :func:`deliver_notifications` to the
    configured notifiers (or ``notifiers``). Never raises for notifier failures."""
    cfg = alerts_config(settings_alerts)
    out = AlertRunReport()
    for d in sorted(set(day_obs)):
        out.reports.append(
            evaluate(
                store, catalogue, cfg, day_obs=d, instrument=instrument, now=now, expected=expected
            )
        )
    if deliver:
        owned = notifiers is None
        ns = list(notifiers) if notifiers is not None else build_notifiers(cfg.notifiers)
        try:
            out.deliveries = deliver_notifications(
                store, ns, delivery=cfg.delivery, now=now, sleep=sleep
            )
        finally:
            if owned:
                for n in ns:
                    n.close()
    return out
