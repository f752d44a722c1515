"""Record → time-series point (DESIGN.md §5, contract).

A :class:`~calibmon.records.MetricRecord` becomes part of one point:

- **measurement** ``<namespace>.<calib_type>`` for amp records (``lsst.cp.bias``) and
  ``<namespace>.<calib_type>_summary`` for detector and camera records;
- **tags** ``instrument``, ``detector`` (number as a string), ``detector_name``, ``amp``,
  ``level``, ``physical_filter``, ``vendor``;
- **fields** ``<metric>`` (float), ``<metric>_err`` (float, amp records whose metric has
  an uncertainty); on summaries also ``<metric>_median``,
  ``<metric>_sigma_mad``, ``<metric>_min``, ``<metric>_max`` (float) and ``<metric>_n``
  (integer); provenance ``run``, ``day_obs``, ``exposures`` (comma list), ``software_version``,
  ``config_hash`` (strings) and ``n_exposures`` (integer);
- **time** the record timestamp, in integer milliseconds since the Unix epoch.

Decisions (see also ``tests/sinks/test_schema.py`` and ``test_influxdb1.py``):

Empty tags
    InfluxDB line protocol cannot carry an empty tag value (influxd answers
    ``missing tag value``). A tag whose value is empty or missing — ``physical_filter`` of a
    bias, ``detector``/``detector_name`` of a camera record, ``amp`` of a summary — is
    **omitted** from the point. InfluxQL treats an absent tag as ``''``: ``WHERE
    physical_filter=''`` selects those points and ``GROUP BY physical_filter`` puts them in
    a group whose tag is ``""``; so dashboards behave as if the empty string was stored.
    :func:`record_tags` still returns every key (``''`` when empty) so that the Sasquatch
    REST sink can send ``""`` as Sasquatch asks ("use an empty string when a tag value is
    missing"); :meth:`MetricPoint.to_point` drops the empty ones.
Camera-level ``detector``
    Absent (queries see ``''``), likewise ``detector_name``; ``level=camera`` tells camera
    points from detector points in the ``_summary`` measurement.
Merged points
    Records with the same measurement, tags and time (the metrics of one amp from one
    group of exposures) become **one point with several fields** — one line. A point's
    identity does not involve the metric, so a re-run of the night rewrites the same points:
    InfluxDB replaces the values of the fields written and keeps the others, which is also
    why a point split over two batches, or re-sent after a lost acknowledgement, ends up
    whole and single. Provenance fields of a merged point are those of the last record merged
    (the store yields records in ``seq`` order, i.e. the most recently written last).

Escaping is done by :mod:`calibmon.sinks.lineprotocol` (tag keys/values and field keys:
``,`` ``=`` and space; measurement: ``,`` and space; string fields: ``"`` and ``\\``); what
line protocol cannot carry back unchanged (line breaks, tabs, a backslash in a name or tag
value) is refused with ``ValueError``. :meth:`MetricPoint.to_point` (influxdb-client's
:class:`~influxdb_client.Point`, for the InfluxDB 2 sink) writes the same text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from influxdb_client import Point

from calibmon.records import POINT_PROVENANCE_FIELDS, MetricRecord, parse_iso_utc
from calibmon.sinks.lineprotocol import encode_line

TAG_KEYS: tuple[str, ...] = (
    "instrument",
    "detector",
    "detector_name",
    "amp",
    "level",
    "physical_filter",
    "vendor",
)
"""Tag keys of every point, in this order (DESIGN §5)."""

PROVENANCE_FIELDS: tuple[str, ...] = POINT_PROVENANCE_FIELDS
"""Provenance carried as fields (owned by :mod:`calibmon.records`); ``n_exposures`` is an
integer, the others strings."""

STAT_SUFFIXES: tuple[str, ...] = ("median", "sigma_mad", "n", "min", "max")
"""Summary-record fields are ``<metric>_<suffix>``; ``_n`` is an integer, the rest floats."""

_RESERVED = frozenset(PROVENANCE_FIELDS) | {"time", "timestamp", *TAG_KEYS}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PRECISION_FACTOR = {"ms": 1, "us": 1_000, "ns": 1_000_000}

FieldValue = float | int | str


def measurement_name(record: MetricRecord, namespace: str = "lsst.cp") -> str:
    """``<namespace>.<calib_type>`` (amp level) or ``<namespace>.<calib_type>_summary``."""
    if record.level == "amp":
        return f"{namespace}.{record.calib_type}"
    return f"{namespace}.{record.calib_type}_summary"


def record_tags(record: MetricRecord) -> dict[str, str]:
    """All seven tags as strings, ``''`` where the record has no value (see module notes)."""
    return {
        "instrument": record.instrument,
        "detector": "" if record.detector is None else str(record.detector),
        "detector_name": record.detector_name or "",
        "amp": record.amp or "",
        "level": record.level,
        "physical_filter": record.physical_filter or "",
        "vendor": record.vendor or "",
    }


def metric_fields(record: MetricRecord) -> dict[str, float | int]:
    """``{metric: value}`` plus, on summary records, the ``<metric>_<stat>`` fields."""
    name = record.metric
    if not name or name in _RESERVED:
        raise ValueError(f"metric name {name!r} cannot be a field name (reserved)")
    fields: dict[str, float | int] = {}
    _add_metric_fields(fields, name, record)
    return fields


def _add_metric_fields(fields: dict[str, Any], name: str, record: Any) -> None:
    """``<metric>``, ``<metric>_err`` (amp records with an error) and the summary stats."""
    fields[name] = float(record.value)
    error = getattr(record, "error", None)
    if error is not None:
        fields[f"{name}_err"] = float(error)
    stats = record.stats
    if stats is not None:
        fields[f"{name}_median"] = float(stats.median)
        fields[f"{name}_sigma_mad"] = float(stats.sigma_mad)
        fields[f"{name}_n"] = int(stats.n_points)
        fields[f"{name}_min"] = float(stats.min)
        fields[f"{name}_max"] = float(stats.max)


def provenance_fields(record: MetricRecord) -> dict[str, str | int]:
    """``run``, ``day_obs``, ``exposures`` (comma list), ``n_exposures``, versions."""
    p = record.provenance
    return {
        "run": p.run,
        "day_obs": record.day_obs,
        "exposures": ",".join(str(e) for e in p.exposures),
        "n_exposures": int(p.n_exposures),
        "software_version": p.software_version,
        "config_hash": p.config_hash,
    }


@lru_cache(maxsize=4096)
def timestamp_ms(timestamp: str) -> int:
    """Milliseconds since the Unix epoch of an ISO-8601 record timestamp (exact integer)."""
    delta = parse_iso_utc(timestamp) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass(slots=True)
class MetricPoint:
    """One point: the merged fields of the records sharing measurement, tags and time."""

    measurement: str
    tags: dict[str, str]
    time_ms: int
    fields: dict[str, FieldValue] = field(default_factory=dict)
    n_records: int = 0

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...], int]:
        """The point's identity in the server: (measurement, tags, time)."""
        return self.measurement, tuple(self.tags.items()), self.time_ms

    def to_point(self, precision: str = "ms") -> Point:
        """An influxdb-client :class:`Point`; empty tags are left out (see module notes)."""
        p = Point(self.measurement)
        for k, v in self.tags.items():
            if v:
                p.tag(k, v)
        for k, v in self.fields.items():
            p.field(k, v)
        return p.time(self.time_ms * _PRECISION_FACTOR[precision], precision)

    def to_line(self, precision: str = "ms") -> str:
        """The point in InfluxDB line protocol (:mod:`calibmon.sinks.lineprotocol`; the
        same text as ``to_point(precision).to_line_protocol()``)."""
        return encode_line(
            self.measurement, self.tags, self.fields, self.time_ms * _PRECISION_FACTOR[precision]
        )


def build_points(records: Iterable[MetricRecord], namespace: str = "lsst.cp") -> list[MetricPoint]:
    """Merge ``records`` into points, in order of first appearance (see module notes).

    Same result as putting :func:`measurement_name`, :func:`record_tags`,
    :func:`metric_fields` and :func:`provenance_fields` of each record together, written
    out inline because the outbox runs it on every record it delivers.
    """
    points: dict[tuple[object, ...], MetricPoint] = {}
    last: dict[tuple[object, ...], MetricRecord] = {}
    measurements: dict[tuple[str, bool], str] = {}
    for r in records:
        det = r.detector
        key = (
            r.calib_type,
            r.instrument,
            "" if det is None else str(det),
            r.detector_name or "",
            r.amp or "",
            r.level,
            r.physical_filter or "",
            r.vendor or "",
            timestamp_ms(r.timestamp),
        )
        point = points.get(key)
        if point is None:
            mkey = (r.calib_type, r.level == "amp")
            measurement = measurements.get(mkey)
            if measurement is None:
                measurement = measurements[mkey] = measurement_name(r, namespace)
            point = points[key] = MetricPoint(
                measurement, dict(zip(TAG_KEYS, key[1:8], strict=True)), key[8]
            )
        name = r.metric
        if not name or name in _RESERVED:
            raise ValueError(f"metric name {name!r} cannot be a field name (reserved)")
        _add_metric_fields(point.fields, name, r)
        point.n_records += 1
        last[key] = r
    # Provenance of a merged point is its last record's: computed once per point.
    for key, point in points.items():
        point.fields.update(provenance_fields(last[key]))
    return list(points.values())


def to_line_protocol(
    records: Sequence[MetricRecord], namespace: str = "lsst.cp", precision: str = "ms"
) -> list[str]:
    """The records as line-protocol lines, one per merged point."""
    return [p.to_line(precision) for p in build_points(records, namespace)]
