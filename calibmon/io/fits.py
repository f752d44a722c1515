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
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fitsio
import numpy as np

from calibmon.errors import InputError
from calibmon.io import detectors as dets
from calibmon.io.geometry import AmpGeometry, amp_geometry
from calibmon.records import iso_utc_ms, parse_iso_utc

# Calibration kinds calibmon measures, from IMGTYPE/OBSTYPE (case-insensitive).
CALIB_IMGTYPES: dict[str, str] = {"BIAS": "bias", "ZERO": "bias", "DARK": "dark", "FLAT": "flat"}

# A FITS file is a whole number of 2880-byte blocks (FITS standard 4.0, §3.1); any other
# size means the file was cut short (or grown) in transfer.
FITS_BLOCK_BYTES = 2880

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


def _utc_from_header(date: str, timesys: str | None) -> str:
    dt = parse_iso_utc(date)
    if timesys and timesys.strip().upper() == "TAI":
        dt = dt - timedelta(seconds=TAI_MINUS_UTC_S)
    return iso_utc_ms(dt)


def parse_primary_header(path: str | Path, h: Any) -> RawHeader:
    """Build a :class:`RawHeader` from a primary header mapping.

    Raises :class:`InputError` for a missing or malformed required key.
    """
    path = str(path)
    instrume = _s(h, "INSTRUME")
    if not instrume:
        raise InputError(path, "primary header has no INSTRUME")
    instrument = dets.canonical_instrument(instrume)

    day_obs = _s(h, "DAYOBS")
    if not day_obs:
        raise InputError(path, "primary header has no DAYOBS")
    if not re.fullmatch(r"\d{8}", day_obs):
        raise InputError(path, f"DAYOBS={day_obs!r} is not YYYYMMDD")
    seq = h.get("SEQNUM") if "SEQNUM" in h else None
    try:
        seqnum = int(seq)
    except (TypeError, ValueError):
        raise InputError(path, "primary header has no integer SEQNUM") from None
    if not 0 <= seqnum < 100000:
        raise InputError(path, f"SEQNUM={seqnum} outside 0..99999")

    imgtype = (_s(h, "IMGTYPE") or _s(h, "OBSTYPE") or "").upper()
    if not imgtype:
        raise InputError(path, "primary header has neither IMGTYPE nor OBSTYPE")
    kind = CALIB_IMGTYPES.get(imgtype)

    exptime = _f(h, "EXPTIME")
    if exptime is None:
        raise InputError(path, "primary header has no numeric EXPTIME")
    darktime = _f(h, "DARKTIME")
    if darktime is None:  # test-stand data 2019–2021
        darktime = exptime
    date = _s(h, "DATE-BEG") or _s(h, "DATE-OBS")
    if date:
        try:
            date_beg = _utc_from_header(date, _s(h, "TIMESYS"))
        except ValueError:
            raise InputError(path, f"DATE-BEG/DATE-OBS {date!r} is not an ISO date") from None
    else:
        date_beg = _fallback_start(h, day_obs, seqnum)

    raft, slot = _s(h, "RAFTBAY"), _s(h, "CCDSLOT")
    if instrument == "LATISS":
        name = f"{raft or 'RXX'}_{slot or 'S00'}"
    else:
        if not raft or not slot:
            raise InputError(path, "primary header has no RAFTBAY/CCDSLOT")
        name = f"{raft}_{slot}"
    if not dets.is_valid_name(name):
        raise InputError(path, f"RAFTBAY/CCDSLOT give {name!r}, not a detector name")
    try:
        number = dets.detector_number(instrument, name)
    except (KeyError, ValueError):
        raise InputError(path, f"detector {name} is not part of {instrument}") from None

    vendor = (_s(h, "CCD_MANU") or "").upper() or dets.default_vendor(name)
    obsid = _s(h, "OBSID") or f"{day_obs}_{seqnum:06d}"
    return RawHeader(
        path=path,
        instrument=instrument,
        day_obs=day_obs,
        seqnum=seqnum,
        exposure_id=int(day_obs) * 100000 + seqnum,
        obsid=obsid,
        imgtype=imgtype,
        kind=kind,
        testtype=_s(h, "TESTTYPE") or "",
        reason=_s(h, "REASON") or "",
        exptime_s=exptime,
        darktime_s=darktime,
        date_beg=date_beg,
        physical_filter=_s(h, "FILTER") or "",
        detector_name=name,
        detector=number,
        vendor=vendor,
        lsst_num=_s(h, "LSST_NUM") or "",
        ccdtemp_c=_f(h, "CCDTEMP"),
    )


def _fallback_start(h: Any, day_obs: str, seqnum: int) -> str:
    """Exposure start without DATE-BEG/DATE-OBS: MJD-BEG/MJD-OBS when present, else a
    deterministic stand-in (day_obs at 12:00 UTC + seqnum seconds) so that the record
    identity (DESIGN §4) stays the same when the same files are processed again."""
    mjd = _f(h, "MJD-BEG") or _f(h, "MJD-OBS")
    if mjd is not None:
        return iso_utc_ms(MJD_EPOCH + timedelta(days=mjd))
    start = datetime.strptime(day_obs, "%Y%m%d").replace(hour=12, tzinfo=UTC)
    return iso_utc_ms(start + timedelta(seconds=seqnum))


# MJD 0 = 1858-11-17T00:00 UTC (the scale difference to TAI/UTC is ignored here: this is
# only the fallback when a header has no ISO date).
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)


def read_primary_header(path: str | Path) -> RawHeader:
    """Read and parse only the primary header of a raw file (cheap: no pixels)."""
    try:
        h = fitsio.read_header(str(path), ext=0)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(path, f"not a readable FITS file ({_short(exc)})") from exc
    return parse_primary_header(path, h)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


class RawFile:
    """An open raw file; reads one amplifier at a time.

    >>> with RawFile(path) as raw:  # doctest: +SKIP
    ...     image, geom = raw.read_amp("C10")
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            size = os.path.getsize(self.path)
        except OSError as exc:
            raise InputError(self.path, f"cannot read ({exc.strerror})") from exc
        if size % FITS_BLOCK_BYTES:
            raise InputError(
                self.path, f"truncated: {size} bytes is not a whole number of 2880-byte blocks"
            )
        try:
            self._fits = fitsio.FITS(self.path, "r")
        except (OSError, ValueError) as exc:
            raise InputError(self.path, f"not a readable FITS file ({_short(exc)})") from exc
        self._index: dict[str, int] = {}
        try:
            for i, hdu in enumerate(self._fits):
                if i == 0:
                    continue
                amp = dets.segment_to_amp(hdu.get_extname() or "")
                if amp is not None and amp not in self._index:
                    self._index[amp] = i
        except (OSError, ValueError) as exc:
            self.close()
            raise InputError(self.path, f"cannot list HDUs ({_short(exc)})") from exc

    @property
    def amps(self) -> list[str]:
        """Amplifier names present, in file order."""
        return list(self._index)

    def check_segments(self, detector_name: str) -> None:
        """Raise :class:`InputError` unless all 16 (8 for wavefront) segments are present."""
        expected = dets.AMP_ORDER_8 if dets.is_wavefront(detector_name) else dets.AMP_ORDER_16
        missing = [a for a in expected if a not in self._index]
        if missing:
            segs = ", ".join("Segment" + a[1:] for a in missing[:4])
            more = f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""
            raise InputError(self.path, f"HDU {segs}{more} missing")

    def read_amp(self, amp: str) -> tuple[np.ndarray, AmpGeometry]:
        """Pixels (int32 or as stored, shape (n_rows, n_cols), adu) and geometry of ``amp``.

        Raises :class:`InputError` for a missing segment, bad DATASEC, corrupt data or a
        frame whose pixels all have one value (dropped readout).
        """
        if amp not in self._index:
            raise InputError(self.path, f"HDU Segment{amp[1:]} missing")
        hdu = self._fits[self._index[amp]]
        try:
            hdr = hdu.read_header()
            data = hdu.read()
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(
                self.path, f"Segment{amp[1:]}: cannot decode pixels ({_short(exc)})"
            ) from exc
        if data is None or getattr(data, "ndim", 0) != 2:
            raise InputError(self.path, f"Segment{amp[1:]}: no 2-D image data")
        datasec = hdr.get("DATASEC")
        if not datasec:
            raise InputError(self.path, f"Segment{amp[1:]}: no DATASEC")
        try:
            geom = amp_geometry(str(datasec), data.shape)
        except ValueError as exc:
            raise InputError(self.path, f"Segment{amp[1:]}: {exc}") from exc
        flat = data.ravel()
        if flat.size and flat[0] == flat[-1] and np.all(flat == flat[0]):
            raise InputError(
                self.path, f"Segment{amp[1:]}: all pixels equal {flat[0]} (dropped readout?)"
            )
        return data, geom

    def amp_header(self, amp: str) -> dict[str, Any]:
        """The segment's header as a dict (DETSEC etc. for pictures)."""
        h = self._fits[self._index[amp]].read_header()
        return {k: h[k] for k in h}

    def close(self) -> None:
        # closing a half-opened CFITSIO handle can fail; there is nothing to keep
        with contextlib.suppress(Exception):
            self._fits.close()

    def __enter__(self) -> RawFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
