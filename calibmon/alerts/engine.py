"""The alert engine: rules over a day's records → state per identity → notifications.

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

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from calibmon.alerts.config import AlertsConfig, DeliveryConfig, alerts_config
from calibmon.alerts.notifiers.base import (
    AlertItem,
    Notification,
    Notifier,
    NotifierRejected,
    Trend,
    TrendAmp,
    dashboard_link,
)
from calibmon.alerts.rules import (
    Evaluation,
    Expectation,
    RuleParams,
    Sample,
    Subject,
    evaluate_baseline_rule,
    evaluate_fixed,
    evaluate_staleness,
    max_severity,
)
from calibmon.catalogue import Catalogue
from calibmon.errors import NotifierError
from calibmon.logs import redact
from calibmon.store import alerts as db
from calibmon.store.sqlite import Store

log = logging.getLogger(__name__)

STATES: tuple[str, ...] = ("inactive", "pending", "firing", "resolved")
_AT_REST = {"inactive", "resolved"}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------------------
# Rule parameters
# --------------------------------------------------------------------------------------
def rule_params(catalogue: Catalogue, cfg: AlertsConfig) -> list[RuleParams]:
    """Every enabled catalogue threshold with ``alerts:`` overrides applied
    (rule override > global ``alerts`` value > catalogue)."""
    out = []
    known = set()
    for m in catalogue:
        for t in m.thresholds:
            known.add(t.rule)
            ov = cfg.rules.get(t.rule)
            if ov is not None and not ov.enabled:
                continue

            def pick(name: str, *fallbacks: Any, _ov: Any = ov) -> Any:
                v = getattr(_ov, name, None) if _ov is not None else None
                if v is not None:
                    return v
                for f in fallbacks:
                    if f is not None:
                        return f
                return None

            out.append(
                RuleParams(
                    metric=m.name,
                    unit=m.unit,
                    threshold=t,
                    severity=pick("severity", t.severity),
                    baseline_nights=pick("baseline_nights", cfg.baseline_nights, t.baseline_nights),
                    min_baseline_nights=pick(
                        "min_baseline_nights", cfg.min_baseline_nights, t.min_baseline_nights
                    ),
                    for_evaluations=pick("for_evaluations", t.for_evaluations),
                    clear_for=pick("clear_for", t.clear_for, cfg.clear_for),
                    clear_band=pick("clear_band", t.clear_band, cfg.clear_band),
                    pool=cfg.pool_sigma and t.pool == "detector",
                    spec=m.spec,
                    nsigma=cfg.nsigma,
                )
            )
    unknown = set(cfg.rules) - known
    if unknown:
        log.warning("alerts.rules names unknown rule(s): %s", ", ".join(sorted(unknown)))
    return out


# --------------------------------------------------------------------------------------
# Judging a day
# --------------------------------------------------------------------------------------
def _subject(r: db.ValueRow) -> Subject:
    return Subject(r.instrument, r.detector, r.detector_name, r.amp, r.vendor)


def _sample(r: db.ValueRow) -> Sample:
    return Sample(r.day_obs, r.value, r.physical_filter, r.error)


def _detector_number(instrument: str, name: str) -> int:
    from calibmon.io.detectors import detector_number

    return detector_number(instrument, name)


def judge_day(
    store: Store,
    params: Sequence[RuleParams],
    cfg: AlertsConfig,
    day_obs: str,
    *,
    instrument: str | None = None,
    expected: Sequence[Expectation] = (),
) -> list[Evaluation]:
    """Evaluations of every rule on the stored records of ``day_obs`` (no state).

    A record whose provenance says ``lower_limit: true`` (a full well or PTC turnoff from
    a ramp without roll-off) is not a value: no rule judges it and no baseline holds it.
    """
    today = db.day_values(store, day_obs, {p.metric for p in params}, instrument)
    by_metric: dict[str, list[db.ValueRow]] = defaultdict(list)
    for r in today:
        if not r.lower_limit:
            by_metric[r.metric].append(r)
    base_metrics = {p.metric for p in params if p.kind != "fixed" and p.metric in by_metric}
    history: dict[tuple[str, str, str, int], list[db.ValueRow]] = defaultdict(list)
    for r in db.history_values(
        store, base_metrics, before_day_obs=day_obs, n_nights=cfg.lookback_nights,
        instrument=instrument,
    ):  # fmt: skip
        if not r.lower_limit:
            history[(r.metric, r.level, r.instrument, r.detector)].append(r)

    out: list[Evaluation] = []
    for p in params:
        rows = [
            r for r in by_metric.get(p.metric, ()) if p.applies_to(r.instrument, r.vendor, r.level)
        ]
        if not rows:
            continue
        if p.kind == "fixed":
            out.extend(evaluate_fixed(p, _subject(r), _sample(r), day_obs) for r in rows)
            continue
        groups: dict[tuple[str, int], dict[str, db.ValueRow]] = defaultdict(dict)
        for r in rows:
            groups[(r.instrument, r.detector)][r.amp] = r
        for (inst, det), amp_rows in groups.items():
            hist: dict[str, list[Sample]] = defaultdict(list)
            for h in history.get((p.metric, p.threshold.level, inst, det), ()):
                if p.applies_to(h.instrument, h.vendor, h.level):
                    hist[h.amp].append(_sample(h))
            out.extend(
                evaluate_baseline_rule(
                    p,
                    {a: _subject(r) for a, r in amp_rows.items()},
                    hist,
                    {a: _sample(r) for a, r in amp_rows.items()},
                    day_obs,
                )
            )
    exp = [e for e in expected if instrument is None or e.instrument == instrument]
    if exp:
        present = db.present_calib_types(store, day_obs)
        out.extend(evaluate_staleness(exp, present, day_obs, _detector_number))
    return out


# --------------------------------------------------------------------------------------
# State machine (pure)
# --------------------------------------------------------------------------------------
def new_snapshot() -> dict[str, Any]:
    return {"state": "inactive", "pending": 0, "clear": 0, "since_day_obs": None,
            "firing_day_obs": None, "resolved_day_obs": None}  # fmt: skip


def advance(
    snap: dict[str, Any], verdict: str, day_obs: str, k_for: int, h_clear: int
) -> dict[str, Any]:
    """Next snapshot after one evaluation; ``verdict`` is ``fire``, ``clear`` or ``hold``
    (inside the limits but not back inside the narrower band)."""
    s = dict(snap)
    st = s["state"]
    if st in _AT_REST:
        if verdict == "fire":
            s.update(pending=1, clear=0, since_day_obs=day_obs, resolved_day_obs=None)
            s["state"] = "pending"
            if k_for <= 1:
                s.update(state="firing", firing_day_obs=day_obs)
    elif st == "pending":
        if verdict == "fire":
            s["pending"] += 1
            if s["pending"] >= k_for:
                s.update(state="firing", firing_day_obs=day_obs, clear=0)
        else:
            s.update(state="inactive", pending=0, since_day_obs=None)
    elif st == "firing":
        if verdict == "clear":
            s["clear"] += 1
            if s["clear"] >= h_clear:
                s.update(state="resolved", resolved_day_obs=day_obs, pending=0)
        else:
            s["clear"] = 0
    return s


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------
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
        Wall-clock time of the evaluation (``startsAt``/``endsAt``); default: now.
    expected : sequence of Expectation, optional
        Calibration types expected for ``day_obs`` (staleness); default ``alerts.expected``.
        Pass ``[]`` to skip staleness (e.g. after a partial run).
    """
    cfg = alerts_config(settings_alerts)
    now = now or datetime.now(UTC)
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
    now_iso = _iso(now)
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
        n = _notification(store, cfg, kind, members, day_obs, now_iso, with_trends=True)
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
            n = _notification(store, cfg, "refresh", active, day_obs, now_iso, with_trends=False)
            n = n.model_copy(update={"group_key": group_key})
            f = n.for_severity(nc.min_severity)
            if f is not None:
                db.enqueue(store, nc.name, f.model_dump_json(), now_iso)


def item_from_row(row: db.AlertRow, cfg: AlertsConfig, state: str | None = None) -> AlertItem:
    """The notification item of one alert row (its last evaluation and state)."""
    d = row.data
    last = d.get("last", {})
    snap = d.get("snap", {})
    st = state or ("firing" if row.state == "firing" else "resolved")
    return AlertItem(
        rule=row.rule, kind=d.get("kind", ""), metric=d.get("metric", ""),
        unit=d.get("unit", ""), severity=d.get("severity", "warning"), state=st,
        instrument=row.instrument, detector=row.detector,
        detector_name=d.get("detector_name", ""), amp=row.amp, value=last.get("value"),
        threshold=last.get("threshold"), baseline=last.get("baseline"),
        baseline_sigma=last.get("baseline_sigma"), band=last.get("band"),
        change=last.get("change", ""), day_obs=last.get("day_obs") or d.get("last_day_obs", ""),
        since_day_obs=snap.get("since_day_obs"),
        resolved_day_obs=snap.get("resolved_day_obs") if st == "resolved" else None,
        starts_at=d.get("started_at") or row.updated_at,
        ends_at=d.get("ended_at") if st == "resolved" else None,
        summary=last.get("summary", ""), description=last.get("description", ""),
        action=last.get("action", ""), spec=last.get("spec", ""),
        dashboard_url=dashboard_link(
            cfg.dashboard_url, row.instrument, d.get("detector_name", ""), row.amp
        ),
        suppressed=d.get("suppressed", ""),
    )  # fmt: skip


def _notification(
    store: Store,
    cfg: AlertsConfig,
    kind: str,
    members: Sequence[db.AlertRow],
    day_obs: str,
    now_iso: str,
    *,
    with_trends: bool,
) -> Notification:
    state = "firing" if kind in ("firing", "refresh") else "resolved"
    items = [item_from_row(r, cfg, state) for r in members]
    items.sort(key=lambda i: (i.instrument, i.detector_name, i.rule, i.amp))
    instruments = sorted({i.instrument for i in items})
    detectors = sorted({(i.detector, i.detector_name) for i in items})
    inst = instruments[0] if len(instruments) == 1 else ",".join(instruments)
    det, det_name = detectors[0] if len(detectors) == 1 else (-1, "")
    rules = sorted({i.rule for i in items})
    group_key = f"{inst}/{det_name or '-'}"
    if cfg.group_by == "rule" and len(rules) == 1:
        group_key += f"/{rules[0]}"
    n_amps = len({(i.detector_name, i.amp) for i in items})
    title = f"{', '.join(rules)} on {inst} {det_name or ''}".strip()
    if n_amps > 1:
        title += f" ({n_amps} amps)"
    digest = hashlib.sha256(
        "|".join(
            [kind, group_key, day_obs, now_iso, *(f"{i.rule}:{i.amp}" for i in items)]
        ).encode()
    ).hexdigest()[:24]
    trends = _trends(store, cfg, members, day_obs) if with_trends else []
    return Notification(
        id=digest, kind=kind, group_key=group_key, instrument=inst, detector=det,  # type: ignore[arg-type]
        detector_name=det_name, day_obs=day_obs,
        severity=max_severity(i.severity for i in items), created_at=now_iso, title=title,
        items=items, trends=trends,
        dashboard_url=dashboard_link(cfg.dashboard_url, inst, det_name) if len(instruments) == 1 else "",
    )  # fmt: skip


def _trends(
    store: Store, cfg: AlertsConfig, members: Sequence[db.AlertRow], day_obs: str
) -> list[Trend]:
    by_rule: dict[str, list[db.AlertRow]] = defaultdict(list)
    for r in members:
        if r.data.get("kind") != "staleness":
            by_rule[r.rule].append(r)
    out = []
    for rule, rows in sorted(by_rule.items()):
        first = rows[0]
        d = first.data
        level = d.get("level", "amp")
        series = db.series_values(
            store, d.get("metric", ""), instrument=first.instrument, detector=first.detector,
            level=level, until_day_obs=day_obs, n_nights=cfg.trend_nights,
            amps=[r.amp for r in rows],
        )  # fmt: skip
        amps = []
        for r in sorted(rows, key=lambda r: r.amp):
            pts = series.get(r.amp, [])
            last = r.data.get("last", {})
            amps.append(
                TrendAmp(
                    amp=r.amp,
                    days=[p[0] for p in pts],
                    values=[p[1] for p in pts],
                    baseline=last.get("baseline"),
                    baseline_sigma=last.get("baseline_sigma"),
                    band=last.get("band"),
                    threshold=last.get("threshold"),
                )
            )
        last = d.get("last", {})
        out.append(
            Trend(
                rule=rule,
                kind=d.get("kind", ""),
                metric=d.get("metric", ""),
                unit=d.get("unit", ""),
                instrument=first.instrument,
                detector_name=d.get("detector_name", ""),
                direction=_trend_direction(d.get("kind", ""), rows),
                low=last.get("low"),
                high=last.get("high"),
                amps=amps,
            )
        )
    return out


def _trend_direction(kind: str, rows: Sequence[db.AlertRow]) -> str:
    if kind == "increase":
        return "up"
    sides = {r.data.get("last", {}).get("sides", "both") for r in rows}
    return sides.pop() if len(sides) == 1 else "both"


# --------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------
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
    """Send what the outbox holds for each notifier; never raises.

    Rows go out oldest first. A :class:`NotifierError` is retried ``max_attempts`` times
    with ``backoff_s`` between; if it persists, the row waits ``retry_after_s`` (doubling
    with each failed call, up to ``max_retry_after_s``) and that notifier stops for now, so
    a later "resolved" never overtakes its "firing". :class:`NotifierRejected` gives the
    row up at once (the receiver refused it) and goes on. Rows older than
    ``expire_after_s`` are given up. Any other exception from a notifier is treated as
    retryable and logged.
    """
    cfg = delivery or DeliveryConfig()
    reports = []
    for notifier in notifiers:
        reports.append(_deliver_one(store, notifier, cfg, now, sleep, limit))
    return reports


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
    t_now = now or datetime.now(UTC)
    gave_up = db.give_up_older(store, name, _iso(t_now - timedelta(seconds=cfg.expire_after_s)))
    if gave_up:
        log.warning("notifier %s: gave up %d notifications older than %.0f s", name, gave_up,
                    cfg.expire_after_s)  # fmt: skip
    delivered, error = 0, None
    now_iso = _iso(t_now)
    for row in db.pending_notifications(store, name, limit):
        if row.next_attempt_at > now_iso:
            break  # waiting for its retry; later rows must not overtake it
        try:
            n = Notification.model_validate_json(row.payload)
        except ValueError as exc:
            db.mark_failed(store, row.id, f"unreadable payload: {exc}"[:500], db.GAVE_UP)
            gave_up += 1
            continue
        err: str | None = None
        rejected = False
        for attempt in range(1, cfg.max_attempts + 1):
            t0 = time.perf_counter()
            try:
                notifier.send(n)
            except NotifierRejected as exc:
                err, rejected = str(exc), True
                break
            except NotifierError as exc:
                err = str(exc)
            except Exception as exc:  # a bug in a notifier must not stop the run
                err = redact(f"notifier {name}: unexpected {type(exc).__name__}: {exc}", secrets)
                log.warning("%s", err, exc_info=True)
            else:
                err = None
                break
            if attempt < cfg.max_attempts:
                wait = (
                    cfg.backoff_s[min(attempt - 1, len(cfg.backoff_s) - 1)] if cfg.backoff_s else 0
                )
                log.warning("%s; retry %d/%d in %.1f s", err, attempt, cfg.max_attempts - 1, wait)
                sleep(wait)
        seconds = time.perf_counter() - t0
        if err is None:
            db.mark_sent(store, row.id, _iso(datetime.now(UTC) if now is None else t_now))
            delivered += 1
            if n.kind != "refresh":
                log.info("notifier=%s notification=%s kind=%s items=%d status=ok seconds=%.3f",
                         name, n.id, n.kind, len(n.items), seconds)  # fmt: skip
            continue
        err = redact(err, secrets)
        if rejected:
            db.mark_failed(store, row.id, err, db.GAVE_UP, tries=1)
            gave_up += 1
            log.error("notifier %s refused notification %s, given up: %s", name, n.id, err)
            continue
        failed_calls = row.attempts // max(cfg.max_attempts, 1)
        delay = min(cfg.retry_after_s * (2**failed_calls), cfg.max_retry_after_s)
        db.mark_failed(store, row.id, err, _iso(t_now + timedelta(seconds=delay)), cfg.max_attempts)
        log.warning("notifier %s: delivery stopped, retry in %.0f s: %s", name, delay, err)
        error = err
        break
    pending = sum(
        1
        for r in db.outbox_rows(store, name)
        if r.delivered_at is None and r.next_attempt_at != db.GAVE_UP
    )
    return NotifyReport(name, delivered, pending, gave_up, error)


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
        from calibmon.alerts.notifiers.base import build_notifiers

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
