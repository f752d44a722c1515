"""Alertmanager API v2 notifier: ``POST {url}/api/v2/alerts`` with a JSON list of alerts.

One Alertmanager alert per item (rule × amp):

- labels ``alertname`` (the rule), ``severity``, ``instrument``, ``detector`` (name),
  ``amp``, ``metric`` (+ ``extra_labels``). Amps of one detector share ``alertname`` and
  ``detector``, so a route with ``group_by: [alertname, instrument, detector]`` sends one
  page for a whole CCD (see ``deploy/alertmanager/alertmanager.yml``). Empty values
  (detector-level rules have no amp) are left out, as Prometheus does.
- annotations ``summary``, ``description``, ``value``, ``threshold``, ``baseline``,
  ``baseline_sigma``, ``change``, ``day_obs``, ``since_day_obs``, ``dashboard``,
  ``action`` and ``spec`` (strings; empty ones left out).
- ``generatorURL``: the amp's dashboard; ``startsAt``: when calibmon saw it fire.
- ``endsAt``: on resolve, when it resolved (in the past, so Alertmanager resolves it
  now). While firing, ``now + alert_ttl_s``: calibmon evaluates once a night and re-posts
  firing alerts after each evaluation (``refresh`` notifications); Alertmanager's
  default for a missing ``endsAt`` (``resolve_timeout``, 5 min) would resolve them minutes
  after they fired. Re-posting the same labels is a no-op for Alertmanager's routing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from calibmon import __version__
from calibmon.alerts.config import AlertmanagerConfig
from calibmon.alerts.notifiers.base import (
    AlertItem,
    Notification,
    NotifierRejected,
    fmt,
)
from calibmon.errors import NotifierError
from calibmon.http import status_is_transient
from calibmon.records import iso_utc_ms, parse_iso_utc
from calibmon.redact import redact

log = logging.getLogger(__name__)

TEST_ALERT_TTL_S = 300.0


class AlertmanagerNotifier:
    """Posts alerts to one Alertmanager (or an HA pair's load balancer)."""

    def __init__(
        self,
        config: AlertmanagerConfig,
        *,
        session: requests.Session | None = None,
        clock: Any = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._session = session or requests.Session()
        self._clock = clock or (lambda: datetime.now(UTC))
        if config.username and config.password:
            self._session.auth = (config.username, config.password.get_secret_value())
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"calibmon/{__version__}",
        }
        if config.token:
            self._headers["Authorization"] = f"Bearer {config.token.get_secret_value()}"

    @property
    def endpoint(self) -> str:
        return f"{self.config.url}/api/v2/alerts"

    def alerts_for(self, n: Notification) -> list[dict[str, Any]]:
        """The Alertmanager alerts (API v2 ``postableAlert``) of a notification."""
        now = self._clock()
        ttl = TEST_ALERT_TTL_S if n.kind == "test" else self.config.alert_ttl_s
        return [self._alert(i, now, ttl) for i in n.items]

    def _alert(self, i: AlertItem, now: datetime, ttl_s: float) -> dict[str, Any]:
        labels = {
            "alertname": i.rule,
            "severity": i.severity,
            "instrument": i.instrument,
            "detector": i.detector_name,
            "amp": i.amp,
            "metric": i.metric,
            **self.config.extra_labels,
        }
        annotations = {
            "summary": i.summary or i.description,
            "description": i.description,
            "value": _num(i.value, i.unit),
            "threshold": _num(i.threshold, i.unit),
            "baseline": _num(i.baseline, i.unit),
            "baseline_sigma": _num(i.baseline_sigma, i.unit),
            "change": i.change,
            "day_obs": i.day_obs,
            "since_day_obs": i.since_day_obs or "",
            "dashboard": i.dashboard_url,
            "action": i.action,
            "spec": i.spec,
        }
        if i.state == "resolved":
            # when it resolved, but never in the future (Alertmanager would keep it active)
            ended = parse_iso_utc(i.ends_at) if i.ends_at else now
            ends = iso_utc_ms(min(ended, now))
        else:
            ends = iso_utc_ms(now + timedelta(seconds=ttl_s))
        alert: dict[str, Any] = {
            "labels": {k: v for k, v in labels.items() if v},
            "annotations": {k: v for k, v in annotations.items() if v},
            "startsAt": i.starts_at,
            "endsAt": ends,
        }
        if i.dashboard_url:
            alert["generatorURL"] = i.dashboard_url
        return alert

    def send(self, notification: Notification) -> None:
        alerts = self.alerts_for(notification)
        if not alerts:
            return
        secrets = self.config.secret_values()
        try:
            resp = self._session.post(
                self.endpoint, json=alerts, headers=self._headers, timeout=self.config.timeout_s
            )
        except requests.RequestException as exc:
            msg = redact(f"cannot reach {self.endpoint}: {type(exc).__name__}: {exc}", secrets)
            raise NotifierError(self.name, msg) from None
        if resp.status_code >= 300:
            body = redact(resp.text[:300].strip(), secrets)
            msg = f"POST {self.endpoint} answered {resp.status_code}: {body}"
            if status_is_transient(resp.status_code):
                raise NotifierError(self.name, msg)
            raise NotifierRejected(self.name, msg)
        log.debug("alertmanager %s: posted %d alerts", self.name, len(alerts))

    def close(self) -> None:
        self._session.close()


def _num(x: float | None, unit: str) -> str:
    s = fmt(x, 6)
    if s == "-":
        return ""
    return f"{s} {unit}" if unit not in ("", "1") else s
