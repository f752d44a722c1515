"""Rules judged with the values' errors: fixed limits beyond k·error, drift bands from
intrinsic scatter + today's error + the baseline's uncertainty, Poisson bands for pixel
counts, the false-alarm budget behind ``alerts.nsigma`` and the rules' directions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibmon.alerts.config import alerts_config
from calibmon.alerts.rules import (
    DEFAULT_NSIGMA,
    FALSE_ALARM_BUDGET,
    N_AMP_RULES,
    RuleParams,
    Sample,
    Subject,
    band_width,
    deviation_sigma,
    evaluate_baseline_rule,
    evaluate_fixed,
    nsigma_for_budget,
    poisson_band,
    poisson_upper,
)
from calibmon.catalogue import Threshold, load_catalogue
from calibmon.errors import ConfigError

DAYS = [f"202511{d:02d}" for d in range(1, 31)]
AMPS = [f"C{i:02d}" for i in range(16)]


def params(rule: str, **kw) -> RuleParams:
    for m in load_catalogue():
        for t in m.thresholds:
            if t.rule == rule:
                return RuleParams(m.name, m.unit, t, kw.pop("severity", t.severity), **kw)
    raise KeyError(rule)


def subj(amp: str = "C10") -> Subject:
    return Subject("LSSTCam", 94, "R22_S11", amp, "E2V")


# --------------------------------------------------------------------------------------
# Fixed limits
# --------------------------------------------------------------------------------------
def test_fixed_limit_fires_only_beyond_k_errors() -> None:
    p = params("read_noise_high", nsigma=5.0)  # high: 9 e-
    assert p.k == 5.0

    def ev(value: float, error: float | None):
        return evaluate_fixed(p, subj(), Sample(DAYS[0], value, error=error), DAYS[0])

    three, six = ev(9.0 + 3 * 0.1, 0.1), ev(9.0 + 6 * 0.1, 0.1)
    assert not three.firing and not three.clear  # beyond the limit, not significantly: hold
    assert six.firing and six.error == 0.1
    assert "9.6 ± 0.1" in six.describe()
    assert ev(9.3, None).firing  # without an error: the limit as is
    assert ev(8.9, 0.1).clear  # back within the limit clears (clear_margin 0)
    g = params("gain_out_of_range", nsigma=5.0)  # low: 1.2
    low3 = evaluate_fixed(g, subj(), Sample(DAYS[0], 1.2 - 3 * 0.01, error=0.01), DAYS[0])
    low6 = evaluate_fixed(g, subj(), Sample(DAYS[0], 1.2 - 6 * 0.01, error=0.01), DAYS[0])
    assert not low3.firing and low6.firing and low6.direction == "below"


def test_threshold_nsigma_overrides_the_engine_k() -> None:
    t = Threshold(rule="x", kind="fixed", high=1.0, nsigma=2.0)
    p = RuleParams("x", "adu", t, "warning", nsigma=5.1)
    assert p.k == 2.0
    assert evaluate_fixed(p, subj(), Sample(DAYS[0], 1.3, error=0.1), DAYS[0]).firing


# --------------------------------------------------------------------------------------
# Drift with errors
# --------------------------------------------------------------------------------------
def test_deviation_sigma_combines_intrinsic_today_and_baseline() -> None:
    # Without errors: the old σ_b·√(1 + π/2n).
    assert deviation_sigma(0.01, 10) == pytest.approx(0.01 * math.sqrt(1 + math.pi / 20))
    # σ_b² = intrinsic² + typical error² = 3² + 4² → intrinsic 3; today's error 12.
    s = deviation_sigma(5.0, 10, error=12.0, e2_typ=16.0)
    assert s == pytest.approx(math.sqrt(9 + 144 + math.pi / 20 * 25))
    # Errors larger than the scatter: intrinsic is 0, not negative.
    assert deviation_sigma(1.0, None, error=0.5, e2_typ=4.0) == pytest.approx(0.5)
    # Today's error typical: σ_dev = σ_b√(1+π/2n) again, whatever the errors' scale.
    assert deviation_sigma(5.0, 10, error=4.0, e2_typ=16.0) == pytest.approx(
        deviation_sigma(5.0, 10)
    )


def _gain_history(error: float, seed: int = 3) -> dict[str, list[Sample]]:
    """16 amps × 15 nights of gain 1.5 e-/adu: intrinsic scatter 0.002, errors ``error``."""
    rng = np.random.default_rng(seed)
    return {
        a: [
            Sample(DAYS[k], 1.5 + 0.002 * rng.normal() + error * rng.normal(), error=error)
            for k in range(15)
        ]
        for a in AMPS
    }


def _judge_today(p: RuleParams, hist, value: float, error: float | None):
    today = {a: Sample(DAYS[15], 1.5, error=0.004) for a in AMPS}
    today["C10"] = Sample(DAYS[15], value, error=error)
    evs = evaluate_baseline_rule(p, {a: subj(a) for a in AMPS}, hist, today, DAYS[15])
    return {e.amp: e for e in evs}["C10"]


def test_drift_with_a_large_error_today_does_not_page() -> None:
    p = params("gain_drift", nsigma=5.0)  # relative 1 %, k·σ_dev
    hist = _gain_history(0.004)  # σ_b ≈ √(0.002² + 0.004²) = 0.0045
    # +0.03 (2 %) is 6.7 σ_b: fires on a night of typical precision ...
    typical = _judge_today(p, hist, 1.53, 0.004)
    assert typical.firing
    assert typical.change_text().endswith(f"{typical.deviation / typical.sigma_dev:+.1f}σ)")
    # ... not on a night with 3× fewer frames (error 0.012: σ_dev ≈ 0.0125, band 0.063)
    noisy = _judge_today(p, hist, 1.53, 0.012)
    assert not noisy.firing and noisy.band > 0.05
    assert noisy.sigma_dev == pytest.approx(0.0125, rel=0.15)


def test_a_precise_night_does_not_hide_a_real_change() -> None:
    p = params("gain_drift", nsigma=5.0)
    hist = _gain_history(0.004)
    # +0.018 (1.2 %): inside the typical night's band 5·0.0047 ≈ 0.024 ...
    assert not _judge_today(p, hist, 1.518, 0.004).firing
    # ... but a night with error 0.0005 measures it: σ_dev ≈ √(0.002² + 0.0005² +
    # π/20·σ_b²) ≈ 0.0027, band max(1 % = 0.015, 0.0135) = 0.015 < 0.018.
    precise = _judge_today(p, hist, 1.518, 0.0005)
    assert precise.firing and precise.band == pytest.approx(0.015, rel=0.15)


def test_drift_without_errors_behaves_as_before() -> None:
    p = params("gain_drift", nsigma=5.0)
    hist = {a: [Sample(s.day_obs, s.value) for s in v] for a, v in _gain_history(0.004).items()}
    ev = _judge_today(p, hist, 1.53, None)
    assert ev.firing
    assert ev.band == pytest.approx(
        band_width(p.threshold, ev.baseline, ev.baseline_sigma, ev.n_baseline, k=5.0)
    )


# --------------------------------------------------------------------------------------
# Counts: Poisson
# --------------------------------------------------------------------------------------
def test_poisson_upper_is_the_exact_quantile() -> None:
    # Poisson(1): P(N ≥ 9) = 1.1e-6, P(N ≥ 10) = 1.1e-7 → the 1.7e-7 quantile is 10.
    assert poisson_upper(1.0, 1.7e-7) == 10
    assert poisson_upper(1.0, 1.2e-6) == 9
    # Large λ: Cornish–Fisher within a count of the exact sum (λ = 400 both ways).
    lam = 400.0
    exact = poisson_upper(lam, 1e-6)
    z = 4.753424308822899  # Φ⁻¹(1 − 1e-6)
    cf = math.ceil(lam + z * math.sqrt(lam) + (z * z - 1) / 6 + 0.5)
    assert abs(exact - cf) <= 1


def _tail(n: int, lam: float) -> float:
    """P(N ≥ n | Poisson(lam)) by summing the pmf below n."""
    if n <= 0:
        return 1.0
    pmf, cdf = math.exp(-lam), 0.0
    for j in range(n):
        cdf += pmf
        pmf *= lam / (j + 1)
    return max(0.0, 1.0 - cdf)


@pytest.mark.parametrize("lam", [0.3, 1.0, 3.0, 30.0, 300.0])
def test_poisson_band_false_alarm_rate_is_within_the_rule_budget(lam: float) -> None:
    """Average over 2000 simulated 10-night baselines of the exact probability that
    today's Poisson(λ) count fires: it must not exceed this rule's share of the budget,
    1e-5 / 24 = 4.2e-7 (exact tails, so no simulation of 10⁷ nights is needed)."""
    rng = np.random.default_rng(int(lam * 10))
    k = DEFAULT_NSIGMA
    rates = []
    for _ in range(2000):
        hist = rng.poisson(lam, 10).astype(float)
        b = float(np.median(hist))
        sigma = 1.4826 * float(np.median(np.abs(hist - b))) * 1.095
        band = poisson_band(b, sigma, 10, k)
        rates.append(_tail(math.floor(b + band) + 1, lam))
    assert float(np.mean(rates)) <= FALSE_ALARM_BUDGET / N_AMP_RULES


def test_rising_hot_pixel_count_fires_on_poisson_significance() -> None:
    p = params("bright_pixels_increase", nsigma=5.0)
    assert p.threshold.poisson and p.threshold.kind == "increase"
    rng = np.random.default_rng(5)
    hist = {a: [Sample(d, float(rng.poisson(50))) for d in DAYS[:10]] for a in AMPS}

    def ev(count: float):
        today = {a: Sample(DAYS[10], 50.0) for a in AMPS}
        today["C10"] = Sample(DAYS[10], count)
        out = evaluate_baseline_rule(p, {a: subj(a) for a in AMPS}, hist, today, DAYS[10])
        return {e.amp: e for e in out}["C10"]

    assert not ev(50 + 2 * math.sqrt(50)).firing  # 2σ: noise
    assert ev(50 + 8 * math.sqrt(50)).firing  # 8σ: new hot pixels
    assert not ev(20.0).firing  # fewer is not an increase
    # From nothing: a few noise pixels do not fire, 13 new ones do (poisson_band).
    zero = {"C10": [Sample(d, 0.0) for d in DAYS[:10]]}
    few = evaluate_baseline_rule(p, {"C10": subj()}, zero, {"C10": Sample(DAYS[10], 4.0)}, "d")
    many = evaluate_baseline_rule(
        p, {"C10": subj()}, zero, {"C10": Sample(DAYS[10], 13.0)}, DAYS[10]
    )
    assert not few[0].firing and many[0].firing


def test_poisson_only_on_increase_thresholds() -> None:
    with pytest.raises(ValueError, match="poisson"):
        Threshold(rule="x", kind="drift", relative=0.1, poisson=True)


# --------------------------------------------------------------------------------------
# Budget, k and directions
# --------------------------------------------------------------------------------------
def test_default_k_keeps_all_rules_within_the_false_alarm_budget() -> None:
    """Count the amp-level rules of the shipped catalogue (each can fire on one amp-night)
    and check the default k spends at most 1e-5 per amp-night over them."""
    n = sum(1 for m in load_catalogue() for t in m.thresholds if t.level == "amp")
    assert n <= N_AMP_RULES, "new amp-level rules: raise N_AMP_RULES and check DEFAULT_NSIGMA"
    assert nsigma_for_budget(FALSE_ALARM_BUDGET, n) <= DEFAULT_NSIGMA
    assert nsigma_for_budget(1e-5, 24) == pytest.approx(5.061, abs=1e-3)
    # Two-sided tail of k = 5.1 times the rules: within the budget.
    assert N_AMP_RULES * math.erfc(DEFAULT_NSIGMA / math.sqrt(2)) <= FALSE_ALARM_BUDGET
    assert alerts_config({}).nsigma == DEFAULT_NSIGMA
    assert alerts_config({"nsigma": 4}).nsigma == 4
    with pytest.raises(ConfigError, match=r"alerts\.nsigma"):
        alerts_config({"nsigma": 0})


def test_rule_directions_make_sense_to_a_calibration_scientist() -> None:
    rules = {t.rule: t for m in load_catalogue() for t in m.thresholds}
    # Dark current / read noise falling is information, rising pages.
    assert rules["dark_current_drift"].direction == "up"
    assert rules["dark_current_drift"].severity == "warning"
    assert rules["dark_current_drop"].direction == "down"
    assert rules["dark_current_drop"].severity == "info"
    assert rules["read_noise_drift"].direction == "up"
    assert rules["read_noise_drop"].severity == "info"
    # Gain either way; CTI rising only; flat level collapse is a dead amp (critical).
    assert rules["gain_drift"].direction == "both"
    assert rules["gain_collapse"].direction == "both"
    assert rules["serial_cti_rise"].direction == "up"
    assert rules["dead_amp"].direction == "down" and rules["dead_amp"].severity == "critical"
    # Pixel counts rise by Poisson, columns by any new one.
    assert rules["bright_pixels_increase"].poisson and rules["dark_pixels_increase"].poisson
    assert rules["new_dark_columns"].kind == "increase"
    # Webhook/e-mail do not carry info; Alertmanager gets it (routed to a null receiver).
    cfg = alerts_config(
        {
            "notifiers": [
                {"name": "h", "type": "webhook", "url": "http://127.0.0.1:9/x"},
                {"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9093"},
            ]
        }
    )
    assert [n.min_severity for n in cfg.notifiers] == ["warning", "info"]
