"""Parsers: detector names ↔ numbers, EXTNAME → amp, DATASEC → slices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibmon.io import detectors as dets
from calibmon.io.geometry import amp_geometry, parse_section


def test_lsstcam_numbering_matches_obs_lsst() -> None:
    names = dets.lsstcam_detectors()
    assert len(names) == 205
    assert names[0] == "R01_S00"
    assert dets.detector_number("LSSTCam", "R22_S11") == 94
    assert names[188] == "R43_S22"
    # corner rafts: SG0, SG1, SW0, SW1 for R00, R04, R40, R44 (obs_lsst)
    assert dets.detector_number("LSSTCam", "R00_SG0") == 189
    assert dets.detector_number("LSSTCam", "R00_SW0") == 191
    assert dets.detector_number("LSSTCam", "R04_SW0") == 195
    assert dets.detector_number("LSSTCam", "R40_SW0") == 199
    assert dets.detector_number("LSSTCam", "R44_SW1") == 204
    assert dets.detector_number("LATISS", "RXX_S00") == 0


@given(st.integers(0, 204))
def test_number_name_round_trip(n: int) -> None:
    name = dets.detector_name("LSSTCam", n)
    assert dets.is_valid_name(name)
    assert dets.detector_number("LSSTCam", name) == n


@given(st.text(max_size=12))
def test_segment_to_amp_never_raises(text: str) -> None:
    amp = dets.segment_to_amp(text)
    assert amp is None or (amp.startswith("C") and len(amp) == 3)


def test_segment_names() -> None:
    assert dets.segment_to_amp("Segment10") == "C10"
    assert dets.segment_to_amp("Segment07") == "C07"
    assert dets.segment_to_amp("REB_COND") is None
    assert dets.AMP_ORDER_16[:2] == ("C10", "C11") and dets.AMP_ORDER_16[8] == "C07"
    assert dets.AMP_ORDER_16[-1] == "C00"


@pytest.mark.parametrize(
    ("value", "canonical"),
    [("lsstCam", "LSSTCam"), ("LSSTCam", "LSSTCam"), ("LATISS", "LATISS"),
     ("LSST_ATISS", "LATISS"), ("latiss", "LATISS"), ("MyCam", "MyCam")],
)  # fmt: skip
def test_canonical_instrument(value: str, canonical: str) -> None:
    assert dets.canonical_instrument(value) == canonical


def test_real_geometries() -> None:
    itl = amp_geometry("[4:512,1:2000]", (2048, 576))
    assert (itl.n_data_cols, itl.n_data_rows, itl.n_serial_overscan) == (509, 2000, 64)
    assert itl.parallel_overscan_rows == slice(2000, 2048)
    e2v = amp_geometry("[11:522,1:2002]", (2048, 576))
    assert (e2v.n_data_cols, e2v.n_data_rows, e2v.n_serial_overscan) == (512, 2002, 54)
    os_ = itl.overscan_level_cols
    assert os_.start > itl.serial_overscan_cols.start and os_.stop <= 576


@given(
    st.integers(1, 50), st.integers(0, 600), st.integers(1, 50), st.integers(0, 2100),
    st.integers(1, 700), st.integers(1, 2200),
)  # fmt: skip
def test_datasec_parse_or_valueerror(x1: int, dx: int, y1: int, dy: int, nx: int, ny: int) -> None:
    sec = f"[{x1}:{x1 + dx},{y1}:{y1 + dy}]"
    assert parse_section(sec) == (x1, x1 + dx, y1, y1 + dy)
    try:
        g = amp_geometry(sec, (ny, nx))
    except ValueError:
        assert x1 + dx >= nx or y1 + dy > ny
    else:
        a = np.zeros((ny, nx))
        assert a[g.data_rows, g.data_cols].shape == (dy + 1, dx + 1)
        assert a[:, g.serial_overscan_cols].shape[1] == nx - (x1 + dx)


@given(st.text(max_size=30))
def test_parse_section_garbage(text: str) -> None:
    try:
        x1, x2, y1, y2 = parse_section(text)
    except ValueError:
        return
    assert 1 <= x1 <= x2 and 1 <= y1 <= y2
