"""Synthetic but realistic stored nights for the report and dashboard tests.

Until the pipeline measures every calib type and fills ``amp_images``/``ptc_curves``, these
helpers write what it will write, in the documented formats (``calibmon.store.images``):

- :func:`night_records` — amp records of every catalogue metric (or a chosen few) around
  typical LSSTCam values (vendor-dependent where the cameras differ), plus detector and
  camera summaries with ``stats`` (value = median, §4).
- :func:`fill_amp_images` — binned combined bias/dark/flat per amp. A picture of each whole
  CCD is made in detector coordinates first (a flat with vignetting across the focal plane,
  a dark with hot pixels and a hot column, a bias with a gradient), then cut into amps with
  the simulator's DETSEC convention and stored in *readout order*; the CCD pictures are
  returned so a test can check that the report puts the amps back where they belong.
- :func:`fill_ptc_curves` — PTC points from the Astier et al. 2019 model with a turnoff.
- :func:`fire_alert` — an ``alert_state`` row in state ``firing``.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image

from calibmon.catalogue import load_catalogue
from calibmon.io.detectors import (
    AMP_ORDER_8,
    AMP_ORDER_16,
    default_vendor,
    detector_number,
    is_wavefront,
)
from calibmon.records import MetricRecord, Provenance, Stats, iso_utc_ms
from calibmon.report import mosaic
from calibmon.simulate.camera import LAYOUTS, segment_geometry
from calibmon.store.images import encode_amp_image

DAYS = ("20251118", "20251119", "20251120", "20251121")
DETECTORS = ("R22_S11", "R01_S01")  # one e2v, one ITL: the demo's detectors
# One or two metrics of every calib type (the whole catalogue takes ~3x longer to draw).
REPORT_METRICS = (
    "bias_level",
    "read_noise",
    "dark_current",
    "bright_columns",
    "gain",
    "serial_cti",
    "ptc_gain",
    "full_well",
    "max_frac_nonlinearity",
    "defect_fraction",
    "verify_bias_pass",
)

# metric: (typical ITL, typical E2V, scatter)
TYPICAL: dict[str, tuple[float, float, float]] = {
    "bias_level": (15000.0, 25000.0, 400.0),
    "read_noise": (6.5, 5.8, 0.5),
    "read_noise_adu": (3.8, 3.9, 0.3),
    "bias_mean": (0.1, 0.1, 0.2),
    "bias_noise": (4.0, 4.1, 0.3),
    "dark_current": (0.006, 0.004, 0.0015),
    "dark_current_p95": (0.03, 0.02, 0.006),
    "bright_pixels": (12.0, 8.0, 4.0),
    "bright_columns": (0.0, 0.0, 0.3),
    "flat_level": (20000.0, 21000.0, 600.0),
    "gain": (1.7, 1.5, 0.05),
    "dark_pixels": (20.0, 25.0, 6.0),
    "dark_columns": (0.0, 0.0, 0.3),
    "serial_cti": (1.5e-6, 1.0e-6, 4e-7),
    "ptc_gain": (1.7, 1.5, 0.05),
    "ptc_noise": (6.6, 5.9, 0.5),
    "ptc_turnoff": (75000.0, 90000.0, 4000.0),
    "full_well": (125000.0, 133000.0, 5000.0),
    "ptc_a00": (-2.4e-6, -1.9e-6, 2e-7),
    "linearity_turnoff": (72000.0, 85000.0, 4000.0),
    "max_frac_nonlinearity": (0.006, 0.005, 0.0015),
    "defect_fraction": (0.001, 0.0008, 0.0003),
    "verify_bias_mean": (0.0, 0.0, 0.15),
    "verify_bias_noise": (4.0, 4.1, 0.3),
    "verify_dark_mean": (0.0, 0.0, 0.001),
    "verify_dark_noise": (0.02, 0.02, 0.004),
    "verify_new_defects": (2.0, 1.0, 2.0),
    "verify_new_cold_defects": (1.0, 1.0, 1.0),
    "verify_flat_scatter": (0.008, 0.007, 0.001),
    "verify_bias_pass": (1.0, 1.0, 0.0),
    "verify_dark_pass": (1.0, 1.0, 0.0),
    "verify_flat_pass": (1.0, 1.0, 0.0),
}
CALIB_OFFSET_MIN = {"bias": 0, "dark": 40, "flat": 80, "ptc": 120, "defects": 160, "verify": 0}


def amps_of(name: str) -> tuple[str, ...]:
    return AMP_ORDER_8 if is_wavefront(name) else AMP_ORDER_16


def vendor_of(instrument: str, name: str) -> str:
    return "ITL" if instrument == "LATISS" else default_vendor(name)


def number_of(instrument: str, name: str) -> int:
    return detector_number(instrument, name)


def _stats(v: np.ndarray) -> Stats:
    med = float(np.median(v))
    return Stats(
        median=med,
        sigma_mad=float(1.4826 * np.median(np.abs(v - med))),
        n_points=int(v.size),
        min=float(v.min()),
        max=float(v.max()),
    )


def _summary(common: dict, level: str, det: int | None, name: str | None, vend: str, vals):
    """A detector or camera record of ``vals`` (median, σ_MAD, … as the pipeline writes)."""
    st = _stats(vals)
    return MetricRecord(value=st.median, level=level, detector=det, detector_name=name,
                        amp=None, vendor=vend, stats=st, **common)  # fmt: skip


def night_records(
    day_obs: str,
    detectors: Sequence[str],
    *,
    instrument: str = "LSSTCam",
    metrics: Iterable[str] | None = None,
    seed: int = 0,
    drift: float = 0.0,
    summaries: bool = True,
    overrides: dict[tuple[str, str, str], float] | None = None,
) -> list[MetricRecord]:
    """Records of one night. ``drift`` shifts every value by ``drift × scatter``;
    ``overrides`` sets ``(metric, detector_name, amp) → value``."""
    cat = load_catalogue()
    names = list(metrics) if metrics is not None else [m.name for m in cat]
    rng = np.random.default_rng([seed, int(day_obs)])
    t0 = datetime.strptime(day_obs, "%Y%m%d").replace(tzinfo=UTC) + timedelta(hours=18)
    overrides = overrides or {}
    out: list[MetricRecord] = []
    for metric in names:
        m = cat[metric]
        ct = m.calib_type
        ts = iso_utc_ms(t0 + timedelta(minutes=CALIB_OFFSET_MIN.get(ct, 0), milliseconds=7))
        prov = Provenance(
            run=f"run-{day_obs}",
            exposures=[int(day_obs) * 100000 + i for i in range(1, 16)],
            n_exposures=15,
            software_version="0.1.0",
            config_hash="c0ffee123456",
            processed_at=iso_utc_ms(t0 + timedelta(hours=16)),
            gain_source="ptc_gain (store)",
        )
        pf = "empty" if ct in ("flat", "ptc") else ""
        common = dict(metric=metric, unit=m.unit, calib_type=ct, instrument=instrument,
                      day_obs=day_obs, physical_filter=pf, timestamp=ts, provenance=prov)  # fmt: skip

        every: list[float] = []
        for name in detectors:
            vend = vendor_of(instrument, name)
            ti, te, sc = TYPICAL[metric]
            mu = te if vend == "E2V" else ti
            vals = mu + sc * (drift + rng.standard_normal(len(amps_of(name))))
            if m.unit == "count":
                vals = np.abs(np.round(vals))
            if metric.endswith("_pass"):
                vals = np.clip(vals, 0, 1)
            for i, amp in enumerate(amps_of(name)):
                vals[i] = overrides.get((metric, name, amp), vals[i])
            det = number_of(instrument, name)
            for amp, v in zip(amps_of(name), vals, strict=True):
                out.append(
                    MetricRecord(
                        metric=metric,
                        value=float(v),
                        unit=m.unit,
                        calib_type=ct,
                        level="amp",
                        instrument=instrument,
                        detector=det,
                        detector_name=name,
                        amp=amp,
                        day_obs=day_obs,
                        physical_filter=pf,
                        vendor=vend,
                        timestamp=ts,
                        provenance=prov,
                    )
                )
            every += list(vals)
            if summaries:
                out.append(_summary(common, "detector", det, name, vend, vals))
        if summaries and every:
            out.append(_summary(common, "camera", None, None, "", np.asarray(every)))
    return out


def write_night(store, records: Sequence[MetricRecord], day_obs: str, n_files: int = 45) -> str:
    """Write records under a run row, as ``calibmon run`` would; returns the run id."""
    run = f"run-{day_obs}"
    store.begin_run(
        run,
        "run",
        input_dir="/data/raw",
        day_obs=day_obs,
        software_version="0.1.0",
        config_hash="c0ffee123456",
    )
    store.write_records(list(records), run)
    store.finish_run(run, "ok", n_files=n_files, n_rejected=0, n_skipped=0, n_records=len(records))
    return run


# -- amp images ------------------------------------------------------------------------------


def ccd_truth_image(instrument: str, name: str, kind: str, ny: int, nx: int, seed: int = 0):
    """A whole-CCD picture (rows, cols) = (2·ny, 8·nx) (ny for wavefront sensors) in
    detector coordinates (row 0 at the bottom), unbinned small-layout size."""
    rng = np.random.default_rng([seed, number_of(instrument, name), len(kind)])
    rows = ny if is_wavefront(name) else 2 * ny
    cols = 8 * nx
    bx, by, bw, bh = mosaic.ccd_box(instrument, name)
    yy, xx = np.mgrid[0:rows, 0:cols]
    fx = bx + (xx + 0.5) / cols * bw
    fy = by + (yy + 0.5) / rows * bh
    centre = 0.5 if mosaic.single_ccd(instrument) else 2 * mosaic.RAFT_PITCH + 1.5
    r2 = ((fx - centre) ** 2 + (fy - centre) ** 2) / (centre**2 * 2 + 1e-9)
    if kind == "flat":
        img = 1.0 - 0.12 * r2 + 0.004 * rng.standard_normal((rows, cols))
        img[:, cols // 3] *= 0.3  # a dead column
    elif kind == "dark":
        img = 0.005 + 0.002 * rng.standard_normal((rows, cols))
        hot = rng.integers(0, rows * cols, 25)
        img.flat[hot] = 2.0
        img[: rows // 2, 2 * cols // 3] = 0.4  # a hot column in the bottom half
    else:
        img = 0.5 * (xx / cols) + 0.3 * rng.standard_normal((rows, cols))
    return img.astype(np.float32)


def fill_amp_images(
    store,
    instrument: str,
    day_obs: str,
    detectors: Sequence[str],
    *,
    kinds: Sequence[str] = ("bias", "dark", "flat"),
    binning: int = 2,
    seed: int = 0,
) -> dict[tuple[str, str], np.ndarray]:
    """Store binned amp images cut from :func:`ccd_truth_image` (readout order, DETSEC from
    the simulator's convention); returns ``{(detector_name, kind): ccd picture}``."""
    truth = {}
    rows = []
    for name in detectors:
        vend = vendor_of(instrument, name)
        layout = LAYOUTS[(vend, True)]
        nx, ny = layout.n_data_cols, layout.n_data_rows
        for kind in kinds:
            ccd = ccd_truth_image(instrument, name, kind, ny, nx, seed)
            truth[(name, kind)] = ccd
            for amp in amps_of(name):
                geo = segment_geometry(layout, amp, wavefront=is_wavefront(name))
                x1, x2, y1, y2 = mosaic.parse_detsec(geo["DETSEC"])
                piece = ccd[min(y1, y2) - 1 : max(y1, y2), min(x1, x2) - 1 : max(x1, x2)]
                if x1 > x2:
                    piece = piece[:, ::-1]
                if y1 > y2:
                    piece = piece[::-1, :]
                h, w = piece.shape[0] // binning, piece.shape[1] // binning
                binned = piece[: h * binning, : w * binning].reshape(h, binning, w, binning)
                binned = binned.mean(axis=(1, 3))
                rows.append(
                    (
                        instrument,
                        day_obs,
                        number_of(instrument, name),
                        amp,
                        kind,
                        binning,
                        h,
                        w,
                        encode_amp_image(binned),
                        geo["DETSEC"],
                        f"run-{day_obs}",
                    )
                )
    with store.transaction() as c:
        c.executemany(
            "INSERT OR REPLACE INTO amp_images(instrument, day_obs, detector, amp, kind, bin,"
            " n_rows, n_cols, data, detsec, run_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    return truth


# -- PTC ----------------------------------------------------------------------------------------


def ptc_curve(
    gain: float, noise_e: float, a00: float, turnoff_adu: float, n: int = 24, seed: int = 0
) -> dict:
    """One amp's PTC JSON (keys as in ``calibmon.store.images``)."""
    rng = np.random.default_rng(seed)
    exptime = np.geomspace(0.1, 60.0, n)
    mu = 2200.0 * exptime * (1 - 1e-7 * 2200 * exptime)
    model = (np.exp(2 * a00 * mu * gain) - 1) / (2 * gain**2 * a00) + (noise_e / gain) ** 2
    var = model * (1 + 0.01 * rng.standard_normal(n))
    used = mu < turnoff_adu
    var[~used] = model[~used] * np.exp(-(mu[~used] - turnoff_adu) / 8000.0) * 0.7
    resid = mu / (2200.0 * exptime) - 1.0
    return {
        "exptime_s": exptime.tolist(),
        "mu_adu": mu.tolist(),
        "var_adu2": var.tolist(),
        "model_var_adu2": model.tolist(),
        "used": used.tolist(),
        "residual_frac": resid.tolist(),
        "gain": gain,
        "noise_e": noise_e,
        "a00": a00,
        "turnoff_adu": turnoff_adu,
    }


def fill_ptc_curves(
    store, instrument: str, day_obs: str, detectors: Sequence[str], seed: int = 0
) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for name in detectors:
        e2v = vendor_of(instrument, name) == "E2V"
        for k, amp in enumerate(amps_of(name)):
            d = ptc_curve(
                gain=(1.5 if e2v else 1.7) + 0.04 * rng.standard_normal(),
                noise_e=6.0 + 0.4 * rng.standard_normal(),
                a00=-2.2e-6,
                turnoff_adu=(90000.0 if e2v else 75000.0) + 3000 * rng.standard_normal(),
                seed=seed * 1000 + k,
            )
            rows.append(
                (
                    instrument,
                    day_obs,
                    number_of(instrument, name),
                    amp,
                    json.dumps(d),
                    f"run-{day_obs}",
                )
            )
    with store.transaction() as c:
        c.executemany(
            "INSERT OR REPLACE INTO ptc_curves(instrument, day_obs, detector, amp, data, run_id)"
            " VALUES (?,?,?,?,?,?)",
            rows,
        )


def fire_alert(store, instrument: str, detector_name: str, amp: str, rule: str, **data) -> None:
    """An ``alert_state`` row in state ``firing`` (and its ``alert_events`` transition)."""
    det = number_of(instrument, detector_name)
    now = "2025-11-22T10:00:00.000000Z"
    payload = json.dumps({"detector_name": detector_name, **data})
    store.execute(
        "INSERT OR REPLACE INTO alert_state(rule, instrument, detector, amp, state, data,"
        " updated_at) VALUES (?,?,?,?,?,?,?)",
        (rule, instrument, det, amp, "firing", payload, now),
    )
    store.execute(
        "INSERT INTO alert_events(rule, instrument, detector, amp, from_state, to_state,"
        " day_obs, data, at) VALUES (?,?,?,?,?,?,?,?,?)",
        (rule, instrument, det, amp, "pending", "firing", data.get("day_obs"), payload, now),
    )


def populate(
    store,
    detectors: Sequence[str],
    days: Sequence[str],
    *,
    instrument: str = "LSSTCam",
    metrics: Iterable[str] | None = None,
    images: bool = True,
    ptc: bool = True,
    binning: int = 2,
    alerts: bool = True,
) -> dict:
    """A store with ``days`` of records (the last day with pictures, PTC and alerts)."""
    last = days[-1]
    metrics = list(metrics) if metrics is not None else None
    d0 = detectors[0]
    overrides = {}
    if alerts and (metrics is None or "read_noise" in metrics):
        overrides[("read_noise", d0, "C10")] = 11.5  # above the 9 e- spec
    for i, day in enumerate(days):
        recs = night_records(
            day,
            detectors,
            instrument=instrument,
            metrics=metrics,
            seed=i,
            drift=0.3 * i / max(1, len(days) - 1),
            overrides=overrides if day == last else None,
        )
        write_night(store, recs, day)
    truth = {}
    if images:
        truth = fill_amp_images(store, instrument, last, detectors, binning=binning)
    if ptc:
        fill_ptc_curves(store, instrument, last, detectors)
    if alerts and (metrics is None or "read_noise" in metrics):
        fire_alert(
            store,
            instrument,
            d0,
            "C10",
            "read_noise_high",
            metric="read_noise",
            value=11.5,
            threshold=9.0,
            severity="warning",
            day_obs=last,
            summary="Read noise above the camera specification of 9 e-.",
        )
    return truth


@contextmanager
def cli_with_report() -> Iterator[None]:
    """``calibmon.cli`` with ``report`` and ``dashboards`` registered: the parser imports
    every command group statically (calibmon.cli.main), so there is nothing to add."""
    yield


# -- checks of a rendered report ---------------------------------------------------------

IMG_RE = re.compile(r"<img\b[^>]*>")
SRC_RE = re.compile(r'src="([^"]*)"')


def images_of(text: str) -> list[bytes]:
    """Decode every <img>; each must be a PNG data URI."""
    out = []
    for tag in IMG_RE.findall(text):
        src = SRC_RE.search(tag).group(1)
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        Image.open(io.BytesIO(data)).verify()
        out.append(data)
    return out


def assert_self_contained(text: str) -> None:
    assert "<script" not in text.lower()
    assert "<link" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text, re.I)
    assert "url(" not in text
