"""Primary-header parsing of the variants real data shows (DESIGN.md §2)."""

from __future__ import annotations

import pytest

from calibmon.errors import InputError
from calibmon.io.fits import parse_primary_header

BASE = {
    "INSTRUME": "lsstCam", "DAYOBS": "20251121", "SEQNUM": 12, "IMGTYPE": "BIAS",
    "EXPTIME": 0.0, "DARKTIME": 0.1, "DATE-BEG": "2025-11-22T01:02:03.456", "TIMESYS": "TAI",
    "RAFTBAY": "R22", "CCDSLOT": "S11", "CCD_MANU": "E2V",
}  # fmt: skip


def test_lsstcam_header() -> None:
    h = parse_primary_header("f.fits", BASE)
    assert (h.instrument, h.detector, h.detector_name, h.vendor) == (
        "LSSTCam",
        94,
        "R22_S11",
        "E2V",
    )
    assert h.exposure_id == 2025112100012 and h.kind == "bias"
    assert h.date_beg == "2025-11-22T01:01:26.456Z"  # TAI - 37 s


def test_variants() -> None:
    h = parse_primary_header("f.fits", {**BASE, "DAYOBS": 20251121, "IMGTYPE": "dark",
                                         "INSTRUME": "LSST_ATISS", "RAFTBAY": None})  # fmt: skip
    assert h.instrument == "LATISS" and h.detector == 0 and h.kind == "dark"
    no_date = {k: v for k, v in BASE.items() if k not in ("DATE-BEG", "DARKTIME", "TIMESYS")}
    h = parse_primary_header("f.fits", {**no_date, "DATE-OBS": "2025-11-22T01:00:00Z"})
    assert h.darktime_s == h.exptime_s and h.date_beg == "2025-11-22T01:00:00.000Z"
    h = parse_primary_header("f.fits", no_date)  # no date at all: deterministic stand-in
    assert h.date_beg == "2025-11-21T12:00:12.000Z"
    h = parse_primary_header("f.fits", {**BASE, "IMGTYPE": "OBJECT"})
    assert h.kind is None


@pytest.mark.parametrize(
    ("drop", "reason"),
    [("DAYOBS", "DAYOBS"), ("SEQNUM", "SEQNUM"), ("INSTRUME", "INSTRUME"), ("EXPTIME", "EXPTIME")],
)
def test_missing_keys_are_named(drop: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as info:
        parse_primary_header("some/f.fits", {k: v for k, v in BASE.items() if k != drop})
    assert str(info.value).startswith("rejected some/f.fits: ")
