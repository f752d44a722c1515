"""The notifier seam: ``Notifier.send(notification) -> None`` and ``close()``.

A :class:`Notification` is what the engine puts in the ``notify_outbox``: the alert
transitions of one detector (or one rule on one detector) in one evaluation, listing the
amps — a raft-level problem is a handful of notifications, not hundreds — plus the trend
data the e-mail plots are drawn from, so a notifier never needs the store.

``kind`` is ``firing`` or ``resolved`` (a notification in calibmon's sense), ``refresh``
(the still-firing alerts re-posted after each evaluation so Alertmanager keeps them
active; only notifiers whose config has ``refresh`` get it) or ``test``
(``calibmon alerts test-notify``).

``send`` raises :class:`~calibmon.errors.NotifierError` when the notification was not
delivered and may be later (connection refused, timeout, 5xx, 429), and
:class:`NotifierRejected` (a subclass) when the receiver refused it and a retry won't help
(other 4xx). Messages never carry secrets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from calibmon.alerts.rules import SEVERITY_RANK, max_severity
from calibmon.errors import NotifierError as NotifierError  # re-exported
from calibmon.errors import NotifierRejected as NotifierRejected  # re-exported

if TYPE_CHECKING:
    from calibmon.alerts.config import NotifierConfig


class AlertItem(BaseModel):
    """One alert identity's state in a notification (one amp, one rule)."""

    model_config = ConfigDict(extra="ignore")

    rule: str
    kind: str
    metric: str
    unit: str = ""
    severity: str
    state: Literal["firing", "resolved"]
    instrument: str
    detector: int
    detector_name: str
    amp: str = ""
    value: float | None = None
    threshold: float | None = None
    baseline: float | None = None
    baseline_sigma: float | None = None
    band: float | None = None
    change: str = ""
    day_obs: str
    since_day_obs: str | None = None
    resolved_day_obs: str | None = None
    starts_at: str
    ends_at: str | None = None
    summary: str = ""
    description: str = ""
    action: str = ""
    spec: str = ""
    dashboard_url: str = ""
    suppressed: str = ""

    def where(self) -> str:
        return " ".join(p for p in (self.detector_name, self.amp) if p) or self.instrument


class TrendAmp(BaseModel):
    """One amp's recent values (day_obs, value) with its baseline and limit."""

    amp: str
    days: list[str]
    values: list[float]
    baseline: float | None = None
    baseline_sigma: float | None = None
    band: float | None = None
    threshold: float | None = None
    alerting: bool = True


class Trend(BaseModel):
    """Recent nights of one alerting metric on one detector (one plot)."""

    rule: str
    kind: str
    metric: str
    unit: str = ""
    instrument: str
    detector_name: str
    direction: str = "both"  # drift/increase: both | up | down
    low: float | None = None
    high: float | None = None
    amps: list[TrendAmp] = Field(default_factory=list)


class Notification(BaseModel):
    """What a notifier sends (the outbox payload)."""

    id: str
    kind: Literal["firing", "resolved", "refresh", "test"]
    group_key: str
    instrument: str
    detector: int = -1
    detector_name: str = ""
    day_obs: str
    severity: str
    created_at: str
    title: str
    items: list[AlertItem]
    trends: list[Trend] = Field(default_factory=list)
    dashboard_url: str = ""

    def for_severity(self, min_severity: str) -> Notification | None:
        """A copy keeping the items at or above ``min_severity``; None if none is left."""
        floor = SEVERITY_RANK.get(min_severity, 0)
        items = [i for i in self.items if SEVERITY_RANK.get(i.severity, 0) >= floor]
        if not items:
            return None
        if len(items) == len(self.items):
            return self
        rules = {i.rule for i in items}
        return self.model_copy(
            update={
                "items": items,
                "trends": [t for t in self.trends if t.rule in rules],
                "severity": max_severity(i.severity for i in items),
            }
        )


@runtime_checkable
class Notifier(Protocol):
    """Delivers notifications somewhere. ``name`` keys its rows in the outbox."""

    name: str
    config: NotifierConfig

    def send(self, notification: Notification) -> None:
        """Deliver it or raise NotifierError / NotifierRejected."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def dashboard_link(base: str, instrument: str, detector_name: str = "", amp: str = "") -> str:
    """The Grafana dashboard URL with ``var-instrument``/``var-detector``/``var-amp``."""
    if not base:
        return ""
    params = {"var-instrument": instrument}
    if detector_name:
        params["var-detector"] = detector_name
    if amp:
        params["var-amp"] = amp
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}{urlencode(params)}"


# --------------------------------------------------------------------------------------
# Plain-text rendering (e-mail body, webhook "text")
# --------------------------------------------------------------------------------------
def fmt(x: float | None, digits: int = 4) -> str:
    """Compact number or ``-``."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}g}"


def group_by_rule(items: Iterable[AlertItem]) -> dict[str, list[AlertItem]]:
    out: dict[str, list[AlertItem]] = {}
    for i in items:
        out.setdefault(i.rule, []).append(i)
    for v in out.values():
        v.sort(key=lambda i: (i.detector_name, i.amp))
    return out


def subject_line(n: Notification) -> str:
    """``FIRING critical: LSSTCam R22_S11 dead_amp on C10; gain_drift on 16 amps``."""
    state = {"firing": "FIRING", "resolved": "RESOLVED", "test": "TEST"}.get(n.kind, "FIRING")
    parts = []
    for rule, items in group_by_rule(n.items).items():
        amps = [i.amp for i in items if i.amp]
        if not amps:
            parts.append(rule)
        elif len(amps) <= 3:
            parts.append(f"{rule} on {', '.join(amps)}")
        else:
            parts.append(f"{rule} on {len(amps)} amps")
    where = f"{n.instrument} {n.detector_name}".strip()
    return f"{state} {n.severity}: {where} {'; '.join(parts)} (day_obs {n.day_obs})"


def rule_sections(n: Notification) -> Iterator[tuple[str, list[AlertItem], AlertItem, str]]:
    """Per rule of ``n``: (rule, its items, the first item, its unit or ``""`` when the
    unit says nothing: ``""`` or ``"1"``) — the sections of a rendered notification."""
    for rule, items in group_by_rule(n.items).items():
        first = items[0]
        yield rule, items, first, "" if first.unit in ("", "1") else first.unit


def render_text(n: Notification) -> str:
    """The notification as plain text: what changed, by how much, where, since when, what
    to do and where to look."""
    lines = [subject_line(n), ""]
    for rule, items, first, unit in rule_sections(n):
        unit_text = f" [{unit}]" if unit else ""
        lines.append(f"{rule} — {first.metric}{unit_text}, severity {first.severity}")
        if first.summary:
            lines.append(f"  {first.summary}")
        header = ("amp", "value", "threshold", "baseline ± σ", "change", "since", "state")
        rows = [header]
        for i in items:
            base = "-" if i.baseline is None else f"{fmt(i.baseline)} ± {fmt(i.baseline_sigma, 2)}"
            state = i.state if not i.resolved_day_obs else f"resolved {i.resolved_day_obs}"
            if i.suppressed:
                state += f" (silenced: {i.suppressed})"
            rows.append(
                (i.amp or "-", fmt(i.value), fmt(i.threshold), base, i.change or "-",
                 i.since_day_obs or "-", state)
            )  # fmt: skip
        widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        lines.append("")
        for i in items:
            lines.append(f"  - {i.description}")
        if first.action:
            lines.append(f"  What to do: {first.action}")
        if len(items) <= 4:
            for i in items:
                if i.dashboard_url:
                    lines.append(f"  Dashboard {i.where()}: {i.dashboard_url}")
        if first.spec:
            lines.append(f"  Spec: {first.spec}")
        lines.append("")
    if n.dashboard_url:
        lines.append(f"Dashboard: {n.dashboard_url}")
    return "\n".join(lines).rstrip() + "\n"
