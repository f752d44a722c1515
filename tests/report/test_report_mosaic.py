"""Focal-plane geometry of the pictures: DETSEC orientation, CCD assembly, raft layout."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from nightdata import ccd_truth_image, fill_amp_images

from calibmon.io.detectors import AMP_ORDER_16, lsstcam_detectors
from calibmon.report import mosaic
from calibmon.simulate.camera import LAYOUTS, segment_geometry
from calibmon.store.images import amp_images
from calibmon.store.sqlite import Store


@pytest.mark.parametrize("vendor", ["ITL", "E2V"])
@pytest.mark.parametrize("small", [True, False])
def test_amp_cell_from_detsec_matches_the_naming_convention(vendor: str, small: bool) -> None:
    """The DETSEC the simulator writes (real LSSTCam convention) and the name-based
    fallback put every amp in the same cell with the same flips."""
    layout = LAYOUTS[(vendor, small)]
    cells = set()
    for amp in AMP_ORDER_16:
        detsec = segment_geometry(layout, amp)["DETSEC"]
        assert mosaic.amp_cell(amp, detsec) == mosaic.amp_cell(amp, None, vendor)
        cells.add((mosaic.amp_cell(amp, detsec).col, mosaic.amp_cell(amp, detsec).row))
    assert cells == {(c, r) for c in range(8) for r in range(2)}
    assert mosaic.amp_cell("C10", None, vendor) == mosaic.AmpCell(0, 0, True, False)
    assert mosaic.amp_cell("C07", None, vendor).col == 7
    assert mosaic.amp_cell("C07", None, vendor).flip_x == (vendor == "ITL")


def test_parse_detsec_keeps_reversed_ranges() -> None:
    assert mosaic.parse_detsec("[509:1,4000:2001]") == (509, 1, 4000, 2001)
    with pytest.raises(ValueError):
        mosaic.parse_detsec("[1:2,3]")


@pytest.mark.parametrize("names", [["R22_S11", "R01_S01"], ["R00_SW0", "R44_SW1"]])
def test_amp_images_assemble_back_into_the_ccd(tmp_path, names) -> None:
    """Cut a CCD picture into amps in readout order (as the pipeline stores them), read them
    back from the store and assemble: the picture comes back exactly (2×2 binned)."""
    with Store(tmp_path / "s.sqlite") as store:
        truth = fill_amp_images(store, "LSSTCam", "20251121", names, kinds=("flat",), binning=2)
        images = amp_images(store, "LSSTCam", "20251121", "flat")
    number = {n: lsstcam_detectors().index(n) for n in names}
    for name in names:
        ccd = truth[(name, "flat")]
        amps = {im.amp: (im.image, im.detsec) for im in images if im.detector == number[name]}
        wavefront = name.endswith(("SW0", "SW1"))
        assert len(amps) == (8 if wavefront else 16)
        h, w = next(iter(amps.values()))[0].shape
        got = mosaic.assemble_ccd(amps, (h, w), wavefront=wavefront)
        rows, cols = ccd.shape
        want = ccd[: rows // 2 * 2, : cols // 2 * 2].reshape(rows // 2, 2, cols // 2, 2)
        want = want.mean(axis=(1, 3))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_assembly_without_detsec_uses_the_amp_names() -> None:
    img = np.arange(12.0).reshape(3, 4)
    ccd = mosaic.assemble_ccd({"C10": (img, None), "C00": (img, None)}, (3, 4), vendor="ITL")
    np.testing.assert_array_equal(ccd[:3, :4], img[:, ::-1])  # C10: flipped in x
    np.testing.assert_array_equal(ccd[3:, :4], img[::-1, ::-1])  # ITL C00: flipped in x and y
    assert np.isnan(ccd[:, 4:]).all()


def test_all_205_ccds_have_their_own_place() -> None:
    boxes = {n: mosaic.ccd_box("LSSTCam", n) for n in lsstcam_detectors()}
    full = mosaic.extent_of("LSSTCam", boxes)
    for (a, ba), (b, bb) in itertools.combinations(boxes.items(), 2):
        overlap_x = min(ba[0] + ba[2], bb[0] + bb[2]) - max(ba[0], bb[0])
        overlap_y = min(ba[1] + ba[3], bb[1] + bb[3]) - max(ba[1], bb[1])
        assert overlap_x <= 1e-9 or overlap_y <= 1e-9, (a, b)
    for x0, y0, w, h in boxes.values():
        assert full[0] <= x0 and x0 + w <= full[0] + full[2] + 1e-9
        assert full[1] <= y0 and y0 + h <= full[1] + full[3] + 1e-9
    assert len(mosaic.rafts_in(full)) == 25
    # raft R22 is in the middle, R01 below it, R10 to the left of R11
    assert mosaic.ccd_box("LSSTCam", "R22_S11")[:2] == pytest.approx(
        (2 * mosaic.RAFT_PITCH + mosaic.SLOT_PITCH, 2 * mosaic.RAFT_PITCH + mosaic.SLOT_PITCH)
    )
    assert mosaic.ccd_box("LSSTCam", "R01_S11")[1] < mosaic.ccd_box("LSSTCam", "R11_S11")[1]
    assert mosaic.ccd_box("LSSTCam", "R10_S11")[0] < mosaic.ccd_box("LSSTCam", "R11_S11")[0]


def test_extent_is_the_rafts_of_the_present_detectors() -> None:
    assert mosaic.extent_of("LSSTCam", ["R22_S11"]) == mosaic.raft_box(2, 2)
    assert mosaic.extent_of("LATISS", ["RXX_S00"]) == (0.0, 0.0, 1.0, 1.0)
    x0, y0, w, _ = mosaic.extent_of("LSSTCam", ["R22_S11", "R01_S01"])
    assert (x0, y0) == mosaic.raft_box(1, 0)[:2]
    assert w == pytest.approx(2 * mosaic.RAFT_PITCH - mosaic.RAFT_GAP - mosaic.SLOT_GAP)


def test_resample_means_blocks_and_ignores_nan() -> None:
    a = np.arange(16.0).reshape(4, 4)
    np.testing.assert_allclose(mosaic.resample(a, 2, 2), [[2.5, 4.5], [10.5, 12.5]])
    a[0, 0] = np.nan
    assert mosaic.resample(a, 2, 2)[0, 0] == pytest.approx((1 + 4 + 5) / 3)
    assert mosaic.resample(np.full((2, 2), np.nan), 1, 1)[0, 0] != 0  # NaN stays NaN
    np.testing.assert_array_equal(mosaic.resample(np.eye(2), 4, 4)[:2, :2], np.ones((2, 2)))


def test_canvas_puts_ccds_at_their_boxes() -> None:
    extent = mosaic.extent_of("LSSTCam", ["R22_S11"])
    px = 32
    ccd = np.ones((px, px))
    canvas = mosaic.focal_plane_canvas("LSSTCam", {"R22_S11": ccd}, extent, px)
    assert np.nansum(canvas) == px * px
    rows, cols = np.nonzero(np.isfinite(canvas))
    bx, by, _, _ = mosaic.ccd_box("LSSTCam", "R22_S11")
    assert cols.min() == round((bx - extent[0]) * px)
    assert rows.min() == round((by - extent[1]) * px)


def test_truth_picture_is_smooth_across_the_focal_plane() -> None:
    """The test flat's vignetting is computed in focal-plane coordinates (sanity of the
    helper the other tests rely on): the centre CCD is brighter than a corner one."""
    centre = ccd_truth_image("LSSTCam", "R22_S11", "flat", 20, 10)
    corner = ccd_truth_image("LSSTCam", "R01_S00", "flat", 20, 10)
    assert np.median(centre) > np.median(corner)
