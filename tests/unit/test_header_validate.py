"""Header values are checked before they become an identity, a shape or a dtype
(calibmon/io/validate.py; issue 16 item 1)."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibmon.config import load_settings
from calibmon.errors import ConfigError, InputError
from calibmon.io import detectors as dets
from calibmon.io import validate as val
from calibmon.io.fits import parse_primary_header

BASE = {
    "INSTRUME": "lsstCam", "DAYOBS": "20251121", "SEQNUM": 12, "IMGTYPE": "BIAS",
    "EXPTIME": 0.0, "DARKTIME": 0.1, "DATE-BEG": "2025-11-22T01:02:03.456", "TIMESYS": "TAI",
    "MJD-BEG": 61001.0431, "RAFTBAY": "R22", "CCDSLOT": "S11", "CCD_MANU": "E2V",
}  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("INSTRUME", 2147483647, "INSTRUME=2147483647 is not an instrument name"),
        ("INSTRUME", "FooCam", "INSTRUME='FooCam' is not a known instrument"),
        ("DAYOBS", "20251399", "DAYOBS='20251399' is not a calendar date"),
        ("DAYOBS", "19251121", "DAYOBS='19251121' is outside"),
        ("DAYOBS", "20251125", "DATE-BEG='2025-11-22T01:02:03.456' does not fall on DAYOBS"),
        ("DATE-BEG", "1900-01-01T00:00:00", "DATE-BEG='1900-01-01T00:00:00' is outside"),
        ("DATE-BEG", "garbage", "DATE-BEG='garbage' is not an ISO date"),
        ("MJD-BEG", float("nan"), "MJD-BEG=nan is not finite"),
        ("MJD-BEG", 61010.5, "MJD-BEG=61010.5 does not fall on DAYOBS=20251121"),
        ("EXPTIME", float("nan"), "EXPTIME=nan is not finite"),
        ("EXPTIME", -1.0, "EXPTIME=-1.0 is negative"),
        ("EXPTIME", 1e300, "EXPTIME=1e+300 s is longer than a day"),
        ("DARKTIME", float("inf"), "DARKTIME=inf is not finite"),
        ("SEQNUM", 1.5, "SEQNUM=1.5 is not an integer"),
        ("SEQNUM", True, "SEQNUM=True is not an integer"),
        ("RAFTBAY", "R99", "R99_S11 is not part of LSSTCam"),
        ("CCDSLOT", "S33", "R22_S33 is not part of LSSTCam"),
        ("CCDSLOT", "XYZ", "CCDSLOT='XYZ': not a detector name"),
        ("CCD_MANU", "ACME", "CCD_MANU='ACME' is not ITL or E2V"),
        ("FILTER", "r\x01", "FILTER='r\\x01' is not printable text"),
    ],
)  # fmt: skip
def test_each_bad_value_is_one_line_naming_key_and_value(key, value, says) -> None:
    with pytest.raises(InputError) as info:
        parse_primary_header("night/f.fits", {**BASE, key: value})
    text = str(info.value)
    assert text.startswith("rejected night/f.fits: ") and "\n" not in text
    assert says in text


def test_day_obs_edge_is_allowed_and_a_day_off_is_not() -> None:
    """day_obs = UTC date of (start − 12 h), ± DAY_OBS_EDGE_S (8 h)."""
    lo, hi = val.day_obs_window("20251121")
    assert (lo.isoformat(), hi.isoformat()) == (
        "2025-11-21T04:00:00+00:00",
        "2025-11-22T20:00:00+00:00",
    )
    no_mjd = {k: v for k, v in BASE.items() if k not in ("MJD-BEG", "TIMESYS")}
    # 12:30 UTC the next day: past the nominal rollover, inside the edge
    h = parse_primary_header("f.fits", {**no_mjd, "DATE-BEG": "2025-11-22T12:30:00"})
    assert h.day_obs == "20251121"
    with pytest.raises(InputError, match="does not fall on DAYOBS=20251121"):
        parse_primary_header("f.fits", {**no_mjd, "DATE-BEG": "2025-11-22T20:00:00"})
    with pytest.raises(InputError, match="does not fall on DAYOBS=20251121"):
        parse_primary_header("f.fits", {**no_mjd, "DATE-BEG": "2025-11-21T03:59:59"})


def test_instruments_extra_from_config(monkeypatch) -> None:
    """A test stand named in ``instruments_extra`` is accepted (LSSTCam's detector table),
    case-insensitively, keeping the configured spelling; bad names are a config error."""
    with pytest.raises(InputError, match="not a known instrument"):
        parse_primary_header("f.fits", {**BASE, "INSTRUME": "BOT-SLAC"})
    monkeypatch.setenv("CALIBMON_INSTRUMENTS_EXTRA", '["BOT-SLAC"]')
    extra = load_settings().instruments_extra
    h = parse_primary_header("f.fits", {**BASE, "INSTRUME": "bot-slac"}, instruments_extra=extra)
    assert (h.instrument, h.detector) == ("BOT-SLAC", 94)
    monkeypatch.setenv("CALIBMON_INSTRUMENTS_EXTRA", '["2147483647"]')
    with pytest.raises(ConfigError, match="instruments_extra"):
        load_settings()


def test_image_hdu_checked_before_decoding() -> None:
    """Axes, pixel type, compression keys and DATASEC agree, or one line names the key."""
    info = {"ndims": 2, "dims": [160, 137], "img_equiv_type": 32, "is_compressed_image": 1,
            "data_end": 25920}  # fmt: skip
    hdr = {"ZCMPTYPE": "RICE_1", "ZBITPIX": 32, "ZNAXIS": 2, "ZNAXIS1": 137, "ZNAXIS2": 160,
           "ZTILE1": 137, "ZTILE2": 1, "NAXIS2": 160, "ZNAME2": "BYTEPIX", "ZNAME1": "BLOCKSIZE",
           "ZVAL1": 32, "ZVAL2": 4, "DATASEC": "[11:110,1:152]"}  # fmt: skip
    geom = val.check_image_hdu("f.fits", "Segment10", info, hdr, 30000)
    assert geom.shape == (160, 137) and geom.n_data_cols == 100
    bad = [
        ({"dims": [160, 999999999]}, {}, "axes 999999999x160 outside 1..8192"),
        ({"img_equiv_type": 1}, {}, "image type 1 is not a FITS pixel type"),
        ({}, {"ZBITPIX": 16}, "BYTEPIX=4 with ZBITPIX=16"),
        ({}, {"ZBITPIX": -32}, "ZBITPIX=-32 with RICE_1 and no quantization"),
        ({}, {"ZCMPTYPE": "FOO_1"}, "ZCMPTYPE='FOO_1' is not a compression type"),
        ({}, {"ZNAXIS1": 100}, "ZNAXIS1/2=(100, 160) disagree with the image"),
        ({}, {"NAXIS2": 5}, "NAXIS2=5 rows, the tiles need 160"),
        ({}, {"DATASEC": "[garbage]"}, "DATASEC='[garbage]': not a FITS section"),
        ({}, {"DATASEC": "[1:999,1:5]"}, "does not fit in a 137x160 amplifier"),
        ({"data_end": 40000}, {}, "data ends at byte 40000, file has 30000"),
    ]
    for info_patch, hdr_patch, says in bad:
        with pytest.raises(InputError, match=None) as e:
            val.check_image_hdu("f.fits", "Segment10", {**info, **info_patch},
                                {**hdr, **hdr_patch}, 30000)  # fmt: skip
        assert str(e.value).startswith("rejected f.fits: Segment10: ") and says in str(e.value)


# Values a corrupted or hostile header may hold for any key.
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["20251121", "2025-11-22T01:02:03", "R22", "S11", "nan", "LATISS",
                     "lsstCam", "RXX", "SG0", "SW1", "E2V", "ITL", "FLAT", "DARK"]),
)  # fmt: skip
KEYS = ("INSTRUME", "DAYOBS", "SEQNUM", "IMGTYPE", "EXPTIME", "DARKTIME", "DATE-BEG",
        "DATE-OBS", "MJD-BEG", "MJD-OBS", "TIMESYS", "RAFTBAY", "CCDSLOT", "CCD_MANU",
        "FILTER", "OBSID", "CCDTEMP")  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), HOSTILE, min_size=1, max_size=5))
def test_hostile_values_give_valid_header_or_input_error(patch) -> None:
    """Any values in any keys: an InputError naming the file, or a header whose identity
    and numbers obey the contract (known instrument, detector in its table, real day_obs,
    finite non-negative times)."""
    try:
        h = parse_primary_header("x.fits", {**BASE, **patch})
    except InputError as err:
        assert str(err).startswith("rejected x.fits: ") and "\n" not in str(err)
        return
    assert h.instrument in val.KNOWN_INSTRUMENTS
    datetime.strptime(h.day_obs, "%Y%m%d")
    assert h.exposure_id == int(h.day_obs) * 100000 + h.seqnum
    for t in (h.exptime_s, h.darktime_s):
        assert math.isfinite(t) and 0 <= t <= val.MAX_EXPOSURE_S
    assert dets.detector_number(h.instrument, h.detector_name) == h.detector
    assert h.vendor in ("ITL", "E2V")
    for text in (h.physical_filter, h.obsid, h.imgtype, h.testtype, h.reason):
        assert text.isprintable()
