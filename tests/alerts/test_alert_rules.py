"""Pure rules: fixed limits, drift with noise-aware bands, increase, verification, dead amp,
staleness, and the catalogue's threshold schema extensions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from calibmon.alerts.rules import (
    Expectation,
    RuleParams,
    Sample,
    Subject,
    band_width,
    evaluate_baseline_rule,
    evaluate_fixed,
    evaluate_staleness,
    robust_baseline,
    walk_baselines,
)
from calibmon.catalogue import Threshold, load_catalogue

DAYS = [f"202511{d:02d}" for d in range(1, 31)]


def params(rule: str, **kw) -> RuleParams:
    cat = load_catalogue()
    for m in cat:
        for t in m.thresholds:
            if t.rule == rule:
                return RuleParams(m.name, m.unit, t, kw.pop("severity", t.severity), **kw)
    raise KeyError(rule)


def subj(amp: str = "C10", vendor: str = "E2V") -> Subject:
    return Subject("LSSTCam", 94, "R22_S11", amp, vendor)


def test_fixed_limits_and_the_crossed_threshold() -> None:
    p = params("read_noise_high")
    ev = evaluate_fixed(p, subj(), Sample("20251121", 9.4), "20251121")
    assert ev.firing and not ev.clear and ev.threshold == 9.0 and ev.direction == "above"
    assert "9.4" in ev.describe("20251120") and "since 20251120" in ev.describe("20251120")
    ok = evaluate_fixed(p, subj(), Sample("20251121", 5.1), "20251121")
    assert not ok.firing and ok.clear
    g = params("gain_out_of_range")
    low = evaluate_fixed(g, subj(), Sample("20251121", 1.1), "20251121")
    assert low.firing and low.threshold == 1.2 and low.direction == "below"


def test_fixed_clear_margin_is_hysteresis() -> None:
    t = Threshold(rule="x_high", kind="fixed", high=10.0, clear_margin=1.0)
    p = RuleParams("x", "adu", t, "warning")
    gap = evaluate_fixed(p, subj(), Sample("20251121", 9.5), "20251121")
    assert not gap.firing and not gap.clear  # inside the limit but not by the margin


def test_verification_message_names_calib_amp_and_since() -> None:
    p = params("bias_verification_failing")
    ev = evaluate_fixed(p, subj(), Sample("20251121", 0.2), "20251121")
    assert ev.firing and ev.severity == "warning"
    assert ev.describe("20251118") == (
        "bias for R22_S11 C10 no longer verifies since 20251118: recertify"
    )


def test_vendor_and_instrument_scoping() -> None:
    t = Threshold(rule="itl_only", kind="fixed", high=1.0, vendor="ITL", instrument="LSSTCam")
    p = RuleParams("x", "adu", t, "warning")
    assert p.applies_to("LSSTCam", "itl", "amp")
    assert not p.applies_to("LSSTCam", "E2V", "amp")
    assert not p.applies_to("LATISS", "ITL", "amp")
    assert not p.applies_to("LSSTCam", "ITL", "detector")


def test_robust_baseline_is_unbiased_for_small_samples() -> None:
    """The small-sample correction: mean σ̂/σ ≈ 1 for 10 Gaussian nights (3 % tolerance:
    4000 trials × σ̂ scatter ≈ 0.35 → standard error 0.6 %, 5σ = 3 %)."""
    rng = np.random.default_rng(11)
    est = [robust_baseline(rng.normal(0.0, 2.0, 10))[1] / 2.0 for _ in range(4000)]
    assert abs(np.mean(est) - 1.0) < 0.03
    assert all(math.isnan(x) for x in robust_baseline([]))


def test_band_is_max_of_relative_sigma_and_absolute() -> None:
    t = Threshold(rule="d", kind="drift", relative=0.01, nsigma=5.0, absolute=0.002)
    assert band_width(t, 1.5, 0.001) == pytest.approx(0.015)  # relative wins
    assert band_width(t, 1.5, 0.01) == pytest.approx(0.05)  # noise wins
    assert band_width(t, 0.1, 0.0001) == pytest.approx(0.002)  # absolute wins
    # with n the σ term includes the baseline median's own error √(1 + π/2n)
    assert band_width(t, 1.5, 0.01, 10) == pytest.approx(0.05 * math.sqrt(1 + math.pi / 20))


def _detector(rng, n_nights: int, sigma_rel: float, amps=16):
    names = [f"A{i:02d}" for i in range(amps)]
    base = {a: 1.4 + 0.02 * i for i, a in enumerate(names)}
    values = {a: [base[a] * (1 + sigma_rel * rng.normal()) for _ in range(n_nights)] for a in names}
    return names, base, values


def test_drift_detects_a_step_and_ignores_noise() -> None:
    """16 amps, 0.3 % night-to-night gain scatter: a 3 % step (10σ) fires, the other
    amps do not; the band is the 1 % floor or 5σ_dev ≈ 1.6 %, whichever is larger."""
    rng = np.random.default_rng(2)
    p = params("gain_drift")
    names, base, values = _detector(rng, 21, 0.003)
    hist = {a: [Sample(DAYS[k], values[a][k]) for k in range(20)] for a in names}
    today = {a: Sample(DAYS[20], values[a][20]) for a in names}
    today["A00"] = Sample(DAYS[20], base["A00"] * 1.03)
    evs = {
        e.amp: e
        for e in evaluate_baseline_rule(p, {a: subj(a) for a in names}, hist, today, DAYS[20])
    }
    assert len(evs) == 16
    assert evs["A00"].firing and evs["A00"].direction == "above"
    assert evs["A00"].threshold < base["A00"] * 1.03
    assert evs["A00"].baseline == pytest.approx(base["A00"], rel=0.003)
    assert evs["A00"].n_baseline == 10
    assert [a for a, e in evs.items() if e.firing] == ["A00"]
    assert "+3." in evs["A00"].change_text() and "%" in evs["A00"].change_text()


def test_noisy_detector_does_not_page_on_a_1_percent_band() -> None:
    """Small, noisy amps: 2 % night-to-night scatter. A plain 1 % band would fire on
    ~60 % of nights; the noise-aware band (5σ) fires on none of 30 nights × 16 amps."""
    rng = np.random.default_rng(3)
    p = params("gain_drift")
    names, _, values = _detector(rng, 30, 0.02)
    fired = 0
    for k in range(5, 30):
        hist = {a: [Sample(DAYS[j], values[a][j]) for j in range(k)] for a in names}
        today = {a: Sample(DAYS[k], values[a][k]) for a in names}
        evs = evaluate_baseline_rule(p, {a: subj(a) for a in names}, hist, today, DAYS[k])
        fired += sum(e.firing for e in evs)
        assert all(e.band > 0.05 * e.baseline for e in evs)  # ≈ 5 × 2 %
    assert fired == 0


def test_one_noisy_amp_keeps_its_own_sigma() -> None:
    """An amp 5× noisier than its neighbours is recognised (own σ ≫ pooled) and judged
    with its own σ, so it does not page on its ordinary scatter."""
    rng = np.random.default_rng(4)
    p = params("gain_drift")
    names, _, values = _detector(rng, 21, 0.003)
    values["A05"] = [1.5 * (1 + 0.015 * rng.normal()) for _ in range(21)]
    hist = {a: [Sample(DAYS[k], values[a][k]) for k in range(20)] for a in names}
    today = {a: Sample(DAYS[20], values[a][20]) for a in names}
    evs = {
        e.amp: e
        for e in evaluate_baseline_rule(p, {a: subj(a) for a in names}, hist, today, DAYS[20])
    }
    assert evs["A05"].baseline_sigma > 3 * evs["A01"].baseline_sigma
    assert not evs["A05"].firing


def test_walk_keeps_a_step_out_of_its_own_baseline() -> None:
    """After a lasting +3 % step the post-step nights are not good nights, so the baseline
    stays at the old level (the alert does not clear itself)."""
    p = params("gain_drift")
    rng = np.random.default_rng(5)
    names, base, values = _detector(rng, 25, 0.003)
    for k in range(12, 25):
        values["A00"][k] = base["A00"] * 1.03 * (1 + 0.003 * rng.normal())
    hist = {a: [Sample(DAYS[k], values[a][k]) for k in range(25)] for a in names}
    good, pooled = walk_baselines(p, hist)
    assert [s.day_obs for s in good["A00"]] == DAYS[:12]
    assert len(good["A01"]) == 25
    assert pooled is not None and pooled.sigma == pytest.approx(0.003, rel=0.35)


def test_too_few_good_nights_means_no_evaluation() -> None:
    p = params("gain_drift")
    hist = {"C10": [Sample(DAYS[0], 1.5), Sample(DAYS[1], 1.5)]}
    assert (
        evaluate_baseline_rule(p, {"C10": subj()}, hist, {"C10": Sample(DAYS[2], 2.0)}, DAYS[2])
        == []
    )


def test_increase_counts_new_columns_only() -> None:
    p = params("new_bright_columns")
    hist = {"C10": [Sample(d, 2.0) for d in DAYS[:10]]}
    up = evaluate_baseline_rule(p, {"C10": subj()}, hist, {"C10": Sample(DAYS[10], 3.0)}, DAYS[10])
    down = evaluate_baseline_rule(
        p, {"C10": subj()}, hist, {"C10": Sample(DAYS[10], 0.0)}, DAYS[10]
    )
    assert up[0].firing and up[0].baseline == 2.0 and up[0].threshold == 2.5
    assert not down[0].firing  # fewer hot columns is not an alert


def test_dead_amp_is_critical_and_one_sided() -> None:
    p = params("dead_amp")
    assert p.severity == "critical"
    hist = {"C10": [Sample(d, 30000.0 + 50 * (i % 3)) for i, d in enumerate(DAYS[:10])]}
    dead = evaluate_baseline_rule(
        p, {"C10": subj()}, hist, {"C10": Sample(DAYS[10], 12.0)}, DAYS[10]
    )
    bright = evaluate_baseline_rule(
        p, {"C10": subj()}, hist, {"C10": Sample(DAYS[10], 60000.0)}, DAYS[10]
    )
    assert dead[0].firing and "dead or failing" in dead[0].describe(DAYS[10])
    assert not bright[0].firing


def test_per_filter_baselines() -> None:
    """flat_level baselines come from nights of the same filter."""
    p = params("dead_amp")
    hist = {
        "C10": [
            Sample(d, 30000.0, "r") if i % 2 else Sample(d, 8000.0, "u")
            for i, d in enumerate(DAYS[:12])
        ]
    }
    u = evaluate_baseline_rule(
        p, {"C10": subj()}, hist, {"C10": Sample(DAYS[12], 7900.0, "u")}, DAYS[12]
    )
    assert not u[0].firing and u[0].baseline == 8000.0


def test_staleness() -> None:
    present = {("LSSTCam", "R22_S11", "bias"), ("LSSTCam", "R22_S11", "flat")}
    exp = [
        Expectation(instrument="LSSTCam", calib_type="bias"),
        Expectation(instrument="LSSTCam", calib_type="dark", detectors=["R22_S11", "R01_S01"]),
    ]
    evs = {
        (e.rule, e.detector_name): e
        for e in evaluate_staleness(
            exp, present, "20251121", lambda i, n: 94 if n == "R22_S11" else 1
        )
    }
    assert not evs[("stale_bias", "")].firing
    assert evs[("stale_dark", "R22_S11")].firing and evs[("stale_dark", "R22_S11")].detector == 94
    assert "no dark calibration for R22_S11" in evs[("stale_dark", "R22_S11")].describe("20251120")


def test_threshold_schema_extensions_are_validated() -> None:
    with pytest.raises(ValidationError, match="unknown field"):
        Threshold(rule="r", kind="fixed", high=1, message="{nope}")
    with pytest.raises(ValidationError, match="direction"):
        Threshold(rule="r", kind="fixed", high=1, direction="up")
    t = Threshold.model_validate({"rule": "r", "kind": "drift", "relative": 0.1, "for": 2})
    assert t.for_evaluations == 2 and t.direction == "both" and t.pool == "detector"
