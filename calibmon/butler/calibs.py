"""``calibmon calibs import --butler`` and ``calibmon calibs list --butler``: the certified
calibrations of a CALIBRATION collection as calibmon products and certifications.

Each certification (dataset, validity timespan) becomes

- a **product** whose id is the Butler dataset id (UUID): the file is converted to
  calibmon's per-amp layout (:mod:`calibmon.calibs.products`), amps cut from the assembled
  image with the DETSEC geometry of the detector's raws (:mod:`.exposuref`);
- a **certification** for the day_obs range the timespan covers (:mod:`.dayobs`).

Units and the per-amp numbers verification needs, from what a Rubin master carries:

====== ===========================================================================
bias   electrons → adu: divided by the amp's gain. ``FRMNOISE`` (per-frame noise,
       adu) = ``LSST ISR READNOISE`` / gain (a bias frame's data-area noise is its
       read noise); without it, σ_MAD of the master × √N (overestimates by any fixed
       structure). ``NFRAMES`` = number of ``CPP_INPUT_<i>``.
dark   electron/s as written (an ``adu`` dark is multiplied by the gain). ``GAIN`` the
       gain; ``DARKTIME`` the mean ``CPP_INPUT_EXPT_<i>`` (a dark's exposure time is its
       dark time to the shutter's few ms); ``DARKMEAN`` the clipped mean (e-/s);
       ``FRMNOISE`` (e-) = √(read noise² + DARKMEAN·DARKTIME), the shot and read
       noise of one bias-subtracted frame.
flat   normalised per detector as written. ``GAIN``; ``SIGNAL`` (e-) the median
       ``CPP_INPUT_SCALE_<i>`` (cpCombine divides each input by its level);
       ``PAIRVAR`` (e-²) = SIGNAL + read noise² (Poisson); ``RDNOISE`` (e-);
       ``AMPMEAN`` the amp's clipped mean.
defects boxes → a detector mask (1 = bad) → per-amp masks.
====== ===========================================================================

The gain is the file's ``LSST ISR GAIN <amp>`` (what ISR used to make it); without it the
latest PTC/flat gain calibmon measured for the amp, else the vendor's nominal gain; the
source is kept as ``GAINSRC``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from calibmon.butler.dayobs import (
    day_obs_instant_tai,
    format_tai,
    timespan_to_days,
)
from calibmon.butler.exposuref import (
    AmpLayout,
    StackExposure,
    amp_keys_from,
    cut_amps,
    layout_from_raw,
    read_defects,
    read_exposuref,
)
from calibmon.butler.repo import (
    CertifiedDataset,
    LocalFiles,
    certified,
    default_raw_collections,
    find_certified,
    one_raw_uri,
    open_butler,
)
from calibmon.calibs import registry
from calibmon.calibs.products import CALIB_TYPES, AmpPlane, ProductHeader, write_product
from calibmon.config import Settings
from calibmon.dayobs import format_day_obs
from calibmon.errors import CalibError, ConfigError
from calibmon.io import detectors as dets
from calibmon.science.robust import clipped_mean, sigma_mad
from calibmon.store import calibs as db
from calibmon.store.sqlite import Store, utc_now_iso

log = logging.getLogger(__name__)

DEFAULT_INSTRUMENT = "LSSTCam"
GAIN_METRICS = ("ptc_gain", "gain")  # as the pipeline's gain hint (pipeline.GAIN_METRICS_IN_STORE)


@dataclass
class ImportSummary:
    lines: list[str] = field(default_factory=list)  # "<uuid> <type> <detector> [b, e)"
    problems: list[str] = field(default_factory=list)
    n_new_products: int = 0
    n_new_certifications: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def import_certified(
    repo: str,
    collection: str,
    settings: Settings,
    store: Store,
    *,
    calib_types: Sequence[str] = CALIB_TYPES,
    instrument: str | None = None,
    detectors: Sequence[str] | None = None,
    raw_collections: Sequence[str] = (),
    output_dir: Path | None = None,
) -> ImportSummary:
    """Register every certification of ``collection`` (see the module docstring)."""
    from calibmon.pipeline.masters import default_calib_dir

    instrument = instrument or settings.instrument or DEFAULT_INSTRUMENT
    raw_colls = list(raw_collections) or default_raw_collections(instrument)
    numbers = _numbers(instrument, detectors)
    butler = open_butler(repo)
    certs = certified(butler, repo, collection, calib_types, instrument, numbers)
    out_dir = (output_dir or default_calib_dir(store)) / "butler"
    summary = ImportSummary()
    layouts: dict[int, AmpLayout | str] = {}
    with LocalFiles() as files:
        for c in certs:
            name = dets.detector_name(instrument, c.detector)
            rng = timespan_to_days(c.begin, c.end)
            if rng is None:
                summary.problems.append(
                    f"{c.uuid} {c.calib_type} {name}: timespan [{format_tai(c.begin)}, "
                    f"{format_tai(c.end)}) contains no day_obs start (12:00 UTC): not certified"
                )
                continue
            if db.get_product(store, c.uuid) is None:
                layout = layouts.get(c.detector)
                if layout is None:
                    layout = _layout(butler, files, instrument, c.detector, name, raw_colls)
                    layouts[c.detector] = layout
                if isinstance(layout, str):
                    summary.problems.append(f"{c.uuid} {c.calib_type} {name}: {layout}")
                    continue
                try:
                    path = files.path(c.uri)
                    _register(store, settings, c, instrument, name, layout, path, out_dir, repo)
                except CalibError as err:
                    summary.problems.append(f"{c.uuid} {c.calib_type} {name}: {err}")
                    continue
                summary.n_new_products += 1
            begin, end = rng
            known = db.list_certifications(store, product_id=c.uuid)
            if not any(k.begin_date == begin and k.end_date == end for k in known):
                db.add_certification(store, c.uuid, begin, end)
                summary.n_new_certifications += 1
            summary.lines.append(
                f"{c.uuid} {c.calib_type} {name} {registry.format_range(begin, end)}"
            )
    return summary


def _numbers(instrument: str, detectors: Sequence[str] | None) -> list[int] | None:
    try:
        return [dets.detector_number(instrument, n) for n in detectors] if detectors else None
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"--detectors: {exc}") from None


def _layout(
    butler: Any, files: LocalFiles, instrument: str, detector: int, name: str,
    raw_collections: Sequence[str],
) -> AmpLayout | str:  # fmt: skip
    """The detector's amp layout from one of its raws, or why there is none."""
    uri = one_raw_uri(butler, instrument, detector, raw_collections)
    if uri is None:
        return (f"no raw of {name} in {','.join(raw_collections)} to take the amp geometry "
                "(DETSEC) from (--raw-collections)")  # fmt: skip
    try:
        return layout_from_raw(files.path(uri), name)
    except (CalibError, ConfigError) as err:
        return str(err)


def _gains(
    store: Store, settings: Settings, exp_header: dict[str, Any], instrument: str,
    detector: int, vendor: str, day_obs: str | None, amps: Sequence[str],
) -> dict[str, tuple[float, str]]:  # fmt: skip
    """Per amp (gain e-/adu, source): the file's, else calibmon's latest, else nominal."""
    out = {}
    for amp in amps:
        g = amp_keys_from(exp_header, amp)["gain"]
        if math.isfinite(g) and g > 0:
            out[amp] = (g, "LSST ISR GAIN (file)")
            continue
        found = store.latest_value(GAIN_METRICS, instrument, detector, amp,
                                   on_or_before_day_obs=day_obs or "99999999")  # fmt: skip
        if found is not None:
            out[amp] = (found[1], f"{found[0]} {found[2]} (store)")
            continue
        nominal = settings.nominal_gain.get(vendor.upper(), math.nan)
        out[amp] = (nominal, f"nominal {vendor.upper()}")
    return out


def _day_obs_of_inputs(exp: StackExposure | None, meta: dict[str, Any]) -> str | None:
    """The day_obs a product was made from: its first input exposure's (id // 100000),
    else its CALIBDATE."""
    if exp is not None:
        ids = exp.inputs()
        if ids:
            return str(min(ids) // 100000)
    cd = str(meta.get("CALIBDATE", "") or "").strip()[:10]
    try:
        return format_day_obs(date.fromisoformat(cd))
    except ValueError:
        return None


def _register(
    store: Store, settings: Settings, c: CertifiedDataset, instrument: str, name: str,
    layout: AmpLayout, path: Path, out_dir: Path, repo: str,
) -> None:  # fmt: skip
    """Convert one certified dataset to a product file and register it under its UUID."""
    amps = list(layout.boxes)
    exp: StackExposure | None = None
    planes: dict[str, AmpPlane] = {}
    if c.calib_type == "defects":
        mask, meta = read_defects(path, layout.shape)
        for amp, m in cut_amps(layout, mask, str(path)).items():
            box = layout.boxes[amp]
            planes[amp] = AmpPlane(m.astype(np.uint8), box.datasec, box.detsec,
                                   {"NBAD": int(m.sum())})  # fmt: skip
        extra: dict[str, Any] = {}
        day = _day_obs_of_inputs(None, meta)
        n_inputs = 0
    else:
        exp = read_exposuref(path)
        if exp.obstype and exp.obstype != c.calib_type:
            raise CalibError(f"{path}: OBSTYPE {exp.obstype!r}, the Butler says {c.calib_type}")
        meta = exp.header
        day = _day_obs_of_inputs(exp, meta)
        gains = _gains(store, settings, meta, instrument, c.detector, layout.vendor, day, amps)
        cut = cut_amps(layout, exp.image, str(path))
        n_inputs = len(exp.inputs())
        for amp in amps:
            box = layout.boxes[amp]
            g, gsrc = gains[amp]
            rn_e = amp_keys_from(meta, amp)["read_noise_e"]
            image, keys = _convert(c.calib_type, exp, cut[amp], g, rn_e, n_inputs)
            keys.update({"GAIN": g, "GAINSRC": gsrc})
            if n_inputs:  # without CPP_INPUT_<i> the frame count is unknown (noise tests NaN)
                keys["NFRAMES"] = n_inputs
            planes[amp] = AmpPlane(image, box.datasec, box.detsec, keys)
        extra = {"BUTLERID": c.uuid, "BUTLERRN": c.run[:60]}
    header = ProductHeader(
        calib_type=c.calib_type, calib_id=c.uuid, instrument=instrument, detector=c.detector,
        detector_name=name, vendor=layout.vendor, day_obs=day,
        physical_filter=c.physical_filter if c.calib_type == "flat" else "",
        source_run=c.run[:60], exposures=exp.inputs() if exp is not None else [], extra=extra,
    )  # fmt: skip
    dest = out_dir / f"{c.uuid[:8]}_{c.calib_type}_{name}.fits"
    write_product(dest, header, planes)
    shape = next(iter(planes.values())).image.shape
    db.insert_product(store, db.ProductRow(
        id=c.uuid, calib_type=c.calib_type, instrument=instrument, detector=c.detector,
        detector_name=name, physical_filter=header.physical_filter, day_obs=day,
        path=str(dest.resolve()), source_run=c.run, created_at=utc_now_iso(),
        meta={"vendor": layout.vendor, "n_exposures": n_inputs, "exposures": header.exposures,
              "amp_shape": list(shape), "units": exp.units if exp is not None else "",
              "butler": {"repo": repo, "collection": c.collection, "run": c.run,
                         "uri": c.uri, "data_id": {k: str(v) for k, v in c.data_id.items()}}},
    ))  # fmt: skip


def _convert(
    calib_type: str, exp: StackExposure, amp_image: np.ndarray, gain: float, rn_e: float,
    n_inputs: int,
) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """One amp of a Rubin master in calibmon's units, with the keys verification needs
    (module docstring)."""
    electrons = exp.units != "adu"
    n = max(n_inputs, 1)
    if calib_type == "bias":
        image = amp_image / np.float32(gain) if electrons else amp_image.copy()
        frame_noise = rn_e / gain if math.isfinite(rn_e) else sigma_mad(image) * math.sqrt(n)
        return image.astype(np.float32), {"FRMNOISE": frame_noise, "BUNIT": "adu"}
    if calib_type == "dark":
        image = amp_image.copy() if electrons else amp_image * np.float32(gain)
        expt = [t for t in exp.input_values("CPP_INPUT_EXPT") if math.isfinite(t)]
        darktime = _float(exp.header.get("DARKTIME"))
        if not math.isfinite(darktime):
            darktime = float(np.mean(expt)) if expt else math.nan
        dmean = clipped_mean(image)
        rn = rn_e if math.isfinite(rn_e) else 0.0
        frame_noise = math.sqrt(rn**2 + max(dmean, 0.0) * darktime)
        return image.astype(np.float32), {
            "DARKTIME": darktime, "DARKMEAN": dmean, "FRMNOISE": frame_noise,
        }  # fmt: skip
    # flat
    scales = [s for s in exp.input_values("CPP_INPUT_SCALE") if math.isfinite(s) and s > 0]
    signal = float(np.median(scales)) if scales else math.nan
    rn = rn_e if math.isfinite(rn_e) else 0.0
    image = amp_image.astype(np.float32)
    return image, {
        "SIGNAL": signal, "PAIRVAR": signal + rn**2, "RDNOISE": rn_e,
        "AMPMEAN": clipped_mean(image),
    }  # fmt: skip


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------------------
# calibs list --butler
# --------------------------------------------------------------------------------------
@dataclass
class HandedOut:
    """What a CALIBRATION collection hands out for one detector and type on a day."""

    calib_type: str
    detector_name: str
    physical_filter: str
    uuid: str | None
    run: str | None
    known: str  # what calibmon knows of the UUID


def handed_out(
    repo: str,
    collection: str,
    day_obs: str,
    store: Store,
    *,
    calib_types: Sequence[str] = CALIB_TYPES,
    instrument: str | None = None,
    detectors: Sequence[str] | None = None,
    settings: Settings | None = None,
) -> list[HandedOut]:
    """Per detector and type, the dataset ``collection`` hands out at the start of
    ``day_obs`` (the instant :mod:`.dayobs` assigns a day by), and whether calibmon has it."""
    instrument = instrument or (settings.instrument if settings else None) or DEFAULT_INSTRUMENT
    butler = open_butler(repo)
    numbers = _numbers(instrument, detectors)
    certs = certified(butler, repo, collection, calib_types, instrument, numbers)
    keys = sorted({(c.calib_type, c.detector, c.physical_filter) for c in certs})
    instant = day_obs_instant_tai(day_obs)
    out = []
    for calib_type, det, filt in keys:
        data_id: dict[str, Any] = {"instrument": instrument, "detector": det}
        if calib_type == "flat":
            data_id["physical_filter"] = filt
        ref = find_certified(butler, collection, calib_type, data_id, instant)
        name = dets.detector_name(instrument, det)
        uuid = str(ref.id) if ref is not None else None
        out.append(HandedOut(calib_type, name, filt, uuid, ref.run if ref is not None else None,
                             _known(store, uuid, calib_type, instrument, det, day_obs, filt)))  # fmt: skip
    return out


def _known(
    store: Store, uuid: str | None, calib_type: str, instrument: str, detector: int,
    day_obs: str, physical_filter: str,
) -> str:  # fmt: skip
    if uuid is None:
        return "nothing certified for this day"
    if db.get_product(store, uuid) is None:
        return "not in calibmon (calibmon calibs import --butler)"
    row = registry.lookup(store, calib_type, instrument, detector, day_obs, physical_filter)
    if row is None or row.product.id != uuid:
        other = row.product.id if row is not None else "nothing"
        return f"imported, but calibmon's certification for {day_obs} is {other}"
    return f"imported, certified {registry.format_range(row.begin_date, row.end_date)}"
