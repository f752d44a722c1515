"""The report's sections: one function each, NightData (and the catalogue) in, HTML out.
Figures are queued on a :class:`~calibmon.report.figures.Figures` and appear where their
placeholder is."""

from __future__ import annotations

import math

import numpy as np

from calibmon.catalogue import Catalogue
from calibmon.report.figures import Figures
from calibmon.report.nightdata import NightData, alert_detector_name, metric_of_rule
from calibmon.report.plots import MAX_DETECTOR_LINES
from calibmon.report.text import day_text, esc, fmt, fmt_pm
from calibmon.report.thresholds import SpecLimits, fixed_thresholds, threshold_text
from calibmon.science.robust import sigma_mad
from calibmon.store import images as store_images
from calibmon.store import queries

FULL_TABLE_OPEN_MAX_ROWS = 64  # larger per-amp tables start folded
PTC_FIGURES_PER_DETECTOR_MAX = 12  # more detectors: one camera-wide PTC figure

CALIB_TYPE_TITLES = {
    "bias": "Bias — zero-second exposures: electronic offset and read noise",
    "dark": "Dark — shutter closed: dark current and hot defects",
    "flat": "Flat — uniform illumination: gain, cold defects, charge transfer",
    "ptc": "PTC and linearity — a ramp of flat pairs: gain, noise, full well, linearity",
    "defects": "Defects — bad pixels from darks and flats",
    "verify": "Verification — the day's exposures against the certified master calibrations",
}

GLOSSARY = (
    (
        "amp",
        "one of the 16 amplifiers (8 on a wavefront sensor) that read out a CCD; every "
        "number here is measured per amp, then summarised per detector and camera",
    ),
    ("adu", "analogue-to-digital unit: the raw counts the camera writes"),
    ("electron (e-)", "charge in the pixel; adu × gain (electron/adu)"),
    (
        "median, σ_MAD",
        "the middle value across amps, and the robust scatter 1.4826 × median "
        "absolute deviation (insensitive to a few outliers), as Rubin reports "
        "its calibration metrics",
    ),
    (
        "fixed threshold",
        "a specification limit from the camera requirements or cp_verify; "
        "amps beyond it are shaded red in the tables",
    ),
    (
        "drift alert",
        "a change of an amp against its own recent nights (not drawn as a line, "
        "since it depends on the amp's history)",
    ),
    ("firing alert", "an alert that is currently active; its amps are outlined in red on the maps"),
)


def unit_of(nd: NightData, cat: Catalogue, metric: str) -> str:
    """The metric's unit: the catalogue's, else the stored records'."""
    if metric in cat:
        return cat.unit(metric)
    u = nd.amps.loc[nd.amps["metric"] == metric, "unit"]
    return str(u.iloc[0]) if len(u) else ""


def title_of(metric: str) -> str:
    """``read_noise`` → ``Read noise``."""
    return metric.replace("_", " ").capitalize()


def section_header(nd: NightData) -> str:
    n_det = len(nd.amps_of)
    n_amp = int(nd.amps[["detector_name", "amp"]].drop_duplicates().shape[0]) if len(nd.amps) else 0
    runs = []
    for r in nd.runs:
        bits = [f"<b>{esc(r.get('run_id'))}</b>"]
        if r.get("started_at"):
            bits.append(f"started {esc(r['started_at'][:19].replace('T', ' '))} UTC")
        if r.get("status"):
            bits.append(esc(r["status"]))
        if r.get("n_files"):
            bits.append(f"{r['n_files']} files")
        if r.get("n_rejected"):
            bits.append(f"{r['n_rejected']} rejected")
        bits.append(f"{r['n_day_records']} records")
        runs.append(", ".join(bits))
    rows = [
        ("Instrument", esc(nd.instrument)),
        ("Observing day (day_obs)", esc(day_text(nd.day_obs))),
        ("Detectors", f"{n_det} ({n_amp} amps)"),
        ("Metrics", str(len(nd.metrics))),
        ("Runs", "<br>".join(runs) or "–"),
        ("Measured with calibmon", esc(", ".join(nd.software) or "–")),
        ("Configuration hash", esc(", ".join(nd.config_hashes) or "–")),
        ("Firing alerts", str(len(nd.firing))),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def section_glance(nd: NightData, cat: Catalogue) -> str:
    head = (
        "<tr><th class=l>metric</th><th class=l>unit</th><th>median</th><th>σ_MAD</th>"
        "<th>min</th><th>max</th><th>amps</th><th>outside spec</th><th>firing</th>"
        "<th class=l>thresholds</th></tr>"
    )
    rows = []
    spec = SpecLimits(cat, nd.instrument)
    for m in nd.metrics:
        sub = nd.amps[nd.amps["metric"] == m]
        v = sub["value"].to_numpy(float)
        med = float(np.median(v))
        smad = sigma_mad(v)
        mdef = cat.metrics.get(m)
        n_bad = sum(
            spec.breaks(m, vend, val)
            for vend, val in zip(sub["vendor"].tolist(), v.tolist(), strict=True)
        )
        n_fire = len(nd.firing_amps.get(m, ()))
        rows.append(
            f'<tr><td class=l><a href="#m-{m}">{esc(m)}</a></td><td class=l>{esc(unit_of(nd, cat, m))}'
            f"</td><td>{fmt(med)}</td><td>{fmt(smad)}</td><td>{fmt(float(v.min()))}</td>"
            f"<td>{fmt(float(v.max()))}</td><td>{len(v)}</td>"
            f"<td{' class=bad' if n_bad else ''}>{n_bad}</td>"
            f"<td{' class=bad' if n_fire else ''}>{n_fire}</td>"
            f"<td class=l>{esc(threshold_text(mdef))}</td></tr>"
        )
    return (
        '<p class="note">One line per metric: the median over all amps measured this day and '
        "its robust scatter σ_MAD, the extremes, how many amps break a specification limit "
        "(fixed threshold) and how many have a firing alert.</p>"
        f"<table>{head}{''.join(rows)}</table>"
    )


def section_alerts(nd: NightData, cat: Catalogue) -> str:
    rule_metric = metric_of_rule(cat)
    rule_def = {t.rule: t for m in cat for t in m.thresholds}
    out = [
        '<p class="note">Alerts are raised by calibmon’s alert engine from the thresholds of '
        "the metric catalogue and from drifts against each amp’s own history. A firing alert "
        "stays until the condition clears. Known-bad amps do not page.</p>"
    ]
    if not nd.firing:
        out.append('<p><span class="pill ok">no firing alerts</span></p>')
    else:
        head = (
            "<tr><th class=l>severity</th><th class=l>rule</th><th class=l>metric</th>"
            "<th class=l>detector</th><th class=l>amp</th><th>value</th><th>threshold</th>"
            "<th>baseline</th><th class=l>day_obs</th><th class=l>since</th>"
            "<th class=l>what it means</th></tr>"
        )
        rows = []
        for a in nd.firing:
            d = a.data
            t = rule_def.get(a.rule)
            metric = d.get("metric") or rule_metric.get(a.rule, "")
            det = d.get("detector_name") or alert_detector_name(nd.instrument, a.detector)
            sev = d.get("severity") or (t.severity if t else "")
            rows.append(
                "<tr class=firing>"
                f"<td class=l><span class='pill {'firing' if sev == 'critical' else 'warn'}'>"
                f"{esc(sev or 'alert')}</span></td><td class=l>{esc(a.rule)}</td>"
                f"<td class=l>{esc(metric)}</td><td class=l>{esc(det or 'camera')}</td>"
                f"<td class=l>{esc(a.amp or '')}</td><td>{fmt(d.get('value'))}</td>"
                f"<td>{fmt(d.get('threshold'))}</td><td>{fmt(d.get('baseline'))}</td>"
                f"<td class=l>{esc(d.get('day_obs', ''))}</td>"
                f"<td class=l>{esc(str(d.get('since') or a.updated_at)[:19])}</td>"
                f"<td class=l>{esc(d.get('summary') or (t.summary if t else ''))}</td></tr>"
            )
        out.append(f"<table>{head}{''.join(rows)}</table>")
    if nd.events:
        rows = []
        for ev in nd.events[:30]:
            det = alert_detector_name(nd.instrument, None if ev["detector"] < 0 else ev["detector"])
            rows.append(
                f"<tr><td class=l>{esc(str(ev['at'])[:19])}</td><td class=l>{esc(ev['rule'])}</td>"
                f"<td class=l>{esc(det)}</td><td class=l>{esc(ev['amp'])}</td>"
                f"<td class=l>{esc(ev['from_state'])} → {esc(ev['to_state'])}</td>"
                f"<td class=l>{esc(ev.get('day_obs') or '')}</td></tr>"
            )
        out.append(
            "<details><summary>Recent alert transitions</summary><table><tr><th class=l>at</th>"
            "<th class=l>rule</th><th class=l>detector</th><th class=l>amp</th>"
            f"<th class=l>change</th><th class=l>day_obs</th></tr>{''.join(rows)}</table></details>"
        )
    return "".join(out)


def section_maps(nd: NightData, cat: Catalogue, figs: Figures) -> str:
    out = [
        '<p class="note">Each CCD is drawn at its place in the focal plane (raft and slot), '
        "split into its amplifiers (top row C00–C07, bottom row C10–C17). The colour is the "
        "amp’s value; grey hatching means the amp was not measured; a red outline marks an "
        "amp with a firing alert. Dashed outlines show slots of the same rafts that have no "
        "data in this report.</p>"
    ]
    current = None
    for m in nd.metrics:
        sub = nd.amps[nd.amps["metric"] == m]
        ct = str(sub["calib_type"].iloc[0])
        if ct != current:
            current = ct
            out.append(f"<h3>{esc(CALIB_TYPE_TITLES.get(ct, ct))}</h3>")
        mdef = cat.metrics.get(m)
        unit = unit_of(nd, cat, m)
        values = {
            (d, a): float(v)
            for d, a, v in zip(sub["detector_name"], sub["amp"], sub["value"], strict=True)
        }
        desc = esc(mdef.description) if mdef else ""
        th = threshold_text(mdef)
        cap = f"<b id='m-{m}'>{esc(m)}</b> [{esc(unit)}]: {desc}" + (
            f" <i>Thresholds: {esc(th)}.</i>" if th else ""
        )
        out.append(
            figs.add(
                "map",
                nd.instrument,
                values,
                nd.amps_of,
                title=f"{title_of(m)} ({unit})",
                unit=unit,
                firing=nd.firing_amps.get(m, set()),
                thresholds=fixed_thresholds(mdef, nd.instrument),
                caption=cap,
                alt=f"focal-plane map of {m}",
            )
        )
    return "".join(out)


def section_images(nd: NightData, store, figs: Figures) -> str:
    names = {}
    explanations = {
        "bias": "Combined bias of the day (overscan corrected, adu): should be flat and close "
        "to zero; stripes or gradients show bias structure, bright amps an offset.",
        "dark": "Combined dark of the day (electron/s): hot pixels and columns show as bright "
        "specks and lines; glowing edges or amps point to amplifier glow.",
        "flat": "Combined flat of the day, normalised per amp: vignetting, tree rings, dust "
        "donuts and dead columns show here; amps with a different gain stand out.",
    }
    out = [
        '<p class="note">Binned pictures of the day’s combined calibration frames, the amps '
        "assembled into CCDs with their readout orientation (DETSEC) and the CCDs into the "
        "focal plane.</p>"
    ]
    any_image = False
    for kind in store_images.IMAGE_KINDS:
        images = store_images.amp_images(store, nd.instrument, nd.day_obs, kind)
        if not images:
            continue
        any_image = True
        for im in images:
            if im.detector not in names:
                names[im.detector] = alert_detector_name(nd.instrument, im.detector)
        out.append(
            figs.add(
                "mosaic",
                nd.instrument,
                kind,
                images,
                dict(names),
                dict(nd.vendor_of),
                title=f"Combined {kind} — {day_text(nd.day_obs)}",
                caption=esc(explanations[kind]),
                alt=f"combined {kind} mosaic",
            )
        )
    if not any_image:
        out.append("<p>No binned images stored for this day.</p>")
    return "".join(out)


def section_histograms(nd: NightData, cat: Catalogue, figs: Figures) -> str:
    out = [
        '<p class="note">How each metric is distributed over the amps, stacked by sensor '
        "vendor (ITL and e2v CCDs differ). The black line is the median; dashed red lines are "
        "specification limits.</p><div class=grid>"
    ]
    for m in nd.metrics:
        sub = nd.amps[nd.amps["metric"] == m]
        unit = unit_of(nd, cat, m)
        by_vendor = {
            str(v): g["value"].to_numpy(float) for v, g in sub.groupby("vendor", sort=True)
        }
        out.append(
            figs.add(
                "hist",
                title_of(m),
                unit,
                by_vendor,
                fixed_thresholds(cat.metrics.get(m), nd.instrument),
                caption=f"{esc(m)} [{esc(unit)}]",
                alt=f"histogram of {m}",
            )
        )
    return "".join(out) + "</div>"


def section_ptc(nd: NightData, store, figs: Figures) -> str:
    curves = store_images.ptc_curves(store, nd.instrument, nd.day_obs)
    out = [
        '<p class="note">Photon transfer curves from the day’s ramp of flat pairs: the '
        "variance of each pair against its mean signal. At low signal the read noise "
        "dominates, then shot noise (slope 1, whose level gives the gain); the curve bends "
        "down at high signal (brighter-fatter effect) and drops at saturation (the turnoff). "
        "The middle panel shows how well the fit (Astier et al. 2019) follows the data; the "
        "right panel how far the signal departs from a straight line in exposure time.</p>"
    ]
    if not curves:
        return out[0] + "<p>No PTC ramp was taken this day.</p>"
    by_det: dict[str, list[store_images.PtcCurve]] = {}
    for c in curves:
        by_det.setdefault(c.detector_name, []).append(c)
    if len(by_det) <= PTC_FIGURES_PER_DETECTOR_MAX:
        for det, cs in sorted(by_det.items()):
            out.append(
                figs.add(
                    "ptc",
                    cs,
                    f"PTC — {det} ({len(cs)} amps)",
                    caption=f"PTC of {esc(det)}, one colour per amp.",
                    alt=f"PTC of {det}",
                )
            )
    else:
        out.append(
            figs.add(
                "ptc",
                curves,
                f"PTC — {len(by_det)} detectors, {len(curves)} amps",
                caption="All amps overlaid; the per-amp numbers are in the PTC maps and the "
                "per-amp table.",
                alt="PTC of all amps",
            )
        )
    return "".join(out)


def section_trends(nd: NightData, store, cat: Catalogue, figs: Figures) -> str:
    days = nd.nights
    summ = queries.summary_values(store, nd.instrument, days)
    # camera rows as {metric: {day_obs: (median, σ_MAD)}}, detector rows grouped by metric:
    # one pass over the frame instead of a boolean mask per metric and a .loc per night
    cam_of: dict[str, dict[str, tuple[float, float]]] = {}
    is_cam = (summ["level"] == "camera").to_numpy()
    for d, m, v, s in zip(
        summ["day_obs"][is_cam].tolist(),
        summ["metric"][is_cam].tolist(),
        summ["value"][is_cam].tolist(),
        summ["sigma_mad"][is_cam].tolist(),
        strict=True,
    ):
        cam_of.setdefault(m, {})[d] = (float(v), float(s))
    dets_of = dict(iter(summ[summ["level"] == "detector"].groupby("metric", sort=False)))
    need_fallback = [m for m in nd.metrics if set(cam_of.get(m, {})) != set(days)]
    amp_days = queries.amp_values_of_days(store, nd.instrument, days, need_fallback)
    out = [
        f'<p class="note">The last {len(days)} night(s) with data up to {day_text(nd.day_obs)} '
        "(highlighted). Black: the median over all amps with a band of ± σ_MAD; thin lines: "
        "each detector’s median (when there are at most 20 detectors); dashed red: "
        "specification limits.</p><div class=grid>"
    ]
    for m in nd.metrics:
        cam = cam_of.get(m, {})
        dets = dets_of.get(m, summ.iloc[:0])
        amp_m = amp_days[amp_days["metric"] == m] if m in need_fallback else None
        med, sig = [], []
        for d in days:
            if d in cam:
                med.append(cam[d][0])
                sig.append(cam[d][1])
            elif amp_m is not None and (amp_m["day_obs"] == d).any():
                v = amp_m.loc[amp_m["day_obs"] == d, "value"].to_numpy(float)
                mm = float(np.median(v))
                med.append(mm)
                sig.append(sigma_mad(v))
            else:
                med.append(math.nan)
                sig.append(math.nan)
        det_series: dict[str, tuple[list[str], list[float]]] = {}
        if not dets.empty:
            # beyond MAX_DETECTOR_LINES detectors the figure draws no per-detector lines
            if dets["detector_name"].nunique() <= MAX_DETECTOR_LINES:
                for name, g in dets.groupby("detector_name"):
                    det_series[str(name)] = (g["day_obs"].tolist(), g["value"].tolist())
        elif amp_m is not None and not amp_m.empty:
            g2 = amp_m.groupby(["detector_name", "day_obs"])["value"].median()
            for (name, d), v in g2.items():
                det_series.setdefault(str(name), ([], []))
                det_series[str(name)][0].append(d)
                det_series[str(name)][1].append(float(v))
        unit = unit_of(nd, cat, m)
        out.append(
            figs.add(
                "trend",
                title_of(m),
                unit,
                list(days),
                med,
                sig,
                det_series,
                fixed_thresholds(cat.metrics.get(m), nd.instrument),
                highlight_day=nd.day_obs,
                caption=f"{esc(m)} [{esc(unit)}]",
                alt=f"trend of {m}",
            )
        )
    return "".join(out) + "</div>"


def section_amp_table(nd: NightData, cat: Catalogue) -> str:
    if nd.amps.empty:
        return "<p>No amp measurements.</p>"
    wide = nd.amps.pivot_table(
        index=["detector_name", "amp"], columns="metric", values="value", aggfunc="last"
    )
    metrics = [m for m in nd.metrics if m in wide.columns]
    errors = None
    if "error" in nd.amps.columns and nd.amps["error"].notna().any():
        errors = nd.amps.pivot_table(
            index=["detector_name", "amp"], columns="metric", values="error", aggfunc="last"
        ).reindex(index=wide.index, columns=metrics)
    vendor = nd.vendor_of
    firing_any = nd.firing_amps.get("*", set())
    head = (
        "<tr><th class=l>detector</th><th class=l>amp</th>"
        + "".join(
            f"<th title='{esc(cat.metrics[m].description if m in cat else '')}'>{esc(m)}<br>"
            f"<small>{esc(unit_of(nd, cat, m))}</small></th>"
            for m in metrics
        )
        + "</tr>"
    )
    rows_all, rows_flagged = [], []
    spec = SpecLimits(cat, nd.instrument)
    firing_of = [nd.firing_amps.get(m, set()) for m in metrics]
    # plain lists of floats (NaN where absent): ~50k cells read as Series items cost seconds
    values = wide.reindex(columns=metrics).to_numpy(float).tolist()
    errs_of = errors.to_numpy(float).tolist() if errors is not None else None
    for i, (det, amp) in enumerate(wide.index):
        cells, flagged = [], (det, amp) in firing_any
        vend = vendor.get(det, "")
        for j, m in enumerate(metrics):
            v = values[i][j]
            cls = []
            if spec.breaks(m, vend, v):
                cls.append("bad")
                flagged = True
            if (det, amp) in firing_of[j]:
                cls.append("alert")
            c = f" class='{' '.join(cls)}'" if cls else ""
            cells.append(f"<td{c}>{fmt_pm(v, errs_of[i][j] if errs_of else None)}</td>")
        row = (
            f"<tr{' class=firing' if (det, amp) in firing_any else ''}><td class=l>{esc(det)}"
            f"</td><td class=l>{esc(amp)}</td>{''.join(cells)}</tr>"
        )
        rows_all.append(row)
        if flagged:
            rows_flagged.append(row)
    out = [
        '<p class="note">Every amp’s value of every metric this day, ± its 1σ error where the '
        "measurement gives one. Red cells break a specification "
        "limit; an outlined cell has a firing alert on that metric; a pink row "
        "has a firing alert on some metric. Hover a column title for its meaning.</p>"
    ]
    if rows_flagged:
        out.append(
            f"<h3>Amps needing attention ({len(rows_flagged)})</h3><div class=scroll><table>"
            f"{head}{''.join(rows_flagged)}</table></div>"
        )
    table = f"<div class=scroll><table>{head}{''.join(rows_all)}</table></div>"
    if len(rows_all) > FULL_TABLE_OPEN_MAX_ROWS:
        out.append(f"<details><summary>All {len(rows_all)} amps</summary>{table}</details>")
    else:
        out.append(f"<h3>All amps ({len(rows_all)})</h3>{table}")
    return "".join(out)
