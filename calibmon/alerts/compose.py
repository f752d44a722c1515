"""Composing notifications from alert rows: items, title, trends for the plots.

:func:`compose_notification` turns the rows of one group (a detector, or a rule on a
detector) into one :class:`~calibmon.alerts.notifiers.base.Notification`; its id is a
digest of what it says and when, so the same evaluation composes the same id.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

from calibmon.alerts.config import AlertsConfig
from calibmon.alerts.notifiers.base import (
    AlertItem,
    Notification,
    Trend,
    TrendAmp,
    dashboard_link,
)
from calibmon.alerts.rules import max_severity
from calibmon.store import alerts as db
from calibmon.store.sqlite import Store


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


def compose_notification(
    store: Store,
    cfg: AlertsConfig,
    kind: str,
    members: Sequence[db.AlertRow],
    day_obs: str,
    now_iso: str,
    *,
    with_trends: bool,
) -> Notification:
    """One notification of ``kind`` (firing, resolved, refresh) listing ``members``."""
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
