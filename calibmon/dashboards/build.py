"""Grafana dashboards, generated from the metric catalogue (``calibmon dashboards build``).

Plain Python dicts in Grafana's dashboard JSON model (schemaVersion 39) rather than
grafanalib: grafanalib 0.7 writes schemaVersion 12 panels and string datasource names,
which Grafana migrates on load (so the committed JSON never matches what Grafana shows
or saves), and the parts we need most — ``{type, uid}`` datasource references through
template variables, per-field overrides, threshold styles and data links — would be raw
dicts inside it anyway. A small builder keeps the output exact, reviewable and free of a
dependency.

Every InfluxQL query reads the DESIGN.md §5 schema (measurement ``lsst.cp.<calib_type>``
for amps, ``lsst.cp.<calib_type>_summary`` for detector/camera summaries; tags
``instrument``, ``detector_name``, ``amp``, ``level``; fields ``<metric>``,
``<metric>_median``, ``<metric>_sigma_mad``, ``<metric>_n``), with ``$timeFilter`` and the
template variables ``instrument``, ``detector`` (a detector *name*), ``amp`` and
``calib_type``. Datasources are themselves variables (``$influx``, ``$prometheus``) whose
default is the provisioned calibmon datasource (``deploy/grafana``), so the same
dashboards run on Sasquatch's InfluxDB data source by picking it in the menu.

Thresholds come from ``metrics/*.yaml`` (fixed rules; drift rules depend on each amp's
history and are described, not drawn).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from calibmon.catalogue import CALIB_TYPES, Catalogue, MetricDef, load_catalogue
from calibmon.records import POINT_PROVENANCE_FIELDS

log = logging.getLogger(__name__)

SCHEMA_VERSION = 39
NAMESPACE = "lsst.cp"
INFLUX_DS_UID = "calibmon-influxdb"
PROM_DS_UID = "calibmon-prometheus"
INFLUX = {"type": "influxdb", "uid": "${influx}"}
PROM = {"type": "prometheus", "uid": "${prometheus}"}
TAGS = ["calibmon", "lsst.cp"]
GOOD, BAD, WARN = "green", "red", "orange"

UIDS = {
    "overview": "calibmon-overview",
    "detector": "calibmon-detector",
    "amp": "calibmon-amp",
    "ptc": "calibmon-ptc",
    "health": "calibmon-health",
}

# Metrics whose dimensionless value reads best as a percentage / in scientific notation.
_PERCENT = re.compile(r"fraction|_pass$|nonlinearity")
_GRAFANA_UNITS = {
    "adu": "suffix: adu",
    "electron": "suffix: e⁻",
    "electron/s": "suffix: e⁻/s",
    "electron/adu": "suffix: e⁻/adu",
    "1/electron": "sci",
    "count": "short",
}


def grafana_unit(metric: str, unit: str) -> str:
    """Grafana unit id for a catalogue unit."""
    if unit == "1":
        if _PERCENT.search(metric):
            return "percentunit"
        return "sci" if "cti" in metric else "none"
    return _GRAFANA_UNITS.get(unit, "none")


def threshold_steps(m: MetricDef | None, instrument: str | None = None) -> list[dict[str, Any]]:
    """Grafana threshold steps from the metric's fixed rules (green inside, red outside)."""
    lows, highs = [], []
    # vendor "": vendor-specific limits would be wrong for half the amps of a panel
    for t in m.thresholds_for(instrument, vendor="", kind="fixed") if m else ():
        if t.low is not None:
            lows.append(t.low)
        if t.high is not None:
            highs.append(t.high)
    if not lows and not highs:
        return [{"color": GOOD, "value": None}]
    steps = [{"color": BAD if lows else GOOD, "value": None}]
    if lows:
        steps.append({"color": GOOD, "value": max(lows)})
    if highs:
        steps.append({"color": BAD, "value": min(highs)})
    return steps


def describe(m: MetricDef) -> str:
    """Panel description: the catalogue's text, spec and rules (in Markdown)."""
    parts = [m.description]
    if m.spec:
        parts.append(f"Spec: {m.spec}.")
    for t in m.thresholds:
        if t.kind == "fixed":
            lim = " and ".join(
                x
                for x in (
                    f"≥ {t.low:g}" if t.low is not None else "",
                    f"≤ {t.high:g}" if t.high is not None else "",
                )
                if x
            )
            parts.append(f"Alert `{t.rule}` ({t.severity}): outside {lim} — drawn as a line.")
        else:
            parts.append(f"Alert `{t.rule}` ({t.severity}): {t.summary}")
    parts.append(f"Unit: {m.unit}. Method: {m.method}")
    return " ".join(p for p in parts if p)


# -- template variables -------------------------------------------------------------------


def _ds_var(name: str, kind: str, label: str, uid: str) -> dict[str, Any]:
    return {
        "type": "datasource",
        "name": name,
        "label": label,
        "query": kind,
        "regex": "",
        "hide": 0,
        "refresh": 1,
        "multi": False,
        "includeAll": False,
        "current": {"selected": False, "text": uid, "value": uid},
        "options": [],
    }


def _query_var(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool = False,
    include_all: bool = False,
    regex: str = "",
    sort: int = 1,
) -> dict[str, Any]:
    v: dict[str, Any] = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": INFLUX,
        "query": query,
        "definition": query,
        "regex": regex,
        "refresh": 2,
        "sort": sort,
        "hide": 0,
        "multi": multi,
        "includeAll": include_all,
        "options": [],
        "current": {},
    }
    if include_all:
        v["allValue"] = ".*"
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return v


def _measurements_regex(ns: str) -> str:
    return "/^" + re.escape(ns).replace("/", r"\/") + r"\./"


def var_instrument(ns: str) -> dict[str, Any]:
    return _query_var(
        "instrument",
        "instrument",
        f'SHOW TAG VALUES FROM {_measurements_regex(ns)} WITH KEY = "instrument"',
    )


def var_detector(ns: str, *, multi: bool = False) -> dict[str, Any]:
    return _query_var(
        "detector",
        "detector",
        f'SHOW TAG VALUES FROM {_measurements_regex(ns)} WITH KEY = "detector_name" '
        'WHERE "instrument" =~ /^$instrument$/',
        multi=multi,
        include_all=multi,
    )


def var_amp(ns: str, *, multi: bool) -> dict[str, Any]:
    return _query_var(
        "amp",
        "amp",
        f'SHOW TAG VALUES FROM {_measurements_regex(ns)} WITH KEY = "amp" '
        'WHERE "instrument" =~ /^$instrument$/ AND "detector_name" =~ /^$detector$/',
        multi=multi,
        include_all=multi,
    )


def var_calib_type(ns: str) -> dict[str, Any]:
    rx = re.escape(ns).replace("/", r"\/")
    return _query_var(
        "calib_type",
        "calib type",
        f"SHOW MEASUREMENTS WITH MEASUREMENT =~ /^{rx}\\.[a-z]+$/",
        regex=f"/^{rx}\\.([a-z]+)$/",
    )


# -- panels ---------------------------------------------------------------------------------


class _Layout:
    """Gives panels ids and grid positions, left to right then down (24 columns)."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        self.newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self.next_id,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.next_id += 1
        self.y += 1

    def newline(self) -> None:
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> dict[str, Any]:
        if self.x + w > 24:
            self.newline()
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)
        return panel


def influx_target(query: str, ref: str = "A", alias: str = "", fmt: str = "time_series") -> dict:
    return {
        "refId": ref,
        "datasource": INFLUX,
        "query": query,
        "rawQuery": True,
        "resultFormat": fmt,
        "alias": alias,
    }


def prom_target(expr: str, ref: str = "A", legend: str = "", instant: bool = False) -> dict:
    t = {
        "refId": ref,
        "datasource": PROM,
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
    }
    return t


def _panel(
    kind: str,
    title: str,
    targets: list[dict],
    description: str,
    ds: dict,
    defaults: dict[str, Any],
    overrides: list | None,
    options: dict[str, Any],
) -> dict:
    """The keys every panel has; ``defaults`` is the field config's (unit, thresholds, …)."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": ds,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options,
    }


def _thresholds(steps: list[dict] | None) -> dict[str, Any]:
    """Grafana's absolute threshold steps (default: everything good)."""
    return {"mode": "absolute", "steps": steps or [{"color": GOOD, "value": None}]}


def timeseries(
    title: str,
    targets: list[dict],
    *,
    unit: str = "none",
    description: str = "",
    steps: list[dict] | None = None,
    threshold_style: str = "off",
    points: bool = True,
    ds: dict = INFLUX,
) -> dict:
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 0,
        "showPoints": "always" if points else "auto",
        "pointSize": 4,
        "spanNulls": True,
        "thresholdsStyle": {"mode": threshold_style},
    }
    defaults = {"unit": unit, "color": {"mode": "palette-classic"},
                "thresholds": _thresholds(steps), "custom": custom}  # fmt: skip
    options = {
        "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return _panel("timeseries", title, targets, description, ds, defaults, None, options)


def stat(
    title: str,
    targets: list[dict],
    *,
    unit: str = "none",
    description: str = "",
    steps: list[dict] | None = None,
    ds: dict = INFLUX,
    overrides: list | None = None,
    graph: bool = True,
) -> dict:
    defaults = {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": _thresholds(steps)}
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area" if graph else "none",
        "textMode": "value_and_name",
        "justifyMode": "auto",
        "orientation": "auto",
    }
    return _panel("stat", title, targets, description, ds, defaults, overrides, options)


def table(
    title: str,
    targets: list[dict],
    *,
    description: str = "",
    overrides: list | None = None,
    transformations: list | None = None,
    unit: str = "none",
    ds: dict = INFLUX,
) -> dict:
    defaults = {"unit": unit, "custom": {"align": "auto", "filterable": True},
                "thresholds": _thresholds(None)}  # fmt: skip
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    panel = _panel("table", title, targets, description, ds, defaults, overrides, options)
    return panel | {"transformations": transformations or []}


def _link_to(uid: str, title: str) -> dict[str, Any]:
    return {"title": title, "url": f"/d/{uid}?${{__url_time_range}}&${{instrument:queryparam}}"}


def _amp_link_override(column: str = "amp") -> dict[str, Any]:
    url = (
        f"/d/{UIDS['amp']}?${{__url_time_range}}&${{instrument:queryparam}}"
        "&var-detector=${__data.fields.detector_name}&var-amp=${__data.fields.amp}"
    )
    return {
        "matcher": {"id": "byName", "options": column},
        "properties": [{"id": "links", "value": [{"title": "drill down to this amp", "url": url}]}],
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[dict],
    panels: list[dict],
    *,
    time_from: str = "now-30d",
    refresh: str = "",
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "tags": ["calibmon"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "title": "calibmon dashboards",
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": panels,
    }


def _where(*conds: str) -> str:
    return " AND ".join([*conds, "$timeFilter"])


INST = '"instrument" =~ /^$instrument$/'
DET = '"detector_name" =~ /^$detector$/'
AMP = '"amp" =~ /^$amp$/'


def _per_amp_timeseries(m, ns: str, calib_type: str) -> dict:
    """One metric of one calib type, a line per amp over time, thresholds dashed."""
    q = (
        f'SELECT "{m.name}" FROM "{ns}.{calib_type}" WHERE '
        + _where(INST, DET, AMP)
        + ' GROUP BY "amp"'
    )
    return timeseries(
        f"{m.name} per amp",
        [influx_target(q, alias="$tag_amp")],
        unit=grafana_unit(m.name, m.unit),
        description=describe(m),
        steps=threshold_steps(m),
        threshold_style="dashed",
    )


def _metrics_by_type(cat: Catalogue) -> list[tuple[str, list[MetricDef]]]:
    out = []
    for ct in CALIB_TYPES:
        ms = [m for m in cat if m.calib_type == ct]
        if ms:
            out.append((ct, ms))
    return out


def _worst(m: MetricDef) -> list[str]:
    """'top' for metrics with an upper spec limit, 'bottom' for a lower one (both: both)."""
    out = []
    for t in m.thresholds:
        if t.kind == "fixed" and t.level == "amp":
            if t.high is not None and "top" not in out:
                out.append("top")
            if t.low is not None and "bottom" not in out:
                out.append("bottom")
    return out


# -- the dashboards ---------------------------------------------------------------------------


def overview(cat: Catalogue, ns: str = NAMESPACE) -> dict[str, Any]:
    """(a) Camera overview: latest camera median/σ_MAD per metric, firing alerts, worst amps."""
    lay = _Layout()
    lay.add(
        stat(
            "Firing alerts",
            [prom_target("sum(calibmon_alerts_firing) or vector(0)", legend="firing")],
            description="Alerts currently firing in calibmon's store "
            "(Prometheus `calibmon_alerts_firing`).",
            steps=[{"color": GOOD, "value": None}, {"color": BAD, "value": 1}],
            ds=PROM,
        ),
        w=4,
        h=5,
    )
    lay.add(
        table(
            "Latest detector medians — $calib_type",
            [
                influx_target(
                    f'SELECT last(/_median$/) FROM "{ns}.${{calib_type}}_summary" WHERE '
                    + _where("\"level\" = 'detector'", INST)
                    + ' GROUP BY "detector_name"',
                    fmt="table",
                )
            ],
            description="Per detector, the latest median over its amps of every $calib_type "
            "metric (pick the calib type at the top).",
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        ),
        w=20,
        h=5,
    )
    for ct, ms in _metrics_by_type(cat):
        lay.row(f"Camera medians — {ct}")
        for m in ms:
            q = f'FROM "{ns}.{ct}_summary" WHERE ' + _where("\"level\" = 'camera'", INST)
            lay.add(
                stat(
                    m.name,
                    [
                        influx_target(f'SELECT "{m.name}_median" {q}', "A", "median"),
                        influx_target(f'SELECT "{m.name}_sigma_mad" {q}', "B", "σ_MAD"),
                        influx_target(f'SELECT "{m.name}_n" {q}', "C", "amps"),
                    ],
                    unit=grafana_unit(m.name, m.unit),
                    description=describe(m),
                    steps=threshold_steps(m),
                    overrides=[
                        {
                            "matcher": {"id": "byFrameRefID", "options": "B"},
                            "properties": [
                                {"id": "color", "value": {"mode": "fixed", "fixedColor": "text"}}
                            ],
                        },
                        {
                            "matcher": {"id": "byFrameRefID", "options": "C"},
                            "properties": [
                                {"id": "unit", "value": "short"},
                                {"id": "color", "value": {"mode": "fixed", "fixedColor": "text"}},
                            ],
                        },
                    ],
                ),
                w=6,
                h=5,
            )
    lay.row("Worst amps in the time range")
    for ct, ms in _metrics_by_type(cat):
        for m in ms:
            for fn in _worst(m):
                q = (
                    f'SELECT {fn}("{m.name}", "detector_name", "amp", 10) AS "{m.name}" '
                    f'FROM "{ns}.{ct}" WHERE ' + _where(INST)
                )
                word = "highest" if fn == "top" else "lowest"
                lay.add(
                    table(
                        f"{word.capitalize()} {m.name}",
                        [influx_target(q, fmt="table")],
                        description=f"The 10 amps with the {word} {m.name} in the time range "
                        "(one row per amp). Click an amp to drill down. " + describe(m),
                        unit=grafana_unit(m.name, m.unit),
                        overrides=[_amp_link_override()],
                    ),
                    w=8,
                    h=8,
                )
    return dashboard(
        UIDS["overview"],
        "calibmon — camera overview",
        "Latest camera-wide calibration quality (median and σ_MAD over amps per metric), "
        "firing alerts and the worst amps.",
        [
            _ds_var("influx", "influxdb", "InfluxDB (lsst.cp)", INFLUX_DS_UID),
            _ds_var("prometheus", "prometheus", "Prometheus", PROM_DS_UID),
            var_instrument(ns),
            var_calib_type(ns),
        ],
        lay.panels,
    )


def per_detector(cat: Catalogue, ns: str = NAMESPACE) -> dict[str, Any]:
    """(b) One detector: every metric per amp over time (``GROUP BY "amp"``)."""
    lay = _Layout()
    lay.add(
        table(
            "Latest $calib_type values per amp — $detector",
            [
                influx_target(
                    f'SELECT last(*) FROM "{ns}.$calib_type" WHERE '
                    + _where(INST, DET, AMP)
                    + ' GROUP BY "amp"',
                    fmt="table",
                )
            ],
            description="The most recent value of every $calib_type field for each amp, with "
            "its provenance (run, exposures, software version).",
            overrides=[],
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        ),
        w=24,
        h=8,
    )
    for ct, ms in _metrics_by_type(cat):
        lay.row(ct)
        for m in ms:
            lay.add(_per_amp_timeseries(m, ns, ct), w=8, h=8)
    return dashboard(
        UIDS["detector"],
        "calibmon — detector",
        "Every calibration metric of one detector, per amp, over time.",
        [
            _ds_var("influx", "influxdb", "InfluxDB (lsst.cp)", INFLUX_DS_UID),
            var_instrument(ns),
            var_detector(ns),
            var_amp(ns, multi=True),
            var_calib_type(ns),
        ],
        lay.panels,
    )


def per_amp(cat: Catalogue, ns: str = NAMESPACE) -> dict[str, Any]:
    """(c) One amp: each metric with its thresholds and the detector median for context."""
    lay = _Layout()
    prov = ", ".join(f'"{f}"' for f in POINT_PROVENANCE_FIELDS)
    lay.add(
        table(
            "Provenance of $calib_type measurements — $detector $amp",
            [
                influx_target(
                    f'SELECT {prov} FROM "{ns}.$calib_type" WHERE ' + _where(INST, DET, AMP),
                    fmt="table",
                )
            ],
            description="Which run, exposures and software produced each $calib_type point.",
        ),
        w=24,
        h=6,
    )
    for ct, ms in _metrics_by_type(cat):
        lay.row(ct)
        for m in ms:
            qa = f'SELECT "{m.name}" FROM "{ns}.{ct}" WHERE ' + _where(INST, DET, AMP)
            qd = f'SELECT "{m.name}" FROM "{ns}.{ct}_summary" WHERE ' + _where(
                "\"level\" = 'detector'", INST, DET
            )
            lay.add(
                timeseries(
                    m.name,
                    [influx_target(qa, "A", "$amp"), influx_target(qd, "B", "detector median")],
                    unit=grafana_unit(m.name, m.unit),
                    description=describe(m),
                    steps=threshold_steps(m),
                    threshold_style="line+area",
                ),
                w=8,
                h=8,
            )
    return dashboard(
        UIDS["amp"],
        "calibmon — amp drill-down",
        "One amplifier: every metric over time with its specification limits (from the "
        "metric catalogue) and its detector's median.",
        [
            _ds_var("influx", "influxdb", "InfluxDB (lsst.cp)", INFLUX_DS_UID),
            var_instrument(ns),
            var_detector(ns),
            var_amp(ns, multi=False),
            var_calib_type(ns),
        ],
        lay.panels,
    )


def ptc(cat: Catalogue, ns: str = NAMESPACE) -> dict[str, Any]:
    """(d) PTC and linearity: fit results per amp over time, gain from flats vs PTC."""
    lay = _Layout()
    ms = [m for m in cat if m.calib_type == "ptc"]
    cols = ", ".join(f'last("{m.name}") AS "{m.name}"' for m in ms)
    if ms:  # no PTC metric in the catalogue: no table (an empty SELECT is no query)
        lay.add(
            table(
                "Latest PTC fit per amp — $detector",
                [
                    influx_target(
                        f'SELECT {cols} FROM "{ns}.ptc" WHERE '
                        + _where(INST, DET, AMP)
                        + ' GROUP BY "amp"',
                        fmt="table",
                    )
                ],
                description="Gain, noise, turnoff, full well, brighter-fatter a00 and linearity of "
                "the latest PTC ramp. The curves themselves are in the HTML report.",
                transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
            ),
            w=24,
            h=8,
        )
    if "gain" in cat and "ptc_gain" in cat:
        lay.add(
            timeseries(
                "Gain: flat pairs vs PTC (detector medians)",
                [
                    influx_target(
                        f'SELECT "gain" FROM "{ns}.flat_summary" WHERE '
                        + _where("\"level\" = 'detector'", INST, DET),
                        "A",
                        "flat pairs",
                    ),
                    influx_target(
                        f'SELECT "ptc_gain" FROM "{ns}.ptc_summary" WHERE '
                        + _where("\"level\" = 'detector'", INST, DET),
                        "B",
                        "PTC",
                    ),
                ],
                unit=grafana_unit("gain", cat.unit("gain")),
                description="The daily gain from flat pairs should follow the PTC gain; a gap "
                "points at the read-noise term or nonlinearity.",
                steps=threshold_steps(cat["ptc_gain"]),
                threshold_style="dashed",
            ),
            w=12,
            h=8,
        )
    for m in ms:
        lay.add(_per_amp_timeseries(m, ns, "ptc"), w=12, h=8)
    return dashboard(
        UIDS["ptc"],
        "calibmon — PTC and linearity",
        "Photon-transfer-curve fits (Astier et al. 2019) and linearity per amp over time.",
        [
            _ds_var("influx", "influxdb", "InfluxDB (lsst.cp)", INFLUX_DS_UID),
            var_instrument(ns),
            var_detector(ns),
            var_amp(ns, multi=True),
        ],
        lay.panels,
        time_from="now-90d",
    )


HONOR_LABELS_NOTE = (
    " calibmon labels its job metrics with `job`; scrape it with `honor_labels: true` so "
    "Prometheus keeps that label (as deploy/prometheus assumes)."
)


def _prom_stat(title: str, expr: str, description: str, unit: str = "short",
               steps: list[dict] | None = None) -> dict:  # fmt: skip
    return stat(title, [prom_target(expr, legend=title, instant=True)], unit=unit, ds=PROM,
                graph=False, description=description, steps=steps)  # fmt: skip


def health(cat: Catalogue | None = None) -> dict[str, Any]:
    """(e) Service health from calibmon's own Prometheus metrics (DESIGN.md §7;
    ``calibmon.service.prometheus``: labels ``job``, ``outcome``, ``sink``)."""
    lay = _Layout()
    red_from_1 = [{"color": GOOD, "value": None}, {"color": BAD, "value": 1}]
    stats = [
        ("Job runs in range", "sum(increase(calibmon_job_runs_total[$__range])) or vector(0)",
         "Firings of the scheduled jobs in the time range (`calibmon_job_runs_total`).",
         "short", None),
        ("Failed runs in range",
         'sum(increase(calibmon_job_runs_total{outcome="failure"}[$__range])) or vector(0)',
         "Firings that ended in failure (see the daemon's log and the run ledger).",
         "short", red_from_1),
        ("Since last success", "time() - min(calibmon_last_success_timestamp_seconds)",
         "Age of the oldest 'last success' over the jobs "
         "(`calibmon_last_success_timestamp_seconds`); daily jobs keep it under ~26 h.",
         "s", [{"color": GOOD, "value": None}, {"color": WARN, "value": 26 * 3600},
               {"color": BAD, "value": 72 * 3600}]),
        ("Outbox pending", "sum(calibmon_outbox_pending) or vector(0)",
         "Records stored but not yet acknowledged by a remote sink (`calibmon_outbox_pending`)"
         "; nothing is lost, `calibmon push` delivers them.",
         "short", [{"color": GOOD, "value": None}, {"color": WARN, "value": 1}]),
        ("Sink errors in range",
         "sum(increase(calibmon_sink_errors_total[$__range])) or vector(0)",
         "Failed deliveries to InfluxDB/Sasquatch (`calibmon_sink_errors_total`).",
         "short", red_from_1),
        ("Firing alerts", "sum(calibmon_alerts_firing) or vector(0)",
         "Calibration alerts currently firing (`calibmon_alerts_firing`).", "short",
         red_from_1),
        ("Calibrations missing", "sum(calibmon_calibs_missing) or vector(0)",
         "Expected calibrations that did not arrive (`calibmon_calibs_missing`, staleness "
         "jobs).", "short", red_from_1),
    ]  # fmt: skip
    for title, expr, desc, unit, steps in stats:
        lay.add(_prom_stat(title, expr, desc + HONOR_LABELS_NOTE, unit, steps), w=3, h=4)
    series = [
        ("Job runs by outcome",
         "sum by (outcome) (increase(calibmon_job_runs_total[$__rate_interval]))",
         "{{outcome}}", "short", "Firings per interval, by outcome."),
        ("Job duration (95th percentile)",
         "histogram_quantile(0.95, sum by (le, job) "
         "(rate(calibmon_job_duration_seconds_bucket[$__rate_interval])))",
         "{{job}}", "s", "Wall-clock duration of the jobs' firings (histogram)."),
        ("Outbox pending per sink", "sum by (sink) (calibmon_outbox_pending)", "{{sink}}",
         "short", "A growing backlog means a sink is down; calibmon keeps the data and "
                  "retries."),
        ("Sink errors", "sum by (sink) (increase(calibmon_sink_errors_total[$__rate_interval]))",
         "{{sink}}", "short", "Delivery errors per interval and sink."),
        ("Time since last success", "time() - calibmon_last_success_timestamp_seconds",
         "{{job}}", "s", "Per job: seconds since its last successful firing."),
        ("Records written",
         "sum by (sink) (increase(calibmon_records_written_total[$__rate_interval]))",
         "{{sink}}", "short", 'Metric records written per interval (sink="store" is the '
                              "local store)."),
    ]  # fmt: skip
    lay.newline()
    for title, expr, legend, unit, desc in series:
        lay.add(timeseries(title, [prom_target(expr, legend=legend)], unit=unit,
                           description=desc + HONOR_LABELS_NOTE, ds=PROM, points=False),
                w=12, h=8)  # fmt: skip
    return dashboard(
        UIDS["health"], "calibmon — service health",
        "calibmon's own Prometheus metrics: job runs and durations, outbox backlog, sink "
        "errors, time since the last success.",
        [_ds_var("prometheus", "prometheus", "Prometheus", PROM_DS_UID)],
        lay.panels, time_from="now-7d", refresh="1m",
    )  # fmt: skip


BUILDERS = {
    "calibmon-overview.json": overview,
    "calibmon-detector.json": per_detector,
    "calibmon-amp.json": per_amp,
    "calibmon-ptc.json": ptc,
    "calibmon-health.json": health,
}

REPO_DIR = Path(__file__).resolve().parent.parent.parent / "dashboards"
"""The committed dashboards (in a source checkout)."""


def text_panel(title: str, markdown: str) -> dict[str, Any]:
    """A Grafana text panel (Markdown)."""
    return {
        "type": "text",
        "title": title,
        "options": {"mode": "markdown", "content": markdown},
    }


def placeholder_dashboard(fname: str, reason: str) -> dict[str, Any]:
    """The stand-in for a dashboard that could not be built: same uid as the real one
    (links keep working), one text panel naming the reason."""
    key = fname.removeprefix("calibmon-").removesuffix(".json")
    uid = UIDS.get(key, f"calibmon-{key}")
    lay = _Layout()
    lay.add(
        text_panel(
            "This dashboard could not be built",
            f"`calibmon dashboards build` could not build **{fname}**: {reason}\n\n"
            "Fix the metric catalogue (`metrics/*.yaml`) and build the dashboards again.",
        ),
        w=24,
        h=6,
    )
    return dashboard(uid, f"calibmon — {key} (not built)", reason, [], lay.panels)


def build_all(catalogue: Catalogue | None = None, namespace: str = NAMESPACE) -> dict[str, dict]:
    """Every dashboard, keyed by file name. A dashboard that cannot be built from the
    catalogue becomes :func:`placeholder_dashboard` naming the reason (and a WARNING log
    line); the others are built as usual."""
    cat = catalogue or load_catalogue()
    out = {}
    for fname, fn in BUILDERS.items():
        try:
            out[fname] = fn(cat) if fn is health else fn(cat, namespace)
        except Exception as exc:  # one dashboard never stops the others
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            log.warning("dashboard %s not built: %s", fname, reason)
            out[fname] = placeholder_dashboard(fname, reason)
    return out


def dumps(dash: dict[str, Any]) -> str:
    """The committed text of a dashboard (stable: sorted keys, 2-space indent, newline)."""
    return json.dumps(dash, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_all(
    out_dir: str | Path | None = None,
    catalogue: Catalogue | None = None,
    namespace: str = NAMESPACE,
) -> list[Path]:
    """Write every dashboard to ``out_dir`` (default: ``dashboards/`` in the current directory)."""
    from calibmon.io.atomic import atomic_write

    d = Path(out_dir) if out_dir else Path("dashboards")
    paths = []
    for fname, dash in build_all(catalogue, namespace).items():
        p = d / fname
        text = dumps(dash)
        atomic_write(p, lambda fh, t=text: fh.write(t.encode("utf-8")), "wb")
        paths.append(p)
    return paths


# -- panels and queries, for tests and tools ---------------------------------------------------


def iter_panels(dash: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", []) or []


def interpolate(
    query: str,
    variables: dict[str, str | Sequence[str]],
    *,
    time_from_ms: int,
    time_to_ms: int,
    interval: str = "1h",
) -> str:
    """Substitute Grafana's macros the way its InfluxQL data source does: ``$timeFilter`` →
    ``time >= …ms and time <= …ms``, ``$__interval``, and ``$name`` / ``${name}`` /
    ``[[name]]`` → the value (a list becomes ``(a|b)`` with regex escaping, as Grafana
    formats multi-value variables inside ``=~ /^$var$/``)."""

    def fmt(v: str | Sequence[str], regex_ctx: bool) -> str:
        if isinstance(v, str):
            return re.escape(v).replace("/", r"\/") if regex_ctx else v
        vals = [re.escape(x).replace("/", r"\/") for x in v]
        return "(" + "|".join(vals) + ")"

    q = query.replace("$timeFilter", f"time >= {time_from_ms}ms and time <= {time_to_ms}ms")
    q = q.replace("$__interval", interval)
    for name in sorted(variables, key=len, reverse=True):
        v = variables[name]
        q = re.sub(
            r"/\^\$\{?" + name + r"\}?\$/",
            lambda _m, v=v: "/^" + fmt(v, True) + "$/",
            q,
        )
        q = re.sub(
            r"\$\{" + name + r"\}|\[\[" + name + r"\]\]|\$" + name + r"\b",
            lambda _m, v=v: fmt(v, False) if isinstance(v, str) else "|".join(v),
            q,
        )
    return q
