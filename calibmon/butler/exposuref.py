"""Calibration files as the Rubin stack writes them, read without afw, cut into amps.

Facts taken from the stack's code (afw ``ExposureFitsWriter``/``ExposureFitsReader``,
ip_isr ``IsrCalib.writeFits``/``Defects.toTable``, cp_pipe ``CalibCombineTask``):

- **ExposureF** (bias, dark, flat): an empty primary HDU holding the metadata, then the
  ``IMAGE`` HDU (float32; tile-compressed, e.g. ``GZIP_2``, in current Rubin repositories),
  ``MASK`` (int32 bit planes) and ``VARIANCE``, then afw archive tables. The image is the
  assembled and trimmed detector (no overscan, no amp boundaries): amp ``A`` occupies its
  ``DETSEC`` box, flipped along each axis whose DETSEC range runs backwards.
- Primary keys used: ``OBSTYPE`` (lower case: ``bias``, ``dark``, ``flat``),
  ``LSST ISR UNITS`` (``electron`` for current calibrations), per amp
  ``LSST ISR GAIN <amp>`` (e-/adu) and ``LSST ISR READNOISE <amp>`` (electron), which
  cpCombine keeps when all inputs agree; ``CPP_INPUT_<i>`` (input exposure ids),
  ``CPP_INPUT_EXPT_<i>`` (their exposure times, s) and ``CPP_INPUT_SCALE_<i>`` (the scale
  each input was divided by: a flat's level in electrons); ``CALIBDATE``.
- **Defects** (ip_isr): an empty primary HDU and a binary table of boxes in detector
  pixels (0-based, assembled and trimmed): columns ``x0``, ``y0``, ``width``, ``height``
  (the FITS region form ``X``, ``Y``, ``SHAPE``, ``R`` — 1-based centres — is read too);
  the table header carries the metadata (``OBSTYPE = 'defects'``).

Amps are cut with the geometry of the detector's raws (:class:`AmpLayout`): each amp's
DETSEC and DATASEC, as calibmon reads them from a raw of the same detector.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fitsio
import numpy as np

from calibmon.errors import CalibError, InputError
from calibmon.io import detectors as dets
from calibmon.io.fits import RawFile

_SEC_RE = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


@dataclass(frozen=True)
class AmpBox:
    """Where one amp's data lie in the assembled detector (0-based numpy slices) and how
    its readout-order image is flipped there."""

    rows: slice
    cols: slice
    flip_x: bool
    flip_y: bool
    detsec: str
    datasec: str

    @classmethod
    def from_sections(cls, detsec: str, datasec: str) -> AmpBox:
        m = _SEC_RE.match(detsec or "")
        if not m:
            raise ValueError(f"not a DETSEC: {detsec!r}")
        x1, x2, y1, y2 = (int(g) for g in m.groups())
        return cls(
            rows=slice(min(y1, y2) - 1, max(y1, y2)), cols=slice(min(x1, x2) - 1, max(x1, x2)),
            flip_x=x1 > x2, flip_y=y1 > y2, detsec=detsec, datasec=datasec,
        )  # fmt: skip

    def cut(self, detector_image: np.ndarray) -> np.ndarray:
        """This amp's part of an assembled image, in readout order."""
        a = detector_image[self.rows, self.cols]
        if self.flip_x:
            a = a[:, ::-1]
        if self.flip_y:
            a = a[::-1, :]
        return np.ascontiguousarray(a)

    def place(self, detector_image: np.ndarray, amp_image: np.ndarray) -> None:
        """The inverse of :meth:`cut` (writes the amp into an assembled image)."""
        a = amp_image
        if self.flip_x:
            a = a[:, ::-1]
        if self.flip_y:
            a = a[::-1, :]
        detector_image[self.rows, self.cols] = a


@dataclass
class AmpLayout:
    """A detector's amps in the assembled image, from one of its raws."""

    detector_name: str
    vendor: str
    boxes: dict[str, AmpBox]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the assembled, trimmed detector."""
        return (max(b.rows.stop for b in self.boxes.values()),
                max(b.cols.stop for b in self.boxes.values()))  # fmt: skip


def layout_from_raw(path: str | Path, detector_name: str) -> AmpLayout:
    """The amp layout of a raw file's detector (every segment's DETSEC and DATASEC).

    Raises :class:`CalibError` naming the file when a segment lacks a usable DETSEC.
    """
    from calibmon.io.fits import read_primary_header

    try:
        h = read_primary_header(path)
        with RawFile(path) as raw:
            raw.check_segments(detector_name)
            boxes = {}
            for amp in raw.amps:
                ah = raw.amp_header(amp)
                detsec = str(ah.get("DETSEC", "") or "").strip()
                datasec = str(ah.get("DATASEC", "") or "").strip()
                try:
                    boxes[amp] = AmpBox.from_sections(detsec, datasec)
                except ValueError as exc:
                    raise CalibError(f"{path}: {amp} has no usable DETSEC ({exc})") from None
    except InputError as err:
        raise CalibError(f"{err.path}: {err.reason}") from None
    return AmpLayout(detector_name, h.vendor, boxes)


# --------------------------------------------------------------------------------------
# ExposureF
# --------------------------------------------------------------------------------------
@dataclass
class StackExposure:
    """An afw ExposureF calibration file: assembled image and its metadata."""

    path: str
    image: np.ndarray  # (rows, cols) float32, assembled and trimmed
    variance: np.ndarray | None
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def obstype(self) -> str:
        return str(self.header.get("OBSTYPE", "") or "").strip().lower()

    @property
    def units(self) -> str:
        return str(self.header.get("LSST ISR UNITS", "") or "").strip().lower()

    def amp_value(self, key: str, amp: str) -> float:
        """A per-amp metadata number ``<key> <amp>`` (NaN when absent)."""
        return _float(self.header.get(f"{key} {amp}"))

    def inputs(self) -> list[int]:
        """The input exposure ids (``CPP_INPUT_<i>``), sorted."""
        ids = [_float(v) for k, v in self.header.items() if re.fullmatch(r"CPP_INPUT_\d+", k)]
        return sorted(int(v) for v in ids if math.isfinite(v))

    def input_values(self, prefix: str) -> list[float]:
        """``CPP_INPUT_EXPT_<i>`` / ``CPP_INPUT_SCALE_<i>`` values."""
        return [_float(v) for k, v in self.header.items() if re.fullmatch(rf"{prefix}_\d+", k)]


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _header_dict(h: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rec in h.records():
        name = str(rec.get("name", "") or "").strip()
        if not name or name in ("COMMENT", "HISTORY"):
            continue
        if name.upper().startswith("HIERARCH "):
            name = name[9:].strip()
        v = rec.get("value")
        out[name] = v.strip() if isinstance(v, str) else v
    return out


def read_exposuref(path: str | Path) -> StackExposure:
    """The IMAGE (and VARIANCE) of an ExposureF file with its primary metadata.

    Raises :class:`CalibError` with one line naming the file otherwise.
    """
    path = str(path)
    try:
        with fitsio.FITS(path, "r") as f:
            header = _header_dict(f[0].read_header())
            names = [(hdu.get_extname() or "").upper() for hdu in f]
            if "IMAGE" not in names:
                raise CalibError(f"{path}: no IMAGE HDU (not an afw Exposure file)")
            hdu = f[names.index("IMAGE")]
            for k, v in _header_dict(hdu.read_header()).items():
                header.setdefault(k, v)
            image = hdu.read()
            variance = f[names.index("VARIANCE")].read() if "VARIANCE" in names else None
    except CalibError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise CalibError(f"{path}: not a readable FITS file ({_short(exc)})") from exc
    if image is None or image.ndim != 2:
        raise CalibError(f"{path}: IMAGE holds no 2-D image")
    return StackExposure(path, image.astype(np.float32, copy=False), variance, header)


# --------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------
def read_defects(path: str | Path, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    """An ip_isr Defects file as a boolean detector mask of ``shape`` (True = bad) and its
    metadata. Boxes are clipped to the detector (as ``Defects.maskPixels`` does)."""
    path = str(path)
    mask = np.zeros(shape, dtype=bool)
    try:
        with fitsio.FITS(path, "r") as f:
            if len(f) < 2:
                raise CalibError(f"{path}: no defects table")
            meta = _header_dict(f[1].read_header())
            table = f[1].read()
    except CalibError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise CalibError(f"{path}: not a readable FITS file ({_short(exc)})") from exc
    cols = {c.lower(): c for c in (table.dtype.names or ())}
    if {"x0", "y0", "width", "height"} <= set(cols):
        boxes = [(int(r[cols["x0"]]), int(r[cols["y0"]]), int(r[cols["width"]]),
                  int(r[cols["height"]])) for r in table]  # fmt: skip
    elif {"x", "y", "r", "shape"} <= set(cols):
        boxes = []
        for r in table:
            w, hgt = [*np.atleast_1d(r[cols["r"]]).tolist(), 1, 1][:2]
            shape_name = str(r[cols["shape"]]).strip().upper()
            w, hgt = (1, 1) if shape_name == "POINT" else (int(w), int(hgt))
            xc = float(np.atleast_1d(r[cols["x"]])[0]) - 1.0  # FITS 1-based centre
            yc = float(np.atleast_1d(r[cols["y"]])[0]) - 1.0
            boxes.append((round(xc - (w - 1) / 2), round(yc - (hgt - 1) / 2), w, hgt))
    else:
        raise CalibError(f"{path}: defects table has neither x0/y0/width/height nor X/Y/R/SHAPE")
    for x0, y0, w, hgt in boxes:
        mask[max(y0, 0) : max(y0 + hgt, 0), max(x0, 0) : max(x0 + w, 0)] = True
    return mask, meta


def cut_amps(layout: AmpLayout, image: np.ndarray, what: str) -> dict[str, np.ndarray]:
    """Every amp of ``layout`` cut from an assembled image; :class:`CalibError` when the
    image is not the detector's assembled shape."""
    if tuple(image.shape) != layout.shape:
        raise CalibError(
            f"{what}: image shape {tuple(image.shape)} is not the assembled {layout.detector_name} "
            f"{layout.shape} of its raws' DETSEC"
        )
    return {amp: box.cut(image) for amp, box in layout.boxes.items()}


def amp_keys_from(header: Mapping[str, Any], amp: str) -> dict[str, float]:
    """``LSST ISR GAIN``/``READNOISE`` of one amp from ExposureF metadata (NaN if absent)."""
    return {
        "gain": _float(header.get(f"LSST ISR GAIN {amp}")),
        "read_noise_e": _float(header.get(f"LSST ISR READNOISE {amp}")),
    }


def amp_order(detector_name: str) -> tuple[str, ...]:
    return dets.AMP_ORDER_8 if dets.is_wavefront(detector_name) else dets.AMP_ORDER_16
