"""One threshold-matching rule (catalogue.Threshold.applies_to) for the alert engine, the
report and the dashboards: they agree, and instrument case no longer matters anywhere."""

from __future__ import annotations

import pytest

from calibmon.alerts.rules import RuleParams
from calibmon.catalogue import MetricDef, Threshold
from calibmon.dashboards.build import threshold_steps
from calibmon.report.thresholds import fixed_thresholds, out_of_spec

# a limit for LATISS written in lower case (the case that used to disagree: the alert
# engine matched it, the report and the dashboards did not), one vendor-specific limit
LATISS_HIGH = Threshold(rule="latiss_high", kind="fixed", high=8.0, instrument="latiss")
ITL_LOW = Threshold(rule="itl_low", kind="fixed", low=1.0, vendor="itl")
MDEF = MetricDef(unit="adu", description="d", method="m", thresholds=[LATISS_HIGH, ITL_LOW])


@pytest.mark.parametrize("instrument", ["LATISS", "latiss", "Latiss"])
def test_instrument_is_case_insensitive_everywhere(instrument: str) -> None:
    p = RuleParams("x", "adu", LATISS_HIGH, "warning")
    assert p.applies_to(instrument, "E2V", "amp")
    assert ("high 8", 8.0) in fixed_thresholds(MDEF, instrument)
    assert out_of_spec(MDEF, instrument, "E2V", 9.0)
    assert 8.0 in {s["value"] for s in threshold_steps(MDEF, instrument)}


@pytest.mark.parametrize(
    ("instrument", "vendor", "value"),
    [("LSSTCam", "ITL", 0.5), ("LSSTCam", "e2v", 0.5), ("LATISS", "ITL", 9.0),
     ("lsstcam", "itl", 9.0), ("LATISS", "", 0.5), ("LATISS", "E2V", 5.0)],
)  # fmt: skip
def test_alert_engine_and_report_agree_on_which_limits_apply(
    instrument: str, vendor: str, value: float
) -> None:
    rules = [RuleParams("x", "adu", t, "warning") for t in MDEF.thresholds]
    engine_fires = any(
        p.applies_to(instrument, vendor, "amp")
        and (
            (p.threshold.high is not None and value > p.threshold.high)
            or (p.threshold.low is not None and value < p.threshold.low)
        )
        for p in rules
    )
    assert out_of_spec(MDEF, instrument, vendor, value) == engine_fires
    applying = {p.rule for p in rules if p.applies_to(instrument, vendor, "amp")}
    assert {t.rule for t in MDEF.thresholds_for(instrument, vendor, kind="fixed")} == applying


def test_dashboards_leave_out_vendor_limits_and_other_instruments() -> None:
    values = {s["value"] for s in threshold_steps(MDEF, "LSSTCam")}
    assert values == {None}  # ITL's low limit is not drawn on a mixed-vendor panel
    assert 8.0 in {s["value"] for s in threshold_steps(MDEF, "LATISS")}
    assert {s["value"] for s in threshold_steps(MDEF)} == {None}  # no instrument chosen


def test_report_labels_vendor_limits_when_no_vendor_given() -> None:
    assert fixed_thresholds(MDEF, "LSSTCam") == [("itl low 1", 1.0)]
    assert fixed_thresholds(MDEF, "LSSTCam", "E2V") == []
