"""Judging a day: every enabled rule on the stored records of one day_obs (no state).

:func:`rule_params` applies the ``alerts:`` overrides to the catalogue's thresholds;
:func:`judge_day` reads today's values and the history the baseline rules need from the
store and returns one :class:`~calibmon.alerts.rules.Evaluation` per rule and identity.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from calibmon.alerts.config import AlertsConfig
from calibmon.alerts.rules import (
    Evaluation,
    Expectation,
    RuleParams,
    Sample,
    Subject,
    evaluate_baseline_rule,
    evaluate_fixed,
    evaluate_staleness,
)
from calibmon.catalogue import Catalogue
from calibmon.store import alerts as db
from calibmon.store.sqlite import Store

log = logging.getLogger(__name__)


def rule_params(catalogue: Catalogue, cfg: AlertsConfig) -> list[RuleParams]:
    """Every enabled catalogue threshold with ``alerts:`` overrides applied
    (rule override > global ``alerts`` value > catalogue)."""
    out = []
    known = set()
    for m in catalogue:
        for t in m.thresholds:
            known.add(t.rule)
            ov = cfg.rules.get(t.rule)
            if ov is not None and not ov.enabled:
                continue

            def pick(name: str, *fallbacks: Any, _ov: Any = ov) -> Any:
                v = getattr(_ov, name, None) if _ov is not None else None
                if v is not None:
                    return v
                for f in fallbacks:
                    if f is not None:
                        return f
                return None

            out.append(
                RuleParams(
                    metric=m.name,
                    unit=m.unit,
                    threshold=t,
                    severity=pick("severity", t.severity),
                    baseline_nights=pick("baseline_nights", cfg.baseline_nights, t.baseline_nights),
                    min_baseline_nights=pick(
                        "min_baseline_nights", cfg.min_baseline_nights, t.min_baseline_nights
                    ),
                    for_evaluations=pick("for_evaluations", t.for_evaluations),
                    clear_for=pick("clear_for", t.clear_for, cfg.clear_for),
                    clear_band=pick("clear_band", t.clear_band, cfg.clear_band),
                    pool=cfg.pool_sigma and t.pool == "detector",
                    spec=m.spec,
                    nsigma=cfg.nsigma,
                )
            )
    unknown = set(cfg.rules) - known
    if unknown:
        log.warning("alerts.rules names unknown rule(s): %s", ", ".join(sorted(unknown)))
    return out


# --------------------------------------------------------------------------------------
# Judging a day
# --------------------------------------------------------------------------------------
def _subject(r: db.ValueRow) -> Subject:
    return Subject(r.instrument, r.detector, r.detector_name, r.amp, r.vendor)


def _sample(r: db.ValueRow) -> Sample:
    return Sample(r.day_obs, r.value, r.physical_filter, r.error)


def _detector_number(instrument: str, name: str) -> int:
    from calibmon.io.detectors import detector_number

    return detector_number(instrument, name)


def judge_day(
    store: Store,
    params: Sequence[RuleParams],
    cfg: AlertsConfig,
    day_obs: str,
    *,
    instrument: str | None = None,
    expected: Sequence[Expectation] = (),
) -> list[Evaluation]:
    """Evaluations of every rule on the stored records of ``day_obs`` (no state).

    A record whose provenance says ``lower_limit: true`` (a full well or PTC turnoff from
    a ramp without roll-off) is not a value: no rule judges it and no baseline holds it.
    """
    today = db.day_values(store, day_obs, {p.metric for p in params}, instrument)
    by_metric: dict[str, list[db.ValueRow]] = defaultdict(list)
    for r in today:
        if not r.lower_limit:
            by_metric[r.metric].append(r)
    base_metrics = {p.metric for p in params if p.kind != "fixed" and p.metric in by_metric}
    history: dict[tuple[str, str, str, int], list[db.ValueRow]] = defaultdict(list)
    for r in db.history_values(
        store, base_metrics, before_day_obs=day_obs, n_nights=cfg.lookback_nights,
        instrument=instrument,
    ):  # fmt: skip
        if not r.lower_limit:
            history[(r.metric, r.level, r.instrument, r.detector)].append(r)

    out: list[Evaluation] = []
    for p in params:
        rows = [
            r for r in by_metric.get(p.metric, ()) if p.applies_to(r.instrument, r.vendor, r.level)
        ]
        if not rows:
            continue
        if p.kind == "fixed":
            out.extend(evaluate_fixed(p, _subject(r), _sample(r), day_obs) for r in rows)
            continue
        groups: dict[tuple[str, int], dict[str, db.ValueRow]] = defaultdict(dict)
        for r in rows:
            groups[(r.instrument, r.detector)][r.amp] = r
        for (inst, det), amp_rows in groups.items():
            hist: dict[str, list[Sample]] = defaultdict(list)
            for h in history.get((p.metric, p.threshold.level, inst, det), ()):
                if p.applies_to(h.instrument, h.vendor, h.level):
                    hist[h.amp].append(_sample(h))
            out.extend(
                evaluate_baseline_rule(
                    p,
                    {a: _subject(r) for a, r in amp_rows.items()},
                    hist,
                    {a: _sample(r) for a, r in amp_rows.items()},
                    day_obs,
                )
            )
    exp = [e for e in expected if instrument is None or e.instrument == instrument]
    if exp:
        present = db.present_calib_types(store, day_obs)
        out.extend(evaluate_staleness(exp, present, day_obs, _detector_number))
    return out
