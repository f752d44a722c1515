"""Generic JSON webhook: ``POST url`` with one notification as JSON.

Body (UTF-8 JSON, keys sorted)::

    {"version": "1", "status": "firing"|"resolved"|"test", "id": ..., "group_key": ...,
     "instrument": ..., "detector": 94, "detector_name": "R22_S11", "day_obs": ...,
     "severity": ..., "title": ..., "text": <plain-text rendering>,
     "dashboard_url": ..., "alerts": [<one object per rule × amp>], "trends": [...]?}

``trends`` only with ``include_trends: true``. With a secret (``secret_env`` or
``secret_file``) the request carries ``X-Calibmon-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes under the secret, which the receiver recomputes
(:func:`signature`) and compares with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import requests

from calibmon import __version__
from calibmon.alerts.config import WebhookConfig
from calibmon.alerts.notifiers.base import (
    Notification,
    NotifierRejected,
    render_text,
)
from calibmon.errors import NotifierError
from calibmon.http import status_is_transient
from calibmon.redact import redact

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Calibmon-Signature"


def signature(secret: str | bytes, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, body)>``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def payload(n: Notification, *, include_trends: bool = False) -> dict[str, Any]:
    """The JSON object posted for a notification."""
    d: dict[str, Any] = {
        "version": "1",
        "status": "firing" if n.kind == "refresh" else n.kind,
        "id": n.id,
        "group_key": n.group_key,
        "instrument": n.instrument,
        "detector": n.detector,
        "detector_name": n.detector_name,
        "day_obs": n.day_obs,
        "severity": n.severity,
        "created_at": n.created_at,
        "title": n.title,
        "text": render_text(n),
        "dashboard_url": n.dashboard_url,
        "alerts": [i.model_dump(mode="json") for i in n.items],
    }
    if include_trends:
        d["trends"] = [t.model_dump(mode="json") for t in n.trends]
    return d


class WebhookNotifier:
    """Posts each notification to one URL (refreshes are not sent: one post per change)."""

    def __init__(self, config: WebhookConfig, *, session: requests.Session | None = None) -> None:
        self.config = config
        self.name = config.name
        self._session = session or requests.Session()

    def body(self, n: Notification) -> bytes:
        data = payload(n, include_trends=self.config.include_trends)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def send(self, notification: Notification) -> None:
        if notification.kind == "refresh":
            return
        body = self.body(notification)
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "User-Agent": f"calibmon/{__version__}",
            "X-Calibmon-Event": notification.kind,
        }
        if self.config.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.config.secret.get_secret_value(), body)
        secrets = self.config.secret_values()
        url = redact(self.config.url, secrets)
        try:
            resp = self._session.post(
                self.config.url, data=body, headers=headers, timeout=self.config.timeout_s
            )
        except requests.RequestException as exc:
            raise NotifierError(
                self.name, redact(f"cannot reach {url}: {type(exc).__name__}: {exc}", secrets)
            ) from None
        if resp.status_code >= 300:
            msg = f"POST {url} answered {resp.status_code}: " + redact(
                resp.text[:300].strip(), secrets
            )
            if status_is_transient(resp.status_code):
                raise NotifierError(self.name, msg)
            raise NotifierRejected(self.name, msg)
        log.debug("webhook %s: delivered %s (%d bytes)", self.name, notification.id, len(body))

    def close(self) -> None:
        self._session.close()
