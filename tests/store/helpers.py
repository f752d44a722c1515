"""Synthetic records for store tests: realistic shapes, no raws needed."""

from __future__ import annotations

from datetime import datetime, timedelta

from calibmon.records import MetricRecord, Provenance, Stats

AMPS = ("C10", "C11", "C00")
DETECTORS = ((94, "R22_S11", "E2V"), (0, "R01_S01", "ITL"))
METRICS = (("bias", "read_noise", "electron"), ("dark", "dark_current", "electron/s"))


def night_records(day_obs: str, *, instrument: str = "LSSTCam", run: str = "r1",
                  value_offset: float = 0.0) -> list[MetricRecord]:  # fmt: skip
    """Amp records of two detectors x three amps x two metrics plus a detector summary
    each and a camera summary (deterministic values)."""
    day = datetime.strptime(day_obs, "%Y%m%d")
    ts = (day + timedelta(hours=18)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    prov = Provenance(
        run=run, exposures=[int(day_obs) * 100000 + 1], n_exposures=1,
        software_version="0.1.0", config_hash="abc", processed_at=ts, gain_source="nominal",
    )  # fmt: skip
    out = []
    for k, (ctype, metric, unit) in enumerate(METRICS):
        vals = []
        for det, name, vendor in DETECTORS:
            for j, amp in enumerate(AMPS):
                v = 5.0 + k + 0.1 * j + det * 1e-3 + value_offset
                vals.append(v)
                out.append(
                    MetricRecord(
                        metric=metric, value=v, unit=unit, calib_type=ctype, level="amp",
                        instrument=instrument, detector=det, detector_name=name, amp=amp,
                        day_obs=day_obs, vendor=vendor, timestamp=ts, provenance=prov,
                        error=0.01 * (j + 1) if j else None,
                    )
                )  # fmt: skip
            out.append(
                MetricRecord(
                    metric=metric, value=vals[-1], unit=unit, calib_type=ctype,
                    level="detector", instrument=instrument, detector=det,
                    detector_name=name, amp=None, day_obs=day_obs, vendor=vendor,
                    timestamp=ts, provenance=prov,
                    stats=Stats(median=vals[-1], sigma_mad=0.1, n_points=3, min=0, max=9),
                )
            )  # fmt: skip
        out.append(
            MetricRecord(
                metric=metric, value=vals[0], unit=unit, calib_type=ctype, level="camera",
                instrument=instrument, detector=None, detector_name=None, amp=None,
                day_obs=day_obs, timestamp=ts, provenance=prov,
                stats=Stats(median=vals[0], sigma_mad=0.2, n_points=6, min=0, max=9),
            )
        )  # fmt: skip
    return out


def days(n: int, start: str = "20250101") -> list[str]:
    d0 = datetime.strptime(start, "%Y%m%d")
    return [(d0 + timedelta(days=i)).strftime("%Y%m%d") for i in range(n)]
