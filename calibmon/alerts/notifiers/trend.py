"""Small trend plots for notifications (matplotlib, Agg; no pyplot global state).

One PNG per alerting metric of a notification: the last nights of the alerting amps with
the limit and the baseline band, so the on-call person sees at a glance whether it is a
step, a slow drift or one bad night.

- fixed limits, or a single amp: the values themselves; fixed → the limit line(s); drift/
  increase → the amp's baseline (median of its good nights), its ±σ band (shaded) and the
  alert limits ``baseline ± band`` (dashed red).
- several amps of a drift/increase rule: each amp has its own baseline, so the plot shows
  each amp's deviation from its own baseline (in % for drift, in the metric's unit for
  increase), with the narrowest amp's limit and the median σ band.
"""

from __future__ import annotations

import io
import math
import statistics
from datetime import date

from calibmon.alerts.notifiers.base import Trend
from calibmon.dayobs import parse_day_obs

WIDTH_IN, HEIGHT_IN, DPI = 5.6, 2.5, 100


def _day(d: str) -> date:
    return parse_day_obs(d)


def render_trend_png(trend: Trend) -> bytes:
    """The PNG bytes of one trend plot (≈ 560 × 250 px)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    amps = [a for a in trend.amps if a.days]
    unit = "" if trend.unit in ("", "1") else trend.unit
    deviation = trend.kind in ("drift", "increase") and len(amps) > 1
    relative = deviation and trend.kind == "drift" and all(a.baseline for a in amps)
    colors = _colors(len(amps))
    for a, c in zip(amps, colors, strict=True):
        x = [_day(d) for d in a.days]
        y = list(a.values)
        if deviation and a.baseline is not None:
            y = [(v / a.baseline - 1) * 100 if relative else v - a.baseline for v in y]
        ax.plot(x, y, marker="o", ms=2.5, lw=1.0, color=c, label=a.amp or trend.detector_name)
    if trend.kind == "fixed" or trend.kind == "staleness":
        for lim in (trend.low, trend.high):
            if lim is not None:
                ax.axhline(lim, color="tab:red", ls="--", lw=1.0)
    elif not deviation and amps:
        a = amps[0]
        _band(ax, trend.direction, a.baseline, a.baseline_sigma, a.band)
    elif amps:
        bands = [_rel(a.band, a.baseline, relative) for a in amps]
        sigmas = [_rel(a.baseline_sigma, a.baseline, relative) for a in amps]
        band = min((b for b in bands if b is not None), default=None)
        sigma_vals = [s for s in sigmas if s is not None]
        sigma = statistics.median(sigma_vals) if sigma_vals else None
        _band(ax, trend.direction, 0.0, sigma, band)
    ylabel = trend.metric
    if deviation:
        ylabel = f"Δ {trend.metric} [%]" if relative else f"Δ {trend.metric}"
        if unit and not relative:
            ylabel += f" [{unit}]"
    elif unit:
        ylabel += f" [{unit}]"
    ax.set_ylabel(ylabel, fontsize=8)
    title = f"{trend.instrument} {trend.detector_name} — {trend.rule}"
    if deviation:
        title += " (vs each amp's baseline)"
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if 1 <= len(amps) <= 8:
        ax.legend(fontsize=6, ncol=min(len(amps), 4), loc="best", frameon=False)
    elif amps:
        ax.text(0.01, 0.97, f"{len(amps)} amps", transform=ax.transAxes, fontsize=7, va="top")
    fig.autofmt_xdate(rotation=30)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _rel(x: float | None, base: float | None, relative: bool) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    if relative:
        return 100.0 * x / abs(base) if base else None
    return x


def _band(ax, direction: str, base: float | None, sigma: float | None, band: float | None) -> None:
    if base is None or not math.isfinite(base):
        return
    ax.axhline(base, color="0.4", lw=0.8, label="_baseline")
    if sigma is not None and math.isfinite(sigma) and sigma > 0:
        ax.axhspan(base - sigma, base + sigma, color="0.6", alpha=0.25, lw=0)
    if band is not None and math.isfinite(band) and band > 0:
        if direction in ("both", "up"):
            ax.axhline(base + band, color="tab:red", ls="--", lw=1.0)
        if direction in ("both", "down"):
            ax.axhline(base - band, color="tab:red", ls="--", lw=1.0)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]
