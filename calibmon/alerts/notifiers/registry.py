"""Notifier type name → class: the one place that knows every concrete notifier.

``build_notifier(cfg)`` builds the notifier of one ``notifiers:`` entry. A new notifier
is one module plus one line in :data:`NOTIFIER_TYPES`. :mod:`calibmon.alerts.notifiers.base`
(the seam) imports none of the concrete notifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from calibmon.alerts.notifiers.alertmanager import AlertmanagerNotifier
from calibmon.alerts.notifiers.email import EmailNotifier
from calibmon.alerts.notifiers.webhook import WebhookNotifier
from calibmon.plugins import build_by_type

if TYPE_CHECKING:
    from calibmon.alerts.config import NotifierConfig
    from calibmon.alerts.notifiers.base import Notifier

NOTIFIER_TYPES: dict[str, Callable[[Any], Notifier]] = {
    "alertmanager": AlertmanagerNotifier,
    "webhook": WebhookNotifier,
    "email": EmailNotifier,
}


def build_notifier(cfg: NotifierConfig) -> Notifier:
    """The notifier for one ``notifiers:`` entry."""
    return build_by_type(NOTIFIER_TYPES, cfg, "notifier")


def build_notifiers(cfgs: Iterable[NotifierConfig]) -> list[Notifier]:
    """One notifier per ``notifiers:`` entry, in order."""
    return [build_notifier(c) for c in cfgs]
