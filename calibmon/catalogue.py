"""The metric catalogue: ``metrics/*.yaml``, one document per calib_type.

Each metric has its unit, level, description, method, literature/spec reference and
threshold rules. The loader validates everything at start-up (names, units, duplicates)
and fails with the file and key, not halfway through a night. Code asks the catalogue for
units instead of repeating them.
"""

from __future__ import annotations

import functools
import re
import string
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from calibmon.errors import ConfigError

UNITS = frozenset(
    {"adu", "electron", "electron/s", "electron/adu", "1/electron", "1/adu", "1", "count"}
)
CALIB_TYPES = ("bias", "dark", "flat", "ptc", "defects", "verify")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# The repository's metrics/ directory, reached through the package's ``metrics_catalogue``
# symlink (a checkout or editable install) or the copy a wheel carries (pip install .).
DEFAULT_DIR = Path(__file__).parent / "metrics_catalogue"


# Placeholders a threshold's ``message`` may use (filled by the alert engine).
MESSAGE_FIELDS = frozenset(
    {"detector_name", "amp", "instrument", "metric", "value", "threshold", "baseline", "unit",
     "since_day_obs", "day_obs", "rule"}
)  # fmt: skip


def _template_fields(template: str) -> set[str]:
    try:
        return {
            f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(template) if f
        }
    except ValueError as exc:
        raise ValueError(f"message is not a valid format string: {exc}") from None


class Threshold(BaseModel):
    """One alert rule on a metric (DESIGN.md §6).

    kinds:
      fixed      value outside [low, high] (either may be omitted)
      drift      |value − baseline| > max(relative·|baseline|, nsigma·σ_baseline, absolute)
                 where baseline/σ are the median and 1.4826·MAD of the last
                 ``baseline_nights`` good nights of the same amp
      increase   value − baseline > max(absolute, relative·|baseline|, nsigma·σ_baseline)
                 (counts such as new hot columns; one-sided)

    The value's 1σ ``error`` (DESIGN.md §4) enters every kind: a fixed limit fires only
    when the value is beyond it by ``k·error``, and the drift/increase σ combines the
    amp's intrinsic scatter, today's error and the baseline's own uncertainty (see
    :mod:`calibmon.alerts.rules`). ``nsigma`` omitted = the engine's ``alerts.nsigma``
    (the false-alarm budget's k).

    Optional keys (all backwards compatible; the alert engine, ``calibmon.alerts``, reads them):
      direction     drift only: ``both`` (default), ``up`` or ``down`` (dead amp: ``down``)
      per_filter    baseline only from nights with the same ``physical_filter`` (flats)
      pool          ``detector`` (default): σ_baseline is at least the robust scatter pooled
                    over the detector's amps (a 10-night MAD alone is too noisy a σ: with
                    5σ it would page ~1 % of amps every night); ``none``: the amp's own only
      clear_for     H: consecutive clear evaluations before a firing alert resolves
      clear_band    drift/increase: "clear" means inside clear_band × band (hysteresis)
      clear_margin  fixed: "clear" means inside the limits by this much (value units)
      poisson       increase only: the value is a count; the band's σ is at least the
                    Poisson √max(baseline, 1) (pixel censuses: hot/cold pixels)
      message       per-amp text, ``str.format`` with {detector_name} {amp} {instrument}
                    {metric} {value} {threshold} {baseline} {unit} {since_day_obs}
                    {day_obs} {rule}
      action        what the on-call person should do (shown in notifications)
    """

    model_config = ConfigDict(extra="forbid")

    rule: str
    kind: Literal["fixed", "drift", "increase"]
    low: float | None = None
    high: float | None = None
    relative: float | None = Field(None, gt=0)
    nsigma: float | None = Field(None, gt=0)
    absolute: float | None = Field(None, ge=0)
    baseline_nights: int = Field(10, ge=1)
    min_baseline_nights: int = Field(3, ge=1)
    for_evaluations: int = Field(1, ge=1, alias="for")
    severity: Literal["info", "warning", "critical"] = "warning"
    vendor: str | None = None
    instrument: str | None = None
    level: Literal["amp", "detector", "camera"] = "amp"
    spec: str = ""
    summary: str = ""
    direction: Literal["both", "up", "down"] = "both"
    per_filter: bool = False
    pool: Literal["detector", "none"] = "detector"
    clear_for: int | None = Field(None, ge=1)
    clear_band: float | None = Field(None, gt=0, le=1)
    clear_margin: float | None = Field(None, ge=0)
    poisson: bool = False
    message: str = ""
    action: str = ""

    @model_validator(mode="after")
    def _check(self) -> Threshold:
        if not _NAME_RE.match(self.rule):
            raise ValueError(f"rule name {self.rule!r} must be snake_case")
        if self.kind == "fixed" and self.low is None and self.high is None:
            raise ValueError("a fixed threshold needs low and/or high")
        if self.kind == "drift" and not (self.relative or self.nsigma or self.absolute):
            raise ValueError("a drift threshold needs relative, nsigma or absolute")
        if self.kind == "increase" and self.absolute is None:
            raise ValueError("an increase threshold needs absolute")
        if self.direction != "both" and self.kind != "drift":
            raise ValueError("direction applies to drift thresholds only")
        if self.poisson and self.kind != "increase":
            raise ValueError("poisson applies to increase thresholds only")
        if self.message:
            unknown = _template_fields(self.message) - MESSAGE_FIELDS
            if unknown:
                raise ValueError(f"message uses unknown field(s): {', '.join(sorted(unknown))}")
        return self

    def applies_to(self, instrument: str | None, vendor: str | None, level: str = "amp") -> bool:
        """True when this rule is meant for values of ``instrument``, ``vendor`` and ``level``.

        The one matching rule (alert engine, report, dashboards): instrument and vendor
        compare case-insensitively (``LATISS``/``latiss``, ``ITL``/``itl``). ``instrument``
        None means no particular instrument: only rules without ``instrument`` apply.
        ``vendor`` None means any vendor (vendor-specific rules apply too); ``""`` means an
        amp of unknown vendor (vendor-specific rules do not apply).
        """
        if self.level != level:
            return False
        if self.instrument and (instrument or "").lower() != self.instrument.lower():
            return False
        return vendor is None or not self.vendor or self.vendor.upper() == vendor.upper()


class MetricDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    calib_type: str = ""
    unit: str
    levels: list[Literal["amp", "detector", "camera"]] = Field(
        default_factory=lambda: ["amp", "detector", "camera"]
    )
    description: str
    method: str
    reference: str = ""
    spec: str = ""
    thresholds: list[Threshold] = Field(default_factory=list)

    def thresholds_for(
        self,
        instrument: str | None,
        vendor: str | None = None,
        level: str = "amp",
        kind: str | None = None,
    ) -> list[Threshold]:
        """The metric's rules of ``kind`` (any when None) that apply to values of
        ``instrument``, ``vendor`` and ``level`` (:meth:`Threshold.applies_to`), in
        catalogue order."""
        return [
            t
            for t in self.thresholds
            if (kind is None or t.kind == kind) and t.applies_to(instrument, vendor, level)
        ]


class CatalogueDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calib_type: str
    description: str = ""
    metrics: dict[str, MetricDef]


class Catalogue:
    """All metric definitions, keyed by metric name."""

    def __init__(self, metrics: dict[str, MetricDef]) -> None:
        self.metrics = metrics

    def __getitem__(self, name: str) -> MetricDef:
        return self.metrics[name]

    def __contains__(self, name: object) -> bool:
        return name in self.metrics

    def __iter__(self):
        return iter(self.metrics.values())

    def unit(self, name: str) -> str:
        return self.metrics[name].unit

    def calib_type(self, name: str) -> str:
        return self.metrics[name].calib_type

    def names(self, calib_type: str | None = None) -> list[str]:
        return [m.name for m in self.metrics.values() if calib_type in (None, m.calib_type)]


def load_catalogue(directory: str | Path | None = None) -> Catalogue:
    """Load and validate every ``*.yaml`` in ``directory`` (default: the shipped ``metrics/``).

    Raises :class:`ConfigError` naming the file and key on any problem.
    """
    return _load(str(Path(directory) if directory else DEFAULT_DIR))


# libyaml's C loader when PyYAML was built with it (≈ 10× faster than the pure-Python
# SafeLoader on the catalogue); both resolve the same safe tags to the same values.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _load(directory: str) -> Catalogue:
    d = Path(directory)
    files = sorted(d.glob("*.yaml"))
    if not files:
        raise ConfigError(f"metric catalogue {d} holds no *.yaml")
    metrics: dict[str, MetricDef] = {}
    for f in files:
        try:
            raw = yaml.load(f.read_text(), Loader=_SAFE_LOADER)
            doc = CatalogueDoc.model_validate(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"catalogue {f}: not valid YAML") from exc
        except ValidationError as exc:
            e = exc.errors()[0]
            key = ".".join(str(p) for p in e["loc"])
            raise ConfigError(f"catalogue {f}: {key}: {e['msg']}") from None
        if doc.calib_type not in CALIB_TYPES:
            raise ConfigError(f"catalogue {f}: calib_type {doc.calib_type!r} unknown")
        for name, m in doc.metrics.items():
            if not _NAME_RE.match(name):
                raise ConfigError(f"catalogue {f}: metrics.{name}: not a snake_case name")
            if m.unit not in UNITS:
                raise ConfigError(f"catalogue {f}: metrics.{name}.unit: {m.unit!r} unknown")
            if name in metrics:
                raise ConfigError(
                    f"catalogue {f}: metrics.{name}: already defined for {metrics[name].calib_type}"
                )
            rules = [t.rule for t in m.thresholds]
            if len(set(rules)) != len(rules):
                raise ConfigError(f"catalogue {f}: metrics.{name}.thresholds: duplicate rule")
            metrics[name] = m.model_copy(update={"name": name, "calib_type": doc.calib_type})
    all_rules = [t.rule for m in metrics.values() for t in m.thresholds]
    dup = {r for r in all_rules if all_rules.count(r) > 1}
    if dup:
        raise ConfigError(f"catalogue {d}: rule names used twice: {', '.join(sorted(dup))}")
    return Catalogue(metrics)
