"""Stored records as pandas DataFrames: the notebook API's tables.

Notebook use::

    import calibmon
    store = calibmon.open_store("calibmon.sqlite")
    df = frame(store, metric="read_noise", detector_name="R22_S11", since="2025-11-01")
    df.pivot_table(index="day_obs", columns="amp", values="value")   # one column per amp

:func:`records_frame` gives one row per record: the §4 fields as columns, ``stats`` as
``stats_median`` … ``stats_max`` (NaN on amp records), and the provenance flattened into
``run``, ``exposures`` (comma list, as in §5), ``n_exposures``, ``software_version``,
``config_hash``, ``processed_at``, ``input_calibs`` (JSON text) plus one column per extra
provenance key (e.g. ``gain_source``). ``timestamp`` is a UTC ``datetime64``.
The same numbers from InfluxDB: :mod:`calibmon.store.influx_query`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import pandas as pd

from calibmon.dayobs import to_day_obs
from calibmon.records import PROVENANCE_FIELDS, MetricRecord
from calibmon.store.images import ptc_curves
from calibmon.store.queries import alert_states

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
PROVENANCE_COLUMNS: tuple[str, ...] = PROVENANCE_FIELDS
COLUMNS: tuple[str, ...] = RECORD_COLUMNS + STATS_COLUMNS + PROVENANCE_COLUMNS
"""Columns of :func:`records_frame`, in order (extra provenance keys follow)."""

_PROVENANCE_KNOWN = frozenset(PROVENANCE_FIELDS)


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
        day_obs=to_day_obs(day_obs),
        metric=_as_list(metric),
        instrument=instrument,
        detector_name=detector_name,
        amp=amp,
        level=level,
        since_day_obs=to_day_obs(since),
        until_day_obs=to_day_obs(until),
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
