"""Evaluating a day: judge it, move each identity through its states, queue notifications.

:func:`evaluate` judges every rule on one day_obs (:mod:`calibmon.alerts.judge`), then in
one store transaction advances each identity ``(rule, instrument, detector, amp)``
(:mod:`calibmon.alerts.state`), records the transitions and queues one notification per
group and notifier (:mod:`calibmon.alerts.compose`) in ``notify_outbox``. See
:mod:`calibmon.alerts.engine` for the rules of the game (idempotence, known-bad, silences).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from calibmon import clock
from calibmon.alerts.compose import compose_notification
from calibmon.alerts.config import AlertsConfig, alerts_config
from calibmon.alerts.judge import judge_day, rule_params
from calibmon.alerts.notifiers.base import Notification
from calibmon.alerts.rules import Evaluation, Expectation
from calibmon.alerts.state import advance, new_snapshot
from calibmon.catalogue import Catalogue
from calibmon.store import alerts as db
from calibmon.store.sqlite import Store

log = logging.getLogger(__name__)


@dataclass
class Transition:
    """One identity changing state (or a firing alert being notified after a silence)."""

    rule: str
    instrument: str
    detector: int
    detector_name: str
    amp: str
    from_state: str
    to_state: str
    day_obs: str
    notify: str | None  # "firing" | "resolved" | None
    suppressed: str
    evaluation: Evaluation | None = None

    @property
    def identity(self) -> db.Identity:
        return (self.rule, self.instrument, self.detector, self.amp)


@dataclass
class EvaluationReport:
    """What one :func:`evaluate` did."""

    day_obs: str
    instrument: str | None
    evaluations: list[Evaluation] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    n_queued: int = 0
    n_firing: int = 0
    n_suppressed: int = 0
    n_skipped_older: int = 0

    @property
    def firing_evaluations(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.firing]

    def __str__(self) -> str:
        new = sum(
            1 for t in self.transitions if t.to_state == "firing" and t.from_state != "firing"
        )
        resolved = sum(1 for t in self.transitions if t.to_state == "resolved")
        scope = self.instrument or "all instruments"
        s = (
            f"alerts {self.day_obs} ({scope}): {len(self.evaluations)} evaluations, "
            f"{self.n_firing} firing ({new} new, {self.n_suppressed} known-bad/silenced), "
            f"{resolved} resolved; {len(self.notifications)} notifications"
        )
        if self.n_queued:
            s += f" ({self.n_queued} queued for notifiers)"
        return s


def evaluate(
    store: Store,
    catalogue: Catalogue,
    settings_alerts: Any,
    *,
    day_obs: str,
    instrument: str | None = None,
    now: datetime | None = None,
    expected: Sequence[Expectation] | None = None,
) -> EvaluationReport:
    """Evaluate every rule for ``day_obs``, update alert state and queue notifications.

    Parameters
    ----------
    store : Store
        Records are read from it; state, events and the outbox are written to it in one
        transaction.
    catalogue : Catalogue
        Metric definitions with their ``thresholds``.
    settings_alerts : Settings, AlertsConfig or mapping
        :class:`~calibmon.config.Settings` (its ``alerts``, ``notifiers``, ``known_bad``,
        ``dashboard_url``), an :class:`AlertsConfig`, or just the ``alerts:`` mapping.
    day_obs : str
        ``YYYYMMDD``; evaluating it again is idempotent.
    instrument : str, optional
        Only this instrument's records (and refreshes).
    now : datetime, optional
        Time of the evaluation (``startsAt``/``endsAt``, when queued); default: the
        service clock (:func:`calibmon.clock.now`).
    expected : sequence of Expectation, optional
        Calibration types expected for ``day_obs`` (staleness); default ``alerts.expected``.
        Pass ``[]`` to skip staleness (e.g. after a partial run).
    """
    cfg = alerts_config(settings_alerts)
    now = now or clock.now()
    report = EvaluationReport(day_obs, instrument)
    if not cfg.enabled:
        return report
    params = rule_params(catalogue, cfg)
    exp = list(cfg.expected if expected is None else expected)
    t0 = time.perf_counter()
    evaluations = judge_day(store, params, cfg, day_obs, instrument=instrument, expected=exp)
    report.evaluations = evaluations
    kh = {p.rule: (p.for_evaluations, p.clear_for, p.threshold.level) for p in params}
    for e in exp:
        kh[f"stale_{e.calib_type}"] = (e.for_evaluations, 1, "detector")
    with store.transaction():
        _apply(store, cfg, report, kh, now)
    log.info("%s (%.2f s)", report, time.perf_counter() - t0)
    return report


def _suppression(ev: Evaluation, cfg: AlertsConfig, silences: Sequence[db.Silence]) -> str:
    for kb in cfg.known_bad:
        if (
            kb.instrument.lower() == ev.instrument.lower()
            and kb.detector_name == ev.detector_name
            and (kb.amp is None or kb.amp == ev.amp)
        ):
            return f"known bad: {kb.reason}" if kb.reason else "known bad"
    for s in silences:
        if s.matches(ev.rule, ev.instrument, ev.detector_name, ev.amp):
            return f"silenced until {s.until_day_obs}: {s.reason}"
    return ""


def _last(ev: Evaluation, since: str | None) -> dict[str, Any]:
    return {
        "value": ev.value, "threshold": ev.threshold, "baseline": ev.baseline,
        "baseline_sigma": ev.baseline_sigma, "band": ev.band, "direction": ev.direction,
        "n_baseline": ev.n_baseline, "change": ev.change_text(),
        "description": ev.describe(since), "summary": ev.summary, "action": ev.action,
        "spec": ev.spec, "day_obs": ev.day_obs, "low": ev.low, "high": ev.high,
        "physical_filter": ev.physical_filter, "firing": ev.firing, "clear": ev.clear,
        "sides": ev.sides, "error": ev.error, "sigma_dev": ev.sigma_dev,
    }  # fmt: skip


def _apply(
    store: Store,
    cfg: AlertsConfig,
    report: EvaluationReport,
    kh: dict[str, tuple[int, int, str]],
    now: datetime,
) -> None:
    day_obs = report.day_obs
    now_iso = clock.iso(now)
    evaluations = report.evaluations
    rows = db.load_states(store, identities=[e.identity for e in evaluations])
    silences = db.silences(store, active_on=day_obs)
    touched: list[tuple[db.AlertRow, Transition | None]] = []
    for ev in evaluations:
        k_for, h_clear, level = kh.get(ev.rule, (1, cfg.clear_for, "amp"))
        cur = rows.get(ev.identity) or db.AlertRow(*ev.identity)
        data = cur.data
        last_day = data.get("last_day_obs")
        if last_day and day_obs < last_day:
            report.n_skipped_older += 1
            continue
        cur_snap = data.get("snap") or new_snapshot()
        base = data["prev"] if last_day == day_obs and "prev" in data else cur_snap
        verdict = "fire" if ev.firing else ("clear" if ev.clear else "hold")
        snap = advance(base, verdict, day_obs, k_for, h_clear)
        if not cur.exists and snap["state"] == "inactive" and snap == new_snapshot():
            continue  # nothing to remember
        suppressed = _suppression(ev, cfg, silences)
        notified = bool(data.get("notified", False))
        notify = None
        if snap["state"] == "firing":
            if not notified and not suppressed:
                notify, notified = "firing", True
        elif notified:
            notify, notified = "resolved", False
        started_at = data.get("started_at")
        if snap["state"] == "firing" and cur.state != "firing":
            started_at = now_iso
        ended_at = data.get("ended_at")
        if snap["state"] != "firing" and cur.state == "firing":
            ended_at = now_iso
        since = snap.get("since_day_obs") or data.get("snap", {}).get("since_day_obs")
        new_data = {
            "metric": ev.metric, "kind": ev.kind, "unit": ev.unit, "severity": ev.severity,
            "level": level, "detector_name": ev.detector_name, "snap": snap,
            "prev": base, "last_day_obs": day_obs, "notified": notified,
            "suppressed": suppressed, "started_at": started_at, "ended_at": ended_at,
            "last": _last(ev, since),
        }  # fmt: skip
        from_state = cur.state
        row = db.AlertRow(*ev.identity, state=snap["state"], data=new_data, exists=cur.exists)
        db.save_state(store, row, now_iso)
        trans = None
        if snap["state"] != from_state or notify:
            trans = Transition(
                ev.rule, ev.instrument, ev.detector, ev.detector_name, ev.amp, from_state,
                snap["state"], day_obs, notify, suppressed, ev,
            )  # fmt: skip
            if snap["state"] != from_state:
                db.add_event(
                    store, ev.identity, from_state, snap["state"], day_obs,
                    {"value": ev.value, "threshold": ev.threshold, "baseline": ev.baseline,
                     "suppressed": suppressed, "notify": notify},
                    now_iso,
                )  # fmt: skip
                log.info(
                    "alert %s %s %s: %s -> %s (day_obs %s): %s%s",
                    ev.rule, ev.instrument, ev.where(), from_state, snap["state"], day_obs,
                    ev.describe(since), f" [{suppressed}]" if suppressed else "",
                )  # fmt: skip
            report.transitions.append(trans)
        touched.append((row, trans))

    scope = db.load_states(store, states=["firing"], instrument=report.instrument)
    report.n_firing = len(scope)
    report.n_suppressed = sum(1 for r in scope.values() if r.data.get("suppressed"))

    # Group the notified transitions: one notification per detector (or rule+detector).
    groups: dict[tuple, list[db.AlertRow]] = defaultdict(list)
    for row, trans in touched:
        if trans is None or trans.notify is None:
            continue
        key: tuple = (trans.notify, row.instrument, row.detector)
        if cfg.group_by == "rule":
            key += (row.rule,)
        groups[key].append(row)
    for key, members in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        kind = key[0]
        n = compose_notification(store, cfg, kind, members, day_obs, now_iso, with_trends=True)
        report.notifications.append(n)
        for nc in cfg.notifiers:
            f = n.for_severity(nc.min_severity)
            if f is not None:
                db.enqueue(store, nc.name, f.model_dump_json(), now_iso)
                report.n_queued += 1

    # Keep Alertmanager's copy alive: re-post every notified, unsuppressed firing alert.
    refreshers = [nc for nc in cfg.notifiers if nc.refresh]
    if refreshers:
        active = [
            r for r in scope.values() if r.data.get("notified") and not r.data.get("suppressed")
        ]
        group_key = f"refresh:{report.instrument or '*'}"
        for nc in refreshers:
            db.drop_undelivered(store, nc.name, "refresh", group_key)
            if not active:
                continue
            n = compose_notification(
                store, cfg, "refresh", active, day_obs, now_iso, with_trends=False
            )
            n = n.model_copy(update={"group_key": group_key})
            f = n.for_severity(nc.min_severity)
            if f is not None:
                db.enqueue(store, nc.name, f.model_dump_json(), now_iso)
