"""The report's figures: sections queue (function, arguments) jobs and get a placeholder;
:meth:`Figures.fill` draws them all (in worker processes when there are many) and puts each
PNG, inline as base64, where its placeholder was."""

from __future__ import annotations

import base64
import importlib
import logging
import multiprocessing
import os
import re
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from calibmon.report.plots import png_bytes
from calibmon.report.text import esc, placeholder, reason_of

log = logging.getLogger("calibmon.report.html")  # one logger for the report's warnings


FIGURE_FUNCTIONS = {
    "map": "calibmon.report.focal_plane:metric_map_figure",
    "mosaic": "calibmon.report.focal_plane:image_mosaic_figure",
    "hist": "calibmon.report.plots:histogram_figure",
    "trend": "calibmon.report.plots:trend_figure",
    "ptc": "calibmon.report.plots:ptc_figure",
}


def render_png(kind: str, args: tuple, kwargs: dict, dpi: int = 100) -> bytes | None:
    """Build one figure (``FIGURE_FUNCTIONS[kind](*args, **kwargs)``) and return its PNG."""
    module, func = FIGURE_FUNCTIONS[kind].split(":")
    fig = getattr(importlib.import_module(module), func)(*args, **kwargs)
    return None if fig is None else png_bytes(fig, dpi)


# Worker processes drawing the figures (forked, so nothing is imported twice); one figure
# takes ~0.1–0.3 s, so fewer than MIN_FIGURES_PER_WORKER figures a worker are drawn here.
FIGURE_WORKERS = min(2, os.cpu_count() or 1)
MIN_FIGURES_PER_WORKER = 6


def _draw_job(job: tuple[str, tuple, dict]) -> tuple[bytes | None, str | None, str | None]:
    """(PNG or None, None, None), or (None, reason, traceback) when the figure could not be
    drawn (one figure never takes the report down)."""
    kind, args, kwargs = job
    try:
        return render_png(kind, args, kwargs), None, None
    except Exception as exc:
        return None, reason_of(exc), traceback.format_exc()


class Figures:
    """Collects the report's figures as (function, arguments) while the sections are
    written, and draws them at the end; sections insert a placeholder that :meth:`fill`
    replaces with the ``<figure>`` (so the drawing could move to worker processes without
    touching the sections)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, tuple, dict, str, str]] = []
        self.context = ""  # instrument and day_obs of the figures added now, for log lines
        self.contexts: list[str] = []

    def add(self, kind: str, *args: Any, caption: str, alt: str, **kwargs: Any) -> str:
        self.jobs.append((kind, args, kwargs, caption, alt))
        self.contexts.append(self.context)
        return f"\x00FIG{len(self.jobs) - 1}\x00"

    def _draw_all(self) -> list[tuple[bytes | None, str | None]]:
        """(PNG or None, None) or (None, reason) per figure, in order. Many figures are drawn
        by :data:`FIGURE_WORKERS` forked processes (matplotlib is CPU-bound and single
        threaded; a full camera's ~45 figures are most of the report's time); failures are
        logged here, in the parent, whichever process drew them."""
        jobs = [(kind, args, kwargs) for kind, args, kwargs, _, _ in self.jobs]
        workers = min(FIGURE_WORKERS, len(jobs) // MIN_FIGURES_PER_WORKER)
        if workers > 1:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                results = list(pool.map(_draw_job, jobs))
        else:
            results = [_draw_job(j) for j in jobs]
        drawn: list[tuple[bytes | None, str | None]] = []
        for i, (png, reason, trace) in enumerate(results):
            if reason is not None:
                where, alt = self.contexts[i], self.jobs[i][4]
                log.warning("report %s: figure %s not drawn: %s", where, alt, reason)
                log.debug("report %s: figure %s\n%s", where, alt, trace)
            drawn.append((png, reason))
        return drawn

    def fill(self, text: str) -> str:
        t0 = time.perf_counter()
        drawn = self._draw_all()
        log.debug("report: %d figures in %.1f s", len(drawn), time.perf_counter() - t0)

        def html_of(i: int) -> str:
            png, reason = drawn[i]
            _, _, _, caption, alt = self.jobs[i]
            if reason is not None:
                return (
                    f"<figure>{placeholder(f'The figure ({alt})', reason)}"
                    f"<figcaption>{caption}</figcaption></figure>"
                )
            if png is None:
                return ""
            uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            return (
                f'<figure><img src="{uri}" alt="{esc(alt)}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )

        return re.sub("\x00FIG(\\d+)\x00", lambda m: html_of(int(m.group(1))), text)
