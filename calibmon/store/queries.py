"""The report's read queries: alert state and events, the days, instruments and runs of
the store, and one night's (or a few nights') values as small DataFrames. Plain SQL on
indexed columns, so their cost follows the nights asked for, not the history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd


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
    ``physical_filter``, ``value`` and ``error`` (the value's 1σ, same unit; NaN where the
    metric has none). Plain SQL, fast for a whole camera."""
    rows = store.query(
        "SELECT metric, calib_type, unit, detector, detector_name, amp, vendor,"
        " physical_filter, value, error, timestamp FROM records"
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
        "error",
        "timestamp",
    ]
    df = pd.DataFrame([tuple(r) for r in rows], columns=cols)
    df["error"] = pd.to_numeric(df["error"], errors="coerce").astype(float)
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
    # σ_MAD read by SQLite's json_extract (C) instead of json.loads per row; stats that are
    # not valid JSON (never written by calibmon) give NaN rather than failing the query
    rows = store.query(
        "SELECT day_obs, metric, level, detector_name, value,"
        " CASE WHEN json_valid(stats) THEN json_extract(stats, '$.sigma_mad') END AS sig"
        " FROM records WHERE instrument=? AND level IN ('detector','camera')"
        f" AND day_obs IN ({','.join('?' * len(days))}) ORDER BY day_obs, timestamp, seq",
        [instrument, *days],
    )
    out = [(r[0], r[1], r[2], r[3] or "", float(r[4]), _float_or_nan(r[5])) for r in rows]
    df = pd.DataFrame(
        out, columns=["day_obs", "metric", "level", "detector_name", "value", "sigma_mad"]
    )
    return df.drop_duplicates(["day_obs", "metric", "level", "detector_name"], keep="last")


def _float_or_nan(x: Any) -> float:
    """A JSON number as float; NaN for null, text or anything else."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


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
