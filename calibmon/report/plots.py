"""Plots of the HTML report (matplotlib, Agg): histograms across amps, trends over nights,
PTC curves and residuals; and :func:`png_data_uri` to embed a figure in HTML.

A figure function raises :class:`FigureUnavailable` (with a reason a reader understands)
when its data cannot make a picture, e.g. a PTC whose points are all ≤ 0 on its log–log
axes; the report shows the reason in place of the figure.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from calibmon.dayobs import day_obs_iso
from calibmon.science.robust import sigma_mad
from calibmon.store.images import PtcCurve

ALERT_COLOUR = "#d62728"
# Log axes: the smallest and largest limits we set (a range that spills over the float64
# range, e.g. 1e308 padded by 10 %, would make the limits infinite).
LOG_AXIS_MIN = float(np.finfo(np.float64).tiny)
LOG_AXIS_MAX = float(np.finfo(np.float64).max) / 10.0


class FigureUnavailable(Exception):
    """The data cannot make this figure; ``str(exc)`` says why, for the reader."""


def log_limits(values: np.ndarray, pad_decades: float = 0.05) -> tuple[float, float] | None:
    """Limits of a log axis showing every finite positive value (None when there is none):
    min and max widened by ``pad_decades`` of the range in decades (at least ×/÷ 2 for a
    single value), kept inside the float range."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    pad = 2.0 if hi <= lo else float((hi / lo) ** pad_decades) if hi / lo < 1e300 else 10.0
    return max(lo / pad, LOG_AXIS_MIN), min(hi * pad, LOG_AXIS_MAX)


VENDOR_COLOURS = {"ITL": "#1f77b4", "E2V": "#ff7f0e", "": "#7f7f7f"}


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (no timestamp in the metadata, so output is reproducible)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def png_data_uri(fig: Figure, dpi: int = 100) -> str:
    """``data:image/png;base64,…`` of the figure, for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig, dpi)).decode("ascii")


def _threshold_lines(ax, thresholds: Sequence[tuple[str, float]], vertical: bool) -> None:
    line = ax.axvline if vertical else ax.axhline
    for label, t in thresholds:
        line(t, color=ALERT_COLOUR, ls="--", lw=1.2)
        if vertical:  # the label along the line, at the top
            at = {"x": t, "y": 0.98, "s": f" {label}", "transform": ax.get_xaxis_transform(),
                  "va": "top", "rotation": 90}  # fmt: skip
        else:  # the label above the line, at the left
            at = {"x": 0.005, "y": t, "s": f"{label} ", "transform": ax.get_yaxis_transform(),
                  "va": "bottom"}  # fmt: skip
        ax.text(**at, color=ALERT_COLOUR, fontsize=7, ha="left")


def histogram_figure(
    title: str,
    unit: str,
    values_by_vendor: Mapping[str, np.ndarray],
    thresholds: Sequence[tuple[str, float]] = (),
) -> Figure:
    """Histogram of one metric across amps, one colour per vendor, with the median and
    sigma_MAD (1.4826 × MAD) of all amps and the catalogue's fixed thresholds."""
    fig = Figure(figsize=(4.6, 3.0), dpi=100)
    ax = fig.add_axes((0.14, 0.17, 0.82, 0.66))
    allv = np.concatenate([np.asarray(v, float) for v in values_by_vendor.values()] or [[]])
    allv = allv[np.isfinite(allv)]
    if allv.size:
        lo, hi = np.percentile(allv, [0.5, 99.5])
        for _label, t in thresholds:  # keep a nearby threshold in view
            if lo - (hi - lo) <= t <= hi + (hi - lo):
                lo, hi = min(lo, t), max(hi, t)
        if hi <= lo:
            lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
        bins = np.linspace(lo, hi, 41 if allv.size > 60 else 16)
        # stacked filled steps, one patch per vendor (what ax.hist(stacked=True) shows, drawn
        # as 2 patches instead of 2 × 40 bar rectangles)
        base = np.zeros(bins.size - 1)
        for k, v in values_by_vendor.items():
            counts, _ = np.histogram(np.clip(np.asarray(v, float), lo, hi), bins=bins)
            ax.stairs(
                base + counts,
                bins,
                baseline=base.copy(),
                fill=True,
                label=f"{k or 'other'} ({len(v)})",
                color=VENDOR_COLOURS.get(k, "#7f7f7f"),
            )
            base = base + counts
        med = float(np.median(allv))
        smad = sigma_mad(allv)
        ax.axvline(med, color="black", lw=1)
        ax.set_title(f"median {med:.4g}, σ_MAD {smad:.3g}, n {allv.size}", fontsize=8)
        ax.legend(fontsize=7, frameon=False, loc="upper right")
        _threshold_lines(ax, [(lab, t) for lab, t in thresholds if lo <= t <= hi], vertical=True)
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(unit, fontsize=8)
    ax.set_ylabel("amps", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10, fontweight="bold", x=0.02, ha="left")
    return fig


MAX_DETECTOR_LINES = 20  # more detectors: the trend shows the all-amps median only


def trend_figure(
    title: str,
    unit: str,
    days: Sequence[str],
    camera_median: Sequence[float],
    camera_sigma: Sequence[float],
    detector_medians: Mapping[str, tuple[Sequence[str], Sequence[float]]] | None = None,
    thresholds: Sequence[tuple[str, float]] = (),
    highlight_day: str | None = None,
) -> Figure:
    """The metric's median over the last nights (band: ± sigma_MAD across amps), each
    detector's median as a thin line (up to 20 detectors), fixed thresholds dashed red."""
    fig = Figure(figsize=(4.6, 3.0), dpi=100)
    ax = fig.add_axes((0.15, 0.22, 0.81, 0.62))
    x_of = {d: i for i, d in enumerate(days)}
    x = np.arange(len(days))
    med = np.asarray(camera_median, float)
    sig = np.asarray(camera_sigma, float)
    if detector_medians and len(detector_medians) <= MAX_DETECTOR_LINES:
        for name, (ddays, vals) in sorted(detector_medians.items()):
            xs = [x_of[d] for d in ddays if d in x_of]
            vs = [v for d, v in zip(ddays, vals, strict=True) if d in x_of]
            ax.plot(xs, vs, lw=0.7, alpha=0.6, label=name)
    ax.fill_between(x, med - sig, med + sig, color="black", alpha=0.12, lw=0)
    ax.plot(x, med, "k.-", lw=1.5, label="all amps")
    finite = np.concatenate(
        [med[np.isfinite(med)], (med + sig)[np.isfinite(sig)], (med - sig)[np.isfinite(sig)]]
    )
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        span = (hi - lo) or (abs(hi) or 1.0)
        shown = [(lab, t) for lab, t in thresholds if lo - 2 * span <= t <= hi + 2 * span]
        _threshold_lines(ax, shown, vertical=False)
    if highlight_day in x_of:
        ax.axvline(x_of[highlight_day], color="#1f77b4", alpha=0.3, lw=6)
    step = max(1, len(days) // 8)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([day_obs_iso(d) for d in days[::step]], rotation=30, fontsize=7, ha="right")
    ax.set_ylabel(unit, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    if detector_medians and 1 < len(detector_medians) <= 8:
        ax.legend(fontsize=6, frameon=False, ncol=3, loc="best")
    fig.suptitle(title, fontsize=10, fontweight="bold", x=0.02, ha="left")
    ax.set_title(f"{len(days)} night(s); band: ± σ_MAD across amps", fontsize=8)
    return fig


MAX_PTC_LINES = 32  # more amps: median and 5–95 % band instead of one line per amp


def _fit_length(values: Sequence, n: int, fill: float | bool) -> np.ndarray:
    """``values`` cut or padded (with ``fill``) to ``n`` entries: a curve stored with lists
    of unequal lengths is drawn on the points of its means."""
    a = np.asarray(list(values)[:n], dtype=type(fill))
    return np.concatenate([a, np.full(n - a.size, fill, dtype=type(fill))])


def _ptc_arrays(c: PtcCurve) -> tuple[np.ndarray, ...]:
    """(mu, var, model, used, var/model − 1, linearity residual), all as long as mu."""
    mu = np.asarray(c.mu_adu, float)
    n = mu.size
    var = _fit_length(c.var_adu2, n, math.nan)
    model = _fit_length(c.model_var_adu2, n, math.nan)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        resid = var / model - 1.0
    used = _fit_length(c.used, n, False)
    return mu, var, model, used, resid, _fit_length(c.residual_frac, n, math.nan)


def _ptc_bands(axes, curves: Sequence[PtcCurve]) -> None:
    """Median and 5–95 % range over amps, in bins of mean signal, for each panel."""
    arrays = [_ptc_arrays(c) for c in curves]
    mu = np.concatenate([a[0] for a in arrays])
    finite_mu = mu[np.isfinite(mu) & (mu > 0)]
    if finite_mu.size == 0:
        return
    edges = np.geomspace(finite_mu.min(), finite_mu.max() * 1.0001, 31)
    centres = np.sqrt(edges[:-1] * edges[1:])
    panels = [
        (
            axes[0],
            np.concatenate([a[1] for a in arrays]),
            np.concatenate([a[3] for a in arrays]),
            1,
        ),
        (
            axes[1],
            np.concatenate([a[4] for a in arrays]),
            np.concatenate([a[3] for a in arrays]),
            1,
        ),
        (axes[2], np.concatenate([a[5] for a in arrays]), np.ones(mu.size, bool), 100),
    ]
    idx = np.digitize(mu, edges) - 1
    for k, (ax, y, keep, scale) in enumerate(panels):
        lo, med, hi, x = [], [], [], []
        for i, c in enumerate(centres):
            sel = (idx == i) & keep & np.isfinite(y) & (y > 0 if k == 0 else True)
            if sel.sum() >= 3:
                p5, p50, p95 = np.percentile(y[sel], [5, 50, 95])
                lo.append(p5 * scale)
                med.append(p50 * scale)
                hi.append(p95 * scale)
                x.append(c)
        ax.fill_between(x, lo, hi, color="#1f77b4", alpha=0.25, lw=0, label="5–95 % of amps")
        ax.plot(x, med, "-", color="#1f77b4", lw=1.5, label="median")
    out = np.concatenate([a[1][~a[3]] for a in arrays])
    out_mu = np.concatenate([a[0][~a[3]] for a in arrays])
    pos = np.isfinite(out) & np.isfinite(out_mu) & (out > 0) & (out_mu > 0)  # log axes
    axes[0].plot(
        out_mu[pos], out[pos], ".", ms=1, color="#7f7f7f", alpha=0.3, label="not used in the fit"
    )
    axes[0].legend(fontsize=6, frameon=False, loc="upper left")


def _linearity_ylim(ax, curves: Sequence[PtcCurve]) -> None:
    """Keep the linearity panel on the points the PTC fit used (below the turnoff): the
    saturated points fall tens of percent and would flatten everything else."""
    used = [
        100 * np.asarray(c.residual_frac, float)[np.asarray(c.used, bool)]
        for c in curves
        if len(c.residual_frac) == len(c.used)
    ]
    vals = np.concatenate(used) if used else np.array([])
    vals = vals[np.isfinite(vals)]
    if vals.size:
        lim = min(10.0, max(2.0, 1.3 * float(np.max(np.abs(vals)))))
        ax.set_ylim(-lim, lim)


def ptc_figure(curves: Sequence[PtcCurve], title: str) -> Figure:
    """PTC of every given amp: variance vs mean with the fit (left), fit residual
    (middle), linearity residual vs mean (right). Points left out of the fit are hollow.

    The left panel is log–log and the middle one log in x: points with a mean or variance
    ≤ 0 (or not finite) are left out of them. Raises :class:`FigureUnavailable` when no
    point of any amp is left for the left panel."""
    arrays = [_ptc_arrays(c) for c in curves]
    positive = [(a[0] > 0) & (a[1] > 0) & np.isfinite(a[0]) & np.isfinite(a[1]) for a in arrays]
    n_points = sum(int(p.sum()) for p in positive)
    if n_points == 0:
        n_all = sum(a[0].size for a in arrays)
        raise FigureUnavailable(
            f"no PTC point with a positive mean signal and variance ({len(curves)} amp(s), "
            f"{n_all} point(s)): nothing to draw on the log–log PTC axes"
        )
    fig = Figure(figsize=(13.0, 3.8), dpi=100)
    axes = [fig.add_axes((0.05 + i * 0.325, 0.14, 0.27, 0.70)) for i in range(3)]
    many = len(curves) > MAX_PTC_LINES
    if many:
        _ptc_bands(axes, curves)
    cmap = matplotlib.colormaps["tab20"]
    x0, y0, x1 = [], [], []  # what the log axes show
    for k, c in enumerate(curves):
        mu, var, model, used, resid, lin = arrays[k]
        ok = positive[k]
        x0.append(mu[ok])
        y0.append(var[ok])
        r_ok = ok & np.isfinite(resid) & used
        x1.append(mu[r_ok])
        if many:
            continue
        colour = cmap(k % 20)
        order = np.argsort(mu)
        axes[0].plot(mu[ok & used], var[ok & used], "o", ms=2.5, color=colour, label=c.amp)
        axes[0].plot(mu[ok & ~used], var[ok & ~used], "o", ms=3, mfc="none", color=colour)
        good = (np.isfinite(model) & (model > 0) & np.isfinite(mu) & (mu > 0))[order]
        axes[0].plot(mu[order][good], model[order][good], "-", lw=0.8, color=colour)
        axes[1].plot(mu[r_ok], resid[r_ok], "o-", ms=2, lw=0.5, color=colour)
        l_ok = (np.isfinite(lin) & np.isfinite(mu))[order]
        axes[2].plot(mu[order][l_ok], 100 * lin[order][l_ok], "o-", ms=2, lw=0.6, color=colour)
    # log scales with explicit limits from the positive values drawn, so that matplotlib
    # never autoscales a log axis from values <= 0
    xlim, ylim = log_limits(np.concatenate(x0)), log_limits(np.concatenate(y0))
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlim(*xlim)
    axes[0].set_ylim(*ylim)
    axes[0].set_xlabel("mean signal (adu)", fontsize=8)
    axes[0].set_ylabel("variance (adu²)", fontsize=8)
    axes[0].set_title("photon transfer curve (hollow: not used in the fit)", fontsize=8)
    axes[1].axhline(0, color="black", lw=0.6)
    if log_limits(np.concatenate(x1)) is not None:
        axes[1].set_xscale("log")
        axes[1].set_xlim(*xlim)
        axes[1].set_title("fit residual (points used)", fontsize=8)
    else:
        axes[1].set_title("fit residual: no point with a fit", fontsize=8)
    axes[1].set_xlabel("mean signal (adu)", fontsize=8)
    axes[1].set_ylabel("variance / fit − 1", fontsize=8)
    _linearity_ylim(axes[2], curves)
    axes[2].axhspan(-1, 1, color="green", alpha=0.08, lw=0)
    axes[2].axhline(0, color="black", lw=0.6)
    axes[2].set_xlabel("mean signal (adu)", fontsize=8)
    axes[2].set_ylabel("signal / linear fit − 1 (%)", fontsize=8)
    axes[2].set_title(
        "linearity residual (green: within 1 %; saturated points off scale)", fontsize=8
    )
    for ax in axes:
        ax.tick_params(labelsize=7)
    if not many and curves:
        axes[0].legend(fontsize=6, ncol=2, frameon=False, loc="upper left")
    if many:
        axes[0].set_title(f"{len(curves)} amps: median and 5–95 % range per signal bin", fontsize=8)
    fig.suptitle(title, fontsize=11, fontweight="bold", x=0.01, ha="left")
    return fig
