"""Raw exposure reader: primary header parsing and one amplifier at a time.

Decompressor choice (measured on this 2-core machine, full-size RICE_1 LSSTCam-layout
file, 16 × 2048 × 576 int32, ``benchmarks/bench_read.py``): fitsio (CFITSIO) decodes a
CCD in ≈ 0.27 s, astropy.io.fits in ≈ 0.47 s; fitsio is used. Both decode the same
RICE tiles bit-exactly; fitsio also reads an HDU without touching the others, which keeps
memory to one amplifier.

Every failure of the underlying library becomes :class:`calibmon.errors.InputError`
naming the file and the reason.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import fitsio
import numpy as np

from calibmon.dayobs import day_obs_start
from calibmon.errors import InputError
from calibmon.io import detectors as dets
from calibmon.io import validate as val
from calibmon.io.geometry import AmpGeometry
from calibmon.records import iso_utc_ms

# Calibration kinds calibmon measures, from IMGTYPE/OBSTYPE (case-insensitive).
CALIB_IMGTYPES: dict[str, str] = {"BIAS": "bias", "ZERO": "bias", "DARK": "dark", "FLAT": "flat"}

# A FITS file is a whole number of 2880-byte blocks (FITS standard 4.0, §3.1); any other
# size means the file was cut short (or grown) in transfer.
FITS_BLOCK_BYTES = 2880

# A raw HDU header is a few blocks (36 cards each); a damaged one is read this far at most.
MAX_HEADER_BLOCKS = 32

# CCD vendors of the Rubin cameras (CCD_MANU, upper-cased).
VENDORS = ("ITL", "E2V")

# TAI − UTC since 2017-01-01 (IERS Bulletin C: no leap second announced since).
TAI_MINUS_UTC_S = 37.0


@dataclass(frozen=True)
class RawHeader:
    """What calibmon needs from a raw file's primary header (DESIGN.md §2)."""

    path: str
    instrument: str
    day_obs: str
    seqnum: int
    exposure_id: int
    obsid: str
    imgtype: str  # upper-case IMGTYPE/OBSTYPE as written
    kind: str | None  # 'bias' | 'dark' | 'flat' | None (not a calibration frame)
    testtype: str
    reason: str
    exptime_s: float
    darktime_s: float
    date_beg: str  # ISO UTC with ms and Z
    physical_filter: str
    detector_name: str
    detector: int
    vendor: str
    lsst_num: str
    ccdtemp_c: float | None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_ptc_labelled(self) -> bool:
        """``TESTTYPE=PTC`` or a REASON containing ``PTC`` (LATISS's ``daily_PTC``)."""
        return "PTC" in self.testtype.upper() or "PTC" in self.reason.upper()


def _s(h: Any, key: str) -> str | None:
    v = h.get(key) if key in h else None
    if v is None:
        return None
    return str(v).strip()


def _f(h: Any, key: str) -> float | None:
    if key not in h:
        return None
    v = h.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _text(path: str, h: Any, key: str) -> str | None:
    """A string header value that names something (filter, obsid, test type): printable,
    at most a FITS card's 68 characters."""
    v = _s(h, key)
    if v is not None and (not v.isprintable() or len(v) > 68):
        raise InputError(path, f"{key}={val.show(v)} is not printable text")
    return v


def parse_primary_header(
    path: str | Path, h: Any, *, instruments_extra: Iterable[str] = ()
) -> RawHeader:
    """Build a :class:`RawHeader` from a primary header mapping.

    Every value is checked before it becomes an identity (:mod:`calibmon.io.validate`):
    ``instruments_extra`` names instruments the configuration adds to the known set.
    Raises :class:`InputError` naming the key and value for a missing or bad one.
    """
    path = str(path)
    if "INSTRUME" not in h or h.get("INSTRUME") in (None, ""):
        raise InputError(path, "primary header has no INSTRUME")
    instrument = val.check_instrument(path, h.get("INSTRUME"), instruments_extra)

    if "DAYOBS" not in h or h.get("DAYOBS") in (None, ""):
        raise InputError(path, "primary header has no DAYOBS")
    day_obs = val.check_day_obs(path, h.get("DAYOBS"))
    if "SEQNUM" not in h or h.get("SEQNUM") is None:
        raise InputError(path, "primary header has no integer SEQNUM")
    seqnum = val.check_seqnum(path, h.get("SEQNUM"))

    imgtype = (_text(path, h, "IMGTYPE") or _text(path, h, "OBSTYPE") or "").upper()
    if not imgtype:
        raise InputError(path, "primary header has neither IMGTYPE nor OBSTYPE")
    kind = CALIB_IMGTYPES.get(imgtype)

    if "EXPTIME" not in h or h.get("EXPTIME") in (None, ""):
        raise InputError(path, "primary header has no numeric EXPTIME")
    exptime = val.check_duration(path, "EXPTIME", h.get("EXPTIME"))
    if "DARKTIME" in h and h.get("DARKTIME") not in (None, ""):
        darktime = val.check_duration(path, "DARKTIME", h.get("DARKTIME"))
    else:  # test-stand data 2019–2021
        darktime = exptime

    timesys = _s(h, "TIMESYS")
    starts: list[tuple[str, datetime]] = []
    for key in ("DATE-BEG", "DATE-OBS"):
        if key in h and h.get(key) not in (None, ""):
            t = val.parse_date(path, key, h.get(key))
            if timesys and timesys.upper() == "TAI":
                t = t - timedelta(seconds=TAI_MINUS_UTC_S)
            val.check_start_consistent(path, day_obs, key, h.get(key), t)
            starts.append((key, t))
    for key in ("MJD-BEG", "MJD-OBS"):
        if key in h and h.get(key) not in (None, ""):
            t = val.mjd_to_utc(path, key, h.get(key))
            val.check_start_consistent(path, day_obs, key, h.get(key), t)
            starts.append((key, t))
    date_key = next((k for k, _ in starts if k.startswith("DATE")), None)
    if date_key is not None:
        date_beg = iso_utc_ms(dict(starts)[date_key])
    elif starts:
        date_beg = iso_utc_ms(starts[0][1])
    else:
        date_beg = _fallback_start(day_obs, seqnum)

    raft = h.get("RAFTBAY") if "RAFTBAY" in h else None
    slot = h.get("CCDSLOT") if "CCDSLOT" in h else None
    name, number = val.check_detector(path, instrument, raft, slot)

    vendor = (_text(path, h, "CCD_MANU") or "").upper() or dets.default_vendor(name)
    if vendor not in VENDORS:
        raise InputError(path, f"CCD_MANU={val.show(_s(h, 'CCD_MANU'))} is not ITL or E2V")
    obsid = _text(path, h, "OBSID") or f"{day_obs}_{seqnum:06d}"
    return RawHeader(
        path=path,
        instrument=instrument,
        day_obs=day_obs,
        seqnum=seqnum,
        exposure_id=int(day_obs) * 100000 + seqnum,
        obsid=obsid,
        imgtype=imgtype,
        kind=kind,
        testtype=_text(path, h, "TESTTYPE") or "",
        reason=_text(path, h, "REASON") or "",
        exptime_s=exptime,
        darktime_s=darktime,
        date_beg=date_beg,
        physical_filter=_text(path, h, "FILTER") or "",
        detector_name=name,
        detector=number,
        vendor=vendor,
        lsst_num=_text(path, h, "LSST_NUM") or "",
        ccdtemp_c=_f(h, "CCDTEMP"),
    )


def _fallback_start(day_obs: str, seqnum: int) -> str:
    """Exposure start when a header gives none (no DATE-BEG/DATE-OBS/MJD-BEG/MJD-OBS): a
    deterministic stand-in (day_obs at 12:00 UTC + seqnum seconds) so that the record
    identity (DESIGN §4) stays the same when the same files are processed again."""
    return iso_utc_ms(day_obs_start(day_obs) + timedelta(seconds=seqnum))


def read_primary_header(path: str | Path, *, instruments_extra: Iterable[str] = ()) -> RawHeader:
    """Read and parse only the primary header of a raw file (cheap: no pixels).

    ``instruments_extra``: instruments the configuration adds to the known set."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror})") from exc
    if size == 0:
        raise InputError(path, "empty file (0 bytes)")
    try:
        val.read_primary_block(str(path), MAX_HEADER_BLOCKS)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror})") from exc
    failed: str | None = None
    try:
        h = fitsio.read_header(str(path), ext=0)
    except FOREIGN_ERRORS as exc:
        failed = f"not a readable FITS file ({_short(exc)})"
    if failed is not None:
        # raised outside the except block: fitsio.read_header never closes its CFITSIO
        # handle, its frame does when freed; a chained exception would keep the frame (and
        # the file open, and CFITSIO's cache of it) alive as long as the rejection is kept
        raise InputError(path, failed)
    return parse_primary_header(path, h, instruments_extra=instruments_extra)


# What CFITSIO/fitsio raise on a damaged file: OSError from CFITSIO status codes,
# ValueError/UnicodeDecodeError from header parsing, KeyError for an unknown type code,
# TypeError/IndexError/OverflowError/RuntimeError/MemoryError from its Python layer.
# Translated to InputError at this boundary (errors.py); nothing else is caught.
FOREIGN_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, KeyError, TypeError, IndexError, OverflowError, RuntimeError,
    MemoryError,
)  # fmt: skip


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def _decode(hdu: Any, buffers: dict[tuple[str, tuple[int, ...]], np.ndarray] | None) -> Any:
    """An image HDU's pixels, into a reused array of ``buffers`` when given (fitsio's
    ``read`` allocates a zeroed array per call; its ``read_image`` fills any array of
    the image's dtype and shape)."""
    if buffers is None or not hdu.has_data():
        return hdu.read()
    try:
        dtype, shape = hdu._get_dtype_and_shape()
        fits, ext = hdu._FITS, hdu._ext
    except AttributeError:  # another fitsio: its own allocation
        return hdu.read()
    key = (np.dtype(dtype).str, tuple(int(n) for n in shape))
    buf = buffers.get(key)
    if buf is None:
        buf = buffers[key] = np.empty(key[1], dtype=dtype)
    fits.read_image(ext + 1, buf)
    return buf


class RawFile:
    """An open raw file; reads one amplifier at a time.

    >>> with RawFile(path) as raw:  # doctest: +SKIP
    ...     image, geom = raw.read_amp("C10")
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._size = os.path.getsize(self.path)
        except OSError as exc:
            raise InputError(self.path, f"cannot read ({exc.strerror})") from exc
        if self._size == 0:
            raise InputError(self.path, "empty file (0 bytes)")
        if self._size % FITS_BLOCK_BYTES:
            raise InputError(
                self.path,
                f"truncated or padded: {self._size} bytes is not a whole number of 2880-byte "
                "blocks",
            )
        try:
            val.check_file_structure(self.path, self._size, MAX_HEADER_BLOCKS)
        except OSError as exc:
            raise InputError(self.path, f"cannot read ({exc.strerror})") from exc
        failed: str | None = None
        try:
            self._fits = fitsio.FITS(self.path, "r")
        except FOREIGN_ERRORS as exc:
            failed = f"not a readable FITS file ({_short(exc)})"
        if failed is not None:  # outside the except block: see read_primary_header
            raise InputError(self.path, failed)
        self._index: dict[str, int] = {}
        self._headers: dict[str, dict[str, Any]] = {}
        try:
            for i, hdu in enumerate(self._fits):
                if i == 0:
                    continue
                amp = dets.segment_to_amp(hdu.get_extname() or "")
                if amp is not None and amp not in self._index:
                    self._index[amp] = i
        except FOREIGN_ERRORS as exc:
            self.close()
            raise InputError(self.path, f"cannot list HDUs ({_short(exc)})") from exc
        self._damaged: InputError | None = self._find_damaged_hdu()

    def _find_damaged_hdu(self) -> InputError | None:
        """CFITSIO stops listing HDUs at a header it cannot parse: when the last HDU it
        listed ends before the file does, name what is wrong with the next header."""
        try:
            n = len(self._fits)
            end = int(self._fits[n - 1].get_info().get("data_end") or 0)
        except FOREIGN_ERRORS:
            return None
        if end > self._size:
            return InputError(
                self.path, f"HDU {n}: data ends at byte {end}, file has {self._size} (truncated)"
            )
        if end <= 0 or end == self._size:
            return None
        where = f"HDU {n + 1} (at byte {end})"
        try:
            with open(self.path, "rb") as f:
                f.seek(end)
                blob = f.read(FITS_BLOCK_BYTES * MAX_HEADER_BLOCKS)
        except OSError as exc:
            return InputError(self.path, f"{where}: cannot read ({exc.strerror})")
        try:
            cards = val.raw_header_cards(blob)
            n_cards = next(
                (i for i in range(0, len(blob), 80) if blob[i : i + 8] == b"END     "), 0
            )
            header_bytes = -(-(n_cards + 80) // FITS_BLOCK_BYTES) * FITS_BLOCK_BYTES
            left = self._size - end - header_bytes
            val.diagnose_raw_header(self.path, where, cards, left)
        except InputError as err:
            return err
        return InputError(self.path, f"{where}: header unreadable (damaged)")

    @property
    def amps(self) -> list[str]:
        """Amplifier names present, in file order."""
        return list(self._index)

    def check_segments(self, detector_name: str) -> None:
        """Raise :class:`InputError` unless all 16 (8 for wavefront) segments are present."""
        expected = dets.AMP_ORDER_8 if dets.is_wavefront(detector_name) else dets.AMP_ORDER_16
        missing = [a for a in expected if a not in self._index]
        if missing and self._damaged is not None:
            raise self._damaged
        if missing:
            segs = ", ".join("Segment" + a[1:] for a in missing[:4])
            more = f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""
            raise InputError(self.path, f"HDU {segs}{more} missing")

    def read_amp(
        self, amp: str, buffers: dict[tuple[str, tuple[int, ...]], np.ndarray] | None = None
    ) -> tuple[np.ndarray, AmpGeometry]:
        """Pixels (int32 or as stored, shape (n_rows, n_cols), adu) and geometry of ``amp``.

        The HDU's header is checked first (:func:`calibmon.io.validate.check_image_hdu`:
        pixel type, axes, compression keys, DATASEC) so a hostile header never reaches the
        decompressor. Raises :class:`InputError` for a missing segment, a bad header,
        corrupt data or a frame whose pixels all have one value (dropped readout).

        ``buffers``: decode into an array kept there per (dtype, shape) and reused by the
        next call with the same ``buffers`` (a fresh 5 MB array per HDU costs its zeroing
        and a page fault per 4 kB); the returned image is then only valid until that call.
        """
        seg = f"Segment{amp[1:]}"
        if amp not in self._index:
            raise InputError(self.path, f"HDU {seg} missing")
        try:
            hdu = self._fits[self._index[amp]]
            info = hdu.get_info()
            raw_hdr = hdu.read_header()
            hdr = {k: raw_hdr[k] for k in raw_hdr}
        except FOREIGN_ERRORS as exc:
            raise InputError(self.path, f"{seg}: cannot read header ({_short(exc)})") from exc
        geom = val.check_image_hdu(self.path, seg, info, hdr, self._size)
        try:
            data = _decode(hdu, buffers)
        except FOREIGN_ERRORS as exc:
            raise InputError(self.path, f"{seg}: cannot decode pixels ({_short(exc)})") from exc
        val.check_pixels_shape(self.path, seg, data, geom)
        self._headers[amp] = hdr
        flat = data.ravel()
        if flat.size and flat[0] == flat[-1] and np.all(flat == flat[0]):
            raise InputError(self.path, f"{seg}: all pixels equal {flat[0]} (dropped readout?)")
        return data, geom

    def amp_header(self, amp: str) -> dict[str, Any]:
        """The segment's header as a dict (DETSEC etc. for pictures); {} when unreadable."""
        if amp not in self._headers and amp in self._index:
            try:
                h = self._fits[self._index[amp]].read_header()
                self._headers[amp] = {k: h[k] for k in h}
            except FOREIGN_ERRORS:
                return {}
        return self._headers.get(amp, {})

    def close(self) -> None:
        # closing a half-opened CFITSIO handle can fail; there is nothing to keep
        with contextlib.suppress(Exception):
            self._fits.close()

    def __enter__(self) -> RawFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
