"""``calibmon calibs import/list/used --butler`` against a real daf_butler repository."""

from __future__ import annotations

import json

import numpy as np
import pytest
from butler_repo import NIGHT2, Calibs

from calibmon.cli import main


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_import_registers_uuids_and_ranges(butler_calibs: Calibs, tmp_path, capsys) -> None:
    store = str(tmp_path / "cm.sqlite")
    repo = str(butler_calibs.repo.root)
    rc, out, err = _cli(capsys, "calibs", "import", "--butler", repo, "--collections",
                        "LSSTCam/calib", "--store", store)  # fmt: skip
    assert rc == 0, out + err
    lines = sorted(out.splitlines())
    want = sorted(
        [f"{u} {t} {d} [2025-11-22, ∞)" for (t, d), u in butler_calibs.uuids.items()
         if (t, d) != ("bias", "R22_S11")]
        + [f"{butler_calibs.uuids[('bias', 'R22_S11')]} bias R22_S11 [2025-11-22, 2025-11-25)",
           f"{butler_calibs.later_bias} bias R22_S11 [2025-11-25, ∞)"]
    )  # fmt: skip
    assert lines == want
    # again: nothing new, same lines
    rc, out2, err2 = _cli(capsys, "calibs", "import", "--butler", repo, "--collections",
                          "LSSTCam/calib", "--store", store)  # fmt: skip
    assert rc == 0 and sorted(out2.splitlines()) == want and "0 new products" in err2


def test_imported_amps_equal_the_masters(butler_calibs: Calibs, tmp_path, capsys) -> None:
    """Cutting the assembled stack files by the raws' DETSEC gives back each amp of the
    masters they were made from: bias through × gain ÷ gain (float32: relative 1e-6),
    dark/flat/defects exactly."""
    from calibmon.calibs.products import read_amp
    from calibmon.store.calibs import get_product
    from calibmon.store.sqlite import Store

    store = tmp_path / "cm.sqlite"
    rc, _, err = _cli(capsys, "calibs", "import", "--butler", str(butler_calibs.repo.root),
                        "--collections", "LSSTCam/calib", "--store", str(store),
                        "--calib-type", "bias,dark,flat,defects")  # fmt: skip
    assert rc == 0, err
    with Store(store) as st:
        for (t, det), uid in butler_calibs.uuids.items():
            p = get_product(st, uid)
            assert p is not None and p.calib_type == t and p.detector_name == det
            assert p.source_run.startswith("LSSTCam/calib/DM-00001")
            for amp in ("C10", "C17", "C07", "C00"):
                got = read_amp(p.path, amp)
                ref = read_amp(butler_calibs.products[(t, det)], amp)
                assert got.image.shape == ref.image.shape
                if t == "bias":
                    np.testing.assert_allclose(got.image, ref.image, rtol=1e-6, atol=1e-4)
                    np.testing.assert_allclose(float(got.keys["FRMNOISE"]),
                                               float(ref.keys["FRMNOISE"]), rtol=1e-6)  # fmt: skip
                else:
                    np.testing.assert_array_equal(got.image, ref.image)


def test_next_day_verifies_against_the_butler_calibs(
    butler_calibs: Calibs, tmp_path, capsys
) -> None:  # fmt: skip
    """Night 2 (no injected change) through ``run --butler`` verifies against the imported
    products: every verify record names the Butler UUID in input_calibs, and a clean
    night passes (pass fraction 1 on at least 95 % of amps: each test's tolerance is
    set for a false-failure rate of a few per mille per exposure, see science/verify.py)."""
    store = str(tmp_path / "cm.sqlite")
    repo = str(butler_calibs.repo.root)
    assert _cli(capsys, "calibs", "import", "--butler", repo, "--collections",
                "LSSTCam/calib", "--store", store)[0] == 0  # fmt: skip
    rc, out, err = _cli(capsys, "run", "--butler", repo, "--day-obs", NIGHT2, "--store", store,
                        "--workers", "1")  # fmt: skip
    assert rc == 0, out + err
    rc, out, _ = _cli(capsys, "export", "--format", "jsonl", "--store", store)
    recs = [json.loads(line) for line in out.splitlines()]
    seen = set()
    for r in recs:
        if not r["metric"].startswith("verify_") or r["level"] != "amp":
            continue
        for t, ref in r["provenance"]["input_calibs"].items():
            assert ref["id"] == butler_calibs.uuids[(t, r["detector_name"])], r
            seen.add((t, r["detector_name"]))
    assert seen == set(butler_calibs.uuids)
    for metric in ("verify_bias_pass", "verify_dark_pass", "verify_flat_pass"):
        vals = [r["value"] for r in recs if r["metric"] == metric and r["level"] == "amp"]
        assert len(vals) == 32, metric
        assert np.mean(np.asarray(vals) == 1.0) >= 0.95, (metric, vals)


def test_list_what_the_collection_hands_out(butler_calibs: Calibs, tmp_path, capsys) -> None:
    store = str(tmp_path / "cm.sqlite")
    repo = str(butler_calibs.repo.root)
    args = ("calibs", "list", "--butler", repo, "--collections", "LSSTCam/calib",
            "--store", store, "--calib-type", "bias")  # fmt: skip
    rc, out, _ = _cli(capsys, *args, "--day-obs", "20251121")
    assert rc == 0 and out.count("nothing certified for this day") == 2
    rc, out, _ = _cli(capsys, *args, "--day-obs", "20251124")
    first = butler_calibs.uuids[("bias", "R22_S11")]
    assert f"20251124 R22_S11 bias {first} LSSTCam/calib/DM-00001/20251121: not in calibmon" in out
    assert _cli(capsys, "calibs", "import", "--butler", repo, "--collections",
                "LSSTCam/calib", "--store", store)[0] == 0  # fmt: skip
    rc, out, _ = _cli(capsys, *args, "--day-obs", "20251125")
    assert (f"20251125 R22_S11 bias {butler_calibs.later_bias} LSSTCam/calib/DM-00002/20251124: "
            "imported, certified [2025-11-25, ∞)") in out  # fmt: skip


def test_used_ties_cards_to_products(butler_calibs: Calibs, tmp_path, capsys) -> None:
    from stack_files import write_processed

    store = str(tmp_path / "cm.sqlite")
    repo = str(butler_calibs.repo.root)
    u = butler_calibs.uuids
    assert _cli(capsys, "calibs", "import", "--butler", repo, "--collections",
                "LSSTCam/calib", "--store", store)[0] == 0  # fmt: skip
    assert _cli(capsys, "run", "--butler", repo, "--day-obs", NIGHT2, "--store", store,
                "--workers", "1", "-q")[0] == 0  # fmt: skip
    run = "LSSTCam/calib/DM-00001/20251121"
    proc = tmp_path / "postISRCCD_2025112200001_R22_S11.fits"
    write_processed(proc, NIGHT2, 94, {
        "bias": (run, u[("bias", "R22_S11")], "2025-11-21 23:00:00"),
        "defects": (run, u[("defects", "R22_S11")], "2025-11-21 Unknown"),
        "ptc": ("LSSTCam/calib/ptc", "0f0e0d0c-0000-4000-8000-000000000000", "2025-10-01 x"),
    })  # fmt: skip
    rc, out, err = _cli(capsys, "calibs", "used", str(proc), "--format", "json", "--store",
                        store, "--butler", repo)  # fmt: skip
    assert rc == 0, err
    (obj,) = [json.loads(line) for line in out.splitlines()]
    assert obj["file"] == str(proc) and obj["day_obs"] == NIGHT2
    assert set(obj["calibs"]) == {"bias", "defects", "ptc"}
    b = obj["calibs"]["bias"]
    assert (b["run"], b["uuid"], b["date"]) == (run, u[("bias", "R22_S11")],
                                                "2025-11-21 23:00:00")  # fmt: skip
    assert b["known"] and b["certifications"] == [["2025-11-22", "2025-11-25"]]
    assert b["certified_on_day"] is True
    assert b["verification"]["n_amps"] == 16 and b["verification"]["status"] in ("passed", "failed")
    assert b["butler"]["dataset_type"] == "bias" and b["butler"]["run"] == run
    assert obj["calibs"]["ptc"]["known"] is False and obj["calibs"]["ptc"]["butler"] is None
    rc, out, _ = _cli(capsys, "calibs", "used", str(proc), "--store", store)
    assert rc == 0 and "unknown to calibmon" in out and "calibmon product (certified" in out
    rc, _, err = _cli(capsys, "calibs", "used", str(tmp_path / "missing.fits"), "--store", store)
    assert rc == 1 and "missing.fits" in err


def test_import_problems_are_one_line_each(butler_calibs: Calibs, tmp_path, capsys) -> None:
    """A timespan containing no day_obs start, and a detector without raws to take the
    amp geometry from: each named in one line, exit 1; the collection's other
    certifications still import."""
    from butler_repo import certify, ingest_calib, make_repo

    butler = make_repo(tmp_path / "repo", ["R22_S11"])
    files = butler_calibs.stack_files
    short = ingest_calib(butler, files[("bias", "R22_S11")], "bias", "R22_S11", "LSSTCam/calib/x")
    certify(butler, [short], "2025-11-21T13:00:00", "2025-11-21T20:00:00")
    dark = ingest_calib(butler, files[("dark", "R22_S11")], "dark", "R22_S11", "LSSTCam/calib/x")
    certify(butler, [dark], "2025-11-22T00:00:00")
    rc, out, err = _cli(capsys, "calibs", "import", "--butler", str(tmp_path / "repo"),
                        "--collections", "LSSTCam/calib", "--store", str(tmp_path / "cm.sqlite"))  # fmt: skip
    assert rc == 1 and out == ""
    lines = [x for x in err.splitlines() if x.startswith("not imported:")]
    assert len(lines) == 2
    assert f"{short.id} bias R22_S11: timespan [2025-11-21T13:00:00.000 TAI" in lines[0]
    assert "contains no day_obs start" in lines[0]
    assert f"{dark.id} dark R22_S11: no raw of R22_S11 in LSSTCam/raw/all" in lines[1]
    rc, _, err = _cli(capsys, "calibs", "import", "--butler", str(tmp_path / "repo"),
                      "--store", str(tmp_path / "cm.sqlite"))  # fmt: skip
    assert rc == 2 and "--collections" in err
    rc, _, err = _cli(capsys, "calibs", "import", "--butler", str(tmp_path / "repo"),
                      "--collections", "LSSTCam/calib", "--calib-type", "bias,ptc",
                      "--store", str(tmp_path / "cm.sqlite"))  # fmt: skip
    assert rc == 2 and "--calib-type ptc" in err
    rc, _, err = _cli(capsys, "calibs", "import", "--butler", str(tmp_path / "repo"),
                      "--collections", "LSSTCam/calib/x", "--store", str(tmp_path / "cm.sqlite"))  # fmt: skip
    assert rc == 2 and "a RUN collection; certified calibrations are in a CALIBRATION" in err


def test_chained_collection_first_child_wins(butler_calibs: Calibs, tmp_path, capsys) -> None:
    """Through a CHAINED collection [B, A] whose children both certify R22_S11's bias on
    20251125, the Butler hands out B's; calibmon's registry must agree after the import."""
    from butler_repo import NIGHT1, certify, ingest_calib, ingest_raws, make_repo
    from lsst.daf.butler import CollectionType

    butler = make_repo(tmp_path / "repo", ["R22_S11"])
    ingest_raws(butler, sorted((butler_calibs.repo.raw / NIGHT1).glob("*_R22_S11.fits")))
    bias = butler_calibs.stack_files[("bias", "R22_S11")]
    reg = butler.registry
    for name in ("LSSTCam/calib/A", "LSSTCam/calib/B"):
        reg.registerCollection(name, CollectionType.CALIBRATION)
    a = ingest_calib(butler, bias, "bias", "R22_S11", "LSSTCam/calib/run-a")
    b = ingest_calib(butler, bias, "bias", "R22_S11", "LSSTCam/calib/run-b")
    certify(butler, [a], "2025-11-22T00:00:00", collection="LSSTCam/calib/A")
    certify(butler, [b], "2025-11-24T00:00:00", collection="LSSTCam/calib/B")
    reg.registerCollection("LSSTCam/calib/current", CollectionType.CHAINED)
    reg.setCollectionChain("LSSTCam/calib/current", ["LSSTCam/calib/B", "LSSTCam/calib/A"])
    common = ("--butler", str(tmp_path / "repo"), "--collections", "LSSTCam/calib/current",
              "--store", str(tmp_path / "cm.sqlite"))  # fmt: skip
    rc, out, err = _cli(capsys, "calibs", "import", *common)
    assert rc == 0, err
    assert sorted(out.splitlines()) == sorted([f"{a.id} bias R22_S11 [2025-11-22, ∞)",
                                               f"{b.id} bias R22_S11 [2025-11-24, ∞)"])  # fmt: skip
    rc, out, _ = _cli(capsys, "calibs", "list", *common, "--day-obs", "20251125")
    assert f"R22_S11 bias {b.id} LSSTCam/calib/run-b: imported, certified [2025-11-24, ∞)" in out
    rc, out, _ = _cli(capsys, "calibs", "list", *common, "--day-obs", "20251123")
    assert f"R22_S11 bias {a.id} LSSTCam/calib/run-a: imported, certified [2025-11-22, ∞)" in out
