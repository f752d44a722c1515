"""The catalogue's thresholds as the report shows them: labels of fixed limits, whether an
amp breaks one, and the text of every rule. Which rule applies to which amp is decided by
:meth:`calibmon.catalogue.Threshold.applies_to` (the alert engine's rule too)."""

from __future__ import annotations

import math

from calibmon.catalogue import Catalogue, MetricDef


def fixed_thresholds(
    mdef: MetricDef | None, instrument: str, vendor: str | None = None, level: str = "amp"
) -> list[tuple[str, float]]:
    """(label, value) of the metric's fixed thresholds that apply to ``instrument`` (and
    ``vendor`` when given; vendor-specific limits are labelled with the vendor otherwise)."""
    out: list[tuple[str, float]] = []
    if mdef is None:
        return out
    for t in mdef.thresholds_for(instrument, vendor, level, kind="fixed"):
        tag = f"{t.vendor} " if t.vendor and vendor is None else ""
        if t.low is not None:
            out.append((f"{tag}low {t.low:g}", float(t.low)))
        if t.high is not None:
            out.append((f"{tag}high {t.high:g}", float(t.high)))
    return out


class SpecLimits:
    """:func:`out_of_spec` for many amps: the fixed limits that apply are looked up once per
    (metric, vendor) instead of once per value (a full camera has ~50k amp values)."""

    def __init__(self, cat: Catalogue, instrument: str) -> None:
        self.cat = cat
        self.instrument = instrument
        self._limits: dict[tuple[str, str], list[tuple[float | None, float | None]]] = {}

    def limits(self, metric: str, vendor: str) -> list[tuple[float | None, float | None]]:
        """(low, high) of every fixed limit of ``metric`` for an amp of ``vendor``."""
        key = (metric, vendor)
        lim = self._limits.get(key)
        if lim is None:
            mdef = self.cat.metrics.get(metric)
            ts = mdef.thresholds_for(self.instrument, vendor, kind="fixed") if mdef else []
            lim = self._limits[key] = [(t.low, t.high) for t in ts]
        return lim

    def breaks(self, metric: str, vendor: str, value: float) -> bool:
        """True when ``value`` breaks a fixed limit of ``metric`` for this vendor."""
        if not math.isfinite(value):
            return False
        return any(
            (lo is not None and value < lo) or (hi is not None and value > hi)
            for lo, hi in self.limits(metric, vendor)
        )


def out_of_spec(mdef: MetricDef | None, instrument: str, vendor: str, value: float) -> bool:
    """True when ``value`` breaks a fixed threshold of the metric for this amp's vendor."""
    if mdef is None or not math.isfinite(value):
        return False
    for t in mdef.thresholds_for(instrument, vendor, kind="fixed"):
        if (t.low is not None and value < t.low) or (t.high is not None and value > t.high):
            return True
    return False


def threshold_text(mdef: MetricDef | None) -> str:
    """Human text of every threshold rule of a metric, for tables."""
    if mdef is None:
        return ""
    parts = []
    for t in mdef.thresholds:
        who = "".join(f" [{x}]" for x in (t.vendor, t.instrument) if x)
        if t.kind == "fixed":
            rng = []
            if t.low is not None:
                rng.append(f"≥ {t.low:g}")
            if t.high is not None:
                rng.append(f"≤ {t.high:g}")
            parts.append(f"spec {' and '.join(rng)}{who}")
        elif t.kind == "drift":
            bits = []
            if t.relative:
                bits.append(f"{100 * t.relative:g} %")
            if t.nsigma:
                bits.append(f"{t.nsigma:g} σ")
            if t.absolute:
                bits.append(f"{t.absolute:g}")
            parts.append(f"drift > {' / '.join(bits)}{who}")
        else:
            parts.append(f"increase > {t.absolute:g}{who}")
    return "; ".join(parts)
