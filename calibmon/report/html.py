"""The HTML report: one self-contained file (every picture a base64 PNG, CSS inline, no
scripts, no external assets) that a person who does not read code can use.

Sections: header (instrument, day_obs, runs, software), at a glance (camera median and
sigma_MAD per metric, amps outside the specification), alerts, focal-plane maps per
metric, binned combined bias/dark/flat of the focal plane, distributions across amps, PTC
and linearity, trends of the last nights, and the per-amp table. Thresholds come from the
metric catalogue (``metrics/*.yaml``), never from here.

``write_report(settings, store, day_obs, path)`` is the hook ``calibmon demo`` calls;
``calibmon report`` calls it too.

Nothing in the store's content can stop the report: each figure and each section is drawn
on its own, and one that cannot be drawn (degenerate data, a value matplotlib cannot
place) becomes a visible placeholder naming the reason, with a WARNING log line; the rest
of the report renders.
"""

from __future__ import annotations

import html
import logging
import math
import multiprocessing
import os
import re
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calibmon import __version__
from calibmon.catalogue import CALIB_TYPES, Catalogue, MetricDef, load_catalogue
from calibmon.io.detectors import AMP_ORDER_8, AMP_ORDER_16, is_wavefront
from calibmon.io.detectors import detector_name as name_of_detector
from calibmon.report.plots import MAX_DETECTOR_LINES
from calibmon.science.robust import sigma_mad
from calibmon.store import images as store_images
from calibmon.store import queries

log = logging.getLogger(__name__)

DEFAULT_NIGHTS = 14
FULL_TABLE_OPEN_MAX_ROWS = 64  # larger per-amp tables start folded
PTC_FIGURES_PER_DETECTOR_MAX = 12  # more detectors: one camera-wide PTC figure

CALIB_TYPE_TITLES = {
    "bias": "Bias — zero-second exposures: electronic offset and read noise",
    "dark": "Dark — shutter closed: dark current and hot defects",
    "flat": "Flat — uniform illumination: gain, cold defects, charge transfer",
    "ptc": "PTC and linearity — a ramp of flat pairs: gain, noise, full well, linearity",
    "defects": "Defects — bad pixels from darks and flats",
    "verify": "Verification — the day's exposures against the certified master calibrations",
}

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#fafafa;line-height:1.4}
main{max-width:1360px;margin:0 auto;padding:12px 24px 60px}
header{background:#0b3d5c;color:#fff;padding:18px 24px}
header h1{margin:0 0 6px;font-size:26px} header p{margin:2px 0;font-size:14px;opacity:.9}
h2{border-bottom:2px solid #0b3d5c;padding-bottom:4px;margin-top:38px}
h3{margin:24px 0 4px} p.note{color:#444;font-size:14px;max-width:1000px}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#e8eef2;position:sticky;top:0} td.l,th.l{text-align:left}
td.bad{background:#ffd9d9;font-weight:bold} td.alert{outline:2px solid #d62728}
tr.firing td{background:#fff0f0}
.kv td{text-align:left} .kv th{text-align:left;background:#f0f0f0;position:static}
figure{margin:0 8px 14px 0;background:#fff;border:1px solid #ddd;padding:6px;
display:inline-table;vertical-align:top}
figure img{max-width:100%;height:auto;display:block}
figcaption{display:table-caption;caption-side:bottom;font-size:13px;color:#333;padding:4px 6px;
background:#fff;border:1px solid #ddd;border-top:none}
.grid{display:flex;flex-wrap:wrap;gap:8px} .grid figure{margin:0}
nav{background:#fff;border:1px solid #ddd;padding:8px 14px;font-size:14px;margin-top:14px}
nav a{margin-right:14px} .pill{display:inline-block;padding:1px 8px;border-radius:9px;
font-size:12px;color:#fff} .firing{background:#d62728} .ok{background:#2ca02c}
.warn{background:#ff7f0e} details summary{cursor:pointer;font-weight:bold;margin:8px 0}
.scroll{max-height:720px;overflow:auto;border:1px solid #ddd;display:inline-block}
.placeholder{background:#fff8e5;border:1px dashed #c98a00;color:#5c3d00;padding:14px 18px;
font-size:14px;min-width:280px;max-width:640px}
"""

GLOSSARY = (
    (
        "amp",
        "one of the 16 amplifiers (8 on a wavefront sensor) that read out a CCD; every "
        "number here is measured per amp, then summarised per detector and camera",
    ),
    ("adu", "analogue-to-digital unit: the raw counts the camera writes"),
    ("electron (e-)", "charge in the pixel; adu × gain (electron/adu)"),
    (
        "median, σ_MAD",
        "the middle value across amps, and the robust scatter 1.4826 × median "
        "absolute deviation (insensitive to a few outliers), as Rubin reports "
        "its calibration metrics",
    ),
    (
        "fixed threshold",
        "a specification limit from the camera requirements or cp_verify; "
        "amps beyond it are shaded red in the tables",
    ),
    (
        "drift alert",
        "a change of an amp against its own recent nights (not drawn as a line, "
        "since it depends on the amp's history)",
    ),
    ("firing alert", "an alert that is currently active; its amps are outlined in red on the maps"),
)


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        if not math.isfinite(v):
            return "–"
        return f"{v:.4g}"
    return str(v)


def _fmt_pm(v: Any, err: Any) -> str:
    """``value ± error`` with the error to two significant digits and the value to the
    same decimal place; just the value when there is no usable error."""
    if err is None or not isinstance(v, float | np.floating) or not math.isfinite(v):
        return _fmt(v)
    try:
        e = float(err)
    except (TypeError, ValueError):
        return _fmt(v)
    if not math.isfinite(e) or e <= 0:
        return _fmt(v)
    decimals = 1 - math.floor(math.log10(e))  # 2 significant digits of the error
    if 0 <= decimals <= 8 and abs(v) < 1e9:
        return f"{v:.{decimals}f} ± {e:.{decimals}f}"
    return f"{v:.4g} ± {e:.2g}"


def _reason(exc: BaseException) -> str:
    """One line for a reader: the message of a :class:`FigureUnavailable`, else the
    exception's type and message (at most 300 characters)."""
    from calibmon.report.plots import FigureUnavailable

    text = str(exc) if isinstance(exc, FigureUnavailable) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def placeholder(what: str, reason: str) -> str:
    """The visible stand-in for a figure or section that could not be drawn."""
    return f'<div class="placeholder"><b>{_e(what)} could not be drawn:</b> {_e(reason)}</div>'


def _day(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:]}" if len(d) == 8 else d


# -- thresholds from the catalogue --------------------------------------------------------


def fixed_thresholds(
    mdef: MetricDef | None, instrument: str, vendor: str | None = None, level: str = "amp"
) -> list[tuple[str, float]]:
    """(label, value) of the metric's fixed thresholds that apply to ``instrument`` (and
    ``vendor`` when given; vendor-specific limits are labelled with the vendor otherwise)."""
    out: list[tuple[str, float]] = []
    if mdef is None:
        return out
    for t in mdef.thresholds_for(instrument, vendor, level, kind="fixed"):
        tag = f"{t.vendor} " if t.vendor and vendor is None else ""
        if t.low is not None:
            out.append((f"{tag}low {t.low:g}", float(t.low)))
        if t.high is not None:
            out.append((f"{tag}high {t.high:g}", float(t.high)))
    return out


class SpecLimits:
    """:func:`out_of_spec` for many amps: the fixed limits that apply are looked up once per
    (metric, vendor) instead of once per value (a full camera has ~50k amp values)."""

    def __init__(self, cat: Catalogue, instrument: str) -> None:
        self.cat = cat
        self.instrument = instrument
        self._limits: dict[tuple[str, str], list[tuple[float | None, float | None]]] = {}

    def limits(self, metric: str, vendor: str) -> list[tuple[float | None, float | None]]:
        """(low, high) of every fixed limit of ``metric`` for an amp of ``vendor``."""
        key = (metric, vendor)
        lim = self._limits.get(key)
        if lim is None:
            mdef = self.cat.metrics.get(metric)
            ts = mdef.thresholds_for(self.instrument, vendor, kind="fixed") if mdef else []
            lim = self._limits[key] = [(t.low, t.high) for t in ts]
        return lim

    def breaks(self, metric: str, vendor: str, value: float) -> bool:
        """True when ``value`` breaks a fixed limit of ``metric`` for this vendor."""
        if not math.isfinite(value):
            return False
        return any(
            (lo is not None and value < lo) or (hi is not None and value > hi)
            for lo, hi in self.limits(metric, vendor)
        )


def out_of_spec(mdef: MetricDef | None, instrument: str, vendor: str, value: float) -> bool:
    """True when ``value`` breaks a fixed threshold of the metric for this amp's vendor."""
    if mdef is None or not math.isfinite(value):
        return False
    for t in mdef.thresholds_for(instrument, vendor, kind="fixed"):
        if (t.low is not None and value < t.low) or (t.high is not None and value > t.high):
            return True
    return False


def threshold_text(mdef: MetricDef | None) -> str:
    """Human text of every threshold rule of a metric, for tables."""
    if mdef is None:
        return ""
    parts = []
    for t in mdef.thresholds:
        who = "".join(f" [{x}]" for x in (t.vendor, t.instrument) if x)
        if t.kind == "fixed":
            rng = []
            if t.low is not None:
                rng.append(f"≥ {t.low:g}")
            if t.high is not None:
                rng.append(f"≤ {t.high:g}")
            parts.append(f"spec {' and '.join(rng)}{who}")
        elif t.kind == "drift":
            bits = []
            if t.relative:
                bits.append(f"{100 * t.relative:g} %")
            if t.nsigma:
                bits.append(f"{t.nsigma:g} σ")
            if t.absolute:
                bits.append(f"{t.absolute:g}")
            parts.append(f"drift > {' / '.join(bits)}{who}")
        else:
            parts.append(f"increase > {t.absolute:g}{who}")
    return "; ".join(parts)


# -- data of one instrument-night ------------------------------------------------------------


@dataclass
class NightData:
    instrument: str
    day_obs: str
    amps: pd.DataFrame  # queries.day_amp_values
    metrics: list[str]
    amps_of: dict[str, list[str]]  # detector_name -> amps present
    vendor_of: dict[str, str]
    firing: list[queries.AlertState]
    firing_amps: dict[str, set[tuple[str, str]]]  # metric -> {(det, amp)}
    events: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    software: list[str]
    config_hashes: list[str]
    nights: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def _rule_metric(cat: Catalogue) -> dict[str, str]:
    return {t.rule: m.name for m in cat for t in m.thresholds}


def _alert_detector_name(instrument: str, det: int | None) -> str:
    if det is None:
        return ""
    try:
        return name_of_detector(instrument, det)
    except (IndexError, KeyError):
        return str(det)


def load_night(
    store,
    instrument: str,
    day_obs: str,
    cat: Catalogue,
    nights: int,
    metrics: Sequence[str] | None = None,
) -> NightData:
    amps = queries.day_amp_values(store, instrument, day_obs)  # values and their errors
    if metrics is not None:
        amps = amps[amps["metric"].isin(list(metrics))].reset_index(drop=True)
    present = set(amps["metric"]) if not amps.empty else set()
    order = {ct: i for i, ct in enumerate(CALIB_TYPES)}
    cat_order = {m.name: i for i, m in enumerate(cat)}
    ct_of = dict(zip(amps["metric"], amps["calib_type"], strict=False)) if not amps.empty else {}
    ordered = sorted(
        present, key=lambda m: (order.get(ct_of.get(m, ""), 99), cat_order.get(m, 999), m)
    )
    amps_of: dict[str, list[str]] = {}
    vendor_of: dict[str, str] = {}
    if not amps.empty:
        for (det, amp), vend in amps.groupby(["detector_name", "amp"])["vendor"].first().items():
            amps_of.setdefault(det, []).append(amp)
            vendor_of[det] = vend or vendor_of.get(det, "")
    for det in amps_of:  # draw every amp of a present detector, even unmeasured ones
        full = AMP_ORDER_8 if is_wavefront(det) else AMP_ORDER_16
        amps_of[det] = list(full)
    firing = queries.alert_states(store, instrument=instrument, state="firing")
    rule_metric = _rule_metric(cat)
    firing_amps: dict[str, set[tuple[str, str]]] = {}
    for a in firing:
        metric = a.data.get("metric") or rule_metric.get(a.rule, "")
        det = a.data.get("detector_name") or _alert_detector_name(instrument, a.detector)
        if a.amp:
            firing_amps.setdefault(metric, set()).add((det, a.amp))
            firing_amps.setdefault("*", set()).add((det, a.amp))
    events = queries.alert_events(store, instrument=instrument, limit=50)
    runs = queries.runs_for_day(store, instrument, day_obs)
    prov = store.query(
        "SELECT DISTINCT json_extract(provenance,'$.software_version') AS sv,"
        " json_extract(provenance,'$.config_hash') AS ch FROM records"
        " WHERE instrument=? AND day_obs=?",
        (instrument, day_obs),
    )
    software = sorted({r["sv"] for r in prov if r["sv"]})
    hashes = sorted({r["ch"] for r in prov if r["ch"]})
    all_days = [d for d in queries.day_obs_list(store, instrument) if d <= day_obs]
    return NightData(
        instrument,
        day_obs,
        amps,
        ordered,
        amps_of,
        vendor_of,
        firing,
        firing_amps,
        events,
        runs,
        software,
        hashes,
        all_days[-nights:],
    )


# -- sections ----------------------------------------------------------------------------------


FIGURE_FUNCTIONS = {
    "map": "calibmon.report.focal_plane:metric_map_figure",
    "mosaic": "calibmon.report.focal_plane:image_mosaic_figure",
    "hist": "calibmon.report.plots:histogram_figure",
    "trend": "calibmon.report.plots:trend_figure",
    "ptc": "calibmon.report.plots:ptc_figure",
}


def render_png(kind: str, args: tuple, kwargs: dict, dpi: int = 100) -> bytes | None:
    """Build one figure (``FIGURE_FUNCTIONS[kind](*args, **kwargs)``) and return its PNG."""
    import importlib

    from calibmon.report.plots import png_bytes

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
        return None, _reason(exc), traceback.format_exc()


class _Figures:
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
        import base64

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
                f'<figure><img src="{uri}" alt="{_e(alt)}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )

        return re.sub("\x00FIG(\\d+)\x00", lambda m: html_of(int(m.group(1))), text)


def _unit(nd: NightData, cat: Catalogue, metric: str) -> str:
    if metric in cat:
        return cat.unit(metric)
    u = nd.amps.loc[nd.amps["metric"] == metric, "unit"]
    return str(u.iloc[0]) if len(u) else ""


def _title(metric: str) -> str:
    return metric.replace("_", " ").capitalize()


def section_header(nd: NightData) -> str:
    n_det = len(nd.amps_of)
    n_amp = int(nd.amps[["detector_name", "amp"]].drop_duplicates().shape[0]) if len(nd.amps) else 0
    runs = []
    for r in nd.runs:
        bits = [f"<b>{_e(r.get('run_id'))}</b>"]
        if r.get("started_at"):
            bits.append(f"started {_e(r['started_at'][:19].replace('T', ' '))} UTC")
        if r.get("status"):
            bits.append(_e(r["status"]))
        if r.get("n_files"):
            bits.append(f"{r['n_files']} files")
        if r.get("n_rejected"):
            bits.append(f"{r['n_rejected']} rejected")
        bits.append(f"{r['n_day_records']} records")
        runs.append(", ".join(bits))
    rows = [
        ("Instrument", _e(nd.instrument)),
        ("Observing day (day_obs)", _e(_day(nd.day_obs))),
        ("Detectors", f"{n_det} ({n_amp} amps)"),
        ("Metrics", str(len(nd.metrics))),
        ("Runs", "<br>".join(runs) or "–"),
        ("Measured with calibmon", _e(", ".join(nd.software) or "–")),
        ("Configuration hash", _e(", ".join(nd.config_hashes) or "–")),
        ("Firing alerts", str(len(nd.firing))),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def section_glance(nd: NightData, cat: Catalogue) -> str:
    head = (
        "<tr><th class=l>metric</th><th class=l>unit</th><th>median</th><th>σ_MAD</th>"
        "<th>min</th><th>max</th><th>amps</th><th>outside spec</th><th>firing</th>"
        "<th class=l>thresholds</th></tr>"
    )
    rows = []
    spec = SpecLimits(cat, nd.instrument)
    for m in nd.metrics:
        sub = nd.amps[nd.amps["metric"] == m]
        v = sub["value"].to_numpy(float)
        med = float(np.median(v))
        smad = sigma_mad(v)
        mdef = cat.metrics.get(m)
        n_bad = sum(
            spec.breaks(m, vend, val)
            for vend, val in zip(sub["vendor"].tolist(), v.tolist(), strict=True)
        )
        n_fire = len(nd.firing_amps.get(m, ()))
        rows.append(
            f'<tr><td class=l><a href="#m-{m}">{_e(m)}</a></td><td class=l>{_e(_unit(nd, cat, m))}'
            f"</td><td>{_fmt(med)}</td><td>{_fmt(smad)}</td><td>{_fmt(float(v.min()))}</td>"
            f"<td>{_fmt(float(v.max()))}</td><td>{len(v)}</td>"
            f"<td{' class=bad' if n_bad else ''}>{n_bad}</td>"
            f"<td{' class=bad' if n_fire else ''}>{n_fire}</td>"
            f"<td class=l>{_e(threshold_text(mdef))}</td></tr>"
        )
    return (
        '<p class="note">One line per metric: the median over all amps measured this day and '
        "its robust scatter σ_MAD, the extremes, how many amps break a specification limit "
        "(fixed threshold) and how many have a firing alert.</p>"
        f"<table>{head}{''.join(rows)}</table>"
    )


def section_alerts(nd: NightData, cat: Catalogue) -> str:
    rule_metric = _rule_metric(cat)
    rule_def = {t.rule: t for m in cat for t in m.thresholds}
    out = [
        '<p class="note">Alerts are raised by calibmon’s alert engine from the thresholds of '
        "the metric catalogue and from drifts against each amp’s own history. A firing alert "
        "stays until the condition clears. Known-bad amps do not page.</p>"
    ]
    if not nd.firing:
        out.append('<p><span class="pill ok">no firing alerts</span></p>')
    else:
        head = (
            "<tr><th class=l>severity</th><th class=l>rule</th><th class=l>metric</th>"
            "<th class=l>detector</th><th class=l>amp</th><th>value</th><th>threshold</th>"
            "<th>baseline</th><th class=l>day_obs</th><th class=l>since</th>"
            "<th class=l>what it means</th></tr>"
        )
        rows = []
        for a in nd.firing:
            d = a.data
            t = rule_def.get(a.rule)
            metric = d.get("metric") or rule_metric.get(a.rule, "")
            det = d.get("detector_name") or _alert_detector_name(nd.instrument, a.detector)
            sev = d.get("severity") or (t.severity if t else "")
            rows.append(
                "<tr class=firing>"
                f"<td class=l><span class='pill {'firing' if sev == 'critical' else 'warn'}'>"
                f"{_e(sev or 'alert')}</span></td><td class=l>{_e(a.rule)}</td>"
                f"<td class=l>{_e(metric)}</td><td class=l>{_e(det or 'camera')}</td>"
                f"<td class=l>{_e(a.amp or '')}</td><td>{_fmt(d.get('value'))}</td>"
                f"<td>{_fmt(d.get('threshold'))}</td><td>{_fmt(d.get('baseline'))}</td>"
                f"<td class=l>{_e(d.get('day_obs', ''))}</td>"
                f"<td class=l>{_e(str(d.get('since') or a.updated_at)[:19])}</td>"
                f"<td class=l>{_e(d.get('summary') or (t.summary if t else ''))}</td></tr>"
            )
        out.append(f"<table>{head}{''.join(rows)}</table>")
    if nd.events:
        rows = []
        for ev in nd.events[:30]:
            det = _alert_detector_name(
                nd.instrument, None if ev["detector"] < 0 else ev["detector"]
            )
            rows.append(
                f"<tr><td class=l>{_e(str(ev['at'])[:19])}</td><td class=l>{_e(ev['rule'])}</td>"
                f"<td class=l>{_e(det)}</td><td class=l>{_e(ev['amp'])}</td>"
                f"<td class=l>{_e(ev['from_state'])} → {_e(ev['to_state'])}</td>"
                f"<td class=l>{_e(ev.get('day_obs') or '')}</td></tr>"
            )
        out.append(
            "<details><summary>Recent alert transitions</summary><table><tr><th class=l>at</th>"
            "<th class=l>rule</th><th class=l>detector</th><th class=l>amp</th>"
            f"<th class=l>change</th><th class=l>day_obs</th></tr>{''.join(rows)}</table></details>"
        )
    return "".join(out)


def section_maps(nd: NightData, cat: Catalogue, figs: _Figures) -> str:
    out = [
        '<p class="note">Each CCD is drawn at its place in the focal plane (raft and slot), '
        "split into its amplifiers (top row C00–C07, bottom row C10–C17). The colour is the "
        "amp’s value; grey hatching means the amp was not measured; a red outline marks an "
        "amp with a firing alert. Dashed outlines show slots of the same rafts that have no "
        "data in this report.</p>"
    ]
    current = None
    for m in nd.metrics:
        sub = nd.amps[nd.amps["metric"] == m]
        ct = str(sub["calib_type"].iloc[0])
        if ct != current:
            current = ct
            out.append(f"<h3>{_e(CALIB_TYPE_TITLES.get(ct, ct))}</h3>")
        mdef = cat.metrics.get(m)
        unit = _unit(nd, cat, m)
        values = {
            (d, a): float(v)
            for d, a, v in zip(sub["detector_name"], sub["amp"], sub["value"], strict=True)
        }
        desc = _e(mdef.description) if mdef else ""
        th = threshold_text(mdef)
        cap = f"<b id='m-{m}'>{_e(m)}</b> [{_e(unit)}]: {desc}" + (
            f" <i>Thresholds: {_e(th)}.</i>" if th else ""
        )
        out.append(
            figs.add(
                "map",
                nd.instrument,
                values,
                nd.amps_of,
                title=f"{_title(m)} ({unit})",
                unit=unit,
                firing=nd.firing_amps.get(m, set()),
                thresholds=fixed_thresholds(mdef, nd.instrument),
                caption=cap,
                alt=f"focal-plane map of {m}",
            )
        )
    return "".join(out)


def section_images(nd: NightData, store, figs: _Figures) -> str:
    names = {}
    explanations = {
        "bias": "Combined bias of the day (overscan corrected, adu): should be flat and close "
        "to zero; stripes or gradients show bias structure, bright amps an offset.",
        "dark": "Combined dark of the day (electron/s): hot pixels and columns show as bright "
        "specks and lines; glowing edges or amps point to amplifier glow.",
        "flat": "Combined flat of the day, normalised per amp: vignetting, tree rings, dust "
        "donuts and dead columns show here; amps with a different gain stand out.",
    }
    out = [
        '<p class="note">Binned pictures of the day’s combined calibration frames, the amps '
        "assembled into CCDs with their readout orientation (DETSEC) and the CCDs into the "
        "focal plane.</p>"
    ]
    any_image = False
    for kind in store_images.IMAGE_KINDS:
        images = store_images.amp_images(store, nd.instrument, nd.day_obs, kind)
        if not images:
            continue
        any_image = True
        for im in images:
            if im.detector not in names:
                names[im.detector] = _alert_detector_name(nd.instrument, im.detector)
        out.append(
            figs.add(
                "mosaic",
                nd.instrument,
                kind,
                images,
                dict(names),
                dict(nd.vendor_of),
                title=f"Combined {kind} — {_day(nd.day_obs)}",
                caption=_e(explanations[kind]),
                alt=f"combined {kind} mosaic",
            )
        )
    if not any_image:
        out.append("<p>No binned images stored for this day.</p>")
    return "".join(out)


def section_histograms(nd: NightData, cat: Catalogue, figs: _Figures) -> str:
    out = [
        '<p class="note">How each metric is distributed over the amps, stacked by sensor '
        "vendor (ITL and e2v CCDs differ). The black line is the median; dashed red lines are "
        "specification limits.</p><div class=grid>"
    ]
    for m in nd.metrics:
        sub = nd.amps[nd.amps["metric"] == m]
        unit = _unit(nd, cat, m)
        by_vendor = {
            str(v): g["value"].to_numpy(float) for v, g in sub.groupby("vendor", sort=True)
        }
        out.append(
            figs.add(
                "hist",
                _title(m),
                unit,
                by_vendor,
                fixed_thresholds(cat.metrics.get(m), nd.instrument),
                caption=f"{_e(m)} [{_e(unit)}]",
                alt=f"histogram of {m}",
            )
        )
    return "".join(out) + "</div>"


def section_ptc(nd: NightData, store, figs: _Figures) -> str:
    curves = store_images.ptc_curves(store, nd.instrument, nd.day_obs)
    out = [
        '<p class="note">Photon transfer curves from the day’s ramp of flat pairs: the '
        "variance of each pair against its mean signal. At low signal the read noise "
        "dominates, then shot noise (slope 1, whose level gives the gain); the curve bends "
        "down at high signal (brighter-fatter effect) and drops at saturation (the turnoff). "
        "The middle panel shows how well the fit (Astier et al. 2019) follows the data; the "
        "right panel how far the signal departs from a straight line in exposure time.</p>"
    ]
    if not curves:
        return out[0] + "<p>No PTC ramp was taken this day.</p>"
    by_det: dict[str, list[store_images.PtcCurve]] = {}
    for c in curves:
        by_det.setdefault(c.detector_name, []).append(c)
    if len(by_det) <= PTC_FIGURES_PER_DETECTOR_MAX:
        for det, cs in sorted(by_det.items()):
            out.append(
                figs.add(
                    "ptc",
                    cs,
                    f"PTC — {det} ({len(cs)} amps)",
                    caption=f"PTC of {_e(det)}, one colour per amp.",
                    alt=f"PTC of {det}",
                )
            )
    else:
        out.append(
            figs.add(
                "ptc",
                curves,
                f"PTC — {len(by_det)} detectors, {len(curves)} amps",
                caption="All amps overlaid; the per-amp numbers are in the PTC maps and the "
                "per-amp table.",
                alt="PTC of all amps",
            )
        )
    return "".join(out)


def section_trends(nd: NightData, store, cat: Catalogue, figs: _Figures) -> str:
    days = nd.nights
    summ = queries.summary_values(store, nd.instrument, days)
    # camera rows as {metric: {day_obs: (median, σ_MAD)}}, detector rows grouped by metric:
    # one pass over the frame instead of a boolean mask per metric and a .loc per night
    cam_of: dict[str, dict[str, tuple[float, float]]] = {}
    is_cam = (summ["level"] == "camera").to_numpy()
    for d, m, v, s in zip(
        summ["day_obs"][is_cam].tolist(),
        summ["metric"][is_cam].tolist(),
        summ["value"][is_cam].tolist(),
        summ["sigma_mad"][is_cam].tolist(),
        strict=True,
    ):
        cam_of.setdefault(m, {})[d] = (float(v), float(s))
    dets_of = dict(iter(summ[summ["level"] == "detector"].groupby("metric", sort=False)))
    need_fallback = [m for m in nd.metrics if set(cam_of.get(m, {})) != set(days)]
    amp_days = queries.amp_values_of_days(store, nd.instrument, days, need_fallback)
    out = [
        f'<p class="note">The last {len(days)} night(s) with data up to {_day(nd.day_obs)} '
        "(highlighted). Black: the median over all amps with a band of ± σ_MAD; thin lines: "
        "each detector’s median (when there are at most 20 detectors); dashed red: "
        "specification limits.</p><div class=grid>"
    ]
    for m in nd.metrics:
        cam = cam_of.get(m, {})
        dets = dets_of.get(m, summ.iloc[:0])
        amp_m = amp_days[amp_days["metric"] == m] if m in need_fallback else None
        med, sig = [], []
        for d in days:
            if d in cam:
                med.append(cam[d][0])
                sig.append(cam[d][1])
            elif amp_m is not None and (amp_m["day_obs"] == d).any():
                v = amp_m.loc[amp_m["day_obs"] == d, "value"].to_numpy(float)
                mm = float(np.median(v))
                med.append(mm)
                sig.append(sigma_mad(v))
            else:
                med.append(math.nan)
                sig.append(math.nan)
        det_series: dict[str, tuple[list[str], list[float]]] = {}
        if not dets.empty:
            # beyond MAX_DETECTOR_LINES detectors the figure draws no per-detector lines
            if dets["detector_name"].nunique() <= MAX_DETECTOR_LINES:
                for name, g in dets.groupby("detector_name"):
                    det_series[str(name)] = (g["day_obs"].tolist(), g["value"].tolist())
        elif amp_m is not None and not amp_m.empty:
            g2 = amp_m.groupby(["detector_name", "day_obs"])["value"].median()
            for (name, d), v in g2.items():
                det_series.setdefault(str(name), ([], []))
                det_series[str(name)][0].append(d)
                det_series[str(name)][1].append(float(v))
        unit = _unit(nd, cat, m)
        out.append(
            figs.add(
                "trend",
                _title(m),
                unit,
                list(days),
                med,
                sig,
                det_series,
                fixed_thresholds(cat.metrics.get(m), nd.instrument),
                highlight_day=nd.day_obs,
                caption=f"{_e(m)} [{_e(unit)}]",
                alt=f"trend of {m}",
            )
        )
    return "".join(out) + "</div>"


def section_amp_table(nd: NightData, cat: Catalogue) -> str:
    if nd.amps.empty:
        return "<p>No amp measurements.</p>"
    wide = nd.amps.pivot_table(
        index=["detector_name", "amp"], columns="metric", values="value", aggfunc="last"
    )
    metrics = [m for m in nd.metrics if m in wide.columns]
    errors = None
    if "error" in nd.amps.columns and nd.amps["error"].notna().any():
        errors = nd.amps.pivot_table(
            index=["detector_name", "amp"], columns="metric", values="error", aggfunc="last"
        ).reindex(index=wide.index, columns=metrics)
    vendor = nd.vendor_of
    firing_any = nd.firing_amps.get("*", set())
    head = (
        "<tr><th class=l>detector</th><th class=l>amp</th>"
        + "".join(
            f"<th title='{_e(cat.metrics[m].description if m in cat else '')}'>{_e(m)}<br>"
            f"<small>{_e(_unit(nd, cat, m))}</small></th>"
            for m in metrics
        )
        + "</tr>"
    )
    rows_all, rows_flagged = [], []
    spec = SpecLimits(cat, nd.instrument)
    firing_of = [nd.firing_amps.get(m, set()) for m in metrics]
    # plain lists of floats (NaN where absent): ~50k cells read as Series items cost seconds
    values = wide.reindex(columns=metrics).to_numpy(float).tolist()
    errs_of = errors.to_numpy(float).tolist() if errors is not None else None
    for i, (det, amp) in enumerate(wide.index):
        cells, flagged = [], (det, amp) in firing_any
        vend = vendor.get(det, "")
        for j, m in enumerate(metrics):
            v = values[i][j]
            cls = []
            if spec.breaks(m, vend, v):
                cls.append("bad")
                flagged = True
            if (det, amp) in firing_of[j]:
                cls.append("alert")
            c = f" class='{' '.join(cls)}'" if cls else ""
            cells.append(f"<td{c}>{_fmt_pm(v, errs_of[i][j] if errs_of else None)}</td>")
        row = (
            f"<tr{' class=firing' if (det, amp) in firing_any else ''}><td class=l>{_e(det)}"
            f"</td><td class=l>{_e(amp)}</td>{''.join(cells)}</tr>"
        )
        rows_all.append(row)
        if flagged:
            rows_flagged.append(row)
    out = [
        '<p class="note">Every amp’s value of every metric this day, ± its 1σ error where the '
        "measurement gives one. Red cells break a specification "
        "limit; an outlined cell has a firing alert on that metric; a pink row "
        "has a firing alert on some metric. Hover a column title for its meaning.</p>"
    ]
    if rows_flagged:
        out.append(
            f"<h3>Amps needing attention ({len(rows_flagged)})</h3><div class=scroll><table>"
            f"{head}{''.join(rows_flagged)}</table></div>"
        )
    table = f"<div class=scroll><table>{head}{''.join(rows_all)}</table></div>"
    if len(rows_all) > FULL_TABLE_OPEN_MAX_ROWS:
        out.append(f"<details><summary>All {len(rows_all)} amps</summary>{table}</details>")
    else:
        out.append(f"<h3>All amps ({len(rows_all)})</h3>{table}")
    return "".join(out)


def section_glossary() -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in GLOSSARY)
    return f'<table class="kv">{rows}</table>'


# -- assembly ----------------------------------------------------------------------------------


def _isolated(what: str, build: Any, figs: _Figures) -> str:
    """``build()``'s HTML, or a placeholder naming the reason when it raises (logged as a
    WARNING); figures the failed section had queued are dropped."""
    n_jobs = len(figs.jobs)
    try:
        return build()
    except Exception as exc:  # one section never takes the report down
        del figs.jobs[n_jobs:], figs.contexts[n_jobs:]
        reason = _reason(exc)
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
    figs: _Figures,
) -> tuple[str, str]:
    sid = re.sub(r"[^a-z0-9_-]", "-", instrument.lower())
    figs.context = f"{instrument} {day_obs}"
    parts = [f'<section id="{sid}"><h2 id="{sid}-summary">{_e(instrument)} — summary</h2>']
    try:
        nd = load_night(store, instrument, day_obs, cat, nights, metrics)
    except Exception as exc:  # the store's content for this instrument cannot be read
        reason = _reason(exc)
        log.warning("report: %s %s not drawn: %s", instrument, day_obs, reason)
        log.debug("report: %s %s", instrument, day_obs, exc_info=True)
        parts.append(placeholder(f"The {instrument} part of the report", reason) + "</section>")
        return "".join(parts), f'<a href="#{sid}-summary">{_e(instrument)}</a>'
    parts.append(_isolated(f"{instrument} summary", lambda: section_header(nd), figs))
    if not nd.metrics:
        parts.append("<p>No amp measurements for this day.</p></section>")
        return "".join(parts), ""
    sections = [
        ("glance", "At a glance", lambda: section_glance(nd, cat)),
        ("alerts", f"Alerts ({len(nd.firing)} firing)", lambda: section_alerts(nd, cat)),
        ("maps", "Focal-plane maps", lambda: section_maps(nd, cat, figs)),
        ("images", "Combined bias, dark and flat", lambda: section_images(nd, store, figs)),
        ("hist", "Distributions across amps", lambda: section_histograms(nd, cat, figs)),
        ("ptc", "PTC and linearity", lambda: section_ptc(nd, store, figs)),
        ("trends", "Trends", lambda: section_trends(nd, store, cat, figs)),
        ("amps", "Per-amp table", lambda: section_amp_table(nd, cat)),
    ]
    nav = [f'<a href="#{sid}-summary">{_e(instrument)}</a>']
    for key, title, build in sections:
        parts.append(f'<h2 id="{sid}-{key}">{_e(title)}</h2>')
        parts.append(_isolated(f"{instrument} {day_obs} {title}", build, figs))
        nav.append(f'<a href="#{sid}-{key}">{_e(title)}</a>')
    parts.append("</section>")
    return "".join(parts), " ".join(nav)


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
    figs = _Figures()
    cat = catalogue or load_catalogue()
    if day_obs is None:
        days = queries.day_obs_list(store, instrument)
        day_obs = days[-1] if days else None
    instruments = (
        [instrument] if instrument else (queries.instruments_on(store, day_obs) if day_obs else [])
    )
    body, navs = [], []
    for inst in instruments:
        b, n = _instrument_html(store, inst, day_obs, cat, nights, metrics, figs)
        body.append(b)
        navs.append(n)
    title = f"calibmon report — {', '.join(instruments) or 'no data'} — " + (
        _day(day_obs) if day_obs else "no day"
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if not instruments:
        body.append("<p>The store holds no records for this day.</p>")
    return figs.fill(
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>"
        "<p>Calibration quality of the camera’s amplifiers, measured by calibmon from the "
        "day’s bias, dark, flat and PTC exposures.</p>"
        f"<p>Report generated {generated} by calibmon {_e(__version__)}.</p></header><main>"
        f"<nav>{'<br>'.join(navs) or 'no sections'} <a href='#glossary'>How to read this</a></nav>"
        f"{''.join(body)}"
        f'<h2 id="glossary">How to read this report</h2>{section_glossary()}'
        "</main></body></html>"
    )


def make_readable(path: Path) -> None:
    """Give a freshly written file the usual permissions (``mkstemp`` creates it 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def demo_report_hook(settings, store, day_obs: str, report_path: str | Path) -> Path:
    """The ``calibmon demo`` hook (``calibmon.cli._DEMO_REPORT_HOOKS``): the demo night's
    report, trends over the nights the store holds. Returns the path written."""
    return write_report(settings, store, day_obs, report_path)


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
    """Render the report and write it atomically to ``path`` (the ``calibmon demo`` hook:
    ``hook(settings, store, day_obs, report_path)``). Returns the path."""
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
    from calibmon.cli import _atomic_write

    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), "wb")
    make_readable(path)
    log.info("report %s written (%.1f MB, %.1f s)", path, len(text) / 1e6, time.perf_counter() - t0)
    return path
