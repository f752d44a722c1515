"""Tests of the raw-exposure simulator (calibmon.simulate), on small amps.

Statistical tolerances: a std from N Gaussian pixels has relative error ≈ 1/√(2N); a
small amp's serial overscan used here holds 28 × 150 ≈ 4200 pixels (ITL) → 1.1 %, so
checks are at 5 % (≈ 4.5σ). Means of ~15 000 data pixels of a 15 ke- flat have a
relative error ≈ 1 %/√15000 from PRNU and shot noise, far below the 2 % allowed for
the nonlinearity (−0.1 %) and one cold column (≤ 1 % of a 100-column amp).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import fitsio
import numpy as np
import pytest
from astropy.io import fits

from calibmon.io.detectors import AMP_ORDER_8, AMP_ORDER_16
from calibmon.io.geometry import amp_geometry
from calibmon.simulate import (
    DEFINITIONS,
    load_truth,
    simulate_night,
    write_guider_file,
    write_science_exposure,
)
from calibmon.simulate.camera import LAYOUTS, segment_geometry
from calibmon.simulate.physics import bf_variance_e
from calibmon.simulate.writer import _simulate_night, ptc_signal_ladder

DAY = "20251121"
SEGMENTS_16 = [f"Segment{a[1:]}" for a in AMP_ORDER_16]


def _night(tmp: Path, **kw) -> dict:
    kw.setdefault("small", True)
    return simulate_night(tmp, DAY, **kw)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dir_digests(day_dir: Path) -> dict[str, str]:
    return {p.name: _digest(p) for p in sorted(day_dir.iterdir())}


def _amp(path: Path, extname: str) -> tuple[dict, np.ndarray]:
    with fitsio.FITS(str(path)) as f:
        hdu = f[extname]
        return hdu.read_header(), hdu.read()


def _overscan_corrected(raw: np.ndarray, datasec: str) -> tuple[np.ndarray, np.ndarray]:
    """(data area, serial overscan) minus the per-row overscan median, float64, ADU."""
    g = amp_geometry(datasec, raw.shape)
    a = raw.astype(np.float64)
    os_ = a[g.data_rows, g.overscan_level_cols]
    level = np.median(os_, axis=1)[:, None]
    return a[g.data_rows, g.data_cols] - level, a[g.data_rows, g.serial_overscan_cols] - level


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> tuple[Path, dict]:
    """A small daily night of two detectors (one e2v, one ITL), truth written."""
    root = tmp_path_factory.mktemp("night")
    truth = simulate_night(
        root,
        DAY,
        ("R22_S11", "R01_S01"),
        small=True,
        n_bias=4,
        n_dark=4,
        n_flat=8,
        extra_defects={"R01_S01": {"C13": {"hot_columns": [40], "cold_columns": [60]}}},
    )
    return root / DAY, truth


# --- files, names, headers -------------------------------------------------------------


def test_files_named_like_real_raws(night):
    day_dir, truth = night
    names = sorted(p.name for p in day_dir.iterdir())
    assert "truth.json" in names
    fits_names = [n for n in names if n.endswith(".fits")]
    assert len(fits_names) == 2 * 16
    assert "LSSTCam_O_20251121_000001_R22_S11.fits" in fits_names
    assert "LSSTCam_O_20251121_000016_R01_S01.fits" in fits_names
    assert [e["seqnum"] for e in truth["exposures"]] == list(range(1, 17))
    assert [e["type"] for e in truth["exposures"]] == ["bias"] * 4 + ["dark"] * 4 + ["flat"] * 8
    assert truth["exposures"][0]["exposure_id"] == 2025112100001


def test_primary_header(night):
    day_dir, truth = night
    hdr = fitsio.read_header(str(day_dir / "LSSTCam_O_20251121_000005_R22_S11.fits"), ext=0)
    assert hdr["INSTRUME"] == "lsstCam"
    assert hdr["DAYOBS"] == DAY and isinstance(hdr["DAYOBS"], str)
    assert hdr["SEQNUM"] == 5
    assert hdr["OBSID"] == "MC_C_20251121_000005"
    assert hdr["IMGTYPE"] == hdr["OBSTYPE"] == "DARK"
    assert hdr["TESTTYPE"] == "DARK"
    assert hdr["EXPTIME"] == hdr["DARKTIME"] == 30.0
    assert (hdr["RAFTBAY"], hdr["CCDSLOT"]) == ("R22", "S11")
    assert hdr["CCD_MANU"] == "E2V"
    assert hdr["LSST_NUM"].startswith("E2V-CCD250-")
    assert hdr["LSST_NUM"] == truth["detectors"]["R22_S11"]["lsst_num"]
    assert hdr["CCDGAIN"] == 1.0 and hdr["CCDNOISE"] == 10.0
    assert -101.0 < hdr["CCDTEMP"] < -99.0
    assert hdr["FILTER"] == "empty"
    assert hdr["DATE-OBS"] == hdr["DATE-BEG"] > "2025-11-21T22:00"
    itl = fitsio.read_header(str(day_dir / "LSSTCam_O_20251121_000005_R01_S01.fits"), ext=0)
    assert itl["CCD_MANU"] == "ITL" and itl["LSST_NUM"].startswith("ITL-3800C-")


def test_times_increase_through_the_evening(night):
    day_dir, truth = night
    begs = []
    for e in truth["exposures"]:
        hdr = fitsio.read_header(str(day_dir / e["filenames"]["R01_S01"]), ext=0)
        begs.append(hdr["DATE-BEG"])
        assert hdr["DATE-END"] >= hdr["DATE-BEG"]
        assert hdr["MJD-BEG"] > 61000.9
    assert begs == sorted(begs) and len(set(begs)) == len(begs)
    assert begs[0] == "2025-11-21T22:00:00.000"


def test_segments_order_geometry_and_no_biassec(night):
    day_dir, _ = night
    with fitsio.FITS(str(day_dir / "LSSTCam_O_20251121_000001_R01_S01.fits")) as f:
        assert len(f) == 17
        assert f[0].read_header().get("NAXIS") == 0
        assert [f[i].get_extname() for i in range(1, 17)] == SEGMENTS_16
        for i in range(1, 17):
            hdr = f[i].read_header()
            assert "BIASSEC" not in hdr
            assert hdr["DATASEC"] == "[4:103,1:150]"  # small ITL
            assert hdr["CHANNEL"] == i and hdr["CCDSUM"] == "1 1"
            for key in ("DETSEC", "DTV1", "DTV2", "DTM1_1", "DTM2_2"):
                assert key in hdr
            data = f[i].read()
            assert data.dtype == np.int32 and data.shape == (160, 135)
    e2v = fitsio.read_header(str(day_dir / "LSSTCam_O_20251121_000001_R22_S11.fits"), ext=1)
    assert e2v["DATASEC"] == "[11:110,1:152]"


def test_detsec_matches_real_lsstcam_convention():
    itl, e2v = LAYOUTS[("ITL", False)], LAYOUTS[("E2V", False)]
    g = segment_geometry(itl, "C10")
    assert (g["DATASEC"], g["DETSEC"], g["DTV1"], g["DTV2"]) == (
        "[4:512,1:2000]",
        "[509:1,1:2000]",
        513,
        0,
    )
    assert (g["DTM1_1"], g["DTM2_2"], g["DETSIZE"]) == (-1.0, 1.0, "[1:4072,1:4000]")
    assert segment_geometry(itl, "C17")["DETSEC"] == "[4072:3564,1:2000]"
    g = segment_geometry(itl, "C07")
    assert (g["DETSEC"], g["DTV1"], g["DTV2"]) == ("[4072:3564,4000:2001]", 4076, 4001)
    g = segment_geometry(e2v, "C10")
    assert (g["DATASEC"], g["DETSEC"], g["DTV1"]) == ("[11:522,1:2002]", "[512:1,1:2002]", 523)
    g = segment_geometry(e2v, "C07")
    assert (g["DETSEC"], g["DTV1"], g["DTV2"]) == ("[3585:4096,4004:2003]", 3574, 4005)
    assert (g["DTM1_1"], g["DTM2_2"]) == (1.0, -1.0)
    assert segment_geometry(e2v, "C00")["DETSEC"] == "[1:512,4004:2003]"


def test_full_size_layout(tmp_path):
    simulate_night(tmp_path, DAY, ("R22_S11",), n_bias=1, n_dark=0, n_flat=0)
    path = tmp_path / DAY / "LSSTCam_O_20251121_000001_R22_S11.fits"
    hdr, data = _amp(path, "Segment03")
    assert data.shape == (2048, 576) and hdr["DATASEC"] == "[11:522,1:2002]"
    assert hdr["DETSEC"] == "[1537:2048,4004:2003]"


def test_rice_compression_is_used(night, tmp_path):
    day_dir, _ = night
    path = day_dir / "LSSTCam_O_20251121_000009_R22_S11.fits"
    with fitsio.FITS(str(path)) as f:
        assert all(f[i].is_compressed() for i in range(1, 17))
    with fits.open(path) as hl:
        assert all(isinstance(h, fits.CompImageHDU) for h in hl[1:])
        assert "BIASSEC" not in hl[1].header
        compressed_flat = hl[5].data.copy()
    with fits.open(path, disable_image_compression=True) as hl:
        assert all(h.header["ZCMPTYPE"] == "RICE_1" for h in hl[1:])
        assert hl[1].header["ZBITPIX"] == 32
    # Lossless: the same frame written uncompressed has identical pixels.
    simulate_night(
        tmp_path, DAY, ("R22_S11",), small=True, n_bias=4, n_dark=4, n_flat=8, compress=False
    )
    plain = tmp_path / DAY / path.name
    with fits.open(plain) as hl:
        assert type(hl[5]) is fits.ImageHDU
        np.testing.assert_array_equal(hl[5].data, compressed_flat)
    assert plain.stat().st_size > 2 * path.stat().st_size


# --- determinism and seeds ---------------------------------------------------------------


def test_same_seeds_same_bytes(tmp_path):
    kw = {"n_bias": 2, "n_dark": 1, "n_flat": 2, "detectors": ("R22_S11",)}
    t1 = _night(tmp_path / "a", **kw)
    t2 = _night(tmp_path / "b", **kw)
    assert t1 == t2
    assert _dir_digests(tmp_path / "a" / DAY) == _dir_digests(tmp_path / "b" / DAY)
    t3 = _night(tmp_path / "c", seed=1, **kw)
    d3 = _dir_digests(tmp_path / "c" / DAY)
    assert (
        d3["LSSTCam_O_20251121_000001_R22_S11.fits"]
        != _dir_digests(tmp_path / "a" / DAY)["LSSTCam_O_20251121_000001_R22_S11.fits"]
    )
    assert t3 != t1


def test_parallel_writing_gives_identical_files(tmp_path):
    kw = dict(
        instrument="LSSTCam",
        small=True,
        seed=3,
        camera_seed=1,
        n_bias=2,
        n_dark=2,
        n_flat=2,
        dark_time_s=30.0,
        flat_level_e=15000.0,
        ptc=False,
        n_ptc_pairs=0,
        ptc_labels=True,
        physical_filter="empty",
        overrides=None,
        extra_defects=None,
        start_seqnum=1,
        compress=True,
        write_truth=True,
    )
    dets = ("R22_S11", "R01_S01")
    t1 = _simulate_night(tmp_path / "serial", DAY, dets, workers=1, **kw)
    t2 = _simulate_night(tmp_path / "parallel", DAY, dets, workers=2, **kw)
    assert t1 == t2
    assert _dir_digests(tmp_path / "serial" / DAY) == _dir_digests(tmp_path / "parallel" / DAY)


def test_camera_seed_fixes_the_camera_across_nights(tmp_path):
    kw = {"n_bias": 1, "n_dark": 0, "n_flat": 0, "detectors": ("R01_S01",)}
    a = simulate_night(tmp_path / "a", "20251121", small=True, seed=0, **kw)
    b = simulate_night(tmp_path / "b", "20251122", small=True, seed=7, **kw)
    c = simulate_night(tmp_path / "c", "20251121", small=True, seed=0, camera_seed=2, **kw)
    fixed = (
        "camera",
        "full_well_e",
        "serial_cti",
        "a00_per_e",
        "nonlinearity_k2_per_e",
        "flux_e_per_s",
        "prnu",
        "dark_current_e_per_s",
        "hot_pixels",
        "hot_columns",
        "cold_pixels",
        "cold_columns",
    )
    for amp in AMP_ORDER_16:
        ta, tb = a["detectors"]["R01_S01"]["amps"][amp], b["detectors"]["R01_S01"]["amps"][amp]
        for key in fixed:
            assert ta[key] == tb[key], (amp, key)
        # The night drifts: small and recorded.
        assert ta["gain_e_per_adu"] != tb["gain_e_per_adu"]
        assert abs(tb["gain_e_per_adu"] / tb["camera"]["gain_e_per_adu"] - 1) < 0.006
        assert tb["gain_e_per_adu"] == pytest.approx(
            tb["camera"]["gain_e_per_adu"] * (1 + tb["gain_drift_frac"])
        )
        assert abs(tb["bias_level_adu"] - tb["camera"]["bias_level_adu"]) < 12
        assert tb["read_noise_e"] == pytest.approx(
            tb["camera"]["read_noise_e"] * (1 + tb["read_noise_drift_frac"])
        )
    assert a["detectors"]["R01_S01"]["lsst_num"] == b["detectors"]["R01_S01"]["lsst_num"]
    gains_a = [
        a["detectors"]["R01_S01"]["amps"][x]["camera"]["gain_e_per_adu"] for x in AMP_ORDER_16
    ]
    gains_c = [
        c["detectors"]["R01_S01"]["amps"][x]["camera"]["gain_e_per_adu"] for x in AMP_ORDER_16
    ]
    assert gains_a != gains_c


def test_camera_params_do_not_depend_on_size_or_other_detectors(tmp_path):
    kw = {"n_bias": 1, "n_dark": 0, "n_flat": 0}
    a = simulate_night(tmp_path / "a", DAY, ("R22_S11",), small=True, **kw)
    b = simulate_night(tmp_path / "b", DAY, ("R01_S01", "R22_S11"), small=True, **kw)
    amps_a, amps_b = a["detectors"]["R22_S11"]["amps"], b["detectors"]["R22_S11"]["amps"]
    assert amps_a == amps_b


# --- physics against truth -----------------------------------------------------------------


def test_bias_read_noise_level_and_pattern(night):
    day_dir, truth = night
    for det in ("R22_S11", "R01_S01"):
        for amp in ("C10", "C05"):
            t = truth["detectors"][det]["amps"][amp]
            rn, levels, means = [], [], []
            for e in truth["exposures"]:
                if e["type"] != "bias":
                    continue
                hdr, raw = _amp(day_dir / e["filenames"][det], t["segment"])
                g = amp_geometry(hdr["DATASEC"], raw.shape)
                os_ = raw[g.data_rows, g.overscan_level_cols].astype(np.float64)
                n = os_.shape[1]
                resid = os_ - os_.mean(axis=1, keepdims=True)
                rn.append(resid.std() * math.sqrt(n / (n - 1)))
                levels.append(os_.mean() - e["frame_bias_offset_adu"][det][amp])
                means.append(_overscan_corrected(raw, hdr["DATASEC"])[0].mean())
            assert np.mean(rn) == pytest.approx(t["read_noise_adu"], rel=0.05)
            assert t["read_noise_adu"] == pytest.approx(t["read_noise_e"] / t["gain_e_per_adu"])
            # Row drift has zero mean over the data rows; read noise of 4 × 4200 px: 0.03 ADU.
            assert np.mean(levels) == pytest.approx(t["bias_level_adu"], abs=0.15)
            assert np.mean(means) == pytest.approx(t["bias_pattern_mean_adu"], abs=0.15)


def test_flat_level_and_serial_cti(night):
    day_dir, truth = night
    flats = [e for e in truth["exposures"] if e["type"] == "flat"]
    assert len({e["exptime_s"] for e in flats}) == 1
    assert flats[0]["exptime_s"] == pytest.approx(15000.0 / truth["lamp_flux_e_per_s"])
    for det in ("R22_S11", "R01_S01"):
        for amp in ("C11", "C13", "C02"):
            t = truth["detectors"][det]["amps"][amp]
            means, first_os, last_col = [], [], []
            for e in flats:
                hdr, raw = _amp(day_dir / e["filenames"][det], t["segment"])
                data, os_ = _overscan_corrected(raw, hdr["DATASEC"])
                means.append(data.mean())
                first_os.append(os_[:, 0].mean())
                last_col.append(data[:, -1].mean())
            expected_adu = t["expected_flat_signal_e"] / t["gain_e_per_adu"]
            measured = np.mean(means) - t["bias_pattern_mean_adu"]
            assert measured == pytest.approx(expected_adu, rel=0.02), (det, amp)
            eper = np.mean(first_os) / np.mean(last_col) / t["eper_transfers"]
            assert eper == pytest.approx(t["serial_cti"], rel=0.2), (det, amp)


def test_dark_current_and_hot_defects(night):
    day_dir, truth = night
    darks = [e for e in truth["exposures"] if e["type"] == "dark"]
    biases = [e for e in truth["exposures"] if e["type"] == "bias"]
    det = "R01_S01"
    for t in truth["detectors"][det]["amps"].values():
        seg = t["segment"]
        hdr, _ = _amp(day_dir / darks[0]["filenames"][det], seg)
        bias = np.mean(
            [
                _overscan_corrected(_amp(day_dir / e["filenames"][det], seg)[1], hdr["DATASEC"])[0]
                for e in biases
            ],
            axis=0,
        )
        dark = np.mean(
            [
                _overscan_corrected(_amp(day_dir / e["filenames"][det], seg)[1], hdr["DATASEC"])[0]
                for e in darks
            ],
            axis=0,
        )
        rate = (dark - bias) * t["gain_e_per_adu"] / darks[0]["darktime_s"]  # e-/s
        # Per-pixel noise of the rate image: read noise of 4 darks + 4 biases, in e-/s.
        sigma = t["read_noise_e"] * math.sqrt(1 / 4 + 1 / 4) / 30.0
        for (r, c), hot in zip(t["hot_pixels"], t["hot_pixel_rates_e_per_s"], strict=True):
            assert rate[r, c] == pytest.approx(
                hot + t["dark_current_e_per_s"], abs=6 * sigma + 0.05 * hot
            )
        for c, hot in zip(t["hot_columns"], t["hot_column_rates_e_per_s"], strict=True):
            assert rate[:, c].mean() == pytest.approx(hot, rel=0.1)
        clean = np.delete(rate, t["hot_columns"], axis=1)
        assert abs(np.median(clean) - t["dark_current_e_per_s"]) < 0.03
    assert 40 in truth["detectors"][det]["amps"]["C13"]["hot_columns"]


def test_cold_column_in_flats(night):
    day_dir, truth = night
    t = truth["detectors"]["R01_S01"]["amps"]["C13"]
    assert 60 in t["cold_columns"]
    response = t["cold_column_response"][t["cold_columns"].index(60)]
    e = next(e for e in truth["exposures"] if e["type"] == "flat")
    hdr, raw = _amp(day_dir / e["filenames"]["R01_S01"], t["segment"])
    data = _overscan_corrected(raw, hdr["DATASEC"])[0]
    ratio = data[:, 60].mean() / np.median(data)
    assert ratio == pytest.approx(response, abs=0.02)


def test_overrides_and_dead_amp(tmp_path):
    truth = _night(
        tmp_path,
        detectors=("R22_S11",),
        n_bias=2,
        n_dark=0,
        n_flat=2,
        overrides={
            "R22_S11": {
                "C10": {"gain": 1.8, "read_noise_e": 9.0},
                "C11": {"dead": True},
                "C12": {"flux_scale": 0.5},
                "C13": {"bias_pattern_adu": 40.0, "dark_current_e_per_s": 0.05},
            }
        },
    )
    amps = truth["detectors"]["R22_S11"]["amps"]
    assert amps["C10"]["gain_e_per_adu"] == 1.8 and amps["C10"]["read_noise_e"] == 9.0
    assert amps["C10"]["read_noise_adu"] == pytest.approx(5.0)
    assert set(amps["C10"]["overridden"]) == {"gain_e_per_adu", "read_noise_e"}
    assert amps["C11"]["dead"] is True and amps["C11"]["flux_e_per_s"] == 0.0
    assert amps["C12"]["flux_e_per_s"] == pytest.approx(
        0.5 * truth["lamp_flux_e_per_s"] * amps["C12"]["illumination"]
    )
    assert amps["C13"]["dark_current_e_per_s"] == 0.05
    day_dir = tmp_path / DAY
    flat = next(e for e in truth["exposures"] if e["type"] == "flat")
    bias = next(e for e in truth["exposures"] if e["type"] == "bias")
    # C10: overscan noise follows the overridden read noise and gain.
    hdr, raw = _amp(day_dir / bias["filenames"]["R22_S11"], "Segment10")
    os_ = raw[:152, 113:-1].astype(np.float64)
    assert (os_ - os_.mean(axis=1, keepdims=True)).std() == pytest.approx(5.0, rel=0.05)
    # C11 dead: the flat is a bias (pattern + noise only).
    hdr, raw = _amp(day_dir / flat["filenames"]["R22_S11"], "Segment11")
    data = _overscan_corrected(raw, hdr["DATASEC"])[0]
    assert abs(data.mean()) < 1.0
    assert data.std() < 2 * amps["C11"]["read_noise_adu"]
    # C12 at half flux.
    hdr, raw = _amp(day_dir / flat["filenames"]["R22_S11"], "Segment12")
    data = _overscan_corrected(raw, hdr["DATASEC"])[0]
    expected = amps["C12"]["expected_flat_signal_e"] / amps["C12"]["gain_e_per_adu"]
    assert data.mean() == pytest.approx(expected, rel=0.02)
    # C13: a 40-ADU pattern.
    assert amps["C13"]["bias_pattern_mean_adu"] > 1.0
    hdr, raw = _amp(day_dir / bias["filenames"]["R22_S11"], "Segment13")
    data = _overscan_corrected(raw, hdr["DATASEC"])[0]
    assert data[:, 0].mean() == pytest.approx(
        40.0 + 20.0 * np.exp(-np.arange(152) / 1.52).mean(), abs=1.0
    )


def test_bad_overrides_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown override"):
        _night(tmp_path, detectors=("R22_S11",), overrides={"R22_S11": {"C10": {"gian": 2}}})
    with pytest.raises(ValueError, match="no amp"):
        _night(tmp_path, detectors=("R22_S11",), overrides={"R22_S11": {"C99": {"gain": 2}}})
    with pytest.raises(ValueError, match="not simulated"):
        _night(tmp_path, detectors=("R22_S11",), overrides={"R01_S01": {"C10": {"gain": 2}}})
    with pytest.raises(ValueError, match="outside"):
        _night(
            tmp_path,
            detectors=("R22_S11",),
            extra_defects={"R22_S11": {"C10": {"hot_pixels": [(500, 3)]}}},
        )
    with pytest.raises(ValueError, match="guider"):
        _night(tmp_path, detectors=("R00_SG0",))
    with pytest.raises(ValueError, match="YYYYMMDD"):
        simulate_night(tmp_path, "2025-11-21", small=True)


# --- PTC ramp -------------------------------------------------------------------------------


def test_ptc_ladder_is_dense_near_every_full_well():
    levels, info = ptc_signal_ladder(30, 110000.0, 150000.0)
    assert len(levels) == 30 and levels == sorted(levels)
    assert levels[0] == pytest.approx(300.0)
    dense = [x for x in levels if x >= 0.85 * 110000.0 * (1 - 1e-9)]
    assert dense[0] == pytest.approx(0.85 * 110000.0) and dense[-1] == pytest.approx(
        1.25 * 150000.0
    )
    steps = np.diff(dense) / dense[:-1]
    assert steps.max() <= 0.03 + 1e-12
    assert info["max_dense_step_frac"] <= 0.03


def test_ptc_night(tmp_path):
    truth = _night(
        tmp_path,
        detectors=("R22_S11",),
        n_bias=1,
        n_dark=0,
        n_flat=2,
        ptc=True,
        n_ptc_pairs=30,
    )
    day_dir = tmp_path / DAY
    ptc = truth["ptc"]
    assert ptc["n_pairs"] == 30 and ptc["max_dense_step_frac"] <= 0.03
    ramp = [e for e in truth["exposures"] if e["ptc"]]
    assert len(ramp) == 60 and ramp[0]["seqnum"] == 4  # after 1 bias and 2 daily flats
    fws = [
        a["full_well_e"] / (a["illumination"] * a["flux_scale"])
        for d in truth["detectors"].values()
        for a in d["amps"].values()
    ]
    assert ptc["dense_from_e"] == pytest.approx(0.85 * min(fws))
    assert ptc["dense_to_e"] == pytest.approx(1.25 * max(fws))
    for p in ptc["pairs"]:
        a, b = (e for e in ramp if e["pair_index"] == p["pair_index"])
        assert a["exptime_s"] == b["exptime_s"] == p["exptime_s"]
    hdr = fitsio.read_header(str(day_dir / ramp[0]["filenames"]["R22_S11"]), ext=0)
    assert (hdr["TESTTYPE"], hdr["REASON"], hdr["IMGTYPE"]) == ("PTC", "ptc", "FLAT")
    daily = fitsio.read_header(str(day_dir / truth["exposures"][1]["filenames"]["R22_S11"]), ext=0)
    assert daily["TESTTYPE"] == "FLAT"
    # The photon-transfer curve of one amp follows the brighter-fatter model below the
    # turnoff and collapses above it.
    t = truth["detectors"]["R22_S11"]["amps"]["C14"]
    g, rn = t["gain_e_per_adu"], t["read_noise_adu"]
    good = np.ones((152, 100), dtype=bool)  # cold defects stay below full well: mask them
    good[:, t["cold_columns"]] = False
    for r, c in t["cold_pixels"]:
        good[r, c] = False
    seen_turnoff = False
    for p in ptc["pairs"][::3]:
        s = p["expected_signal_e"]["R22_S11"]["C14"]
        x, y = (
            _overscan_corrected(_amp(day_dir / e["filenames"]["R22_S11"], t["segment"])[1], ds)[0]
            for e in ramp
            if e["pair_index"] == p["pair_index"]
            for ds in ["[11:110,1:152]"]
        )
        var = np.var((x - y)[good]) / 2
        if s < 0.93 * t["full_well_e"]:
            # Nonlinearity scales the variance by (1 + 2·k2·s)²; var noise ≈ √(2/15200).
            k2 = t["nonlinearity_k2_per_e"]
            model = bf_variance_e(s, t["a00_per_e"]) * (1 + 2 * k2 * s) ** 2
            assert var == pytest.approx(model / g**2 + rn**2, rel=0.06), p["pair_index"]
        elif s > 1.05 * t["full_well_e"]:
            seen_turnoff = True
            assert var < 2 * rn**2
            fw = t["full_well_e"]
            assert x.mean() == pytest.approx(
                fw * (1 + t["nonlinearity_k2_per_e"] * fw) / g, rel=0.01
            )
    assert seen_turnoff


def test_ptc_without_labels(tmp_path):
    truth = _night(
        tmp_path,
        detectors=("R01_S01",),
        n_bias=0,
        n_dark=0,
        n_flat=0,
        ptc=True,
        n_ptc_pairs=4,
        ptc_labels=False,
    )
    e = truth["exposures"][0]
    hdr = fitsio.read_header(str(tmp_path / DAY / e["filenames"]["R01_S01"]), ext=0)
    assert "TESTTYPE" not in hdr and "REASON" not in hdr
    assert hdr["IMGTYPE"] == "FLAT"
    assert len({x["exptime_s"] for x in truth["exposures"]}) == 4


# --- instruments, detectors, other files ------------------------------------------------------


def test_latiss(tmp_path):
    truth = _night(
        tmp_path, instrument="LATISS", n_bias=1, n_dark=0, n_flat=0, ptc=True, n_ptc_pairs=2
    )
    assert list(truth["detectors"]) == ["RXX_S00"]
    assert truth["detectors"]["RXX_S00"]["detector"] == 0
    path = tmp_path / DAY / "LATISS_O_20251121_000001_RXX_S00.fits"
    hdr = fitsio.read_header(str(path), ext=0)
    assert hdr["INSTRUME"] == "LATISS" and hdr["CCD_MANU"] == "ITL"
    assert (hdr["RAFTBAY"], hdr["CCDSLOT"]) == ("RXX", "S00")
    assert hdr["OBSID"].startswith("AT_")
    with fitsio.FITS(str(path)) as f:
        assert [f[i].get_extname() for i in range(1, len(f))] == SEGMENTS_16
    ptc_hdr = fitsio.read_header(
        str(tmp_path / DAY / "LATISS_O_20251121_000002_RXX_S00.fits"), ext=0
    )
    assert ptc_hdr["REASON"] == "daily_PTC" and ptc_hdr["TESTTYPE"] == "PTC"
    with pytest.raises(ValueError, match="LATISS has one detector"):
        _night(tmp_path, instrument="LATISS", detectors=("R22_S11",))


def test_wavefront_sensor_has_8_amps(tmp_path):
    truth = _night(tmp_path, detectors=("R00_SW0",), n_bias=1, n_dark=0, n_flat=0)
    assert list(truth["detectors"]["R00_SW0"]["amps"]) == list(AMP_ORDER_8)
    path = tmp_path / DAY / "LSSTCam_O_20251121_000001_R00_SW0.fits"
    with fitsio.FITS(str(path)) as f:
        assert [f[i].get_extname() for i in range(1, len(f))] == [f"Segment1{i}" for i in range(8)]
        assert f[1].read_header()["DETSIZE"] == "[1:800,1:150]"
    assert fitsio.read_header(str(path), ext=0)["CCD_MANU"] == "ITL"


def test_science_and_guider_files(tmp_path):
    sci = write_science_exposure(tmp_path, DAY, "R22_S11", 200, small=True)
    assert sci.name == "LSSTCam_O_20251121_000200_R22_S11.fits"
    with fitsio.FITS(str(sci)) as f:
        assert f[0].read_header()["IMGTYPE"] == "OBJECT"
        assert "TESTTYPE" not in f[0].read_header()
        assert [f[i].get_extname() for i in range(1, 17)] == SEGMENTS_16
        data = f["Segment10"].read()
    assert data.max() > data.mean() + 1000  # stars
    guider = write_guider_file(tmp_path, DAY, "R00_SG1", 200, n_stamps=30)
    with fitsio.FITS(str(guider)) as f:
        assert len(f) == 31
        assert f[1].get_extname().startswith("R00_SG1_stamp")
        assert all(f[i].read().shape == (50, 50) for i in (1, 30))
    with pytest.raises(ValueError):
        write_guider_file(tmp_path, DAY, "R22_S11", 1)


def test_truth_file_round_trip_and_definitions(night):
    day_dir, truth = night
    assert load_truth(day_dir / "truth.json") == truth
    assert load_truth(day_dir) == truth
    assert truth["seeds"] == {"seed": 0, "camera_seed": 1}
    assert truth["geometry"]["ITL"]["datasec"] == "[4:103,1:150]"
    amp = truth["detectors"]["R22_S11"]["amps"]["C10"]
    required = {
        "gain_e_per_adu", "read_noise_e", "read_noise_adu", "bias_level_adu",
        "bias_pattern_mean_adu", "dark_current_e_per_s", "full_well_e",
        "nonlinearity_k2_per_e", "a00_per_e", "serial_cti", "flux_e_per_s", "prnu",
        "hot_pixels", "hot_columns", "cold_pixels", "cold_columns", "dead", "vendor",
    }  # fmt: skip
    assert required <= set(amp)
    assert required <= set(DEFINITIONS)
    assert truth["definitions"] == DEFINITIONS
    assert amp["vendor"] == "E2V"
    assert all(len(rc) == 2 for rc in amp["hot_pixels"])
