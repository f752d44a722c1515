"""Header values checked before they become an identity, a shape or a dtype.

Every function here raises :class:`calibmon.errors.InputError` with one line naming the
file, the key and the (shortened) value, and returns the checked value otherwise. They
run on header values only: nothing here touches pixels, so a hostile header is refused
before CFITSIO is asked to allocate or decode anything.

Limits, and where each comes from:

- ``INSTRUME`` must map to a known instrument (:data:`KNOWN_INSTRUMENTS`, or one the
  configuration adds with ``instruments_extra``); a number or a typo is not a new camera.
- ``DAYOBS`` is a real calendar date in :data:`DAY_OBS_YEARS` and agrees with every start
  time the header gives (``DATE-BEG``, ``DATE-OBS``, ``MJD-BEG``, ``MJD-OBS``):
  day_obs is the UTC date of (start − 12 h), allowed :data:`DAY_OBS_EDGE_S` either side.
- ``EXPTIME``/``DARKTIME`` are finite, ≥ 0 and at most :data:`MAX_EXPOSURE_S`.
- An image HDU's type, axes and (for tile-compressed HDUs) ``ZBITPIX``, ``ZCMPTYPE``,
  ``ZNAXISn``, ``ZTILEn``, ``BYTEPIX`` and the tile count agree with each other, with
  :data:`MAX_AMP_AXIS`/:data:`MAX_AMP_PIXELS` and with ``DATASEC`` before any decoding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from calibmon.dayobs import day_obs_start, parse_day_obs
from calibmon.errors import InputError
from calibmon.io import detectors as dets
from calibmon.io.geometry import AmpGeometry, amp_geometry

# Canonical names of the instruments calibmon knows how to number (io/detectors.py).
KNOWN_INSTRUMENTS: frozenset[str] = frozenset(
    {"LSSTCam", "LATISS", "LSSTComCam", "LSSTComCamSim", "LSST-TS8"}
)

# Years a DAYOBS may name: LSST sensor testing began in the 2010s; 2000–2099 refuses
# bit-flipped centuries (19251121, 30251121) without any clock.
DAY_OBS_YEARS = (2000, 2099)

# day_obs is the UTC date of (start − 12 h) (Rubin: TAI − 12 h; TAI − UTC = 37 s). The
# edge allowed either side covers a rollover at local noon instead of 12:00 UTC as far
# west as the test stands at SLAC (Pacific standard time: noon = 20:00 UTC, 8 h late) and
# as far east as Chile; a day_obs one day or more off is still refused (≥ 16 h outside).
DAY_OBS_EDGE_S = 8 * 3600.0

# An exposure (or dark time) longer than the observing day it is filed under cannot have
# a DAYOBS; real LSSTCam/LATISS calibration exposures are ≤ 15 min.
MAX_EXPOSURE_S = 86400.0

# Largest amplifier axis and pixel count accepted: real amps are 2048 × 576 (1.18 Mpix,
# ITL and e2v, LSSTCam and LATISS); 4× each axis and 3.5× the pixels leave room for
# test-stand variants while a 999999999-pixel axis is refused before allocation.
MAX_AMP_AXIS = 8192
MAX_AMP_PIXELS = 1 << 22

# CFITSIO image type codes accepted for a raw amplifier (BITPIX, plus the "equivalent"
# unsigned types 20 = uint16 and 40 = uint32 that BZERO offsets give).
IMAGE_TYPES: frozenset[int] = frozenset({8, 16, 20, 32, 40, 64, -32, -64})
# Tile-compression algorithms of the FITS standard (4.0 §10.4) that CFITSIO decodes.
COMPRESSION_TYPES: frozenset[str] = frozenset(
    {"RICE_1", "RICE_ONE", "GZIP_1", "GZIP_2", "HCOMPRESS_1", "PLIO_1", "NOCOMPRESS"}
)
# RICE and PLIO compress integers only (FITS 4.0 §10.4.1, §10.4.3).
_INTEGER_ONLY = frozenset({"RICE_1", "RICE_ONE", "PLIO_1"})
_BITPIX = frozenset({8, 16, 32, 64, -32, -64})

# MJD 0 = 1858-11-17T00:00 UTC.
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)


def show(value: Any) -> str:
    """A header value as it may appear in a one-line message (repr, ≤ 40 characters)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------------------
# Primary header
# --------------------------------------------------------------------------------------
def check_instrument(path: str, value: Any, extra: Iterable[str] = ()) -> str:
    """Canonical instrument of ``INSTRUME=value``: a known one or one of ``extra``
    (compared case-insensitively; the spelling in ``extra`` is kept)."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, f"INSTRUME={show(value)} is not an instrument name")
    name = dets.canonical_instrument(value)
    if name in KNOWN_INSTRUMENTS:
        return name
    for e in extra:
        if e.strip().upper() == value.strip().upper():
            return e.strip()
    known = ", ".join(sorted(KNOWN_INSTRUMENTS | {e.strip() for e in extra}))
    raise InputError(
        path,
        f"INSTRUME={show(value)} is not a known instrument ({known}; "
        "instruments_extra in the config adds one)",
    )


def check_day_obs(path: str, value: Any) -> str:
    """``DAYOBS`` as ``YYYYMMDD``: a real calendar date within :data:`DAY_OBS_YEARS`."""
    text = (
        str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    )
    if len(text) != 8 or not text.isdigit():
        raise InputError(path, f"DAYOBS={show(value)} is not YYYYMMDD")
    try:
        d = parse_day_obs(text)
    except ValueError:
        raise InputError(path, f"DAYOBS={show(value)} is not a calendar date") from None
    if not DAY_OBS_YEARS[0] <= d.year <= DAY_OBS_YEARS[1]:
        raise InputError(
            path, f"DAYOBS={show(value)} is outside {DAY_OBS_YEARS[0]}–{DAY_OBS_YEARS[1]}"
        )
    return text


def day_obs_window(day_obs: str) -> tuple[datetime, datetime]:
    """UTC interval [start, end) of exposure starts that ``day_obs`` may name, edge included."""
    d = day_obs_start(day_obs)
    edge = timedelta(seconds=DAY_OBS_EDGE_S)
    return d - edge, d + timedelta(days=1) + edge


def check_start_consistent(path: str, day_obs: str, key: str, value: Any, t: datetime) -> None:
    """Raise unless the exposure start ``t`` (UTC, from header ``key``) fits ``day_obs``."""
    lo, hi = day_obs_window(day_obs)
    if not lo <= t < hi:
        raise InputError(
            path, f"{key}={show(value)} does not fall on DAYOBS={day_obs} (UTC − 12 h)"
        )


def mjd_to_utc(path: str, key: str, value: Any) -> datetime:
    """``MJD-*`` header value → UTC datetime; must be a finite number within day_obs years."""
    f = number(path, key, value)
    lo = (datetime(DAY_OBS_YEARS[0], 1, 1, tzinfo=UTC) - MJD_EPOCH).days
    hi = (datetime(DAY_OBS_YEARS[1] + 1, 1, 1, tzinfo=UTC) - MJD_EPOCH).days
    if not lo <= f <= hi:
        raise InputError(path, f"{key}={show(value)} is not an MJD in {DAY_OBS_YEARS}")
    return MJD_EPOCH + timedelta(days=f)


def number(path: str, key: str, value: Any) -> float:
    """A finite number (int, float or numeric string) from header ``key``."""
    if isinstance(value, bool):
        raise InputError(path, f"{key}={show(value)} is not a number")
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(path, f"{key}={show(value)} is not a number") from None
    if not math.isfinite(f):
        raise InputError(path, f"{key}={show(value)} is not finite")
    return f


def check_duration(path: str, key: str, value: Any) -> float:
    """``EXPTIME``/``DARKTIME`` in seconds: finite, ≥ 0, ≤ :data:`MAX_EXPOSURE_S`."""
    f = number(path, key, value)
    if f < 0:
        raise InputError(path, f"{key}={show(value)} is negative")
    if f > MAX_EXPOSURE_S:
        raise InputError(path, f"{key}={show(value)} s is longer than a day")
    return f


def check_seqnum(path: str, value: Any) -> int:
    """``SEQNUM``: an integer 0..99999 (an int, or a string of digits)."""
    if isinstance(value, bool) or value is None:
        raise InputError(path, f"SEQNUM={show(value)} is not an integer")
    if isinstance(value, float) and not value.is_integer():
        raise InputError(path, f"SEQNUM={show(value)} is not an integer")
    try:
        seqnum = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(path, f"SEQNUM={show(value)} is not an integer") from None
    if not 0 <= seqnum < 100000:
        raise InputError(path, f"SEQNUM={show(value)} outside 0..99999")
    return seqnum


def check_detector(path: str, instrument: str, raft: Any, slot: Any) -> tuple[str, int]:
    """(detector_name, detector number) from ``RAFTBAY``/``CCDSLOT`` in the camera's table.

    LATISS has one detector (0); a missing raft/slot there reads ``RXX``/``S00``. Every
    other instrument needs both, and the pair must be in its table (LSSTComCam: raft R22;
    instruments added by configuration use LSSTCam's table)."""
    raft_s = raft.strip() if isinstance(raft, str) else raft
    slot_s = slot.strip() if isinstance(slot, str) else slot
    if instrument == "LATISS":
        raft_s, slot_s = raft_s or "RXX", slot_s or "S00"
    elif not raft_s or not slot_s:
        raise InputError(path, "primary header has no RAFTBAY/CCDSLOT")
    if not isinstance(raft_s, str) or not isinstance(slot_s, str):
        raise InputError(path, f"RAFTBAY={show(raft)} CCDSLOT={show(slot)}: not a detector")
    name = f"{raft_s}_{slot_s}"
    if not dets.is_valid_name(name):
        raise InputError(path, f"RAFTBAY={show(raft)} CCDSLOT={show(slot)}: not a detector name")
    if instrument in ("LSSTComCam", "LSSTComCamSim") and raft_s != "R22":
        raise InputError(path, f"RAFTBAY={show(raft)}: {instrument} has only raft R22")
    try:
        number_ = dets.detector_number(instrument, name)
    except (KeyError, ValueError):
        raise InputError(
            path, f"RAFTBAY={show(raft)} CCDSLOT={show(slot)}: {name} is not part of {instrument}"
        ) from None
    return name, number_


# --------------------------------------------------------------------------------------
# Image HDUs
# --------------------------------------------------------------------------------------
def _int_card(path: str, seg: str, hdr: Mapping[str, Any], key: str) -> int:
    v = hdr.get(key) if key in hdr else None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(path, f"{seg}: {key}={show(v)} is not an integer")
    return v


def check_image_hdu(
    path: str, seg: str, info: Mapping[str, Any], hdr: Mapping[str, Any], file_size: int
) -> AmpGeometry:
    """Check one image HDU from CFITSIO's ``info`` and its raw header ``hdr`` before any
    pixel is decoded; return the amplifier geometry from ``DATASEC`` and the axes.

    ``info`` is fitsio's ``get_info()`` (``ndims``, ``dims`` as (rows, cols),
    ``img_equiv_type``, ``is_compressed_image``, ``data_end``); ``hdr`` the HDU's header as
    written (for a compressed HDU the binary-table header with ``Z*`` keys)."""
    dims = list(info.get("dims") or [])
    if info.get("ndims") != 2 or len(dims) != 2:
        raise InputError(path, f"{seg}: NAXIS={info.get('ndims')!r}, not a 2-D image")
    n_rows, n_cols = (int(d) for d in dims)
    if not (0 < n_rows <= MAX_AMP_AXIS and 0 < n_cols <= MAX_AMP_AXIS):
        raise InputError(path, f"{seg}: axes {n_cols}x{n_rows} outside 1..{MAX_AMP_AXIS}")
    if n_rows * n_cols > MAX_AMP_PIXELS:
        raise InputError(path, f"{seg}: {n_cols}x{n_rows} pixels, more than {MAX_AMP_PIXELS}")
    img_type = info.get("img_equiv_type")
    if img_type not in IMAGE_TYPES:
        raise InputError(path, f"{seg}: image type {img_type!r} is not a FITS pixel type")
    if info.get("is_compressed_image"):
        _check_compressed(path, seg, hdr, n_rows, n_cols)
    else:
        bitpix = _int_card(path, seg, hdr, "BITPIX")
        if bitpix not in _BITPIX:
            raise InputError(path, f"{seg}: BITPIX={show(bitpix)} is not a FITS pixel type")
        naxis = (_int_card(path, seg, hdr, "NAXIS1"), _int_card(path, seg, hdr, "NAXIS2"))
        if naxis != (n_cols, n_rows):
            raise InputError(path, f"{seg}: NAXIS1/2={naxis} disagree with the image")
    for key in ("BSCALE", "BZERO"):
        if key in hdr:
            number(path, f"{seg}: {key}", hdr.get(key))
    data_end = info.get("data_end")
    if isinstance(data_end, int) and data_end > file_size:
        raise InputError(
            path, f"{seg}: data ends at byte {data_end}, file has {file_size} (truncated)"
        )
    datasec = hdr.get("DATASEC") if "DATASEC" in hdr else None
    if not datasec or not isinstance(datasec, str):
        raise InputError(path, f"{seg}: DATASEC={show(datasec)} is not a section")
    try:
        return amp_geometry(datasec, (n_rows, n_cols))
    except ValueError as exc:
        raise InputError(path, f"{seg}: DATASEC={show(datasec)}: {exc}") from None


def _check_compressed(
    path: str, seg: str, hdr: Mapping[str, Any], n_rows: int, n_cols: int
) -> None:
    """The tile-compression keys (FITS 4.0 §10) agree with each other and the image."""
    cmp = hdr.get("ZCMPTYPE") if "ZCMPTYPE" in hdr else None
    if not isinstance(cmp, str) or cmp.strip().upper() not in COMPRESSION_TYPES:
        raise InputError(path, f"{seg}: ZCMPTYPE={show(cmp)} is not a compression type")
    cmp = cmp.strip().upper()
    zbitpix = _int_card(path, seg, hdr, "ZBITPIX")
    if zbitpix not in _BITPIX:
        raise InputError(path, f"{seg}: ZBITPIX={show(zbitpix)} is not a FITS pixel type")
    if cmp in _INTEGER_ONLY and zbitpix < 0 and "ZQUANTIZ" not in hdr:
        raise InputError(path, f"{seg}: ZBITPIX={zbitpix} with {cmp} and no quantization")
    if _int_card(path, seg, hdr, "ZNAXIS") != 2:
        raise InputError(path, f"{seg}: ZNAXIS={show(hdr.get('ZNAXIS'))}, not a 2-D image")
    znaxis = (_int_card(path, seg, hdr, "ZNAXIS1"), _int_card(path, seg, hdr, "ZNAXIS2"))
    if znaxis != (n_cols, n_rows):
        raise InputError(path, f"{seg}: ZNAXIS1/2={znaxis} disagree with the image")
    ztile = [1, 1]
    for i, default in ((0, n_cols), (1, 1)):
        key = f"ZTILE{i + 1}"
        ztile[i] = _int_card(path, seg, hdr, key) if key in hdr else default
        if not 0 < ztile[i] <= znaxis[i]:
            raise InputError(path, f"{seg}: {key}={show(ztile[i])} outside 1..{znaxis[i]}")
    n_tiles = math.ceil(n_cols / ztile[0]) * math.ceil(n_rows / ztile[1])
    naxis2 = _int_card(path, seg, hdr, "NAXIS2")
    if naxis2 != n_tiles:
        raise InputError(path, f"{seg}: NAXIS2={naxis2} rows, the tiles need {n_tiles}")
    if cmp in ("RICE_1", "RICE_ONE"):
        # ZNAMEi/ZVALi pairs: BYTEPIX must be the size of a ZBITPIX pixel (§10.4.1)
        for i in range(1, 10):
            if f"ZNAME{i}" not in hdr:
                break
            if str(hdr.get(f"ZNAME{i}")).strip().upper() == "BYTEPIX":
                bytepix = hdr.get(f"ZVAL{i}")
                if zbitpix > 0 and bytepix != zbitpix // 8:
                    raise InputError(path, f"{seg}: BYTEPIX={show(bytepix)} with ZBITPIX={zbitpix}")


# Keys whose value must be an integer in a standard/compressed image extension header.
_STRUCTURE_INTS = ("BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT")
_STRUCTURE_ZINTS = ("ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZTILE1", "ZTILE2")


def raw_header_cards(blob: bytes) -> dict[str, str]:
    """``KEY → value text`` of the header starting at ``blob[0]`` (to its END card),
    parsed without CFITSIO: for naming what is wrong in a header CFITSIO refused."""
    cards: dict[str, str] = {}
    for p in range(0, len(blob) - 79, 80):
        card = blob[p : p + 80].decode("ascii", "replace")
        key = card[:8].strip()
        if key == "END":
            break
        if card[8:10] == "= " and key not in cards:
            value = card[10:]
            if value.lstrip().startswith("'"):
                end = value.find("'", value.find("'") + 1)
                cards[key] = value[: end + 1].strip() if end > 0 else value.strip()
            else:
                cards[key] = value.split("/")[0].strip()
    return cards


def diagnose_raw_header(
    path: str, where: str, cards: Mapping[str, str], bytes_left: int | None = None
) -> None:
    """Raise naming the first structural key of a damaged extension header that is not
    what the standard (FITS 4.0 §4.4, §10) requires, or that promises more data than the
    ``bytes_left`` after the header; return when none is found."""
    if cards.get("XTENSION", "").strip("' ").upper() not in ("IMAGE", "BINTABLE", "TABLE"):
        raise InputError(path, f"{where}: XTENSION={show(cards.get('XTENSION'))} is not an HDU")
    keys = _STRUCTURE_INTS + (_STRUCTURE_ZINTS if "ZIMAGE" in cards else ())
    for key in keys:
        if key not in cards:
            if key in ("NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "ZTILE1", "ZTILE2"):
                continue
            raise InputError(path, f"{where}: no {key}")
        text = cards[key]
        try:
            v = int(text)
        except ValueError:
            raise InputError(path, f"{where}: {key}={show(text)} is not an integer") from None
        if key in ("BITPIX", "ZBITPIX") and v not in _BITPIX:
            raise InputError(path, f"{where}: {key}={v} is not a FITS pixel type")
        if key in ("NAXIS", "ZNAXIS") and not 0 <= v <= 999:
            raise InputError(path, f"{where}: {key}={v} outside 0..999")
        if key.startswith(("ZNAXIS", "ZTILE")) and key[-1].isdigit() and not 0 < v <= MAX_AMP_AXIS:
            raise InputError(path, f"{where}: {key}={v} outside 1..{MAX_AMP_AXIS}")
        if key in ("NAXIS1", "NAXIS2", "PCOUNT") and v < 0:
            raise InputError(path, f"{where}: {key}={v} is negative")
    ints = {k: int(cards[k]) for k in keys if k in cards}
    is_table = cards.get("XTENSION", "").strip("' ").upper() == "BINTABLE"
    if is_table and ints.get("NAXIS2", 0) > 0 and ints.get("NAXIS1", 0) <= 0:
        raise InputError(path, f"{where}: NAXIS1={ints.get('NAXIS1')}: table rows have no width")
    if "ZIMAGE" in cards:
        cmp = cards.get("ZCMPTYPE", "").strip("' ").upper()
        if cmp not in COMPRESSION_TYPES:
            raise InputError(
                path, f"{where}: ZCMPTYPE={show(cards.get('ZCMPTYPE'))} is not a compression type"
            )
        if ints["ZNAXIS"] != 2:
            raise InputError(path, f"{where}: ZNAXIS={ints['ZNAXIS']}, not a 2-D image")
        nx, ny = ints.get("ZNAXIS1", 0), ints.get("ZNAXIS2", 0)
        tx, ty = ints.get("ZTILE1", nx), ints.get("ZTILE2", 1)
        if tx > nx or ty > ny:
            raise InputError(path, f"{where}: ZTILE1/2=({tx}, {ty}) larger than the image")
        n_tiles = -(-nx // max(tx, 1)) * -(-ny // max(ty, 1))
        if ints.get("NAXIS2") != n_tiles:
            raise InputError(
                path, f"{where}: NAXIS2={ints.get('NAXIS2')} rows, the tiles need {n_tiles}"
            )
    size = abs(ints["BITPIX"]) // 8 if ints.get("NAXIS") else 0
    for i in range(1, min(ints.get("NAXIS", 0), 2) + 1):
        size *= ints.get(f"NAXIS{i}", 0)
    size += ints.get("PCOUNT", 0)
    if bytes_left is not None and size > bytes_left:
        raise InputError(
            path, f"{where}: header promises {size} bytes of data, the file has {bytes_left}"
        )


# At most this many HDUs are walked (a raw has 17, or 9 plus a few extras).
MAX_HDUS = 200
_BLOCK = 2880


def _card_int(path: str, where: str, cards: Mapping[str, str], key: str, lo: int) -> int:
    text = cards.get(key)
    try:
        v = int(text) if text is not None else None
    except ValueError:
        v = None
    if v is None or v < lo:
        raise InputError(path, f"{where}: {key}={show(text)} is not an integer ≥ {lo}")
    return v


_STRUCTURE_PREFIXES = (b"SIMPLE ", b"BITPIX ", b"NAXIS", b"PCOUNT ", b"GCOUNT ", b"ZIMAGE ",
                       b"ZNAXIS", b"ZTILE")  # fmt: skip


def _structure_cards(blob: bytes, end: int) -> dict[str, str]:
    """The cards :func:`check_file_structure` needs, from ``blob[:end]`` (fast path of
    :func:`raw_header_cards`: other cards are not decoded)."""
    out: dict[str, str] = {}
    for p in range(0, end, 80):
        if blob.startswith(_STRUCTURE_PREFIXES, p) and blob[p + 8 : p + 10] == b"= ":
            key = blob[p : p + 8].decode("ascii", "replace").strip()
            if key not in out:
                out[key] = blob[p + 10 : p + 80].decode("ascii", "replace").split("/")[0].strip()
    return out


_NOT_ASCII = re.compile(rb"[^\x20-\x7e]")


def check_ascii(path: str, where: str, blob: bytes, end: int) -> None:
    """Header cards are printable ASCII (FITS 4.0 §4.1.1). Checked before fitsio decodes
    them: its UnicodeDecodeError part-way through listing HDUs leaves CFITSIO's cache of
    the file behind, and the next open of the same path (a re-transferred file) read the
    stale bytes."""
    m = _NOT_ASCII.search(blob, 0, end)
    if m is not None:
        card_no = m.start() // 80
        key = blob[card_no * 80 : card_no * 80 + 8].decode("ascii", "replace").strip()
        raise InputError(
            path,
            f"{where}: card {card_no + 1} ({show(key)}) has a non-ASCII byte {m.group()[0]:#04x}",
        )


def read_primary_block(path: str, max_header_blocks: int = 32) -> None:
    """Check the primary header's bytes (END present, ASCII) before fitsio reads them."""
    with open(path, "rb") as f:
        blob = f.read(_BLOCK)
        end = _end_card(blob)
        while end is None and len(blob) < _BLOCK * max_header_blocks:
            more = f.read(_BLOCK)
            if not more:
                break
            blob += more
            end = _end_card(blob, len(blob) - _BLOCK)
    if not blob.startswith(b"SIMPLE  ="):
        raise InputError(path, "not a readable FITS file (no SIMPLE card)")
    if end is None:
        raise InputError(path, "not a readable FITS file (primary header has no END card)")
    check_ascii(path, "primary header", blob, end + 80)


def _end_card(blob: bytes, start: int = 0) -> int | None:
    """Offset of the END card (card-aligned) in ``blob[start:]``, or None."""
    i = blob.find(b"END     ", start)
    while i >= 0:
        if i % 80 == 0:
            return i
        i = blob.find(b"END     ", i + 1)
    return None


def check_file_structure(path: str, size: int, max_header_blocks: int = 32) -> None:
    """Walk every HDU's header from the file's bytes, without CFITSIO, before CFITSIO lists
    them: the sizes that locate the next HDU (``BITPIX``, ``NAXISn``, ``PCOUNT``, ``GCOUNT``)
    and, for tile-compressed images, ``ZNAXISn``/``ZTILEn`` must be whole numbers in range
    (CFITSIO 4 divides by ``ZNAXISn`` when it lists a compressed HDU: a ``0`` there kills
    the process with SIGFPE), and every HDU must end inside the file. Bytes after the last
    HDU that do not start an extension are left alone (CFITSIO ignores them too)."""
    pos, n = 0, 0
    with open(path, "rb") as f:
        while pos < size and n < MAX_HDUS:
            f.seek(pos)
            blob = f.read(_BLOCK)
            if n > 0 and not blob.startswith(b"XTENSION"):
                return  # junk after the last HDU
            end = _end_card(blob)
            while end is None and len(blob) < _BLOCK * max_header_blocks:
                more = f.read(_BLOCK)
                if not more:
                    break
                blob += more
                end = _end_card(blob, len(blob) - _BLOCK)
            where = f"HDU {n + 1} (at byte {pos})"
            if end is None:
                raise InputError(path, f"{where}: header has no END card")
            check_ascii(path, where, blob, end + 80)
            cards = _structure_cards(blob, end)
            if n == 0 and cards.get("SIMPLE") != "T":
                raise InputError(path, f"{where}: SIMPLE={show(cards.get('SIMPLE'))}, not FITS")
            bitpix = _card_int(path, where, cards, "BITPIX", -64)
            if bitpix not in _BITPIX:
                raise InputError(path, f"{where}: BITPIX={bitpix} is not a FITS pixel type")
            naxis = _card_int(path, where, cards, "NAXIS", 0)
            if naxis > 999:
                raise InputError(path, f"{where}: NAXIS={naxis} outside 0..999")
            data = abs(bitpix) // 8 if naxis else 0
            for i in range(1, naxis + 1):
                data *= _card_int(path, where, cards, f"NAXIS{i}", 0)
            if n > 0 and naxis:
                pcount = _card_int(path, where, cards, "PCOUNT", 0) if "PCOUNT" in cards else 0
                gcount = _card_int(path, where, cards, "GCOUNT", 1) if "GCOUNT" in cards else 1
                data = gcount * (data + pcount * abs(bitpix) // 8)
            if "ZIMAGE" in cards:
                znaxis = _card_int(path, where, cards, "ZNAXIS", 1)
                for i in range(1, min(znaxis, 999) + 1):
                    _card_int(path, where, cards, f"ZNAXIS{i}", 1)
                    if f"ZTILE{i}" in cards:
                        _card_int(path, where, cards, f"ZTILE{i}", 1)
            header_bytes = -(-(end + 80) // _BLOCK) * _BLOCK
            pos += header_bytes + -(-data // _BLOCK) * _BLOCK
            if pos > size:
                raise InputError(
                    path, f"{where}: header promises data to byte {pos}, file has {size}"
                )
            n += 1


def check_pixels_shape(path: str, seg: str, data: Any, geom: AmpGeometry) -> None:
    """After decoding: the array is 2-D with the shape the header promised."""
    shape = getattr(data, "shape", None)
    if data is None or shape is None or len(shape) != 2:
        raise InputError(path, f"{seg}: no 2-D image data")
    if tuple(shape) != geom.shape:
        raise InputError(path, f"{seg}: decoded {shape}, header says {geom.shape}")


def parse_date(path: str, key: str, value: Any) -> datetime:
    """An ISO date header value (naive = UTC) as an aware datetime, year within range."""
    from calibmon.records import parse_iso_utc

    if not isinstance(value, str):
        raise InputError(path, f"{key}={show(value)} is not an ISO date")
    try:
        t = parse_iso_utc(value)
    except (ValueError, OverflowError):
        raise InputError(path, f"{key}={show(value)} is not an ISO date") from None
    if not DAY_OBS_YEARS[0] <= t.year <= DAY_OBS_YEARS[1]:
        raise InputError(path, f"{key}={show(value)} is outside {DAY_OBS_YEARS}")
    return t


__all__ = [
    "KNOWN_INSTRUMENTS",
    "check_ascii",
    "check_day_obs",
    "check_detector",
    "check_duration",
    "check_file_structure",
    "check_image_hdu",
    "check_instrument",
    "check_pixels_shape",
    "check_seqnum",
    "check_start_consistent",
    "day_obs_window",
    "diagnose_raw_header",
    "mjd_to_utc",
    "number",
    "parse_date",
    "raw_header_cards",
    "read_primary_block",
    "show",
]
