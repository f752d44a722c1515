"""``calibmon run --butler`` against a real daf_butler repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from butler_repo import NIGHT1, Repo

from calibmon.cli import main

# provenance keys that differ between two runs of the same inputs by construction
RUN_KEYS = ("run", "processed_at", "butler")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _export(store: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    rc, out, _ = _cli(capsys, "export", "--format", "jsonl", "--store", str(store))
    assert rc == 0
    return [json.loads(line) for line in out.splitlines()]


def _comparable(rec: dict) -> dict:
    rec = json.loads(json.dumps(rec))
    for k in RUN_KEYS:
        rec["provenance"].pop(k, None)
    return rec


def test_run_butler_equals_run_input(butler_night: Repo, tmp_path, capsys) -> None:
    """Same records as ``run --input`` over the same files; provenance names the repo."""
    s_in, s_b = tmp_path / "input.sqlite", tmp_path / "butler.sqlite"
    rc, out, err = _cli(capsys, "run", "--input", str(butler_night.raw / NIGHT1),
                        "--day-obs", NIGHT1, "--store", str(s_in), "--workers", "1")  # fmt: skip
    assert rc == 0, out + err
    rc, out, err = _cli(capsys, "run", "--butler", str(butler_night.root), "--day-obs", NIGHT1,
                        "--collections", "LSSTCam/raw/all", "--store", str(s_b),
                        "--workers", "1")  # fmt: skip
    assert rc == 0, out + err
    assert "32 raw datasets" in out  # 2 detectors × (5 bias + 5 dark + 6 flats)
    rec_in, rec_b = _export(s_in, capsys), _export(s_b, capsys)
    assert len(rec_in) > 100
    assert sorted(map(json.dumps, map(_comparable, rec_b))) == sorted(
        map(json.dumps, map(_comparable, rec_in))
    )
    for r in rec_b:
        assert r["provenance"]["butler"] == {
            "repo": str(butler_night.root), "collections": ["LSSTCam/raw/all"],
        }  # fmt: skip
    assert all("butler" not in r["provenance"] for r in rec_in)


def test_run_butler_detectors_and_empty_day(butler_night: Repo, tmp_path, capsys) -> None:
    store = tmp_path / "cm.sqlite"
    rc, out, err = _cli(capsys, "run", "--butler", str(butler_night.root), "--day-obs", NIGHT1,
                        "--detectors", "R22_S11", "--store", str(store), "--workers", "1")  # fmt: skip
    assert rc == 0, out + err
    assert {r["detector_name"] for r in _export(store, capsys) if r["detector_name"]} == {"R22_S11"}
    rc, out, err = _cli(capsys, "run", "--butler", str(butler_night.root), "--day-obs",
                        "20251001", "--store", str(store))  # fmt: skip
    assert rc == 0 and "0 raw datasets" in out


def test_run_butler_usage_errors(butler_night: Repo, tmp_path, capsys) -> None:
    store = str(tmp_path / "cm.sqlite")
    rc, _, err = _cli(capsys, "run", "--butler", str(tmp_path / "nope"), "--day-obs", NIGHT1,
                      "--store", store)  # fmt: skip
    assert rc == 2 and "not a usable Butler repository" in err and len(err.splitlines()) == 1
    rc, _, err = _cli(capsys, "run", "--butler", str(butler_night.root), "--day-obs", NIGHT1,
                      "--collections", "LSSTCam/raw/nope", "--store", store)  # fmt: skip
    assert rc == 2 and "no collection LSSTCam/raw/nope" in err
    rc, _, err = _cli(capsys, "run", "--butler", str(butler_night.root), "--store", store)
    assert rc == 2 and "--day-obs" in err


def test_without_the_extra_one_line_exit_2(tmp_path) -> None:
    """Without lsst-daf-butler the command names the extra in one line and exits 2."""
    code = (
        "import sys; sys.modules['lsst'] = None\n"  # import lsst.* now raises ImportError
        "from calibmon.cli import main\n"
        f"sys.exit(main(['run', '--butler', '/repo/embargo', '--day-obs', '20251121', "
        f"'--store', {str(tmp_path / 'cm.sqlite')!r}]))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        "calibmon: the Butler commands need lsst-daf-butler, the optional extra: "
        "pip install 'calibmon[butler]'"
    ]
