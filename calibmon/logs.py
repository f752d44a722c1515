"""Logging set-up (called once, by the CLI) and secret redaction on the handler
(:func:`calibmon.redact.redact`, the one redaction function)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable

from calibmon.redact import redact


class RedactingFilter(logging.Filter):
    """Applies :func:`redact` to every formatted message passing the handler."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg, self.secrets)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text, self.secrets)
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        d = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            d["exc"] = record.exc_text
        return json.dumps(d)


def configure_logging(
    level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = (), stream=None
) -> None:
    """Configure the root logger once: one stderr handler with redaction."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_calibmon", False):
            root.removeHandler(h)
    handler._calibmon = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("distributed", "urllib3", "matplotlib", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
