"""Alert rules: pure functions from metric values to evaluations (DESIGN.md §6).

Nothing here touches the store, the clock or the network. The engine (:mod:`.engine`)
reads values from the store, calls these functions and keeps the state per alert identity
``(rule, instrument, detector, amp)``.

Kinds of rule (each a ``thresholds:`` entry of a metric in ``metrics/*.yaml``):

fixed
    Spec limit: value beyond ``[low, high]`` by more than ``k·error`` (the record's 1σ
    ``error``; without one, beyond the limit at all); optionally only for one vendor or
    instrument. Verification failing is a fixed rule on ``verify_*_pass`` (``low: 0.5``)
    whose ``message`` reads "bias for R22_S11 C10 no longer verifies since D: recertify".
drift
    Against the amp's own baseline: ``|value − b| > band`` with
    ``band = max(relative·|b|, k·σ_dev, absolute)``, σ_dev the σ of ``value − b``
    (:func:`deviation_sigma`: intrinsic night-to-night scatter + today's error² + the
    baseline median's variance). ``direction: up/down`` makes it one-sided: rules are
    sign-aware (dark current and read noise rising page, falling is ``info``; gain either
    way; CTI rising; the dead-amp rule is ``flat_level`` falling by half, critical).
increase
    ``value − b > band`` (same band, one-sided): new hot/cold columns; with ``poisson``,
    pixel counts whose band is at least the Poisson quantile (:func:`poisson_band`).
staleness
    An expected calibration type has no record for a day_obs (:func:`evaluate_staleness`).

The false-alarm budget and k
    All rules together may false-alarm on at most 1e-5 amp-nights (one false page a
    month over LSSTCam's 3216 amps). The 24 amp-level rules share it equally (Bonferroni,
    valid for correlated rules too): 4.2e-7 each, a two-sided Gaussian k = Φ⁻¹(1 −
    4.2e-7/2) = 5.06 → ``alerts.nsigma`` = :data:`DEFAULT_NSIGMA` = 5.1
    (:func:`nsigma_for_budget`; one-sided rules and fixed limits use one tail and stay
    within it twice over). Measured: 64 000 stable simulated amp-nights with a realistic
    spread of errors fire nothing, and at k = 3 the rate is 2.4e-3 against the Gaussian
    2.7e-3 (``tests/alerts/test_alert_false_alarms.py``).

Errors (DESIGN.md §4)
    Each :class:`Sample` carries the record's ``error``. σ_b (pooled or own, below) is
    the scatter of the history's *values*, so it already contains the history's typical
    measurement error: σ_intrinsic² = max(0, σ_b² − median(error_hist²)), and today's
    deviation has σ_dev² = σ_intrinsic² + error_today² + (π/2n)·σ_b². A night with fewer
    frames (large error) gets a wider band and does not page; a precise night a narrower
    one and does not hide a real change. Errors wrong by a common factor cancel (only
    today's error relative to the history's typical one matters). Records whose
    provenance says ``lower_limit: true`` are not values: the engine never hands them to
    a rule or a baseline.

Why not EWMA/CUSUM
    These charts accumulate small persistent shifts and detect them earlier than a
    one-night test, but they delay large steps and need their own in-control σ and
    reset logic; the requirement here is a decision each night on that night's value
    (a step alerted within one night, a transient resolved), which is the Shewhart-type
    test against a robust baseline below. Small slow drifts are left to the relative
    floors and the trend dashboards.

Baseline (drift, increase)
    ``b`` is the median and ``σ_b`` is 1.4826·MAD of the amp's last ``baseline_nights``
    *good* nights before the evaluated one; at least ``min_baseline_nights`` are needed,
    else the rule does not evaluate the amp. A good night is one on which the rule did
    not fire for that amp: the history is walked forward in time replaying the
    hysteresis (:func:`walk_baselines`), so a step is never absorbed into its own baseline
    and an alert does not clear itself by becoming "normal". Once a lasting change has filled the
    whole lookback window the engine gives the walk, it has no pre-change good nights
    left and becomes the new baseline (the alert resolves: "accepted").

    Noise awareness: a 10-night MAD is a poor σ (its 5th–95th percentiles are 0.55σ–1.5σ;
    ``|x − b| > 5σ̂`` then happens on ≈ 1 % of stable amps every night — dozens of pages a
    night on 3216 amps — while a real 7σ step is missed whenever σ̂ came out high). With
    ``pool: detector`` (the default), σ_b is σ_pool, the robust scatter of all the
    detector's amps' good nights about their own baselines (relative to |b| when the rule
    has ``relative``, so amps of different levels pool), from ≈ 160 values (±9 %), so
    the k-σ band's tail is close to the Gaussian one. An amp whose own σ is larger than
    σ_pool beyond chance (> :func:`noisy_amp_factor` × σ_pool, the 99th percentile of
    the MAD estimate) is a noisier amp and keeps its own σ, so it does not page every
    night either. ``pool: none`` (or ``alerts.pool_sigma: false``) uses the amp's own σ.

Hysteresis: an evaluation says ``firing`` (outside the band/limits) and ``clear`` (inside
the narrower band ``clear_band·band`` for drift/increase, or inside the limits by
``clear_margin`` for fixed); in between it is neither, which keeps a firing alert firing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from calibmon.catalogue import Threshold
from calibmon.science.robust import SIGMA_PER_MAD

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}

Kind = Literal["fixed", "drift", "increase", "staleness"]

#: False alarms allowed per amp-night, all rules together: ≈ one false page a month for
#: the 3216 amps of LSSTCam (3216 × 30 × 1e-5 ≈ 1).
FALSE_ALARM_BUDGET = 1e-5
#: Amp-level rules of the shipped catalogue that can fire on one amp-night
#: (``tests/alerts`` recounts them from ``metrics/*.yaml`` and checks this).
N_AMP_RULES = 24


def nsigma_for_budget(budget: float = FALSE_ALARM_BUDGET, n_rules: int = N_AMP_RULES) -> float:
    """k such that ``n_rules`` two-sided k-σ Gaussian tests together false-alarm at most
    ``budget`` per amp-night: each gets ``budget / n_rules`` (Bonferroni, which also holds
    for correlated rules), k = Φ⁻¹(1 − budget / (2·n_rules)). Two-sided for every rule
    (one-sided rules and fixed limits use only one tail, so they are within it twice
    over). 1e-5 / 24 rules → k = 5.06."""
    return NormalDist().inv_cdf(1.0 - budget / (2.0 * n_rules))


#: The default k (``alerts.nsigma``): :func:`nsigma_for_budget` for the shipped catalogue,
#: 5.06, rounded up; it leaves room for up to 29 rules.
DEFAULT_NSIGMA = 5.1


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RuleParams:
    """One catalogue threshold with the engine's configuration applied.

    ``metric``/``unit`` are the catalogue metric's; ``baseline_nights`` … ``clear_band``
    are the effective values (rule override > global ``alerts:`` setting > catalogue).
    """

    metric: str
    unit: str
    threshold: Threshold
    severity: str
    baseline_nights: int = 10
    min_baseline_nights: int = 3
    for_evaluations: int = 1
    clear_for: int = 2
    clear_band: float = 0.8
    pool: bool = True
    spec: str = ""
    nsigma: float | None = None  # k: ``alerts.nsigma`` unless the threshold sets its own

    @property
    def rule(self) -> str:
        return self.threshold.rule

    @property
    def k(self) -> float:
        """The significance k of this rule: the threshold's ``nsigma`` if set, else the
        engine's (``alerts.nsigma``), else :data:`DEFAULT_NSIGMA`."""
        if self.threshold.nsigma:
            return self.threshold.nsigma
        return self.nsigma if self.nsigma is not None else DEFAULT_NSIGMA

    @property
    def kind(self) -> str:
        return self.threshold.kind

    def applies_to(self, instrument: str, vendor: str, level: str) -> bool:
        """True when the rule is meant for this instrument, vendor and record level
        (:meth:`calibmon.catalogue.Threshold.applies_to`; no vendor: vendor rules do not
        apply)."""
        return self.threshold.applies_to(instrument, vendor or "", level)


@dataclass(frozen=True, slots=True)
class Subject:
    """What a value is about. ``detector`` is -1 and ``detector_name`` "" for camera- or
    instrument-level values; ``amp`` is "" for detector-level values."""

    instrument: str
    detector: int
    detector_name: str
    amp: str = ""
    vendor: str = ""


@dataclass(frozen=True, slots=True)
class Sample:
    """One night's value of one series (unit: the metric's) and its 1σ statistical
    ``error`` (same unit; None for counts and where unknown, DESIGN.md §4)."""

    day_obs: str
    value: float
    physical_filter: str = ""
    error: float | None = None


@dataclass(frozen=True, slots=True)
class Baseline:
    """Median and effective σ of the good nights used (``sigma_own`` before pooling)."""

    median: float
    sigma: float
    sigma_own: float
    n: int
    days: tuple[str, ...] = ()
    e2_typ: float | None = None  # median squared error of those nights (None: no errors)


class Expectation(BaseModel):
    """A calibration type expected every evaluated day_obs (from ``schedules/`` or config).

    ``detectors``: names that must each have a record; None means "some detector of the
    instrument" (one instrument-level alert identity).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    instrument: str
    calib_type: str
    detectors: list[str] | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    for_evaluations: int = Field(1, ge=1, alias="for")


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------
@dataclass(slots=True)
class Evaluation:
    """One rule judged on one subject for one day_obs.

    ``threshold`` is the limit crossed (or, when not firing, the nearer one);
    ``band`` the allowed deviation from ``baseline`` (drift/increase); ``firing`` whether
    the condition holds; ``clear`` whether the value is back inside the narrower
    hysteresis band (never both).
    """

    rule: str
    kind: str
    metric: str
    unit: str
    severity: str
    instrument: str
    detector: int
    detector_name: str
    amp: str
    value: float
    threshold: float | None
    baseline: float | None
    baseline_sigma: float | None
    day_obs: str
    firing: bool
    clear: bool
    band: float | None = None
    n_baseline: int = 0
    direction: str = ""  # "above" | "below" | "": the side of the limit reported
    sides: str = "both"  # drift/increase: which deviations the rule alerts on (both/up/down)
    low: float | None = None
    high: float | None = None
    spec: str = ""
    summary: str = ""
    message: str = ""  # template from the catalogue
    action: str = ""
    physical_filter: str = ""
    baseline_days: tuple[str, ...] = field(default=(), repr=False)
    error: float | None = None  # the value's 1σ (None: unknown or a count)
    sigma_dev: float | None = None  # drift/increase: σ of value − baseline used for the band

    @property
    def identity(self) -> tuple[str, str, int, str]:
        return (self.rule, self.instrument, self.detector, self.amp)

    @property
    def deviation(self) -> float | None:
        return None if self.baseline is None else self.value - self.baseline

    def change_text(self) -> str:
        """How far from the baseline: ``+0.045 e-/adu (+3.0 %, +11.2σ)`` (σ of the
        deviation, today's error included, else σ_b); "" without one."""
        dev = self.deviation
        if dev is None:
            return ""
        parts = [f"{dev:+.4g} {self.unit}".rstrip()]
        extra = []
        if self.baseline:
            extra.append(f"{100.0 * dev / abs(self.baseline):+.1f} %")
        sigma = self.sigma_dev or self.baseline_sigma  # σ of the deviation when known
        if sigma:
            extra.append(f"{dev / sigma:+.1f}σ")
        if extra:
            parts.append(f"({', '.join(extra)})")
        return " ".join(parts)

    def where(self) -> str:
        """``R22_S11 C10``, ``R22_S11`` or the instrument name."""
        return " ".join(p for p in (self.detector_name, self.amp) if p) or self.instrument

    def describe(self, since_day_obs: str | None = None) -> str:
        """One line an on-call person can act on: what, where, how much, since when."""
        since = since_day_obs or self.day_obs
        if self.message:
            try:
                return self.message.format(**self._fields(since))
            except (KeyError, ValueError, TypeError, IndexError):
                pass  # a template that cannot format falls back to the generic text
        u = f" {self.unit}" if self.unit not in ("", "1") else ""
        if self.kind == "staleness":
            return (
                f"no {self.metric} calibration for {self.where()} on {self.day_obs} "
                f"(expected by the schedule); missing since {since}"
            )
        if self.kind == "fixed":
            rel = {"above": "above the limit", "below": "below the limit"}.get(
                self.direction, "limit"
            )
            thr = "" if self.threshold is None else f" {rel} {_g(self.threshold)}{u}"
            pm = f" ± {_g(self.error, 2)}" if self.error else ""
            return f"{self.metric} of {self.where()} is {_g(self.value)}{pm}{u}{thr}; since {since}"
        pm = f" ± {_g(self.error, 2)}" if self.error else ""
        base = (
            f"{self.metric} of {self.where()} is {_g(self.value)}{pm}{u}, {self.change_text()} "
            f"from its baseline {_g(self.baseline)} ± {_g(self.baseline_sigma, 2)}{u} "
            f"(median of {self.n_baseline} good nights); limit {_g(self.threshold)}{u}"
        )
        return f"{base}; since {since}"

    def _fields(self, since: str) -> dict[str, object]:
        nan = math.nan
        return {
            "detector_name": self.detector_name,
            "amp": self.amp,
            "instrument": self.instrument,
            "metric": self.metric,
            "value": self.value,
            "threshold": nan if self.threshold is None else self.threshold,
            "baseline": nan if self.baseline is None else self.baseline,
            "unit": self.unit,
            "since_day_obs": since,
            "day_obs": self.day_obs,
            "rule": self.rule,
        }


def _g(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------
# 1.4826·MAD of n Gaussian samples is biased low for small n (σ̂/σ averages 0.91 at n = 10,
# 0.67 at n = 3). Multiplying by these factors (index n − 2, n = 2 … 30) makes it unbiased
# on average; they were simulated (10⁶ draws per n, numpy default_rng) as 1/mean(σ̂/σ).
# Croux & Rousseeuw (1992) give the same shape (≈ n/(n − 0.8) for n > 9).
_OWN_MAD_CORRECTION: tuple[float, ...] = (
    1.196, 1.490, 1.361, 1.217, 1.190, 1.138, 1.127, 1.101, 1.095, 1.080, 1.077, 1.066, 1.064,
    1.056, 1.054, 1.049, 1.048, 1.043, 1.042, 1.039, 1.038, 1.035, 1.035, 1.032, 1.032, 1.030,
    1.029, 1.028, 1.027,
)  # fmt: skip
# Pooling residuals |x − median| of several series of n nights each (the median of each
# series sits among its own values, so small residuals are over-represented): the pooled
# 1.4826·MAD is 0.87σ at n = 10. Factors 1/(pooled σ̂/σ), simulated likewise (10⁶ series).
_POOLED_MAD_CORRECTION: tuple[float, ...] = (
    1.413, 2.147, 1.389, 1.376, 1.278, 1.222, 1.196, 1.158, 1.148, 1.123, 1.117, 1.099, 1.096,
    1.085, 1.081, 1.073, 1.071, 1.064, 1.062, 1.057, 1.056, 1.052, 1.051, 1.047, 1.046, 1.044,
    1.043, 1.040, 1.040,
)  # fmt: skip


def _correction(table: tuple[float, ...], n: int) -> float:
    if n < 2:
        return 1.0
    if n - 2 < len(table):
        return table[n - 2]
    return 1.0 + 0.8 / n  # ≈ the tables' tail


def _median(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else 0.5 * (sorted_values[mid - 1] + sorted_values[mid])


def robust_baseline(values: Iterable[float]) -> tuple[float, float]:
    """(median, σ) of ``values`` (same unit), σ = 1.4826·MAD with the small-sample
    correction above; (nan, nan) when empty."""
    v = sorted(values)
    if not v:
        return math.nan, math.nan
    med = _median(v)
    mad = _median(sorted(abs(x - med) for x in v))
    return med, SIGMA_PER_MAD * mad * _correction(_OWN_MAD_CORRECTION, len(v))


def deviation_sigma(
    sigma_b: float,
    n_baseline: int | None = None,
    *,
    error: float | None = None,
    e2_typ: float | None = None,
) -> float:
    """σ of ``value − b`` (value unit) for a baseline ``b`` = median of ``n_baseline`` nights.

    ``sigma_b`` is the nights' scatter (pooled or the amp's own); it already holds the
    history's typical measurement error, ``e2_typ`` (the median of the history's squared
    errors). Then::

        σ_intrinsic² = max(0, σ_b² − e2_typ)
        σ_dev²       = σ_intrinsic² + error² + (π / 2n)·σ_b²

    (today's error in place of the typical one; the median of n nights has variance
    πσ_b²/2n). A night with fewer frames (larger ``error``) gets a wider band and does not
    page; a precise night a narrower one, so it does not hide a real change. The absolute
    scale of the errors cancels when today's is typical (σ_dev ≈ σ_b), so errors that are
    all too small or too large by a common factor do not change the false-alarm rate;
    only their night-to-night ratios matter. Without ``error`` or ``e2_typ``
    σ_dev = σ_b·√(1 + π/2n), the behaviour without errors.
    """
    inflate2 = math.pi / (2.0 * n_baseline) if n_baseline else 0.0
    if error is None or e2_typ is None or not math.isfinite(sigma_b):
        return sigma_b * math.sqrt(1.0 + inflate2)
    intrinsic2 = max(0.0, sigma_b * sigma_b - e2_typ)
    return math.sqrt(intrinsic2 + error * error + inflate2 * sigma_b * sigma_b)


def band_width(
    t: Threshold,
    baseline: float,
    sigma: float,
    n_baseline: int | None = None,
    *,
    k: float | None = None,
    error: float | None = None,
    e2_typ: float | None = None,
) -> float:
    """Allowed |deviation|: max(relative·|b|, k·σ_dev, absolute) over the terms set.

    σ_dev is :func:`deviation_sigma` of ``sigma`` (σ_b); ``k`` defaults to the
    threshold's ``nsigma`` (no σ term when neither is set). A ``poisson`` threshold
    (counts) also takes :func:`poisson_band`.
    """
    terms = [0.0]
    if t.relative:
        terms.append(t.relative * abs(baseline))
    k = k if k is not None else t.nsigma
    if t.poisson and k:
        terms.append(poisson_band(baseline, sigma, n_baseline, k))
    elif k and math.isfinite(sigma):
        terms.append(k * deviation_sigma(sigma, n_baseline, error=error, e2_typ=e2_typ))
    if t.absolute is not None:
        terms.append(t.absolute)
    return max(terms)


@functools.lru_cache(maxsize=4096)  # few distinct (λ, alpha): medians of counts
def poisson_upper(lam: float, alpha: float) -> int:
    """Smallest n with P(N ≥ n | Poisson(lam)) ≤ alpha.

    Exact sum of the pmf up to lam = 400; above, the Cornish–Fisher quantile
    lam + z√lam + (z² − 1)/6 + 1/2 (z = Φ⁻¹(1 − alpha)), within one count of exact there.
    """
    lam = max(lam, 1e-9)
    if lam > 400.0:
        z = NormalDist().inv_cdf(1.0 - alpha)
        return math.ceil(lam + z * math.sqrt(lam) + (z * z - 1.0) / 6.0 + 0.5)
    pmf = math.exp(-lam)
    cdf = 0.0
    n = 0
    while True:
        # upper tail at n = 1 − cdf(n − 1); 1 − cdf keeps ~1e-16 absolute precision
        if 1.0 - cdf <= alpha:
            return n
        cdf += pmf
        n += 1
        pmf *= lam / n


def poisson_band(baseline: float, sigma: float, n_baseline: int | None, k: float) -> float:
    """Allowed rise of a count (hot/cold pixels) above its baseline median ``baseline``.

    Today's count is Poisson about the amp's rate λ (σ = √max(λ, 1)); the history's
    scatter ``sigma`` may be larger (over-dispersion: a defect census near its detection
    limit), and then that wins (:func:`deviation_sigma` with the Poisson part as the
    "measurement error"). Gaussian tails are too thin for small counts (P(N ≥ 6 | λ = 1)
    is 6e-4, not the 5σ 3e-7), so the band is at least the exact Poisson quantile: the
    count with P(N ≥ n | λ_up) ≤ Φ(−k), where λ_up = max(b, 1) + 2·√(π·max(b, 1)/2n) is
    the rate two standard errors above the n-night median (λ is estimated, not known).
    Averaged over simulated 10-night baselines, the exact probability that a stable
    Poisson(λ) amp fires with k = 5.1 is ≤ 1e-7 for λ = 0.3 … 300 (λ = 3: 9.5e-8; with
    one standard error instead of two it would be 5.2e-7, over this rule's 4.2e-7 share
    of the budget; ``tests/alerts/test_alert_errors.py``). From a baseline of 0 the
    count must reach 13 to fire.
    """
    b = max(baseline, 0.0)
    lam = max(b, 1.0)
    n = n_baseline or 1
    sig = max(sigma, math.sqrt(b)) if math.isfinite(sigma) else math.sqrt(b)
    gauss = k * deviation_sigma(sig, n, error=math.sqrt(lam), e2_typ=b)
    lam_up = lam + 2.0 * math.sqrt(math.pi * lam / (2.0 * n))
    exact = poisson_upper(lam_up, NormalDist().cdf(-k)) - 0.5 - b  # between n* − 1 and n*
    return max(gauss, exact)


def _direction(t: Threshold) -> str:
    return "up" if t.kind == "increase" else t.direction


def judge(
    t: Threshold, value: float, baseline: float, band: float, clear_band: float
) -> tuple[bool, bool, str, float]:
    """(firing, clear, direction word, limit) of ``value`` against ``baseline ± band``."""
    dev = value - baseline
    d = _direction(t)
    if d == "up":
        firing, clear, sign = dev > band, dev <= clear_band * band, 1.0
    elif d == "down":
        firing, clear, sign = dev < -band, dev >= -clear_band * band, -1.0
    else:
        firing, clear = abs(dev) > band, abs(dev) <= clear_band * band
        sign = 1.0 if dev >= 0 else -1.0
    word = "above" if sign > 0 else "below"
    return firing, clear and not firing, word, baseline + sign * band


# --------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------
def _evaluation(p: RuleParams, s: Subject, value: float, day_obs: str, **kw: object) -> Evaluation:
    t = p.threshold
    return Evaluation(
        rule=t.rule, kind=t.kind, metric=p.metric, unit=p.unit, severity=p.severity,
        instrument=s.instrument, detector=s.detector, detector_name=s.detector_name,
        amp=s.amp, value=float(value), day_obs=day_obs,
        spec=t.spec or (p.spec if t.kind == "fixed" else ""),
        summary=t.summary, message=t.message, action=t.action, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def evaluate_fixed(p: RuleParams, subject: Subject, sample: Sample, day_obs: str) -> Evaluation:
    """A spec limit judged with the value's error: firing when the value is beyond
    ``high`` (or below ``low``) by more than ``k·error`` (k = :attr:`RuleParams.k`); without
    an error, when it is beyond the limit at all.

    An amp whose true value sits exactly on the limit then fires with probability Φ(−k)
    (one tail: 1.7e-7 for k = 5.1), one well inside it practically never: that is this
    rule's share of the false-alarm budget (:func:`nsigma_for_budget`). ``clear`` needs
    the value inside the limits by ``clear_margin`` (value units, default 0); between
    that and ``limit ± k·error`` a firing alert stays firing (hysteresis).
    """
    t = p.threshold
    v = sample.value
    margin = t.clear_margin or 0.0
    slack = p.k * sample.error if sample.error is not None else 0.0
    above = t.high is not None and v > t.high + slack
    below = t.low is not None and v < t.low - slack
    clear = (t.high is None or v <= t.high - margin) and (t.low is None or v >= t.low + margin)
    if above:
        limit, word = t.high, "above"
    elif below:
        limit, word = t.low, "below"
    elif t.high is not None and (t.low is None or t.high - v <= v - t.low):
        limit, word = t.high, "above"
    else:
        limit, word = t.low, "below"
    return _evaluation(
        p, subject, v, day_obs, threshold=limit, baseline=None, baseline_sigma=None,
        firing=above or below, clear=clear and not (above or below), direction=word,
        low=t.low, high=t.high, physical_filter=sample.physical_filter, error=sample.error,
    )  # fmt: skip


def walk_baselines(
    p: RuleParams, history: Mapping[str, Sequence[Sample]]
) -> tuple[dict[str, list[Sample]], Pool | None]:
    """Walk one detector's history forward and keep each series' good nights.

    Parameters
    ----------
    p : RuleParams
        A drift or increase rule.
    history : mapping key → samples
        Per series (an amp of one detector; one filter), the nights *before* the evaluated
        one, one sample per night, in day_obs order.

    Returns
    -------
    good : dict key → samples
        Per series, the nights outside its alert episodes. The walk replays the engine's
        hysteresis: a night on which the condition holds opens an episode; it closes after
        ``clear_for`` consecutive clear nights, which then count as good. Nights inside an
        episode — also those merely back inside the band but not inside the narrower clear
        band — are never good, so values after a step cannot leak into the baseline one
        noisy night at a time and make the alert clear itself. Nights before a series
        had ``min_baseline_nights`` good nights count as good: they build it. Each night
        is judged with its own error, as the engine judged it.
    pool : Pool or None
        σ_pool and the pooled typical squared error of the final good nights (relative to
        |b| when the rule has ``relative``), for :func:`baseline_of`; None without pooling
        or with < 2 series.
    """
    series = {k: _Series() for k in history}
    by_night: dict[str, list[tuple[str, Sample]]] = {}
    for key, samples in history.items():
        for s in samples:
            by_night.setdefault(s.day_obs, []).append((key, s))
    t = p.threshold
    pooling = _pooling(p)
    for night in sorted(by_night):
        stats = {k: st for k, ser in series.items() if (st := ser.stats(p, pooling)) is not None}
        pooled = _pooled(stats) if pooling else None
        for key, s in by_night[night]:
            ser = series[key]
            st = stats.get(key)
            if st is None:
                ser.good.append(s)
                continue
            sigma, e2 = _effective_sigma(p, st, pooled)
            band = band_width(t, st.median, sigma, st.n, k=p.k, error=s.error, e2_typ=e2)
            firing, clear, _, _ = judge(t, s.value, st.median, band, p.clear_band)
            run = ser.episode
            if run is None:
                if firing:
                    ser.episode = []
                else:
                    ser.good.append(s)
            elif clear:
                run.append(s)
                if len(run) >= p.clear_for:
                    ser.good.extend(run)
                    ser.episode = None
            else:
                run.clear()
    stats = {k: st for k, ser in series.items() if (st := ser.stats(p, pooling)) is not None}
    pooled = _pooled(stats) if pooling else None
    return {k: ser.good for k, ser in series.items()}, pooled


def _pooling(p: RuleParams) -> bool:
    # Counts (poisson) do not pool: amps' hot-pixel counts differ by orders of magnitude
    # and their Poisson σ is known; the own scatter only adds over-dispersion.
    return p.pool and not p.threshold.poisson


@dataclass(frozen=True, slots=True)
class Pool:
    """σ_pool and the pooled median squared error (relative when the rule has ``relative``;
    ``e2`` None when the history carries no errors)."""

    sigma: float
    e2: float | None


@dataclass(slots=True)
class _Stats:
    median: float
    sigma_own: float
    n: int
    e2_typ: float | None  # median of the squared errors of the nights that have one
    pool_residuals: list[float] | None  # |v − median| scaled for pooling, or None
    pool_e2: list[float] | None  # squared errors scaled for pooling, or None


@dataclass(slots=True)
class _Series:
    """One series during the walk: its good samples, open episode, cached statistics."""

    good: list[Sample] = field(default_factory=list)
    episode: list[Sample] | None = None
    _n: int = -1
    _stats: _Stats | None = None

    def stats(self, p: RuleParams, pooling: bool) -> _Stats | None:
        n_good = len(self.good)
        if n_good < p.min_baseline_nights:
            return None
        if n_good != self._n:  # good only grows: recompute when it did
            self._n = n_good
            self._stats = _series_stats(p, self.good[-p.baseline_nights :], pooling)
        return self._stats


def _series_stats(p: RuleParams, samples: Sequence[Sample], pooling: bool) -> _Stats:
    values = sorted(s.value for s in samples)
    n = len(values)
    mid = n // 2
    med = values[mid] if n % 2 else 0.5 * (values[mid - 1] + values[mid])
    res = [abs(x - med) for x in values]
    res.sort()
    mad = res[mid] if n % 2 else 0.5 * (res[mid - 1] + res[mid])
    own = SIGMA_PER_MAD * mad * _correction(_OWN_MAD_CORRECTION, n)
    e2 = sorted(s.error * s.error for s in samples if s.error is not None)
    e2_typ = _median(e2) if e2 else None
    pool = pool_e2 = None
    if pooling:
        scale = abs(med) if p.threshold.relative else 1.0
        if scale > 0.0:
            c = _correction(_POOLED_MAD_CORRECTION, n) / scale
            pool = [r * c for r in res]
            pool_e2 = [x / (scale * scale) for x in e2]
    return _Stats(med, own, n, e2_typ, pool, pool_e2)


def _pooled(stats: Mapping[str, _Stats]) -> Pool | None:
    """σ_pool (relative when the rule has ``relative``) from ≥ 2 series, else None."""
    parts = [st for st in stats.values() if st.pool_residuals is not None]
    if len(parts) < 2:
        return None
    residuals = sorted(r for st in parts for r in st.pool_residuals or ())
    e2 = sorted(x for st in parts for x in st.pool_e2 or ())
    return Pool(SIGMA_PER_MAD * _median(residuals), _median(e2) if e2 else None)


def _effective_sigma(p: RuleParams, st: _Stats, pool: Pool | None) -> tuple[float, float | None]:
    """(σ_b, typical squared error) of one series: the pooled ones scaled to the amp,
    unless the amp's own σ is larger beyond chance (:func:`noisy_amp_factor`)."""
    if pool is None:
        return st.sigma_own, st.e2_typ
    scale = abs(st.median) if p.threshold.relative else 1.0
    pooled = pool.sigma * scale
    if st.sigma_own > noisy_amp_factor(st.n) * pooled:
        return st.sigma_own, st.e2_typ
    return pooled, None if pool.e2 is None else pool.e2 * scale * scale


def baseline_of(p: RuleParams, good: Sequence[Sample], pool: Pool | None) -> Baseline | None:
    """Baseline from the last ``baseline_nights`` good samples; None if too few.

    ``sigma`` is σ_pool (scaled to this amp) unless the amp's own σ exceeds it by more
    than :func:`noisy_amp_factor`; without pooling it is the amp's own σ. ``e2_typ`` is
    the matching typical squared error of those nights (None without errors).
    """
    if len(good) < p.min_baseline_nights:
        return None
    last = good[-p.baseline_nights :]
    st = _series_stats(p, last, False)
    sigma, e2 = _effective_sigma(p, st, pool)
    return Baseline(st.median, sigma, st.sigma_own, st.n, tuple(s.day_obs for s in last), e2)


def noisy_amp_factor(n: int) -> float:
    """How much larger than the pooled σ an amp's own 1.4826·MAD of ``n`` nights must be
    to count as a genuinely noisier amp: ≈ the 99th percentile of the corrected σ̂/σ
    for ``n`` Gaussian samples, 1 + 3.1/√n (simulated: 1.99 for n = 10, 1.82 for 15,
    1.67 for 20, 1.54 for 30)."""
    return 1.0 + 3.1 / math.sqrt(max(n, 1))


def evaluate_baseline_rule(
    p: RuleParams,
    subjects: Mapping[str, Subject],
    history: Mapping[str, Sequence[Sample]],
    today: Mapping[str, Sample],
    day_obs: str,
) -> list[Evaluation]:
    """Drift or increase on one detector's series (all amps together, for pooling).

    ``subjects``, ``history`` (nights before ``day_obs``, ordered) and ``today`` are keyed
    the same (e.g. by amp). With ``per_filter`` the series are split by physical_filter
    and each of today's values is judged against nights of its own filter. Series without
    enough good nights are not evaluated (no evaluation returned for them).
    """
    if p.threshold.per_filter:
        groups: dict[str, tuple[dict[str, list[Sample]], dict[str, Sample]]] = {}
        for key, s in today.items():
            groups.setdefault(s.physical_filter, ({}, {}))[1][key] = s
        for key, samples in history.items():
            for s in samples:
                if s.physical_filter in groups:
                    groups[s.physical_filter][0].setdefault(key, []).append(s)
        out: list[Evaluation] = []
        for hist, tod in groups.values():
            out.extend(_evaluate_group(p, subjects, hist, tod, day_obs))
        return out
    return _evaluate_group(p, subjects, history, today, day_obs)


def _evaluate_group(
    p: RuleParams,
    subjects: Mapping[str, Subject],
    history: Mapping[str, Sequence[Sample]],
    today: Mapping[str, Sample],
    day_obs: str,
) -> list[Evaluation]:
    t = p.threshold
    full = {k: list(history.get(k, ())) for k in set(history) | set(today)}
    good, pool = walk_baselines(p, full)
    out = []
    for key, s in today.items():
        b = baseline_of(p, good.get(key, []), pool)
        if b is None:
            continue
        band = band_width(t, b.median, b.sigma, b.n, k=p.k, error=s.error, e2_typ=b.e2_typ)
        firing, clear, word, limit = judge(t, s.value, b.median, band, p.clear_band)
        sd = None if t.poisson else deviation_sigma(b.sigma, b.n, error=s.error, e2_typ=b.e2_typ)
        out.append(
            _evaluation(
                p,
                subjects[key],
                s.value,
                day_obs,
                threshold=limit,
                baseline=b.median,
                baseline_sigma=b.sigma,
                band=band,
                n_baseline=b.n,
                firing=firing,
                clear=clear,
                direction=word,
                sides=_direction(t),
                physical_filter=s.physical_filter,
                baseline_days=b.days,
                error=s.error,
                sigma_dev=sd,
            )
        )
    return out


def evaluate_staleness(
    expected: Iterable[Expectation],
    present: set[tuple[str, str, str]],
    day_obs: str,
    detector_number: Callable[[str, str], int] | None = None,
) -> list[Evaluation]:
    """One evaluation per expected (instrument, detector, calib type).

    ``present`` holds ``(instrument, detector_name, calib_type)`` of the day's records;
    ``detector_number(instrument, name)`` gives the identity's detector (-1 if unknown).
    Rule name ``stale_<calib_type>``; value = 1 if present else 0, threshold 1.
    """
    out: list[Evaluation] = []
    inst_types = {(i.lower(), c) for i, _, c in present}
    have = {(i.lower(), d, c) for i, d, c in present}
    for e in expected:
        targets: list[tuple[int, str]]
        if e.detectors is None:
            targets = [(-1, "")]
        else:
            targets = []
            for name in e.detectors:
                try:
                    num = detector_number(e.instrument, name) if detector_number else -1
                except (KeyError, ValueError, IndexError):
                    num = -1
                targets.append((num, name))
        for num, name in targets:
            ok = (
                (e.instrument.lower(), e.calib_type) in inst_types
                if not name
                else (e.instrument.lower(), name, e.calib_type) in have
            )
            out.append(
                Evaluation(
                    rule=f"stale_{e.calib_type}",
                    kind="staleness",
                    metric=e.calib_type,
                    unit="",
                    severity=e.severity,
                    instrument=e.instrument,
                    detector=num,
                    detector_name=name,
                    amp="",
                    value=1.0 if ok else 0.0,
                    threshold=1.0,
                    baseline=None,
                    baseline_sigma=None,
                    day_obs=day_obs,
                    firing=not ok,
                    clear=ok,
                    direction="below",
                    summary=f"Expected {e.calib_type} calibration did not arrive.",
                    action=f"Check that the {e.calib_type} sequence was taken and ingested "
                    "for this day_obs, then re-run calibmon on it.",
                )
            )
    return out


def max_severity(severities: Iterable[str]) -> str:
    """The highest of ``info`` < ``warning`` < ``critical`` (``info`` when empty)."""
    return max(severities, key=lambda s: SEVERITY_RANK.get(s, 0), default="info")
