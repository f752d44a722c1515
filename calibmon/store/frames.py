"""Tables for people: stored records as pandas DataFrames, and the report's read queries.

Notebook use::

    import calibmon
    store = calibmon.open_store("calibmon.sqlite")
    df = frame(store, metric="read_noise", detector_name="R22_S11", since="2025-11-01")
    df.pivot_table(index="day_obs", columns="amp", values="value")   # one column per amp

    # the same numbers from InfluxDB / Sasquatch (DESIGN.md §5 schema)
    q = influxql_query(metric="read_noise", detector_name="R22_S11", since="2025-11-01")
    influx_frame("http://127.0.0.1:8086", "lsst.cp", q)

:func:`records_frame` gives one row per record: the §4 fields as columns, ``stats`` as
``stats_median`` … ``stats_max`` (NaN on amp records), and the provenance flattened into
``run``, ``exposures`` (comma list, as in §5), ``n_exposures``, ``software_version``,
``config_hash``, ``processed_at``, ``input_calibs`` (JSON text) plus one column per extra
provenance key (e.g. ``gain_source``). ``timestamp`` is a UTC ``datetime64``.

Blob formats of the picture tables (filled by the pipeline, read here)
----------------------------------------------------------------------
``amp_images``
    one row per (instrument, day_obs, detector, amp, kind); ``kind`` is ``bias`` (adu,
    overscan-corrected combined bias), ``dark`` (electron/s) or ``flat`` (normalised to
    the amp's clipped mean). ``data`` is the amp's *data section* (DATASEC) of the
    combined image, block-averaged ``bin``×``bin``, as little-endian float32 bytes in C
    order, ``n_rows``×``n_cols``, in **readout order** (the raw array's orientation: row 0
    is the first row read out, column 0 the first data column after the prescan). NaN
    marks pixels without data. ``detsec`` is the amp's ``DETSEC`` header value in unbinned
    CCD pixels (``[x1:x2,y1:y2]``, 1-based, x1 > x2 or y1 > y2 meaning that axis is
    flipped); the report uses it to place and orient the amp. Use
    :func:`encode_amp_image` / :func:`decode_amp_image`.
``ptc_curves``
    one row per (instrument, day_obs, detector, amp); ``data`` is JSON with equal-length
    lists ``exptime_s`` (s), ``mu_adu`` (mean signal of the pair, adu), ``var_adu2``
    (variance of the pair difference / 2, adu²), ``model_var_adu2`` (the fitted PTC at
    ``mu_adu``, adu²; null where not evaluated), ``used`` (bool: point kept by the fit) and
    ``residual_frac`` (linearity: mu / linear fit − 1; null where not evaluated). Extra
    keys (e.g. ``gain``, ``noise_e``, ``a00``, ``turnoff_adu``) are kept.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from calibmon.records import MetricRecord

# -- records → DataFrame -------------------------------------------------------------------

RECORD_COLUMNS: tuple[str, ...] = (
    "metric",
    "value",
    "error",
    "unit",
    "calib_type",
    "level",
    "instrument",
    "detector",
    "detector_name",
    "amp",
    "day_obs",
    "physical_filter",
    "vendor",
    "timestamp",
)
STATS_COLUMNS: tuple[str, ...] = (
    "stats_median",
    "stats_sigma_mad",
    "stats_n_points",
    "stats_min",
    "stats_max",
)
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "run",
    "exposures",
    "n_exposures",
    "software_version",
    "config_hash",
    "processed_at",
    "input_calibs",
)
COLUMNS: tuple[str, ...] = RECORD_COLUMNS + STATS_COLUMNS + PROVENANCE_COLUMNS
"""Columns of :func:`records_frame`, in order (extra provenance keys follow)."""

_PROVENANCE_KNOWN = frozenset(
    {
        "run",
        "exposures",
        "n_exposures",
        "software_version",
        "config_hash",
        "processed_at",
        "input_calibs",
    }
)


def _row(r: MetricRecord) -> dict[str, Any]:
    p = r.provenance
    row: dict[str, Any] = {
        "metric": r.metric,
        "value": r.value,
        "error": r.error,
        "unit": r.unit,
        "calib_type": r.calib_type,
        "level": r.level,
        "instrument": r.instrument,
        "detector": r.detector,
        "detector_name": r.detector_name,
        "amp": r.amp,
        "day_obs": r.day_obs,
        "physical_filter": r.physical_filter,
        "vendor": r.vendor,
        "timestamp": r.timestamp,
        "run": p.run,
        "exposures": ",".join(str(e) for e in p.exposures),
        "n_exposures": p.n_exposures,
        "software_version": p.software_version,
        "config_hash": p.config_hash,
        "processed_at": p.processed_at,
        "input_calibs": json.dumps(p.input_calibs, sort_keys=True, default=str),
    }
    s = r.stats
    if s is not None:
        row.update(
            stats_median=s.median,
            stats_sigma_mad=s.sigma_mad,
            stats_n_points=s.n_points,
            stats_min=s.min,
            stats_max=s.max,
        )
    for k, v in (p.model_extra or {}).items():
        if k in _PROVENANCE_KNOWN:
            continue
        key = k if k not in row and k not in COLUMNS else f"provenance_{k}"
        row[key] = v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)
    return row


def records_frame(records: Iterable[MetricRecord]) -> pd.DataFrame:
    """One row per record, provenance flattened (see the module docstring for columns).

    ``detector`` and ``stats_n_points`` are nullable integers (``Int64``): camera records
    have no detector, amp records no stats. An empty input gives an empty frame with the
    same columns.
    """
    return rows_frame([_row(r) for r in records])


def rows_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """:func:`records_frame` from rows already flattened like ``_row`` (the streamed
    export builds them from stored tuples without making records)."""
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series([None] * len(df), dtype=object)
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df[list(COLUMNS) + extra]
    df["value"] = df["value"].astype(float)
    for col in ("stats_median", "stats_sigma_mad", "stats_min", "stats_max"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("detector", "stats_n_points", "n_exposures"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
    return df


# -- filters shared by the store and InfluxDB paths -------------------------------------------


def day_obs_of(value: str | date | datetime | None) -> str | None:
    """``20251101`` from ``"2025-11-01"``, ``"20251101"``, a date or a datetime (None → None)."""
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.strftime("%Y%m%d")
    t = str(value).strip()
    if len(t) >= 10 and t[4] == "-" and t[7] == "-":
        t = t[:10].replace("-", "")
    if len(t) != 8 or not t.isdigit():
        raise ValueError(f"not a day_obs or date: {value!r}")
    return t


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def frame(
    store,
    *,
    metric: str | Iterable[str] | None = None,
    calib_type: str | Iterable[str] | None = None,
    instrument: str | None = None,
    detector_name: str | None = None,
    detector: int | None = None,
    amp: str | None = None,
    level: str | None = None,
    day_obs: str | date | None = None,
    since: str | date | datetime | None = None,
    until: str | date | datetime | None = None,
) -> pd.DataFrame:
    """Stored records matching every given filter, as :func:`records_frame`.

    ``since``/``until`` are inclusive day_obs bounds given as ``YYYYMMDD``, ``YYYY-MM-DD``,
    a date or a datetime. ``Store.frame(**filters)`` delegates here.
    """
    records = store.iter_records(
        day_obs=day_obs_of(day_obs),
        metric=_as_list(metric),
        instrument=instrument,
        detector_name=detector_name,
        amp=amp,
        level=level,
        since_day_obs=day_obs_of(since),
        until_day_obs=day_obs_of(until),
    )
    cts = _as_list(calib_type)
    if cts is not None or detector is not None:
        records = (
            r
            for r in records
            if (cts is None or r.calib_type in cts) and (detector is None or r.detector == detector)
        )
    return records_frame(records)


class StoreFrames:
    """The read side of a store as DataFrames: ``StoreFrames(store).frame(metric=...)``."""

    def __init__(self, store) -> None:
        self.store = store

    def frame(self, **filters: Any) -> pd.DataFrame:
        """See :func:`frame`."""
        return frame(self.store, **filters)

    def wide(self, **filters: Any) -> pd.DataFrame:
        """Amp records pivoted: one row per (instrument, day_obs, detector_name, amp), one
        column per metric (the value)."""
        filters.setdefault("level", "amp")
        df = frame(self.store, **filters)
        if df.empty:
            return pd.DataFrame()
        return df.pivot_table(
            index=["instrument", "day_obs", "detector_name", "amp"],
            columns="metric",
            values="value",
            aggfunc="last",
        ).reset_index()

    def alerts(self, **kwargs: Any) -> pd.DataFrame:
        """Alert state rows (see :func:`alert_states`) as a DataFrame."""
        return pd.DataFrame([a.as_dict() for a in alert_states(self.store, **kwargs)])

    def ptc(self, instrument: str, day_obs: str) -> pd.DataFrame:
        """PTC points of every amp of the day: one row per point."""
        rows = []
        for c in ptc_curves(self.store, instrument, day_obs):
            for i in range(len(c.mu_adu)):
                rows.append(
                    {
                        "detector": c.detector,
                        "detector_name": c.detector_name,
                        "amp": c.amp,
                        "exptime_s": c.exptime_s[i],
                        "mu_adu": c.mu_adu[i],
                        "var_adu2": c.var_adu2[i],
                        "model_var_adu2": c.model_var_adu2[i],
                        "used": c.used[i],
                        "residual_frac": c.residual_frac[i],
                    }
                )
        return pd.DataFrame(rows)


# -- InfluxDB ---------------------------------------------------------------------------------


def _quote_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _day_start(day_obs: str, plus_days: int = 0) -> str:
    """RFC 3339 start of an observing day: 12:00 UTC of day_obs (+ ``plus_days``)."""
    d = datetime.strptime(day_obs, "%Y%m%d") + timedelta(days=plus_days, hours=12)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def influxql_query(
    *,
    metric: str,
    calib_type: str | None = None,
    instrument: str | None = None,
    detector_name: str | None = None,
    amp: str | None = None,
    level: str = "amp",
    since: str | date | datetime | None = None,
    until: str | date | datetime | None = None,
    namespace: str = "lsst.cp",
) -> str:
    """The InfluxQL that selects what :func:`frame` selects for one metric (DESIGN.md §5).

    The measurement comes from the metric's calib_type in the catalogue (or ``calib_type``).
    ``since``/``until`` are day_obs bounds, turned into time bounds with Rubin's day_obs
    convention (the observing day runs from 12:00 UTC on day_obs to 12:00 UTC the next
    day; InfluxQL cannot compare string fields with ``>=``). Summary levels read
    ``<metric>`` (the median) and its stats fields.
    """
    if calib_type is None:
        from calibmon.catalogue import load_catalogue

        calib_type = load_catalogue().calib_type(metric)
    measurement = f"{namespace}.{calib_type}" + ("" if level == "amp" else "_summary")
    fields = [f'"{metric}"']
    if level != "amp":
        fields += [f'"{metric}_{s}"' for s in ("sigma_mad", "n", "min", "max")]
    fields += ['"day_obs"', '"run"']
    where = [f'"level" = {_quote_str(level)}']
    for tag, val in (("instrument", instrument), ("detector_name", detector_name), ("amp", amp)):
        if val is not None:
            where.append(f'"{tag}" = {_quote_str(val)}')
    s, u = day_obs_of(since), day_obs_of(until)
    if s is not None:
        where.append(f"time >= '{_day_start(s)}'")
    if u is not None:
        where.append(f"time < '{_day_start(u, plus_days=1)}'")
    group = ", ".join(f'"{t}"' for t in ("instrument", "detector_name", "amp"))
    return (
        f'SELECT {", ".join(fields)} FROM "{measurement}" WHERE {" AND ".join(where)} '
        f"GROUP BY {group}"
    )


def influx_frame(
    url: str,
    database: str,
    query: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 30.0,
) -> pd.DataFrame:
    """Run an InfluxQL query on an InfluxDB 1.x ``/query`` endpoint (Sasquatch's too) and
    return one row per point: ``time`` (UTC), the GROUP BY tags, the selected columns,
    and ``measurement``. Raises ``RuntimeError`` with the server's message on a statement
    error, ``requests`` errors on transport failures.
    """
    import requests

    auth = (username, password or "") if username else None
    resp = requests.get(
        url.rstrip("/") + "/query",
        params={"db": database, "q": query, "epoch": "ms"},
        auth=auth,
        timeout=timeout_s,
    )
    if not resp.ok:
        try:
            msg = resp.json().get("error", resp.text)
        except ValueError:
            msg = resp.text
        raise RuntimeError(f"InfluxDB answered HTTP {resp.status_code}: {msg}")
    frames = []
    for result in resp.json().get("results", []):
        if "error" in result:
            raise RuntimeError(f"InfluxQL error: {result['error']}")
        for series in result.get("series", []):
            df = pd.DataFrame(series.get("values", []), columns=series["columns"])
            for tag, val in (series.get("tags") or {}).items():
                df[tag] = val
            df["measurement"] = series.get("name")
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["time"])
    df = pd.concat(frames, ignore_index=True)
    if "time" in df.columns:
        df["time"] = pd.to_datetime(df["time"], unit="ms", utc=True)
    return df


# -- picture tables: amp_images, ptc_curves, alert_state, runs --------------------------------

IMAGE_KINDS: tuple[str, ...] = ("bias", "dark", "flat")
IMAGE_UNITS: dict[str, str] = {"bias": "adu", "dark": "electron/s", "flat": "normalised"}


def encode_amp_image(image: np.ndarray) -> bytes:
    """``(n_rows, n_cols)`` array → the ``amp_images.data`` blob (little-endian float32, C)."""
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"amp image must be 2-D, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def decode_amp_image(blob: bytes, n_rows: int, n_cols: int) -> np.ndarray:
    """The ``amp_images.data`` blob → ``(n_rows, n_cols)`` float32 array (readout order)."""
    a = np.frombuffer(blob, dtype="<f4")
    if a.size != n_rows * n_cols:
        raise ValueError(f"amp image blob holds {a.size} values, not {n_rows}x{n_cols}")
    return a.reshape(n_rows, n_cols).astype(np.float32)


@dataclass(frozen=True)
class AmpImage:
    """One binned amp image of the day (see the module docstring)."""

    instrument: str
    day_obs: str
    detector: int
    amp: str
    kind: str
    bin: int
    image: np.ndarray  # (n_rows, n_cols) float32, readout order
    detsec: str | None


def amp_images(
    store, instrument: str, day_obs: str, kind: str, detectors: Sequence[int] | None = None
) -> list[AmpImage]:
    """The day's binned amp images of one kind (``bias``/``dark``/``flat``)."""
    sql = (
        "SELECT detector, amp, bin, n_rows, n_cols, data, detsec FROM amp_images"
        " WHERE instrument=? AND day_obs=? AND kind=?"
    )
    params: list[Any] = [instrument, day_obs, kind]
    if detectors is not None:
        sql += f" AND detector IN ({','.join('?' * len(detectors))})"
        params += list(detectors)
    out = []
    for r in store.query(sql + " ORDER BY detector, amp", params):
        out.append(
            AmpImage(
                instrument,
                day_obs,
                int(r["detector"]),
                r["amp"],
                kind,
                int(r["bin"]),
                decode_amp_image(r["data"], int(r["n_rows"]), int(r["n_cols"])),
                r["detsec"],
            )
        )
    return out


@dataclass(frozen=True)
class PtcCurve:
    """One amp's PTC points and fit (see the module docstring)."""

    instrument: str
    day_obs: str
    detector: int
    detector_name: str
    amp: str
    exptime_s: list[float]
    mu_adu: list[float]
    var_adu2: list[float]
    model_var_adu2: list[float]
    used: list[bool]
    residual_frac: list[float]
    extra: dict[str, Any]


def _floats(values: Any, n: int) -> list[float]:
    if not isinstance(values, list):
        return [math.nan] * n
    return [math.nan if v is None else float(v) for v in values] + [math.nan] * (n - len(values))


def ptc_curves(
    store, instrument: str, day_obs: str, detectors: Sequence[int] | None = None
) -> list[PtcCurve]:
    """The day's PTC curves, ordered by detector and amp."""
    from calibmon.io.detectors import detector_name

    sql = "SELECT detector, amp, data FROM ptc_curves WHERE instrument=? AND day_obs=?"
    params: list[Any] = [instrument, day_obs]
    if detectors is not None:
        sql += f" AND detector IN ({','.join('?' * len(detectors))})"
        params += list(detectors)
    out = []
    for r in store.query(sql + " ORDER BY detector, amp", params):
        d = json.loads(r["data"])
        n = len(d.get("mu_adu") or [])
        used = d.get("used") or [True] * n
        det = int(r["detector"])
        try:
            name = detector_name(instrument, det)
        except (IndexError, KeyError):
            name = str(det)
        known = ("exptime_s", "mu_adu", "var_adu2", "model_var_adu2", "used", "residual_frac")
        out.append(
            PtcCurve(
                instrument,
                day_obs,
                det,
                name,
                r["amp"],
                _floats(d.get("exptime_s"), n),
                _floats(d.get("mu_adu"), n),
                _floats(d.get("var_adu2"), n),
                _floats(d.get("model_var_adu2"), n),
                [bool(u) for u in used] + [False] * (n - len(used)),
                _floats(d.get("residual_frac"), n),
                {k: v for k, v in d.items() if k not in known},
            )
        )
    return out


@dataclass(frozen=True)
class AlertState:
    """One row of the store's ``alert_state`` table; ``data`` is its decoded JSON."""

    rule: str
    instrument: str
    detector: int | None
    amp: str | None
    state: str
    data: dict[str, Any]
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "instrument": self.instrument,
            "detector": self.detector,
            "amp": self.amp,
            "state": self.state,
            "updated_at": self.updated_at,
            **self.data,
        }


def alert_states(
    store, *, instrument: str | None = None, state: str | None = "firing"
) -> list[AlertState]:
    """Alert state rows (default: the firing ones), ordered by detector, amp, rule."""
    sql, params = "SELECT * FROM alert_state", []
    where = []
    if instrument is not None:
        where.append("instrument=?")
        params.append(instrument)
    if state is not None:
        where.append("state=?")
        params.append(state)
    if where:
        sql += " WHERE " + " AND ".join(where)
    out = []
    for r in store.query(sql + " ORDER BY instrument, detector, amp, rule", params):
        try:
            data = json.loads(r["data"] or "{}")
        except ValueError:
            data = {}
        det = int(r["detector"])
        out.append(
            AlertState(
                r["rule"],
                r["instrument"],
                None if det < 0 else det,
                r["amp"] or None,
                r["state"],
                data if isinstance(data, dict) else {},
                r["updated_at"],
            )
        )
    return out


def alert_events(store, *, instrument: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The most recent alert transitions (newest first)."""
    sql, params = "SELECT * FROM alert_events", []
    if instrument is not None:
        sql += " WHERE instrument=?"
        params.append(instrument)
    rows = store.query(sql + " ORDER BY at DESC, id DESC LIMIT ?", [*params, limit])
    out = []
    for r in rows:
        d = dict(r)
        try:
            d["data"] = json.loads(d.get("data") or "{}")
        except ValueError:
            d["data"] = {}
        out.append(d)
    return out


def day_obs_list(store, instrument: str | None = None) -> list[str]:
    """Distinct day_obs with records, oldest first."""
    return store.days(instrument=instrument)  # the per-day table: cost ~ number of days


def instruments_on(store, day_obs: str) -> list[str]:
    """Instruments with records on ``day_obs``, most records first."""
    rows = store.query(
        "SELECT instrument, COUNT(*) AS n FROM records INDEXED BY records_day WHERE day_obs=?"
        " GROUP BY instrument ORDER BY n DESC, instrument",
        (day_obs,),
    )
    return [r["instrument"] for r in rows]


def runs_for_day(store, instrument: str, day_obs: str) -> list[dict[str, Any]]:
    """Runs that wrote the day's records: run id, software version, config hash, counts."""
    rows = store.query(
        "SELECT run_id, COUNT(*) AS n FROM records WHERE instrument=? AND day_obs=?"
        " GROUP BY run_id ORDER BY run_id",
        (instrument, day_obs),
    )
    out = []
    for r in rows:
        info = store.query("SELECT * FROM runs WHERE run_id=?", (r["run_id"],))
        d = dict(info[0]) if info else {"run_id": r["run_id"]}
        d["n_day_records"] = int(r["n"])
        out.append(d)
    return out


def day_amp_values(store, instrument: str, day_obs: str) -> pd.DataFrame:
    """The day's amp-level values, one row per (metric, detector, amp) (the latest record
    when a metric was measured twice, e.g. flats in two filters): columns ``metric``,
    ``calib_type``, ``unit``, ``detector``, ``detector_name``, ``amp``, ``vendor``,
    ``physical_filter``, ``value``. Plain SQL, fast for a whole camera."""
    rows = store.query(
        "SELECT metric, calib_type, unit, detector, detector_name, amp, vendor,"
        " physical_filter, value, timestamp FROM records"
        " WHERE instrument=? AND day_obs=? AND level='amp' ORDER BY timestamp, seq",
        (instrument, day_obs),
    )
    cols = [
        "metric",
        "calib_type",
        "unit",
        "detector",
        "detector_name",
        "amp",
        "vendor",
        "physical_filter",
        "value",
        "timestamp",
    ]
    df = pd.DataFrame([tuple(r) for r in rows], columns=cols)
    if df.empty:
        return df.drop(columns="timestamp")
    df = df.drop_duplicates(["metric", "detector", "amp"], keep="last")
    return df.drop(columns="timestamp").reset_index(drop=True)


def summary_values(store, instrument: str, days: Sequence[str]) -> pd.DataFrame:
    """Detector- and camera-level records of the given nights: ``day_obs``, ``metric``,
    ``level``, ``detector_name``, ``value`` (the median) and ``sigma_mad``."""
    if not days:
        return pd.DataFrame(
            columns=["day_obs", "metric", "level", "detector_name", "value", "sigma_mad"]
        )
    rows = store.query(
        "SELECT day_obs, metric, level, detector_name, value, stats FROM records"
        f" WHERE instrument=? AND level IN ('detector','camera')"
        f" AND day_obs IN ({','.join('?' * len(days))}) ORDER BY day_obs, timestamp, seq",
        [instrument, *days],
    )
    out = []
    for r in rows:
        sig = math.nan
        if r["stats"]:
            with contextlib.suppress(ValueError, TypeError):
                sig = float(json.loads(r["stats"]).get("sigma_mad", math.nan))
        out.append(
            (
                r["day_obs"],
                r["metric"],
                r["level"],
                r["detector_name"] or "",
                float(r["value"]),
                sig,
            )
        )
    df = pd.DataFrame(
        out, columns=["day_obs", "metric", "level", "detector_name", "value", "sigma_mad"]
    )
    return df.drop_duplicates(["day_obs", "metric", "level", "detector_name"], keep="last")


def amp_values_of_days(store, instrument: str, days: Sequence[str], metrics: Sequence[str]):
    """Amp-level (day_obs, metric, detector_name, value) of the given nights and metrics (the
    report's fallback when a night has no summary records)."""
    if not days or not metrics:
        return pd.DataFrame(columns=["day_obs", "metric", "detector_name", "value"])
    rows = store.query(
        "SELECT day_obs, metric, detector_name, value FROM records WHERE instrument=?"
        f" AND level='amp' AND day_obs IN ({','.join('?' * len(days))})"
        f" AND metric IN ({','.join('?' * len(metrics))})",
        [instrument, *days, *metrics],
    )
    return pd.DataFrame(
        [tuple(r) for r in rows], columns=["day_obs", "metric", "detector_name", "value"]
    )
