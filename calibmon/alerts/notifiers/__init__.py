"""Notifiers: one class per receiver type, built from ``notifiers:`` config entries."""

from calibmon.alerts.notifiers.base import (
    AlertItem,
    Notification,
    Notifier,
    NotifierRejected,
    Trend,
    TrendAmp,
    render_text,
)
from calibmon.alerts.notifiers.registry import build_notifier, build_notifiers

__all__ = [
    "AlertItem",
    "Notification",
    "Notifier",
    "NotifierRejected",
    "Trend",
    "TrendAmp",
    "build_notifier",
    "build_notifiers",
    "render_text",
]
