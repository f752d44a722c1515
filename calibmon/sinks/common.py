"""What the concrete sinks share: message length, redaction with their own secrets."""

from __future__ import annotations

from calibmon.redact import redact

MAX_MESSAGE_CHARS = 500
"""Server messages are cut to this length (influxd quotes whole offending lines)."""


def clip_message(text: str) -> str:
    """``text`` cut to :data:`MAX_MESSAGE_CHARS` (with an ellipsis when cut)."""
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


class RedactsSecrets:
    """Mixin of a sink holding secret strings in ``_secrets`` (list of str)."""

    _secrets: list[str]

    def secret_values(self) -> list[str]:
        """Secret strings this sink could leak (for redaction)."""
        return list(self._secrets)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)
