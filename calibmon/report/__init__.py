"""The HTML report (:mod:`calibmon.report.html`) with focal-plane maps
(:mod:`~calibmon.report.focal_plane`, geometry in :mod:`~calibmon.report.mosaic`) and plots
(:mod:`~calibmon.report.plots`); ``calibmon report`` and ``calibmon dashboards`` are
registered by :mod:`calibmon.report.cli`. Imports are lazy so the CLI starts fast."""

from __future__ import annotations

from typing import Any

__all__ = ["build_report", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from calibmon.report import html

        return getattr(html, name)
    raise AttributeError(name)
