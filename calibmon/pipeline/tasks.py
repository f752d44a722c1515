"""What the pipeline works on: the picklable task types sent to workers, the numbers a
worker sends back (:class:`AmpResult`), a detector-day's groups and a run's identity.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from calibmon import __version__
from calibmon.calibs.products import CertifiedCalib
from calibmon.io import detectors as dets
from calibmon.io.discover import Group
from calibmon.records import Provenance, iso_utc_ms

if TYPE_CHECKING:  # pragma: no cover
    from calibmon.pipeline.reading import FileCache

KIND_ORDER = ("bias", "flat", "ptc", "dark")
GAIN_METRICS_IN_STORE = ("ptc_gain", "gain")


@dataclass(frozen=True)
class Frame:
    """One exposure file as the steps see it: exposure and dark times in seconds."""

    path: str
    exposure_id: int
    exptime_s: float
    darktime_s: float


@dataclass(frozen=True)
class Hint:
    """A number measured on an earlier day (or nominal) that today's steps may need."""

    value: float
    error: float  # 1σ, same unit; NaN when unknown
    source: str  # e.g. "ptc_gain 20251101 (store)", "nominal E2V"
    day_obs: str = ""  # day it was measured ("" for nominal values)


@dataclass(frozen=True)
class AmpHints:
    """Earlier measurements of one amp: gain (e-/adu), a00 (1/e-), k2 (1/adu)."""

    gain: Hint | None = None
    a00: Hint | None = None
    k2: Hint | None = None


@dataclass(frozen=True)
class AmpTask:
    """One amp of one detector-day, as the steps see it."""

    instrument: str
    day_obs: str
    detector_name: str
    vendor: str
    amp: str
    frames: dict[str, tuple[Frame, ...]]  # kind -> frames (seqnum order)
    hints: AmpHints  # earlier gain / a00 / k2 of this amp (store or nominal)
    cache: FileCache | None = field(default=None, compare=False)
    calibs: dict[str, CertifiedCalib] | None = None  # kind -> certified product (verify steps)


@dataclass(frozen=True)
class AmpSetTask:
    """Several amps of one detector-day, measured one after the other by one worker.

    The worker opens each file once for the whole set (CFITSIO parses every HDU header on
    open: ~4 ms a file, 25 % of a full-size CCD's decompression if paid once per amp),
    and holds one amp's stack at a time.
    """

    instrument: str
    day_obs: str
    detector_name: str
    vendor: str
    amps: tuple[str, ...]
    frames: dict[str, tuple[Frame, ...]]
    hints: dict[str, AmpHints]
    calibs: dict[str, CertifiedCalib] | None = None  # kind -> certified product (verify steps)


@dataclass
class AmpResult:
    """Numbers measured for one amp of one detector-day."""

    amp: str
    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)  # metric -> 1-sigma, same unit
    reasons: dict[str, str] = field(default_factory=dict)  # metric -> why it is NaN
    used: dict[str, list[int]] = field(default_factory=dict)  # kind -> exposure ids used
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> provenance
    rejected: dict[str, str] = field(default_factory=dict)  # path -> reason
    images: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> binned master
    detsec: str | None = None  # the amp's DETSEC (pictures)
    ptc_curve: dict[str, list] | None = None  # PTC points and fit (plots)
    verify: dict[str, Any] = field(default_factory=dict)  # per-exposure flat verification
    seconds: float = 0.0

    def put(
        self,
        metric: str,
        value: float,
        reason: str = "",
        *,
        error: float | None = None,
        **extra: Any,
    ) -> None:
        """Record ``value`` (NaN with ``reason`` when not measurable) and its 1σ ``error``
        (same unit; None where the metric has no statistical uncertainty, e.g. counts)."""
        v = float(value)
        self.values[metric] = v
        if error is not None and math.isfinite(float(error)):
            self.errors[metric] = float(error)
        if not math.isfinite(v):
            self.reasons[metric] = reason or "not measurable"
        if extra:
            self.extra[metric] = extra


@dataclass(frozen=True)
class RunContext:
    """What every record of one run carries in its provenance."""

    run_id: str
    config_hash: str
    processed_at: str
    software_version: str = __version__

    def provenance(
        self,
        exposures: list[int],
        *,
        n_exposures: int | None = None,
        input_calibs: dict[str, Any] | None = None,
        **extra: Any,
    ) -> Provenance:
        """The provenance of a record of this run made from ``exposures`` (exposure ids);
        ``extra`` keys (e.g. ``gain_source``) are kept as they are."""
        return Provenance(
            run=self.run_id,
            exposures=exposures,
            n_exposures=len(exposures) if n_exposures is None else n_exposures,
            software_version=self.software_version,
            config_hash=self.config_hash,
            input_calibs=dict(input_calibs or {}),
            processed_at=self.processed_at,
            **extra,
        )


def new_run_context(config_hash: str) -> RunContext:
    """A new run: id ``<UTC time>-<8 hex>``, processed now (UTC, ms)."""
    now = datetime.now(UTC)
    run_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    return RunContext(run_id=run_id, config_hash=config_hash, processed_at=iso_utc_ms(now))


@dataclass
class DetectorDay:
    """One detector's exposures of one day_obs, one group per kind."""

    instrument: str
    day_obs: str
    detector_name: str
    detector: int
    vendor: str
    groups: dict[str, Group]

    @property
    def amps(self) -> tuple[str, ...]:
        return dets.AMP_ORDER_8 if dets.is_wavefront(self.detector_name) else dets.AMP_ORDER_16

    def frames(self) -> dict[str, tuple[Frame, ...]]:
        return {
            kind: tuple(
                Frame(e.path, e.exposure_id, e.exptime_s, e.darktime_s) for e in g.exposures
            )
            for kind, g in self.groups.items()
        }
