"""The HTML report: one self-contained file (every picture a base64 PNG, CSS inline, no
scripts, no external assets) that a person who does not read code can use.

Sections: header (instrument, day_obs, runs, software), at a glance (camera median and
sigma_MAD per metric, amps outside the specification), alerts, focal-plane maps per
metric, binned combined bias/dark/flat of the focal plane, distributions across amps, PTC
and linearity, trends of the last nights, and the per-amp table. Thresholds come from the
metric catalogue (``metrics/*.yaml``), never from here.

``write_report(settings, store, day_obs, path)`` is what ``calibmon report`` and ``calibmon demo`` call;
``calibmon report`` calls it too.

Nothing in the store's content can stop the report: each figure and each section is drawn
on its own, and one that cannot be drawn (degenerate data, a value matplotlib cannot
place) becomes a visible placeholder naming the reason, with a WARNING log line; the rest
of the report renders.

The parts: :mod:`~calibmon.report.nightdata` (the store's queries → ``NightData``),
:mod:`~calibmon.report.sections` (one function per section), :mod:`~calibmon.report.figures`
(queued figures drawn at the end), :mod:`~calibmon.report.thresholds` and
:mod:`~calibmon.report.text`; this module assembles them.

Templates: the page and each instrument's part are jinja2 templates
(``report/templates/*.html.j2``, autoescaping on) and the style sheet is
``report/static/report.css``. The page skeleton reads better as a template: its text is
HTML with a few holes, every hole is escaped unless it is a section's HTML (marked safe),
and nobody has to remember an escape. The sections stay Python functions that return HTML:
most of their text is computed cell by cell (classes from limits and alerts, numbers with
their errors, figure placeholders), the per-amp table of a full camera has ~50k cells that
a Python loop writes in a fraction of what a template loop costs, and each section's
escapes (``esc``) sit next to the value they escape.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from calibmon import __version__
from calibmon.catalogue import Catalogue, load_catalogue
from calibmon.io.atomic import atomic_write
from calibmon.report.figures import FIGURE_FUNCTIONS, Figures
from calibmon.report.nightdata import load_night
from calibmon.report.sections import (
    GLOSSARY,
    section_alerts,
    section_amp_table,
    section_glance,
    section_header,
    section_histograms,
    section_images,
    section_maps,
    section_ptc,
    section_trends,
)
from calibmon.report.text import day_text, placeholder, reason_of
from calibmon.store import queries

log = logging.getLogger(__name__)

DEFAULT_NIGHTS = 14

__all__ = ["DEFAULT_NIGHTS", "FIGURE_FUNCTIONS", "build_report", "write_report"]


@functools.cache
def _templates() -> jinja2.Environment:
    """The report's templates (package data), autoescaping every value not marked safe."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("calibmon.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )


@functools.cache
def _css() -> str:
    return resources.files("calibmon.report").joinpath("static/report.css").read_text("utf-8")


def _isolated(what: str, build: Callable[[], str], figs: Figures) -> str:
    """``build()``'s HTML, or a placeholder naming the reason when it raises (logged as a
    WARNING); figures the failed section had queued are dropped."""
    n_jobs = len(figs.jobs)
    try:
        return build()
    except Exception as exc:  # one section never takes the report down
        figs.truncate(n_jobs)
        reason = reason_of(exc)
        log.warning("report: section %s not drawn: %s", what, reason)
        log.debug("report: section %s", what, exc_info=True)
        return placeholder("This section", reason)


def _instrument_html(
    store,
    instrument: str,
    day_obs: str,
    cat: Catalogue,
    nights: int,
    metrics: Sequence[str] | None,
    figs: Figures,
) -> tuple[str, str]:
    """(HTML of the instrument's part, its navigation links)."""
    sid = re.sub(r"[^a-z0-9_-]", "-", instrument.lower())
    figs.context = f"{instrument} {day_obs}"
    env = _templates()
    part = env.get_template("instrument.html.j2")
    nav = env.get_template("nav.html.j2")
    base: dict[str, Any] = {"sid": sid, "instrument": instrument, "sections": []}
    try:
        nd = load_night(store, instrument, day_obs, cat, nights, metrics)
    except Exception as exc:  # the store's content for this instrument cannot be read
        reason = reason_of(exc)
        log.warning("report: %s %s not drawn: %s", instrument, day_obs, reason)
        log.debug("report: %s %s", instrument, day_obs, exc_info=True)
        summary = Markup(placeholder(f"The {instrument} part of the report", reason))
        return part.render(base, summary=summary, message=""), nav.render(base)
    summary = Markup(_isolated(f"{instrument} summary", lambda: section_header(nd), figs))
    if not nd.metrics:
        msg = "No amp measurements for this day."
        return part.render(base, summary=summary, message=msg), ""
    builds = [
        ("glance", "At a glance", lambda: section_glance(nd, cat)),
        ("alerts", f"Alerts ({len(nd.firing)} firing)", lambda: section_alerts(nd, cat)),
        ("maps", "Focal-plane maps", lambda: section_maps(nd, cat, figs)),
        ("images", "Combined bias, dark and flat", lambda: section_images(nd, store, figs)),
        ("hist", "Distributions across amps", lambda: section_histograms(nd, cat, figs)),
        ("ptc", "PTC and linearity", lambda: section_ptc(nd, store, figs)),
        ("trends", "Trends", lambda: section_trends(nd, store, cat, figs)),
        ("amps", "Per-amp table", lambda: section_amp_table(nd, cat)),
    ]
    sections = [
        {
            "key": key,
            "title": title,
            "html": Markup(_isolated(f"{instrument} {day_obs} {title}", build, figs)),
        }
        for key, title, build in builds
    ]
    ctx = base | {"sections": sections}
    return part.render(ctx, summary=summary, message=""), nav.render(ctx)


def build_report(
    store,
    day_obs: str | None = None,
    *,
    nights: int = DEFAULT_NIGHTS,
    instrument: str | None = None,
    metrics: Sequence[str] | None = None,
    catalogue: Catalogue | None = None,
) -> str:
    """The report's HTML text for ``day_obs`` (default: the latest day in the store).

    Every instrument with records that day gets its own part unless ``instrument`` is given;
    ``metrics`` limits the metrics shown; ``nights`` is the length of the trends.
    """
    figs = Figures()
    cat = catalogue or load_catalogue()
    if day_obs is None:
        days = queries.day_obs_list(store, instrument)
        day_obs = days[-1] if days else None
    instruments = (
        [instrument] if instrument else (queries.instruments_on(store, day_obs) if day_obs else [])
    )
    parts, navs = [], []
    for inst in instruments:
        b, n = _instrument_html(store, inst, day_obs, cat, nights, metrics, figs)
        parts.append(Markup(b))
        navs.append(Markup(n))
    title = f"calibmon report — {', '.join(instruments) or 'no data'} — " + (
        day_text(day_obs) if day_obs else "no day"
    )
    page = _templates().get_template("report.html.j2")
    return figs.fill(
        page.render(
            title=title,
            css=Markup(_css()),
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            version=__version__,
            nav=Markup("<br>").join(navs),
            parts=parts,
            glossary=GLOSSARY,
        )
    )


def write_report(
    settings,
    store,
    day_obs: str | None,
    path: str | Path,
    *,
    nights: int = DEFAULT_NIGHTS,
    instrument: str | None = None,
    metrics: Sequence[str] | None = None,
) -> Path:
    """Render the report and write it atomically to ``path`` (``calibmon report`` and
    ``calibmon demo``). Returns the path."""
    cat = load_catalogue(getattr(settings, "catalogue_dir", None) if settings else None)
    t0 = time.perf_counter()
    text = build_report(
        store,
        day_obs,
        nights=nights,
        instrument=instrument,
        metrics=metrics,
        catalogue=cat,
    )
    path = Path(path)
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), "wb")  # readable, 0666 & ~umask
    log.info("report %s written (%.1f MB, %.1f s)", path, len(text) / 1e6, time.perf_counter() - t0)
    return path
