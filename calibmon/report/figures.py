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
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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
# takes ~0.05–0.2 s, so a report with fewer than MIN_FIGURES_PER_WORKER figures a worker
# draws them in this process.
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


def _result(
    job: tuple[str, tuple, dict], fut: Future | None
) -> tuple[bytes | None, str | None, str | None]:
    """A job's :func:`_draw_job` result from its worker, or drawn here when it has none or
    its worker died (a killed worker must not lose the report)."""
    if fut is not None:
        try:
            return fut.result()
        except (BrokenProcessPool, CancelledError):
            log.debug("report: a figure worker failed; drawing here", exc_info=True)
    return _draw_job(job)


class Figures:
    """Collects the report's figures as (function, arguments) while the sections are
    written; sections insert a placeholder that :meth:`fill` replaces with the ``<figure>``.

    Drawing is CPU-bound and matplotlib single-threaded, and a full camera's ~45 figures are
    most of the report's time: once a report has enough figures to share
    (:data:`MIN_FIGURES_PER_WORKER` per worker), they go to :data:`FIGURE_WORKERS` forked
    processes as they are added, so the workers draw while the later sections are still
    being written. Failures are logged by :meth:`fill`, in this process.
    """

    def __init__(self) -> None:
        self.jobs: list[tuple[str, tuple, dict, str, str]] = []
        self.context = ""  # instrument and day_obs of the figures added now, for log lines
        self.contexts: list[str] = []
        self._futures: list[Future | None] = []
        self._pool: ProcessPoolExecutor | None = None

    def add(self, kind: str, *args: Any, caption: str, alt: str, **kwargs: Any) -> str:
        self.jobs.append((kind, args, kwargs, caption, alt))
        self.contexts.append(self.context)
        self._futures.append(None)
        enough = len(self.jobs) >= FIGURE_WORKERS * MIN_FIGURES_PER_WORKER
        if self._pool is None and FIGURE_WORKERS > 1 and enough:
            ctx = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(FIGURE_WORKERS, mp_context=ctx)
        if self._pool is not None:
            for i, fut in enumerate(self._futures):
                if fut is None:
                    self._futures[i] = self._pool.submit(_draw_job, self.jobs[i][:3])
        return f"\x00FIG{len(self.jobs) - 1}\x00"

    def truncate(self, n: int) -> None:
        """Forget the figures added after the first ``n`` (a section that failed)."""
        for fut in self._futures[n:]:
            if fut is not None:
                fut.cancel()
        del self.jobs[n:], self.contexts[n:], self._futures[n:]

    def _draw_all(self) -> list[tuple[bytes | None, str | None]]:
        """(PNG or None, None) or (None, reason) per figure, in order."""
        try:
            results = [
                _result(job[:3], fut) for job, fut in zip(self.jobs, self._futures, strict=True)
            ]
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None
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
