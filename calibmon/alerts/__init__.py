"""Alerts when calibrations drift (DESIGN.md §6).

- :mod:`.rules` — pure rules: fixed limits, drift against the amp's own baseline,
  increase in counts, verification failing, dead amp, staleness.
- :mod:`.engine` — :func:`evaluate_and_deliver`, joining :mod:`.judge` (rules on a day),
  :mod:`.state` (the state machine), :mod:`.evaluate` (state per identity in the store,
  hysteresis, known-bad, silences, queuing), :mod:`.compose` (notifications, trends) and
  :mod:`.deliver` (the notification outbox, retried with backoff on the service clock).
- :mod:`.notifiers` — Alertmanager API v2, JSON webhook, SMTP e-mail.
- :mod:`.config` — ``notifiers:`` and ``alerts:`` configuration models.
- ``calibmon alerts`` is the CLI's ``cli/alerts.py``; alerts after a run are evaluated by
  :func:`calibmon.service.postrun.evaluate_run_alerts`.
"""

from calibmon.alerts.config import AlertsConfig, alerts_config
from calibmon.alerts.engine import (
    AlertRunReport,
    EvaluationReport,
    deliver_notifications,
    evaluate,
    evaluate_and_deliver,
)
from calibmon.alerts.rules import Evaluation, Expectation

__all__ = [
    "AlertRunReport",
    "AlertsConfig",
    "Evaluation",
    "EvaluationReport",
    "Expectation",
    "alerts_config",
    "deliver_notifications",
    "evaluate",
    "evaluate_and_deliver",
]
