"""Certification registry and the calibs commands' error paths (exit codes as DESIGN §3)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import fitsio
import numpy as np
import pytest
from calib_history import DETECTORS, SIM, History, run_cli

from calibmon.calibs import registry
from calibmon.errors import CalibError, ConfigError
from calibmon.simulate import simulate_night
from calibmon.store import calibs as db
from calibmon.store.sqlite import Store, utc_now_iso


def _product(store: Store, pid: str, calib_type: str = "bias", det: str = "R22_S11",
             physical_filter: str = "") -> None:  # fmt: skip
    db.insert_product(store, db.ProductRow(
        id=pid, calib_type=calib_type, instrument="LSSTCam", detector=94 if det == "R22_S11" else 1,
        detector_name=det, physical_filter=physical_filter, day_obs="20251101",
        path=f"/nonexistent/{pid}.fits", source_run="test", created_at=utc_now_iso(),
        meta={"n_exposures": 5},
    ))  # fmt: skip


def test_lookup_ranges_are_begin_inclusive_end_exclusive_latest_wins(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as st:
        for pid in ("aaaaaaaa-1", "bbbbbbbb-2", "cccccccc-3"):
            _product(st, pid)
        registry.certify(st, "aaaaaaaa-1", "2025-11-01")
        registry.certify(st, "bbbbbbbb-2", "2025-11-03", "2025-11-06")

        def found(day: str) -> str | None:
            row = registry.lookup(st, "bias", "LSSTCam", 94, day)
            return row.product.id if row else None

        assert found("20251031") is None  # before any begin
        assert found("20251102") == "aaaaaaaa-1"
        assert found("20251103") == "bbbbbbbb-2"  # begin inclusive; later certification wins
        assert found("20251105") == "bbbbbbbb-2"
        assert found("20251106") == "aaaaaaaa-1"  # end exclusive: back to the open range
        # certified later, overlapping both: wins where it applies
        registry.certify(st, "cccccccc-3", "2025-11-01", "2025-11-04")
        assert found("20251103") == "cccccccc-3"
        assert found("20251104") == "bbbbbbbb-2"
        # other detectors, types and filters are separate
        assert registry.lookup(st, "bias", "LSSTCam", 1, "20251103") is None
        assert registry.lookup(st, "dark", "LSSTCam", 94, "20251103") is None
        assert registry.resolve_product(st, "cccccccc").id == "cccccccc-3"  # unique prefix
        with pytest.raises(CalibError, match="no calibration product"):
            registry.certify(st, "dddddddd-4", "2025-11-01")
        with pytest.raises(ConfigError, match="after --begin"):
            registry.certify(st, "aaaaaaaa-1", "2025-11-05", "2025-11-05")


def test_flat_lookup_by_filter(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as st:
        _product(st, "flat-r", "flat", physical_filter="r_57")
        _product(st, "flat-g", "flat", physical_filter="g_6")
        registry.certify(st, "flat-r", "2025-11-01")
        registry.certify(st, "flat-g", "2025-11-01")
        assert registry.lookup(st, "flat", "LSSTCam", 94, "20251110", "g_6").product.id == "flat-g"
        assert registry.lookup(st, "flat", "LSSTCam", 94, "20251110", "i_39") is None


def test_certify_cli_overlap_note_and_errors(tmp_path: Path, capsys) -> None:
    store = tmp_path / "s.sqlite"
    with Store(store) as st:
        _product(st, "11111111-aaaa")
        _product(st, "22222222-bbbb")
    rc, out, _ = run_cli(capsys, "calibs", "certify", "11111111-aaaa", "--begin", "2025-11-01",
                         "--store", str(store))  # fmt: skip
    assert rc == 0 and out.startswith("certified [2025-11-01, ∞) 11111111-aaaa test bias")
    rc, out, _ = run_cli(capsys, "calibs", "certify", "22222222", "--begin", "20251110",
                         "--end", "2025-11-20", "--store", str(store))  # fmt: skip
    assert rc == 0
    assert "certified [2025-11-10, 2025-11-20) 22222222-bbbb" in out
    assert "overlaps [2025-11-01, ∞) 11111111-aaaa: this certification wins" in out
    rc, out, err = run_cli(capsys, "calibs", "certify", "no-such-id", "--begin", "2025-11-01",
                           "--store", str(store))  # fmt: skip
    assert rc == 1 and out == ""
    assert err.strip() == "calibmon: no calibration product with id 'no-such-id' in the store"
    rc, _, err = run_cli(capsys, "calibs", "certify", "11111111-aaaa", "--begin", "2025-13-01",
                         "--store", str(store))  # fmt: skip
    assert rc == 2 and "not a valid date" in err
    rc, _, err = run_cli(capsys, "calibs", "certify", "11111111-aaaa", "--begin", "2025-11-05",
                         "--end", "2025-11-01", "--store", str(store))  # fmt: skip
    assert rc == 2 and "must be after --begin" in err
    rc, out, _ = run_cli(capsys, "calibs", "list", "--store", str(store))
    assert out.splitlines() == [
        "[2025-11-01, ∞) 11111111-aaaa test bias LSSTCam R22_S11",
        "[2025-11-10, 2025-11-20) 22222222-bbbb test bias LSSTCam R22_S11",
    ]


def _copy_store(history: History, dest: Path) -> Path:
    shutil.copy(history.store, dest)
    return dest


def test_day_without_certified_product(history: History, tmp_path: Path, capsys, caplog) -> None:
    """A night before the certifications begin: said once per type and detector, nothing
    verified, exit 0; the condition is in the run's notes and in missing_certified()."""
    store = _copy_store(history, tmp_path / "s.sqlite")
    raw = tmp_path / "raw"
    simulate_night(raw, "20251030", DETECTORS, seed=99, **{**SIM, "n_bias": 2, "n_dark": 2,
                                                          "n_flat": 2})  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="calibmon"):
        rc, out, _ = run_cli(capsys, "run", "--input", str(raw), "--store", str(store),
                             "--workers", "1")  # fmt: skip
    assert rc == 0
    for det in DETECTORS:
        for kind in ("bias", "dark", "flat"):
            msg = (f"no certified {kind}{' (empty)' if kind == 'flat' else ''} for LSSTCam "
                   f"{det} valid on 20251030: {kind} verification not measured")  # fmt: skip
            assert f"{det} verify {kind}: {msg}" in out
            assert sum(msg in r.getMessage() for r in caplog.records
                       if r.levelno == logging.WARNING) == 1  # fmt: skip
    with Store(store) as st:
        recs = list(st.iter_records(day_obs="20251030"))
        assert recs and not [r for r in recs if r.metric.startswith("verify_")]
        missing = registry.missing_certified(st, "20251030")
        assert {(m.detector_name, m.calib_type) for m in missing} == {
            (d, k) for d in DETECTORS for k in ("bias", "dark", "flat")
        }
        notes = json.loads(st.runs(limit=1)[0]["notes"])
        assert len(notes["missing_certified"]) == 6
        assert notes["missing_certified"][0]["day_obs"] == "20251030"
        assert registry.missing_certified(st, "20251103") == []


def _product_path(history: History, kind: str, det: str) -> Path:
    with Store(history.store) as st:
        return Path(db.get_product(st, history.products[(kind, det)]).path)


def _rewrite(src: Path, dest: Path, *, segment: str | None = None, shape=None,
             drop_id: bool = False) -> None:  # fmt: skip
    """Copy a product, optionally replacing one amp HDU by an image of another shape."""
    with fitsio.FITS(str(src)) as f, fitsio.FITS(str(dest), "rw", clobber=True) as out:
        h = f[0].read_header()
        cards = [{"name": k, "value": h[k]} for k in h
                 if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND") and not (drop_id and k == "CALIB_ID")]  # fmt: skip
        out.write(None, header=cards)
        for hdu in f[1:]:
            name = hdu.get_extname()
            hh = hdu.read_header()
            data = hdu.read()
            if name == segment:
                data = np.zeros(shape, dtype=data.dtype)
            keep = [{"name": k, "value": hh[k]} for k in hh
                    if k not in ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT",
                                 "GCOUNT", "TFIELDS", "EXTNAME") and not k.startswith(("TTYPE", "TFORM"))]  # fmt: skip
            out.write(data, header=keep, extname=name)


def test_import_checks_the_layout(history: History, tmp_path: Path, capsys) -> None:
    store = _copy_store(history, tmp_path / "s.sqlite")
    src = _product_path(history, "bias", "R01_S01")
    bad = tmp_path / "bad_bias.fits"
    _rewrite(src, bad, segment="Segment13", shape=(150, 99))
    rc, out, err = run_cli(capsys, "calibs", "import", str(bad), "--store", str(store))
    assert rc == 1 and out == ""
    assert err.strip() == (f"calibmon: {bad}: Segment13 has shape (150, 99), expected (150, 100) "
                           "from its DATASEC [4:103,1:150]")  # fmt: skip
    missing = tmp_path / "missing_hdu.fits"
    with fitsio.FITS(str(src)) as f, fitsio.FITS(str(missing), "rw", clobber=True) as out_f:
        h = f[0].read_header()
        out_f.write(None, header=[{"name": k, "value": h[k]} for k in h
                                  if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND")])  # fmt: skip
        datasec = f["Segment10"].read_header()["DATASEC"]
        out_f.write(f["Segment10"].read(), header=[{"name": "DATASEC", "value": datasec}],
                    extname="Segment10")  # fmt: skip
    rc, _, err = run_cli(capsys, "calibs", "import", str(missing), "--store", str(store))
    assert rc == 1 and err.strip() == f"calibmon: {missing}: HDU Segment11 missing"
    # the same product again: its CALIB_ID is known
    rc, _, err = run_cli(capsys, "calibs", "import", str(src), "--store", str(store))
    assert rc == 1 and "is already registered" in err
    # without CALIB_ID: registered under a new id, copied beside the store
    good = tmp_path / "external_bias.fits"
    _rewrite(src, good, drop_id=True)
    rc, out, _ = run_cli(capsys, "calibs", "import", str(good), "--store", str(store))
    assert rc == 0
    pid = out.strip()
    with Store(store) as st:
        p = db.get_product(st, pid)
        assert p.calib_type == "bias" and p.detector_name == "R01_S01" and p.source_run == "import"
        assert Path(p.path).exists() and Path(p.path) != good
        with fitsio.FITS(p.path) as f:
            assert f[0].read_header()["CALIB_ID"] == pid
    rc, _, _ = run_cli(capsys, "calibs", "certify", pid, "--begin", "2025-12-01",
                       "--store", str(store))  # fmt: skip
    assert rc == 0


def test_import_wrong_shape_for_the_detector(history: History, tmp_path: Path, capsys) -> None:
    """A product whose amps agree with their own DATASEC but not with the detector's
    registered products (full-size vs small amps) is refused too."""
    store = _copy_store(history, tmp_path / "s.sqlite")
    src = _product_path(history, "dark", "R22_S11")
    other = tmp_path / "resized.fits"
    with fitsio.FITS(str(src)) as f, fitsio.FITS(str(other), "rw", clobber=True) as out:
        h = f[0].read_header()
        out.write(None, header=[{"name": k, "value": h[k]} for k in h
                                if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "CALIB_ID")])  # fmt: skip
        for hdu in f[1:]:
            name = hdu.get_extname()
            if not name.startswith("Segment"):
                continue
            hh = hdu.read_header()
            cards = [{"name": k, "value": hh[k]} for k in ("GAIN", "FRMNOISE", "DARKTIME",
                                                            "DARKMEAN", "NFRAMES")]  # fmt: skip
            cards.append({"name": "DATASEC", "value": "[11:100,1:140]"})
            out.write(np.zeros((140, 90), np.float32), header=cards, extname=name)
    rc, _, err = run_cli(capsys, "calibs", "import", str(other), "--store", str(store))
    assert rc == 1
    assert err.strip() == (f"calibmon: {other}: amp shape (140, 90) differs from the products "
                           "registered for LSSTCam R22_S11 ((152, 100))")  # fmt: skip


def test_calibs_without_action_is_usage(capsys) -> None:
    rc, out, _ = run_cli(capsys, "calibs")
    assert rc == 2 and "certify" in out


def test_build_without_frames_is_an_input_error(tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    simulate_night(raw, "20251101", ["R22_S11"], seed=1, **{**SIM, "n_bias": 2, "n_dark": 0,
                                                           "n_flat": 0})  # fmt: skip
    rc, out, err = run_cli(capsys, "calibs", "build", "--calib-type", "dark", "--input", str(raw),
                           "--day-obs", "20251101", "--store", str(tmp_path / "s.sqlite"))  # fmt: skip
    assert rc == 1 and out == ""
    assert "not built: LSSTCam R22_S11 20251101: no dark frames in the input" in err.splitlines()
