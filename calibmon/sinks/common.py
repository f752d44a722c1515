"""What the concrete sinks share: their configured basics, message length, redaction."""

from __future__ import annotations

from typing import Any

from calibmon.redact import redact

MAX_MESSAGE_CHARS = 500
"""Server messages are cut to this length (influxd quotes whole offending lines)."""


def clip_message(text: str) -> str:
    """``text`` cut to :data:`MAX_MESSAGE_CHARS` (with an ellipsis when cut)."""
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


class ConfiguredSink:
    """Base of the concrete sinks: ``name``, the outbox's ``batch_size``, ``max_attempts``
    and ``backoff_s`` from the config, and redaction with the sink's own secrets."""

    def __init__(self, cfg: Any) -> None:
        self.name: str = cfg.name
        self.batch_size: int = cfg.batch_size
        self.max_attempts: int = cfg.max_attempts
        self.backoff_s: tuple[float, ...] = tuple(cfg.backoff_s)
        self._secrets: list[str] = cfg.secret_values()

    def secret_values(self) -> list[str]:
        """Secret strings this sink could leak (for redaction)."""
        return list(self._secrets)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)
