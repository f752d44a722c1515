"""Numbers → :class:`MetricRecord`: per-amp and detector-summary records of one
detector-day (:func:`amp_records`) and camera summaries of a day (:func:`camera_records`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from calibmon.catalogue import Catalogue
from calibmon.io.discover import Group
from calibmon.pipeline.tasks import AmpResult, DetectorDay, RunContext
from calibmon.records import MetricRecord, Stats
from calibmon.science.robust import summary_stats

METRIC_KIND: dict[str, str] = {
    "bias_level": "bias", "read_noise_adu": "bias", "read_noise": "bias",
    "bias_mean": "bias", "bias_noise": "bias",
    "dark_current": "dark", "dark_current_p95": "dark", "bright_pixels": "dark",
    "bright_columns": "dark",
    "flat_level": "flat", "gain": "flat", "nonlinearity_k2": "ptc", "dark_pixels": "flat", "dark_columns": "flat",
    "serial_cti": "flat",
    "ptc_gain": "ptc", "ptc_noise": "ptc", "ptc_turnoff": "ptc", "full_well": "ptc",
    "ptc_a00": "ptc", "linearity_turnoff": "ptc", "max_frac_nonlinearity": "ptc",
    "defect_fraction": "dark",
    "verify_bias_mean": "bias", "verify_bias_noise": "bias", "verify_bias_pass": "bias",
    "verify_dark_mean": "dark", "verify_dark_noise": "dark", "verify_dark_pass": "dark",
    "verify_new_defects": "dark",
    "verify_flat_scatter": "flat", "verify_flat_pass": "flat", "verify_new_cold_defects": "flat",
}  # fmt: skip


def _group_for(dd: DetectorDay, metric: str, catalogue: Catalogue) -> Group | None:
    """The group whose exposures/timestamp a metric's record carries."""
    kind = METRIC_KIND.get(metric, catalogue.calib_type(metric))
    fallback = {"defect_fraction": "flat", "gain": "ptc"}.get(metric)
    return dd.groups.get(kind) or (dd.groups.get(fallback) if fallback else None)


def amp_records(
    dd: DetectorDay,
    results: Iterable[AmpResult],
    catalogue: Catalogue,
    rc: RunContext,
    input_calibs: dict[str, Any] | None = None,
) -> list[MetricRecord]:
    """Per-amp and detector-summary records of one detector-day (NaNs are not records)."""
    records: list[MetricRecord] = []
    per_metric: dict[str, list[float]] = {}
    for res in results:
        for metric, value in res.values.items():
            if not math.isfinite(value) or metric not in catalogue:
                continue
            group = _group_for(dd, metric, catalogue)
            if group is None:
                continue
            used = res.used.get(group.key.kind, group.exposure_ids)
            extra = dict(res.extra.get(metric, {}))
            calibs_used = extra.pop("input_calibs", None)  # verify records name their own
            prov = rc.provenance(
                used,
                input_calibs=calibs_used if calibs_used is not None else input_calibs,
                **extra,
            )
            records.append(
                MetricRecord(
                    metric=metric,
                    value=value,
                    unit=catalogue.unit(metric),
                    calib_type=catalogue.calib_type(metric),
                    level="amp",
                    instrument=dd.instrument,
                    detector=dd.detector,
                    detector_name=dd.detector_name,
                    amp=res.amp,
                    day_obs=dd.day_obs,
                    physical_filter=group.key.physical_filter,
                    vendor=dd.vendor,
                    timestamp=group.timestamp,
                    provenance=prov,
                    error=res.errors.get(metric),
                )
            )
            per_metric.setdefault(metric, []).append(value)
    for metric, values in per_metric.items():
        group = _group_for(dd, metric, catalogue)
        assert group is not None
        st = summary_stats(np.asarray(values))
        records.append(
            MetricRecord(
                metric=metric,
                value=st["median"],
                unit=catalogue.unit(metric),
                calib_type=catalogue.calib_type(metric),
                level="detector",
                instrument=dd.instrument,
                detector=dd.detector,
                detector_name=dd.detector_name,
                amp=None,
                day_obs=dd.day_obs,
                physical_filter=group.key.physical_filter,
                vendor=dd.vendor,
                timestamp=group.timestamp,
                provenance=rc.provenance(group.exposure_ids, n_exposures=len(group.exposures)),
                stats=Stats(**st),
            )
        )
    return records


def camera_records(
    amp_level: Sequence[MetricRecord], catalogue: Catalogue, rc: RunContext
) -> list[MetricRecord]:
    """Camera summaries per (instrument, day_obs, metric) over all stored amp records."""
    buckets: dict[tuple[str, str, str], list[MetricRecord]] = {}
    for r in amp_level:
        if r.level == "amp":
            buckets.setdefault((r.instrument, r.day_obs, r.metric), []).append(r)
    out: list[MetricRecord] = []
    for (instrument, day_obs, metric), recs in sorted(buckets.items()):
        st = summary_stats(np.asarray([r.value for r in recs]))
        exposures = sorted({e for r in recs for e in r.provenance.exposures})
        out.append(
            MetricRecord(
                metric=metric,
                value=st["median"],
                unit=recs[0].unit,
                calib_type=recs[0].calib_type,
                level="camera",
                instrument=instrument,
                detector=None,
                detector_name=None,
                amp=None,
                day_obs=day_obs,
                physical_filter=recs[0].physical_filter,
                vendor="",
                timestamp=min(r.timestamp for r in recs),
                provenance=rc.provenance(exposures),
                stats=Stats(**st),
            )
        )
    return out
