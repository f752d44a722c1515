"""The notebook API in one import (README: "The report and the notebook API").

This module only re-exports; each concept lives in its own module:

- :mod:`calibmon.store.dataframes` — stored records as DataFrames (:func:`frame`,
  :func:`records_frame`, :class:`StoreFrames`, the column lists);
- :mod:`calibmon.store.influx_query` — the same numbers from InfluxDB / Sasquatch
  (:func:`influxql_query`, :func:`influx_frame`);
- :mod:`calibmon.store.images` — the picture tables (amp images, PTC curves) and their
  blob codec;
- :mod:`calibmon.store.queries` — alert state, days, runs and a night's values.

Notebook use::

    from calibmon.store import frames
    df = frames.frame(store, metric="read_noise", detector_name="R22_S11", since="2025-11-01")
    frames.influx_frame("http://127.0.0.1:8086", "lsst.cp",
                        frames.influxql_query(metric="read_noise", since="2025-11-01"))

Code inside calibmon imports from the concept modules, not from here.
"""

from __future__ import annotations

from calibmon.store.dataframes import (
    COLUMNS,
    PROVENANCE_COLUMNS,
    RECORD_COLUMNS,
    STATS_COLUMNS,
    StoreFrames,
    frame,
    records_frame,
    rows_frame,
)
from calibmon.store.images import (
    IMAGE_KINDS,
    IMAGE_UNITS,
    AmpImage,
    PtcCurve,
    amp_images,
    decode_amp_image,
    encode_amp_image,
    ptc_curves,
)
from calibmon.store.influx_query import influx_frame, influxql_query
from calibmon.store.queries import (
    AlertState,
    alert_events,
    alert_states,
    amp_values_of_days,
    day_amp_values,
    day_obs_list,
    instruments_on,
    runs_for_day,
    summary_values,
)

__all__ = [
    "COLUMNS",
    "IMAGE_KINDS",
    "IMAGE_UNITS",
    "PROVENANCE_COLUMNS",
    "RECORD_COLUMNS",
    "STATS_COLUMNS",
    "AlertState",
    "AmpImage",
    "PtcCurve",
    "StoreFrames",
    "alert_events",
    "alert_states",
    "amp_images",
    "amp_values_of_days",
    "day_amp_values",
    "day_obs_list",
    "decode_amp_image",
    "encode_amp_image",
    "frame",
    "influx_frame",
    "influxql_query",
    "instruments_on",
    "ptc_curves",
    "records_frame",
    "rows_frame",
    "runs_for_day",
    "summary_values",
]
