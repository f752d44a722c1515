"""Configuration models more than one layer needs (the lowest layer: imports pydantic only).

:class:`KnownBad` is a top-level key of ``calibmon.yaml`` (:class:`calibmon.config.Settings`)
that the alert engine reads (:class:`calibmon.alerts.config.AlertsConfig`); keeping it here
lets both import it without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class KnownBad(BaseModel):
    """An amp (or whole detector when ``amp`` is omitted) that never pages."""

    model_config = ConfigDict(extra="forbid")

    instrument: str = "LSSTCam"
    detector_name: str
    amp: str | None = None
    reason: str = ""


__all__ = ["KnownBad"]
