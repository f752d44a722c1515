"""The InfluxDB side of the notebook API: InfluxQL for what :func:`calibmon.store.dataframes.frame`
selects, and a small client of InfluxDB 1.x's ``/query`` endpoint (Sasquatch's too).

    q = influxql_query(metric="read_noise", detector_name="R22_S11", since="2025-11-01")
    influx_frame("http://127.0.0.1:8086", "lsst.cp", q)

It reads what the sinks wrote (DESIGN.md §5 schema) and does not import them.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

from calibmon.catalogue import load_catalogue
from calibmon.dayobs import day_obs_start, shift_day_obs, to_day_obs


def _quote_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _day_start(day_obs: str, plus_days: int = 0) -> str:
    """RFC 3339 start of an observing day: 12:00 UTC of day_obs (+ ``plus_days``)."""
    return day_obs_start(shift_day_obs(day_obs, plus_days)).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    s, u = to_day_obs(since), to_day_obs(until)
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
