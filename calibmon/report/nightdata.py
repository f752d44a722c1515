"""One instrument-night as the report needs it: the store's queries gathered into a
:class:`NightData` (no HTML here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from calibmon.catalogue import CALIB_TYPES, Catalogue
from calibmon.io.detectors import AMP_ORDER_8, AMP_ORDER_16, is_wavefront
from calibmon.io.detectors import detector_name as name_of_detector
from calibmon.store import queries


@dataclass
class NightData:
    """What the report shows of one instrument-night (values in their catalogue units)."""

    instrument: str
    day_obs: str
    amps: pd.DataFrame  # queries.day_amp_values
    metrics: list[str]
    amps_of: dict[str, list[str]]  # detector_name -> amps present
    vendor_of: dict[str, str]
    firing: list[queries.AlertState]
    firing_amps: dict[str, set[tuple[str, str]]]  # metric -> {(det, amp)}
    events: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    software: list[str]
    config_hashes: list[str]
    nights: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def metric_of_rule(cat: Catalogue) -> dict[str, str]:
    """The metric each catalogue rule (threshold name) is about."""
    return {t.rule: m.name for m in cat for t in m.thresholds}


def alert_detector_name(instrument: str, det: int | None) -> str:
    """Name of an alert's detector number (``""`` for a camera-level alert; the number as
    text when the instrument does not know it)."""
    if det is None:
        return ""
    try:
        return name_of_detector(instrument, det)
    except (IndexError, KeyError):
        return str(det)


def load_night(
    store,
    instrument: str,
    day_obs: str,
    cat: Catalogue,
    nights: int,
    metrics: Sequence[str] | None = None,
) -> NightData:
    """The night's amp values (with errors), ordered metrics, present detectors and amps,
    vendors, firing alerts and recent transitions, runs and software, and the last
    ``nights`` day_obs up to ``day_obs`` (for the trends); ``metrics`` limits the metrics."""
    amps = queries.day_amp_values(store, instrument, day_obs)  # values and their errors
    if metrics is not None:
        amps = amps[amps["metric"].isin(list(metrics))].reset_index(drop=True)
    present = set(amps["metric"]) if not amps.empty else set()
    order = {ct: i for i, ct in enumerate(CALIB_TYPES)}
    cat_order = {m.name: i for i, m in enumerate(cat)}
    ct_of = dict(zip(amps["metric"], amps["calib_type"], strict=False)) if not amps.empty else {}
    ordered = sorted(
        present, key=lambda m: (order.get(ct_of.get(m, ""), 99), cat_order.get(m, 999), m)
    )
    amps_of: dict[str, list[str]] = {}
    vendor_of: dict[str, str] = {}
    if not amps.empty:
        for (det, amp), vend in amps.groupby(["detector_name", "amp"])["vendor"].first().items():
            amps_of.setdefault(det, []).append(amp)
            vendor_of[det] = vend or vendor_of.get(det, "")
    for det in amps_of:  # draw every amp of a present detector, even unmeasured ones
        full = AMP_ORDER_8 if is_wavefront(det) else AMP_ORDER_16
        amps_of[det] = list(full)
    firing = queries.alert_states(store, instrument=instrument, state="firing")
    rule_metric = metric_of_rule(cat)
    firing_amps: dict[str, set[tuple[str, str]]] = {}
    for a in firing:
        metric = a.data.get("metric") or rule_metric.get(a.rule, "")
        det = a.data.get("detector_name") or alert_detector_name(instrument, a.detector)
        if a.amp:
            firing_amps.setdefault(metric, set()).add((det, a.amp))
            firing_amps.setdefault("*", set()).add((det, a.amp))
    events = queries.alert_events(store, instrument=instrument, limit=50)
    runs = queries.runs_for_day(store, instrument, day_obs)
    prov = store.query(
        "SELECT DISTINCT json_extract(provenance,'$.software_version') AS sv,"
        " json_extract(provenance,'$.config_hash') AS ch FROM records"
        " WHERE instrument=? AND day_obs=?",
        (instrument, day_obs),
    )
    software = sorted({r["sv"] for r in prov if r["sv"]})
    hashes = sorted({r["ch"] for r in prov if r["ch"]})
    all_days = [d for d in queries.day_obs_list(store, instrument) if d <= day_obs]
    return NightData(
        instrument,
        day_obs,
        amps,
        ordered,
        amps_of,
        vendor_of,
        firing,
        firing_amps,
        events,
        runs,
        software,
        hashes,
        all_days[-nights:],
    )
