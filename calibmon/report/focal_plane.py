"""Focal-plane pictures (matplotlib Figure objects, no pyplot): per-amp metric maps and binned CCD mosaics.

Only the detectors present are drawn, in their true raft/slot positions; the outlines of
the other slots of the same rafts are drawn faintly so a reader sees where they are, and a
small locator shows the rafts on the whole LSSTCam focal plane. Amps with a firing alert
are outlined in red.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from calibmon.io.detectors import (
    CORNER_RAFTS,
    CORNER_SLOTS,
    SCIENCE_RAFTS,
    SCIENCE_SLOTS,
    is_wavefront,
)
from calibmon.report import mosaic
from calibmon.science.robust import sigma_mad
from calibmon.store.images import IMAGE_UNITS, AmpImage

MISSING_COLOUR = "#d9d9d9"
ALERT_COLOUR = "#d62728"
AmpKey = tuple[str, str]  # (detector_name, amp)


def robust_limits(values: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> tuple[float, float]:
    """Colour limits from percentiles of the finite values (a tiny range is widened)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    a, b = (float(x) for x in np.percentile(v, [lo, hi]))
    if not b > a:
        pad = abs(a) * 0.05 or 1.0
        a, b = a - pad, b + pad
    return a, b


def image_limits(kind: str, image: np.ndarray) -> tuple[float, float]:
    """Grey-scale limits of a combined image: the flat's full range (0.5–99.5 percentile,
    vignetting and dead columns alike); for bias and dark the median ± a few σ_MAD, so the
    level structure shows and hot pixels and columns saturate white instead of setting the
    scale."""
    v = np.asarray(image, dtype=float)
    v = v[np.isfinite(v)]
    if kind == "flat" or v.size == 0:
        return robust_limits(v, 0.5, 99.5)
    med = float(np.median(v))
    smad = sigma_mad(v)
    if not smad > 0:
        return robust_limits(v, 0.5, 99.5)
    lo, hi = (3.0, 8.0) if kind == "dark" else (5.0, 5.0)
    return med - lo * smad, med + hi * smad


def _figure(extent: mosaic.Box) -> tuple[Figure, tuple, tuple]:
    """A figure whose map axes keep the extent's aspect (longer side 0.55 inch per CCD,
    4.5–9.5 inches), a colour bar at the right and room for the titles; returns
    (figure, map-axes rect, colour-bar rect) in figure fractions."""
    _, _, w, h = extent
    long_side_in = min(9.5, max(4.5, 0.55 * max(w, h)))
    aspect = h / w if w else 1.0
    ax_w, ax_h = (
        (long_side_in, long_side_in * aspect)
        if aspect <= 1
        else (long_side_in / aspect, long_side_in)
    )
    ax_w = max(ax_w, 3.0)
    fig_w, fig_h = max(ax_w + 2.2, 5.6), ax_h + 1.1
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)
    left, bottom = 0.3 / fig_w, 0.25 / fig_h
    ax_rect = (left, bottom, ax_w / fig_w, ax_h / fig_h)
    cb_rect = (
        left + (ax_w + 0.3) / fig_w,
        bottom + 0.05 * ax_h / fig_h,
        0.22 / fig_w,
        0.6 * ax_h / fig_h,
    )
    return fig, ax_rect, cb_rect


def _locator_rect(fig: Figure) -> tuple[float, float, float, float]:
    w, h = fig.get_size_inches()
    size = 1.1
    return 1 - (size + 0.1) / w, 1 - (size + 0.85) / h, size / w, size / h


def _all_slot_names(raft_xy: tuple[int, int]) -> list[str]:
    raft = f"R{raft_xy[1]}{raft_xy[0]}"
    if raft in SCIENCE_RAFTS:
        return [f"{raft}_{s}" for s in SCIENCE_SLOTS]
    if raft in CORNER_RAFTS:
        return [f"{raft}_{s}" for s in CORNER_SLOTS]
    return []


def _titles(fig: Figure, title: str, sub: str) -> None:
    w, h = fig.get_size_inches()
    lines = (  # (inches from the top, text, style)
        (0.3, title, {"fontsize": 12, "fontweight": "bold"}),
        (0.62, sub, {"fontsize": 7.5, "color": "#444444", "wrap": True}),
    )
    for y_in, text, style in lines:
        fig.text(0.3 / w, 1 - y_in / h, text, va="center", **style)


def boxes(boxes_xywh: Sequence[mosaic.Box], gid: str = "", **kwargs) -> PolyCollection:
    """One collection of rectangles (x0, y0, w, h) — much faster to draw than patches."""
    b = np.asarray(boxes_xywh, dtype=float).reshape(-1, 4)
    x0, y0, w, h = b.T
    verts = np.stack(
        [np.c_[x0, y0], np.c_[x0 + w, y0], np.c_[x0 + w, y0 + h], np.c_[x0, y0 + h]], axis=1
    )
    pc = PolyCollection(verts, **kwargs)
    if gid:
        pc.set_gid(gid)
    return pc


def draw_layout(ax, instrument: str, present: Collection[str], extent: mosaic.Box) -> None:
    """Raft outlines, faint outlines of absent slots, labels; axes limits and aspect."""
    x0, y0, w, h = extent
    ax.set_xlim(x0 - 0.08, x0 + w + 0.08)
    ax.set_ylim(y0 - 0.08, y0 + h + 0.08)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if mosaic.single_ccd(instrument):
        return
    rafts = mosaic.rafts_in(extent)
    few = len(present) <= 40
    raft_outlines, absent = [], []
    for rx, ry in rafts:
        bx, by, bw, bh = mosaic.raft_box(rx, ry)
        raft_outlines.append((bx - 0.03, by - 0.03, bw + 0.06, bh + 0.06))
        ax.text(
            bx,
            by + bh + 0.05,
            f"R{ry}{rx}",
            fontsize=7 if len(rafts) > 6 else 9,
            color="#555555",
            va="bottom",
            ha="left",
        )
        absent += [
            mosaic.ccd_box(instrument, n) for n in _all_slot_names((rx, ry)) if n not in present
        ]
    ax.add_collection(boxes(raft_outlines, facecolor="none", edgecolor="#999999", lw=0.8, zorder=0))
    if absent:
        ax.add_collection(
            boxes(absent, facecolor="none", edgecolor="#dddddd", lw=0.5, ls="--", zorder=0)
        )
    if few:
        for name in present:
            cx, cy, _cw, ch = mosaic.ccd_box(instrument, name)
            ax.text(
                cx + 0.02,
                cy + ch - 0.02,
                name.split("_")[1],
                fontsize=6,
                va="top",
                ha="left",
                color="white",
                zorder=5,
                bbox={"boxstyle": "square,pad=0.1", "fc": "#00000066", "ec": "none"},
            )


def draw_locator(fig: Figure, instrument: str, present: Collection[str], rect) -> None:
    """A small whole-focal-plane map with the present CCDs filled (LSSTCam only)."""
    if mosaic.single_ccd(instrument):
        return
    ax = fig.add_axes(rect)
    full = mosaic.extent_of(instrument, ["R00_SW0", "R44_SW0"])
    ax.set_xlim(full[0] - 0.1, full[0] + full[2] + 0.1)
    ax.set_ylim(full[1] - 0.1, full[1] + full[3] + 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    rafts = [mosaic.raft_box(rx, ry) for ry in range(5) for rx in range(5)]
    ax.add_collection(boxes(rafts, facecolor="none", edgecolor="#aaaaaa", lw=0.4))
    ccds = [mosaic.ccd_box(instrument, n) for n in present]
    ax.add_collection(boxes(ccds, facecolor="#1f77b4", edgecolor="none"))
    ax.set_title("where", fontsize=6, pad=1)


def metric_map_figure(
    instrument: str,
    values: Mapping[AmpKey, float],
    amps_of: Mapping[str, Sequence[str]],
    *,
    title: str,
    unit: str,
    firing: Collection[AmpKey] = (),
    thresholds: Sequence[tuple[str, float]] = (),
    cmap: str = "viridis",
) -> Figure:
    """Map of one metric: every amp of every present detector coloured by its value.

    ``amps_of`` maps each present detector to its amps (so an amp without a value is drawn
    grey, not left out); ``firing`` amps are outlined in red; ``thresholds`` ((label,
    value) pairs) are marked on the colour bar.
    """
    present = sorted(amps_of)
    extent = mosaic.extent_of(instrument, present)
    fig, ax_rect, cb_rect = _figure(extent)
    ax = fig.add_axes(ax_rect)
    cax = fig.add_axes(cb_rect)
    draw_layout(ax, instrument, set(present), extent)
    vals = np.array([v for v in values.values() if np.isfinite(v)], dtype=float)
    vmin, vmax = robust_limits(vals)
    norm = Normalize(vmin, vmax, clip=True)
    measured, colours, missing = [], [], []
    for det in present:
        for amp in amps_of[det]:
            box = mosaic.amp_box(instrument, det, amp)
            v = values.get((det, amp))
            if v is None or not np.isfinite(v):
                missing.append(box)
            else:
                measured.append(box)
                colours.append(v)
    cmap_obj = matplotlib.colormaps[cmap]
    if measured:
        pc = boxes(
            measured,
            "amps",
            cmap=cmap_obj,
            norm=norm,
            edgecolor="#ffffff",
            linewidths=0.15 if len(measured) > 400 else 0.4,
            zorder=2,
        )
        pc.set_array(np.asarray(colours))
        ax.add_collection(pc)
    if missing:
        ax.add_collection(
            boxes(
                missing,
                "unmeasured",
                facecolor=MISSING_COLOUR,
                edgecolor="#ffffff",
                hatch="////",
                linewidths=0.2,
                zorder=2,
            )
        )
    ccds = [mosaic.ccd_box(instrument, det) for det in present]
    ax.add_collection(boxes(ccds, facecolor="none", edgecolor="#333333", lw=0.6, zorder=3))
    alert_boxes = [mosaic.amp_box(instrument, d, a) for d, a in sorted(firing) if d in amps_of]
    n_alert = len(alert_boxes)
    if alert_boxes:
        ax.add_collection(
            boxes(
                alert_boxes,
                "alerts",
                facecolor="none",
                edgecolor=ALERT_COLOUR,
                lw=2.2 if len(present) < 30 else 1.2,
                zorder=4,
            )
        )
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap_obj)
    cb = fig.colorbar(sm, cax=cax)
    cb.set_label(unit)
    for label, t in thresholds:
        if vmin <= t <= vmax:
            cax.axhline(t, color=ALERT_COLOUR, lw=2)
            cax.text(
                1.6,
                t,
                label,
                transform=cax.get_yaxis_transform(),
                fontsize=7,
                color=ALERT_COLOUR,
                va="center",
            )
    n_amps = sum(len(a) for a in amps_of.values())
    sub = f"{len(present)} detector(s), {len(vals)}/{n_amps} amps measured"
    if n_alert:
        sub += f"; {n_alert} amp(s) with a firing alert (red outline)"
    sub += f"; colour scale {vmin:.4g} – {vmax:.4g} {unit} (1st–99th percentile)"
    _titles(fig, title, sub)
    draw_locator(fig, instrument, present, _locator_rect(fig))
    return fig


def image_mosaic_figure(
    instrument: str,
    kind: str,
    images: Sequence[AmpImage],
    detector_names: Mapping[int, str],
    vendors: Mapping[str, str] | None = None,
    *,
    title: str | None = None,
    target_width_px: int = 1400,
) -> Figure | None:
    """Binned full-focal-plane picture of the day's combined ``kind`` (bias/dark/flat):
    amps assembled into CCDs with their DETSEC orientation, CCDs into the raft/slot layout.
    None when there are no images."""
    if not images:
        return None
    by_det: dict[str, dict[str, tuple[np.ndarray, str | None]]] = {}
    native = 16
    for im in images:
        name = detector_names.get(im.detector, str(im.detector))
        by_det.setdefault(name, {})[im.amp] = (im.image, im.detsec)
        native = max(native, im.image.shape[1] * 8)
    extent = mosaic.extent_of(instrument, by_det)
    px = mosaic.pixels_per_ccd(extent, native, target_width_px)
    ccds = {}
    for name, amps in by_det.items():
        wf = is_wavefront(name)
        ccds[name] = mosaic.assemble_ccd(
            amps, (px // 2, px // 8), wavefront=wf, vendor=(vendors or {}).get(name, "")
        )
    canvas = mosaic.focal_plane_canvas(instrument, ccds, extent, px)
    fig, ax_rect, cb_rect = _figure(extent)
    ax = fig.add_axes(ax_rect)
    cax = fig.add_axes(cb_rect)
    draw_layout(ax, instrument, set(by_det), extent)
    vmin, vmax = image_limits(kind, canvas)
    cmap = matplotlib.colormaps["gray"].with_extremes(bad=(1.0, 1.0, 1.0, 0.0))
    x0, y0, w, h = extent
    im = ax.imshow(
        np.ma.masked_invalid(canvas),
        origin="lower",
        extent=(x0, x0 + w, y0, y0 + h),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        zorder=1,
    )
    cb = fig.colorbar(im, cax=cax)
    cb.set_label(IMAGE_UNITS.get(kind, ""))
    binning = sorted({i.bin for i in images})
    _titles(
        fig,
        title or f"Combined {kind}",
        f"{len(by_det)} detector(s), {len(images)} amps, stored binned "
        f"{'/'.join(str(b) for b in binning)}×; grey scale {vmin:.4g} – {vmax:.4g} "
        f"{IMAGE_UNITS.get(kind, '')} ("
        + (
            "0.5–99.5 percentile"
            if kind == "flat"
            else "median − 3 … + 8 σ_MAD"
            if kind == "dark"
            else "median ± 5 σ_MAD"
        )
        + ")",
    )
    draw_locator(fig, instrument, set(by_det), _locator_rect(fig))
    return fig
