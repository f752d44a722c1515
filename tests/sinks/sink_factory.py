"""Realistic MetricRecords of a night, for sink tests and the push benchmark.

Per-amp metrics follow DESIGN.md §4 (names, units, calib types); values are drawn around
typical LSSTCam numbers with a seeded generator; detector and camera summaries carry
``stats`` over the amps below with ``value`` equal to the median, as §4 asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from calibmon.io import detectors as det
from calibmon.records import MetricRecord, Provenance, Stats, iso_utc_ms
from calibmon.science.robust import SIGMA_PER_MAD

# metric: (unit, typical value, scatter)
METRICS: dict[str, dict[str, tuple[str, float, float]]] = {
    "bias": {
        "bias_level": ("adu", 15000.0, 800.0),
        "read_noise": ("electron", 5.4, 0.4),
        "read_noise_adu": ("adu", 3.6, 0.3),
        "bias_mean": ("adu", 0.2, 0.3),
        "bias_noise": ("adu", 3.8, 0.3),
    },
    "dark": {
        "dark_current": ("electron/s", 0.004, 0.001),
        "dark_current_p95": ("electron/s", 0.02, 0.004),
        "bright_pixels": ("count", 12.0, 4.0),
        "bright_columns": ("count", 0.0, 0.4),
    },
    "flat": {
        "flat_level": ("adu", 20000.0, 700.0),
        "gain": ("electron/adu", 1.6, 0.08),
        "dark_pixels": ("count", 30.0, 8.0),
        "dark_columns": ("count", 0.0, 0.4),
        "serial_cti": ("1", 2e-6, 5e-7),
    },
    "ptc": {
        "ptc_gain": ("electron/adu", 1.6, 0.08),
        "ptc_noise": ("electron", 5.5, 0.4),
        "ptc_turnoff": ("adu", 80000.0, 5000.0),
        "full_well": ("electron", 128000.0, 8000.0),
        "ptc_a00": ("1/electron", -2.5e-6, 2e-7),
        "linearity_turnoff": ("adu", 75000.0, 4000.0),
        "max_frac_nonlinearity": ("1", 0.004, 0.001),
    },
    "defects": {
        "defect_fraction": ("1", 0.001, 0.0003),
    },
    "verify": {
        "verify_bias_mean": ("adu", 0.0, 0.2),
        "verify_bias_noise": ("adu", 3.7, 0.3),
        "verify_dark_mean": ("electron/s", 0.0, 0.001),
        "verify_dark_noise": ("electron/s", 0.01, 0.002),
        "verify_new_defects": ("count", 1.0, 1.0),
        "verify_flat_scatter": ("1", 0.002, 0.0005),
        "verify_bias_pass": ("1", 1.0, 0.0),
        "verify_dark_pass": ("1", 1.0, 0.0),
        "verify_flat_pass": ("1", 0.95, 0.02),
    },
}
COUNT_UNITS = {"count"}


def detector_list(
    names: Sequence[str] | None = None,
) -> list[tuple[int, str, str, tuple[str, ...]]]:
    """(number, name, vendor, amps) of LSSTCam detectors (all 205 when ``names`` is None)."""
    names = det.lsstcam_detectors() if names is None else names
    out = []
    for name in names:
        amps = det.AMP_ORDER_8 if det.is_wavefront(name) else det.AMP_ORDER_16
        out.append((det.detector_number("LSSTCam", name), name, det.default_vendor(name), amps))
    return out


def provenance(run: str, day_obs: str, first_seq: int, n_exposures: int) -> Provenance:
    base = int(day_obs) * 100000
    return Provenance(
        run=run,
        exposures=[base + first_seq + i for i in range(n_exposures)],
        n_exposures=n_exposures,
        software_version="0.1.0",
        config_hash="c0ffee12",
        input_calibs={},
        processed_at="2025-11-22T10:00:00.000Z",
    )


def _summary(values: np.ndarray) -> Stats:
    med = float(np.median(values))
    return Stats(
        median=med,
        sigma_mad=float(SIGMA_PER_MAD * np.median(np.abs(values - med))),
        n_points=int(values.size),
        min=float(values.min()),
        max=float(values.max()),
    )


def night_records(
    day_obs: str = "20251121",
    *,
    calib_types: Iterable[str] = ("bias",),
    detectors: Sequence[str] | None = ("R22_S11", "R22_S12"),
    summaries: bool = True,
    seed: int = 1,
    run: str = "run-20251121",
    instrument: str = "LSSTCam",
) -> list[MetricRecord]:
    """Every record of one night: per-amp metrics, detector and camera summaries."""
    rng = np.random.default_rng(seed)
    dets = detector_list(detectors)
    start = datetime.strptime(day_obs, "%Y%m%d").replace(tzinfo=UTC) + timedelta(hours=18)
    records: list[MetricRecord] = []
    for k, calib_type in enumerate(calib_types):
        metrics = METRICS[calib_type]
        ts = iso_utc_ms(start + timedelta(minutes=40 * k, milliseconds=123))
        prov = provenance(run, day_obs, 1 + 20 * k, 15)
        physical_filter = "empty" if calib_type in ("flat", "ptc") else ""
        per_metric: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
        # One group (detector, calib type) at a time, as the pipeline writes them.
        for number, name, vendor, amps in dets:
            for metric, (unit, mu, sigma) in metrics.items():
                values = rng.normal(mu, sigma, len(amps))
                if unit in COUNT_UNITS:
                    values = np.abs(np.round(values))
                per_metric[metric].append(values)
                for amp, v in zip(amps, values, strict=True):
                    records.append(
                        MetricRecord(
                            metric=metric, value=float(v), unit=unit, calib_type=calib_type,
                            level="amp", instrument=instrument, detector=number,
                            detector_name=name, amp=amp, day_obs=day_obs,
                            physical_filter=physical_filter, vendor=vendor, timestamp=ts,
                            provenance=prov,
                        )
                    )  # fmt: skip
                if summaries:
                    stats = _summary(values)
                    records.append(
                        MetricRecord(
                            metric=metric, value=stats.median, unit=unit, calib_type=calib_type,
                            level="detector", instrument=instrument, detector=number,
                            detector_name=name, amp=None, day_obs=day_obs,
                            physical_filter=physical_filter, vendor=vendor, timestamp=ts,
                            provenance=prov, stats=stats,
                        )
                    )  # fmt: skip
        if summaries:
            for metric, (unit, _, _) in metrics.items():
                stats = _summary(np.concatenate(per_metric[metric]))
                records.append(
                    MetricRecord(
                        metric=metric, value=stats.median, unit=unit, calib_type=calib_type,
                        level="camera", instrument=instrument, detector=None, detector_name=None,
                        amp=None, day_obs=day_obs, physical_filter=physical_filter, vendor="",
                        timestamp=ts, provenance=prov, stats=stats,
                    )
                )  # fmt: skip
    return records


def many_nights(
    n_nights: int, *, detectors: Sequence[str] | None = None, metric_types=("bias",)
) -> list[MetricRecord]:
    """``night_records`` for consecutive nights from 2025-11-01, amp records only."""
    out: list[MetricRecord] = []
    day0 = datetime(2025, 11, 1, tzinfo=UTC)
    for i in range(n_nights):
        day_obs = (day0 + timedelta(days=i)).strftime("%Y%m%d")
        out += night_records(
            day_obs,
            calib_types=metric_types,
            detectors=detectors,
            summaries=False,
            seed=i,
            run=f"run-{day_obs}",
        )
    return out
