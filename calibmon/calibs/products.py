"""Master calibration product files: layout, writing, reading, validation.

A product is one FITS file per (calib_type, detector[, physical_filter]) built from one
day's exposures, in the per-amplifier layout of the raws (DESIGN.md §2):

Primary HDU (no data)
    ``CALIBTYP`` bias|dark|flat|defects, ``CALIB_ID`` (UUID), ``INSTRUME``, ``DETECTOR``
    (number), ``DETNAME`` (``R22_S11``), ``CCD_MANU`` (vendor), ``DAYOBS`` (of the inputs),
    ``FILTER`` (flats; '' otherwise), ``CALIBSW`` (calibmon version), ``CFGHASH``
    (science-config hash), ``NEXPOSE`` (input exposures), ``SRCRUN`` (build run), ``DATE``
    (written, UTC) and type-specific keys (``BIASSRC`` for darks/flats, ``FLATNORM``/
    ``NORMTYPE`` for flats, ``DEFSRC`` for defects).
One image HDU per amplifier, ``EXTNAME`` ``Segment10`` … ``Segment00`` in readout order
    The trimmed data area (DATASEC) of the amp, float32 (defects: uint8 mask, 1 = bad),
    with the raw's ``DATASEC`` and ``DETSEC`` copied (DATASEC says where this area lay
    in the raw amplifier; its extent is the image's shape) and per-amp numbers:

    ====== ================================================================== =========
    type   key                                                                unit
    ====== ================================================================== =========
    all    ``NFRAMES`` frames combined; ``BUNIT``
    bias   ``RDNOISE`` read noise of the serial overscan (as ``read_noise_adu``) adu
    bias   ``FRMNOISE`` per-frame noise of the overscan-corrected data area      adu
    dark   ``GAIN``/``GAINSRC`` gain used and where it came from                e-/adu
    dark   ``FRMNOISE`` per-frame noise of a bias-subtracted dark at DARKTIME   electron
    dark   ``DARKTIME`` mean dark time of the frames; ``DARKMEAN`` clipped mean  s; e-/s
    dark   ``NBIAS`` frames in the master bias that was subtracted
    flat   ``GAIN``/``GAINSRC``; ``SIGNAL`` clipped-mean signal of one frame     e-/adu; e-
    flat   ``PAIRVAR`` per-frame variance from flat pairs; ``RDNOISE``          e-²; e-
    flat   ``AMPMEAN`` clipped mean of this amp in the normalised flat           1
    defect ``NBRIGHT``/``BRCOLS`` hot pixels/columns, ``NDARK``/``DKCOLS`` cold
    ====== ================================================================== =========

    ``FRMNOISE`` is measured from differences of consecutive frames
    (:func:`calibmon.science.verify.frame_noise_from_pairs`), so fixed structure cancels.
An ``EXPOSURES`` binary table
    the input exposure ids (column ``EXPOSURE``) and their kind (``KIND``).

:class:`CertifiedCalib` is what the pipeline's verify steps receive: a product and the
validity range it was looked up with (picklable, sent to worker processes).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fitsio
import numpy as np

from calibmon.errors import CalibError
from calibmon.io import detectors as dets
from calibmon.io.geometry import parse_section

CALIB_TYPES: tuple[str, ...] = ("bias", "dark", "flat", "defects")

# Trimmed amplifier shapes (rows, cols) of real sensors, DESIGN.md §2: ITL DATASEC
# [4:512,1:2000] → 2000 × 509, e2v [11:522,1:2002] → 2002 × 512. Used to check an
# imported product whose amp HDUs carry no DATASEC.
TRIMMED_SHAPE: dict[str, tuple[int, int]] = {"ITL": (2000, 509), "E2V": (2002, 512)}

BUNIT: dict[str, str] = {"bias": "adu", "dark": "electron/s", "flat": "1", "defects": "mask"}

# Per-amp keys the verification needs, by type (an imported product must carry them).
REQUIRED_AMP_KEYS: dict[str, tuple[str, ...]] = {
    "bias": ("FRMNOISE", "NFRAMES"),
    "dark": ("GAIN", "FRMNOISE", "DARKTIME", "DARKMEAN", "NFRAMES"),
    "flat": ("GAIN", "SIGNAL", "PAIRVAR", "AMPMEAN", "NFRAMES"),
    "defects": (),
}


@dataclass(frozen=True)
class CertifiedCalib:
    """A certified product as a verify step sees it (picklable).

    ``begin``/``end`` are the validity range it was found with (``YYYY-MM-DD``, begin
    inclusive, end exclusive, None = open-ended).
    """

    product_id: str
    calib_type: str
    path: str
    day_obs: str | None
    physical_filter: str
    n_exposures: int
    begin: str
    end: str | None

    def provenance(self) -> dict[str, Any]:
        """The ``input_calibs`` entry of a record verified against this product."""
        return {
            "id": self.product_id,
            "begin": self.begin,
            "end": self.end,
            "day_obs": self.day_obs,
            "physical_filter": self.physical_filter,
        }


@dataclass
class AmpPlane:
    """One amp's image of a product and its header keys."""

    image: np.ndarray
    datasec: str = ""
    detsec: str = ""
    keys: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProductHeader:
    """The primary-header values of a product."""

    calib_type: str
    calib_id: str
    instrument: str
    detector: int
    detector_name: str
    vendor: str
    day_obs: str | None
    physical_filter: str = ""
    software_version: str = ""
    config_hash: str = ""
    source_run: str = ""
    exposures: list[int] = field(default_factory=list)
    exposure_kinds: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def amps(self) -> tuple[str, ...]:
        return dets.AMP_ORDER_8 if dets.is_wavefront(self.detector_name) else dets.AMP_ORDER_16


def write_product(path: str | Path, header: ProductHeader, planes: Mapping[str, AmpPlane]) -> None:
    """Write a product file (beside the target, then renamed: never half a file)."""
    path = Path(path)
    if header.calib_type not in CALIB_TYPES:
        raise ValueError(f"unknown calib_type {header.calib_type!r}")
    missing = [a for a in header.amps if a not in planes]
    if missing:
        raise ValueError(f"no image for amp(s) {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    primary = [
        ("CALIBTYP", header.calib_type, "calibration type"),
        ("CALIB_ID", header.calib_id, "calibmon product id (UUID)"),
        ("INSTRUME", header.instrument, "instrument"),
        ("DETECTOR", int(header.detector), "detector number"),
        ("DETNAME", header.detector_name, "detector name"),
        ("CCD_MANU", header.vendor, "CCD manufacturer"),
        ("DAYOBS", header.day_obs or "", "day_obs of the input exposures"),
        ("FILTER", header.physical_filter, "physical_filter (flats)"),
        ("CALIBSW", header.software_version, "calibmon version that built it"),
        ("CFGHASH", header.config_hash, "science configuration hash"),
        ("NEXPOSE", len(header.exposures), "input exposures"),
        ("SRCRUN", header.source_run, "calibmon run that built it"),
        ("DATE", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "file written (UTC)"),
    ]
    primary += [(k, _fits_value(v), "") for k, v in header.extra.items()]
    kinds = header.exposure_kinds or [header.calib_type] * len(header.exposures)
    table = np.zeros(len(header.exposures), dtype=[("EXPOSURE", "i8"), ("KIND", "S8")])
    table["EXPOSURE"] = header.exposures
    table["KIND"] = [k.encode() for k in kinds]
    try:
        with fitsio.FITS(str(tmp), "rw", clobber=True) as f:
            f.write(None, header=[{"name": k, "value": v, "comment": c} for k, v, c in primary])
            for amp in header.amps:
                plane = planes[amp]
                data = np.ascontiguousarray(
                    plane.image, dtype=np.uint8 if header.calib_type == "defects" else np.float32
                )
                cards = [
                    {"name": "DATASEC", "value": plane.datasec, "comment": "raw data section"},
                    {"name": "DETSEC", "value": plane.detsec, "comment": "detector section"},
                    {"name": "BUNIT", "value": BUNIT[header.calib_type], "comment": "unit"},
                ]
                cards += [{"name": k, "value": _fits_value(v)} for k, v in plane.keys.items()]
                f.write(data, header=cards, extname=f"Segment{amp[1:]}")
            f.write(table, extname="EXPOSURES")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fits_value(v: Any) -> Any:
    """FITS can't hold NaN or None in a header card: NaN → 'NaN' string, None → ''."""
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else "NaN"
    if isinstance(v, np.integer):
        return int(v)
    return v


def _card_value(v: Any) -> Any:
    if isinstance(v, str):
        s = v.strip()
        return math.nan if s == "NaN" else s
    return v


def read_header(path: str | Path) -> ProductHeader:
    """Primary header and exposure table of a product (no pixels).

    Raises :class:`CalibError` naming the file when it is not a readable product.
    """
    path = str(path)
    try:
        with fitsio.FITS(path, "r") as f:
            h = f[0].read_header()
            exposures: list[int] = []
            kinds: list[str] = []
            if "EXPOSURES" in f:
                tab = f["EXPOSURES"].read()
                exposures = [int(x) for x in tab["EXPOSURE"]]
                if "KIND" in tab.dtype.names:
                    kinds = [
                        (k.decode() if isinstance(k, bytes) else str(k)).strip()
                        for k in tab["KIND"]
                    ]
    except (OSError, ValueError, KeyError) as exc:
        raise CalibError(f"{path}: not a readable FITS file ({_short(exc)})") from exc
    calib_type = str(h.get("CALIBTYP", "") or "").strip().lower()
    if calib_type not in CALIB_TYPES:
        raise CalibError(
            f"{path}: CALIBTYP {h.get('CALIBTYP')!r} is not one of {', '.join(CALIB_TYPES)}"
        )
    instrument = str(h.get("INSTRUME", "") or "").strip()
    if not instrument:
        raise CalibError(f"{path}: primary header has no INSTRUME")
    instrument = dets.canonical_instrument(instrument)
    name = str(h.get("DETNAME", "") or "").strip()
    number = h.get("DETECTOR")
    try:
        if not name and number is not None:
            name = dets.detector_name(instrument, int(number))
        if not dets.is_valid_name(name):
            raise ValueError(name)
        det = dets.detector_number(instrument, name)
    except (KeyError, ValueError, IndexError, TypeError):
        raise CalibError(
            f"{path}: DETNAME {name!r}/DETECTOR {number!r} is not a detector of {instrument}"
        ) from None
    if number is not None and int(number) != det:
        raise CalibError(f"{path}: DETECTOR {number} does not match DETNAME {name} ({det})")
    vendor = str(h.get("CCD_MANU", "") or "").strip().upper() or dets.default_vendor(name)
    day = str(h.get("DAYOBS", "") or "").strip() or None
    extra = {k: _card_value(h[k]) for k in ("BIASSRC", "FLATNORM", "NORMTYPE", "DEFSRC") if k in h}
    return ProductHeader(
        calib_type=calib_type,
        calib_id=str(h.get("CALIB_ID", "") or "").strip(),
        instrument=instrument,
        detector=det,
        detector_name=name,
        vendor=vendor,
        day_obs=day,
        physical_filter=str(h.get("FILTER", "") or "").strip(),
        software_version=str(h.get("CALIBSW", "") or "").strip(),
        config_hash=str(h.get("CFGHASH", "") or "").strip(),
        source_run=str(h.get("SRCRUN", "") or "").strip(),
        exposures=exposures,
        exposure_kinds=kinds,
        extra=extra,
    )


def read_amp(path: str | Path, amp: str) -> AmpPlane:
    """One amp's image (float32; defects: bool mask) and header keys.

    Raises :class:`CalibError` naming the file when the HDU is missing or unreadable.
    """
    path = str(path)
    ext = f"Segment{amp[1:]}"
    try:
        with fitsio.FITS(path, "r") as f:
            if ext not in f:
                raise CalibError(f"{path}: HDU {ext} missing")
            hdu = f[ext]
            h = hdu.read_header()
            data = hdu.read()
    except CalibError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise CalibError(f"{path}: {ext} unreadable ({_short(exc)})") from exc
    if data is None or data.ndim != 2:
        raise CalibError(f"{path}: {ext} holds no 2-D image")
    keys = {k: _card_value(h[k]) for k in h if k not in ("DATASEC", "DETSEC")}
    image = data.astype(bool) if data.dtype.kind in "ui" else data.astype(np.float32, copy=False)
    return AmpPlane(
        image=image,
        datasec=str(h.get("DATASEC", "") or "").strip(),
        detsec=str(h.get("DETSEC", "") or "").strip(),
        keys=keys,
    )


def amp_float(plane: AmpPlane, key: str) -> float:
    """A numeric per-amp key as float (NaN when absent or not a number)."""
    v = plane.keys.get(key)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def section_shape(section: str) -> tuple[int, int]:
    """(rows, cols) covered by a FITS section ``[x1:x2,y1:y2]``."""
    x1, x2, y1, y2 = parse_section(section)
    return (y2 - y1 + 1, x2 - x1 + 1)


def validate_product(
    path: str | Path, known_shapes: Sequence[tuple[int, int]] = ()
) -> tuple[ProductHeader, tuple[int, int]]:
    """Check that ``path`` is a product in calibmon's per-amp layout.

    Every amp HDU of the detector must be present, 2-D, of the trimmed shape its DATASEC
    gives (or, without DATASEC, of its vendor's real trimmed shape), all of one shape,
    equal to ``known_shapes`` (the shape of products already registered for the same
    detector) when given; defects must be integer masks, other types floating point;
    the per-amp keys verification needs (:data:`REQUIRED_AMP_KEYS`) must be present.

    Returns the header and the trimmed shape; raises :class:`CalibError` with one line
    naming the file and the first problem found.
    """
    path = str(path)
    header = read_header(path)
    shape0: tuple[int, int] | None = None
    try:
        f = fitsio.FITS(path, "r")
    except (OSError, ValueError) as exc:
        raise CalibError(f"{path}: not a readable FITS file ({_short(exc)})") from exc
    try:
        for amp in header.amps:
            if f"Segment{amp[1:]}" not in f:
                raise CalibError(f"{path}: HDU Segment{amp[1:]} missing")
        for amp in header.amps:
            ext = f"Segment{amp[1:]}"
            hdu = f[ext]
            try:
                h = hdu.read_header()
                info = hdu.get_info()
            except (OSError, ValueError) as exc:
                raise CalibError(f"{path}: {ext} unreadable ({_short(exc)})") from exc
            if info.get("hdutype") != fitsio.IMAGE_HDU or len(info.get("dims", [])) != 2:
                raise CalibError(f"{path}: {ext} is not a 2-D image")
            shape = tuple(int(d) for d in info["dims"])
            datasec = str(h.get("DATASEC", "") or "").strip()
            if datasec:
                try:
                    want = section_shape(datasec)
                except ValueError:
                    raise CalibError(
                        f"{path}: {ext} DATASEC {datasec!r} is not a section"
                    ) from None
                source = f"its DATASEC {datasec}"
            elif header.vendor in TRIMMED_SHAPE:
                want = TRIMMED_SHAPE[header.vendor]
                source = f"a trimmed {header.vendor} amp"
            else:
                raise CalibError(f"{path}: {ext} has no DATASEC and vendor {header.vendor!r}")
            if shape != want:
                raise CalibError(f"{path}: {ext} has shape {shape}, expected {want} from {source}")
            if shape0 is None:
                shape0 = shape  # type: ignore[assignment]
            elif shape != shape0:
                raise CalibError(f"{path}: {ext} has shape {shape}, the other amps {shape0}")
            is_int = _is_integer_image(info)
            if header.calib_type == "defects" and not is_int:
                raise CalibError(f"{path}: {ext} of a defects product must be an integer mask")
            if header.calib_type != "defects" and is_int:
                raise CalibError(f"{path}: {ext} of a {header.calib_type} must be floating point")
            for key in REQUIRED_AMP_KEYS[header.calib_type]:
                if key not in h:
                    raise CalibError(
                        f"{path}: {ext} lacks {key}, which {header.calib_type} verification needs"
                    )
    finally:
        with contextlib.suppress(Exception):
            f.close()
    assert shape0 is not None
    for known in known_shapes:
        if tuple(known) != shape0:
            raise CalibError(
                f"{path}: amp shape {shape0} differs from the products registered for "
                f"{header.instrument} {header.detector_name} ({tuple(known)})"
            )
    return header, shape0


def _is_integer_image(info: dict[str, Any]) -> bool:
    # fitsio's img_equiv_type is the BITPIX after BSCALE/BZERO: > 0 integers, < 0 floats.
    t = info.get("img_equiv_type", info.get("img_type", -32))
    return int(t) > 0


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__
