"""Exceptions raised by calibmon.

The tree::

    CalibmonError
    ├── InputError          a raw file cannot be used (path + reason); the batch goes on
    ├── ConfigError         configuration or command-line value is wrong (exit code 2)
    ├── StoreError          the embedded store cannot be opened or is inconsistent
    ├── CalibError          a master calibration product is unusable (wrong shape, unknown id)
    ├── SinkError           a remote time-series sink failed
    │   ├── SinkUnavailable     transient: retry later (connection refused, 5xx, timeout)
    │   └── SinkRejected        permanent: the server refused the data (4xx); retry won't help
    └── NotifierError       an alert notification could not be delivered (retried later)
        └── NotifierRejected    the receiver refused it (4xx other than 408/429): no retry

Foreign errors (fitsio/astropy, urllib3/requests, influxdb-client, smtplib) are
translated into these at the boundary that calls the foreign library
(``raise ... from exc``), so callers decide from these types only.
"""

from __future__ import annotations

from pathlib import Path


class CalibmonError(Exception):
    """Base class of every calibmon error."""


class InputError(CalibmonError):
    """A raw input file is unusable.

    ``str(err)`` is one line, path first: ``rejected PATH: REASON``.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"rejected {self.path}: {reason}")


class ConfigError(CalibmonError):
    """Configuration (file, environment, flag) is invalid; one line naming the key."""


class StoreError(CalibmonError):
    """The embedded store cannot be used."""


class CalibError(CalibmonError):
    """A master calibration product is missing, unknown or has the wrong layout."""


class SinkError(CalibmonError):
    """A remote sink failed. ``sink`` names it; messages never carry secrets."""

    def __init__(self, sink: str, message: str) -> None:
        self.sink = sink
        super().__init__(f"sink {sink}: {message}")


class SinkUnavailable(SinkError):
    """Transient failure: the outbox keeps the records and retries later."""


class SinkRejected(SinkError):
    """Permanent failure: the server refused the batch (bad credentials, bad request)."""


class NotifierError(CalibmonError):
    """A notifier could not deliver an alert transition."""

    def __init__(self, notifier: str, message: str) -> None:
        self.notifier = notifier
        super().__init__(f"notifier {notifier}: {message}")


class NotifierRejected(NotifierError):
    """The receiver refused the notification (4xx other than 408/429): do not retry."""
