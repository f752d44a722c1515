"""Metric records: every measured number is one record (DESIGN.md §4, contract).

``MetricRecord.to_json_dict()`` is exactly what ``calibmon export --format jsonl``
writes. Numpy scalars are converted to ``float``/``int`` at this boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from calibmon.dayobs import check_day_obs

Level = Literal["amp", "detector", "camera"]


def iso_utc_ms(dt: datetime) -> str:
    """Format a datetime as ``YYYY-MM-DDTHH:MM:SS.sssZ`` (UTC, millisecond precision)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso_utc(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` or offset, or naive meaning UTC)."""
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


class Stats(BaseModel):
    """Summary statistics over the level below (amps of a detector, or all amps)."""

    model_config = ConfigDict(extra="forbid")

    median: float
    sigma_mad: float
    n_points: int
    min: float
    max: float


class Provenance(BaseModel):
    """Where a number came from. Extra keys (e.g. ``gain_source``) are allowed."""

    model_config = ConfigDict(extra="allow")

    run: str
    exposures: list[int] = Field(default_factory=list)
    n_exposures: int = 0
    software_version: str
    config_hash: str
    input_calibs: dict[str, Any] = Field(default_factory=dict)
    processed_at: str


PROVENANCE_FIELDS: tuple[str, ...] = (
    "run",
    "exposures",
    "n_exposures",
    "software_version",
    "config_hash",
    "processed_at",
    "input_calibs",
)
"""The declared keys of :class:`Provenance`, in the order exports write them as columns
(any other key is an extra, e.g. ``gain_source``)."""

POINT_PROVENANCE_FIELDS: tuple[str, ...] = (
    "run",
    "day_obs",
    "exposures",
    "n_exposures",
    "software_version",
    "config_hash",
)
"""What a time-series point carries as provenance fields (DESIGN.md §5): the run, the
record's ``day_obs`` (a string field, since InfluxQL cannot range over tags) and the
provenance of :data:`PROVENANCE_FIELDS` except the bulky or per-run ``processed_at`` and
``input_calibs``. The InfluxDB sinks write them, the dashboards read them."""


class MetricRecord(BaseModel):
    """One measured number (DESIGN.md §4)."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    value: float
    unit: str
    calib_type: str
    level: Level
    instrument: str
    detector: int | None
    detector_name: str | None
    amp: str | None
    day_obs: str
    physical_filter: str = ""
    vendor: str = ""
    timestamp: str
    provenance: Provenance
    stats: Stats | None = None
    # 1-sigma statistical uncertainty of an amp-level value, same unit (DESIGN.md §4);
    # None where the metric has none (counts, summaries).
    error: float | None = None

    @field_validator("error", mode="before")
    @classmethod
    def _finite_error(cls, v: Any) -> float | None:
        if v is None:
            return None
        f = float(v)
        if not math.isfinite(f) or f < 0:
            return None  # an error that cannot be computed is "no error", not a bad record
        return f

    @field_validator("value", mode="before")
    @classmethod
    def _finite_float(cls, v: Any) -> float:
        f = float(v)
        if not math.isfinite(f):
            raise ValueError("value must be finite; unmeasurable numbers are not records")
        return f

    @field_validator("day_obs")
    @classmethod
    def _day_obs(cls, v: str) -> str:
        return check_day_obs(v)

    def identity(self) -> tuple[str, str, str, int, str, str]:
        """The store's unique key: (metric, level, instrument, detector, amp, timestamp)."""
        return (
            self.metric,
            self.level,
            self.instrument,
            -1 if self.detector is None else self.detector,
            self.amp or "",
            self.timestamp,
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The JSONL export form (contract); ``stats`` only on summary records."""
        d = self.model_dump(mode="json")
        d["error"] = self.error  # always present: null where the metric has none
        if d.get("stats") is None:
            d.pop("stats", None)
        return d


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 3x more per record
class StoredRecord:
    """A record as the outbox streams it to remote sinks: the same attributes as
    :class:`MetricRecord`, built without pydantic (rows were validated when they were
    written). Building a ``MetricRecord`` costs ~10 µs even with ``model_construct``,
    the largest share of pushing a full LSSTCam day (~10⁵ records); this costs ~1 µs.
    ``to_record()`` gives the validated model back."""

    metric: str
    value: float
    unit: str
    calib_type: str
    level: str
    instrument: str
    detector: int | None
    detector_name: str | None
    amp: str | None
    day_obs: str
    physical_filter: str
    vendor: str
    timestamp: str
    provenance: Provenance
    stats: Stats | None
    error: float | None = None

    def to_record(self) -> MetricRecord:
        return MetricRecord.model_validate(
            {f: getattr(self, f) for f in self.__slots__}  # type: ignore[attr-defined]
        )
