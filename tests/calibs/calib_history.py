"""A simulated history for verification tests (built once per session by conftest.py).

Two detectors (R22_S11 e2v, R01_S01 ITL), small amps, camera_seed fixed, one noise seed
per night, 5 biases, 5 darks and 6 flats a night. Masters of every type are built from
night 1 through the CLI and certified from 2025-11-01 on (open-ended); nights 2–7 are
processed. Changes are injected on known nights and stay (a new defect does not heal):

=========  ========  ====  ===============================================  ===========
night      detector  amp   change                                           must fail
=========  ========  ====  ===============================================  ===========
20251104   R22_S11   C13   new hot column (column 50, 10 e-/s)              dark
20251105   R01_S01   C04   read noise × 1.5                                 bias, dark
20251105   R01_S01   C10   dead amp (no charge)                             flat
20251106   R22_S11   C05   fixed bias structure amplitude + 10 adu          bias
20251107   R01_S01   C16   flat response × 1.05 (flux_scale)                flat
20251107   R01_S01   C07   new cold column (column 20)                      flat
=========  ========  ====  ===============================================  ===========

The dead amp must fail alone: its 15 neighbours on R01_S01 keep passing the flat
verification on the three nights it is dead (the detector reference excludes it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from calibmon.cli import main
from calibmon.simulate import simulate_night

DETECTORS = ["R22_S11", "R01_S01"]
NIGHTS = ["20251101", "20251102", "20251103", "20251104", "20251105", "20251106", "20251107"]
SIM = {"small": True, "camera_seed": 5, "n_bias": 5, "n_dark": 5, "n_flat": 6}
HOT_COLUMN = 50
COLD_COLUMN = 20
DEAD = ("R01_S01", "C10")

# (first night, detector, amp, types that must fail from then on)
INJECTIONS = [
    ("20251104", "R22_S11", "C13", ("dark",)),
    ("20251105", "R01_S01", "C04", ("bias", "dark")),
    ("20251105", "R01_S01", "C10", ("flat",)),
    ("20251106", "R22_S11", "C05", ("bias",)),
    ("20251107", "R01_S01", "C16", ("flat",)),
    ("20251107", "R01_S01", "C07", ("flat",)),
]


def _changes(day: str, camera: dict) -> tuple[dict, dict]:
    """Simulator overrides/extra_defects in effect on ``day`` (cumulative)."""
    overrides: dict = {}
    extra: dict = {}
    if day >= "20251104":
        extra.setdefault("R22_S11", {})["C13"] = {"hot_columns": [HOT_COLUMN]}
    if day >= "20251105":
        rn = camera["R01_S01"]["C04"]["camera"]["read_noise_e"]
        overrides.setdefault("R01_S01", {})["C04"] = {"read_noise": 1.5 * rn}
        overrides["R01_S01"]["C10"] = {"dead": True}
    if day >= "20251106":
        pattern = camera["R22_S11"]["C05"]["bias_pattern_adu"]
        overrides.setdefault("R22_S11", {})["C05"] = {"bias_pattern": pattern + 10.0}
    if day >= "20251107":
        overrides.setdefault("R01_S01", {})["C16"] = {"flux_scale": 1.05}
        extra.setdefault("R01_S01", {})["C07"] = {"cold_columns": [COLD_COLUMN]}
    return overrides, extra


@dataclass
class History:
    root: Path
    raw: Path
    store: Path
    truth: dict[str, dict]
    products: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, det) -> id
    build_out: dict[str, str] = field(default_factory=dict)  # type -> CLI stdout
    list_out: str = ""


def run_cli(capsys: pytest.CaptureFixture[str] | None, *argv: str) -> tuple[int, str, str]:
    if capsys is not None:
        capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse usage errors exit 2
        rc = int(exc.code or 0)
    if capsys is None:
        return rc, "", ""
    out = capsys.readouterr()
    return rc, out.out, out.err


def build_history(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("calibs_history")
    raw = root / "raw"
    store = root / "calibmon.sqlite"
    truth: dict[str, dict] = {}
    first = simulate_night(raw, NIGHTS[0], DETECTORS, seed=100, **SIM)
    truth[NIGHTS[0]] = first
    camera = {d: first["detectors"][d]["amps"] for d in DETECTORS}
    for i, day in enumerate(NIGHTS[1:], start=1):
        overrides, extra = _changes(day, camera)
        truth[day] = simulate_night(raw, day, DETECTORS, seed=100 + i, overrides=overrides,
                                    extra_defects=extra, **SIM)  # fmt: skip
    h = History(root, raw, store, truth)
    # Night 1 first (its gains go to the store), then masters from it, certified.
    assert main(["run", "--input", str(raw / NIGHTS[0]), "--store", str(store), "-q"]) == 0
    import io
    from contextlib import redirect_stdout

    for calib_type in ("bias", "dark", "flat", "defects"):
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = main(["calibs", "build", "--calib-type", calib_type, "--input",
                       str(raw / NIGHTS[0]), "--day-obs", NIGHTS[0], "--store", str(store),
                       "-q"])  # fmt: skip
        assert rc == 0, buf.getvalue()
        h.build_out[calib_type] = buf.getvalue()
        ids = [line.strip() for line in buf.getvalue().splitlines() if line.strip()]
        assert len(ids) == len(DETECTORS), buf.getvalue()
        for pid in ids:
            with redirect_stdout(io.StringIO()):
                assert main(["calibs", "certify", pid, "--begin", "2025-11-01",
                             "--store", str(store), "-q"]) == 0  # fmt: skip
    from calibmon.store.calibs import list_products
    from calibmon.store.sqlite import Store

    with Store(store) as st:
        for p in list_products(st):
            h.products[(p.calib_type, p.detector_name)] = p.id
    # Night 2 through the CLI with worker processes, the rest in-process (faster).
    assert main(["run", "--input", str(raw / NIGHTS[1]), "--store", str(store), "-q",
                 "--workers", "2"]) == 0  # fmt: skip
    from calibmon.config import load_settings
    from calibmon.service.run import run_directory

    settings = load_settings(None, store=store, executor="serial")
    with Store(store) as st:
        for day in NIGHTS[2:]:
            summary = run_directory(raw / day, settings, st)
            assert summary.ok, summary.rejected
            assert not summary.missing_certified, summary.missing_certified
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["calibs", "list", "--store", str(store)]) == 0
    h.list_out = buf.getvalue()
    (root / "products.json").write_text(json.dumps({f"{k[0]}/{k[1]}": v
                                                    for k, v in h.products.items()}))  # fmt: skip
    return h
