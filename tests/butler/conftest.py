"""Fixtures of the Butler tests: a real daf_butler repository holding a simulated night."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from butler_repo import (
    CALIB_RUN,
    CERT_BEGIN,
    DETECTORS,
    LATER_BEGIN,
    LATER_RUN,
    NIGHT1,
    NIGHT2,
    SIM,
    Calibs,
    Repo,
)


@pytest.fixture(scope="session")
def butler_night(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """Two simulated nights of two detectors, ingested as raws into a new repository."""
    from butler_repo import ingest_raws, make_repo

    from calibmon.simulate import simulate_night

    base = tmp_path_factory.mktemp("butler")
    raw = base / "raw"
    simulate_night(raw, NIGHT1, DETECTORS, seed=11, ptc=False, **SIM)
    simulate_night(raw, NIGHT2, DETECTORS, seed=12, ptc=False, start_seqnum=1, **SIM)
    butler = make_repo(base / "repo", DETECTORS)
    ingest_raws(butler, sorted(raw.rglob("*.fits*")))
    return Repo(root=base / "repo", raw=raw)


def _run_quiet(*argv: str) -> str:
    import io
    from contextlib import redirect_stdout

    from calibmon.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(list(argv))
    assert rc == 0, buf.getvalue()
    return buf.getvalue()


@pytest.fixture(scope="session")
def butler_calibs(butler_night: Repo) -> Calibs:
    """Masters of night 1 (built by calibmon, then written in the stack's layout: assembled,
    in electrons, GZIP_2; defects as boxes), ingested and certified from CERT_BEGIN on.
    R22_S11's bias is certified until LATER_BEGIN and a second bias from then on."""
    import numpy as np
    from butler_repo import certify, ingest_calib
    from lsst.daf.butler import Butler
    from stack_files import assemble, detsecs, write_defects, write_exposuref

    from calibmon.calibs.products import read_amp, read_header
    from calibmon.io import detectors as dets
    from calibmon.store.calibs import list_products
    from calibmon.store.sqlite import Store

    base = butler_night.root.parent
    builder = base / "builder.sqlite"
    night = butler_night.raw / NIGHT1
    _run_quiet("run", "--input", str(night), "--store", str(builder), "-q", "--workers", "1")
    for t in ("bias", "dark", "flat", "defects"):
        _run_quiet("calibs", "build", "--calib-type", t, "--input", str(night), "--day-obs",
                   NIGHT1, "--store", str(builder), "--output-dir", str(base / "products"),
                   "-q")  # fmt: skip
    with Store(builder) as st:
        products = {(p.calib_type, p.detector_name): Path(p.path) for p in list_products(st)}
    butler = Butler.from_config(str(butler_night.root), writeable=True)
    out = base / "stack"
    out.mkdir()
    uuids, files, refs = {}, {}, []
    later = ""
    for det in DETECTORS:
        secs = detsecs(next(night.glob(f"*_{det}.fits")))
        amps = list(secs)
        planes = {t: {a: read_amp(products[(t, det)], a) for a in amps}
                  for t in ("bias", "dark", "flat", "defects")}  # fmt: skip
        gain = {a: float(planes["dark"][a].keys["GAIN"]) for a in amps}
        cards: dict = {"LSST ISR UNITS": "electron", "CALIBDATE": "2025-11-21T23:00:00",
                       "INSTRUME": "LSSTCam",
                       "DETECTOR": dets.detector_number("LSSTCam", det)}  # fmt: skip
        for a in amps:
            cards[f"LSST ISR GAIN {a}"] = gain[a]
            cards[f"LSST ISR READNOISE {a}"] = float(planes["bias"][a].keys["FRMNOISE"]) * gain[a]
        for t in ("bias", "dark", "flat"):
            hdr = read_header(products[(t, det)])
            c = {**cards, "OBSTYPE": t}
            for i, e in enumerate(hdr.exposures):
                c[f"CPP_INPUT_{i}"] = e
                if t == "dark":
                    c[f"CPP_INPUT_EXPT_{i}"] = float(planes["dark"][amps[0]].keys["DARKTIME"])
                if t == "flat":
                    c[f"CPP_INPUT_SCALE_{i}"] = float(
                        np.median([planes["flat"][a].keys["SIGNAL"] for a in amps])
                    )
            scale = {a: (gain[a] if t == "bias" else 1.0) for a in amps}
            image = assemble({a: planes[t][a].image * np.float32(scale[a]) for a in amps}, secs)
            files[(t, det)] = out / f"{t}_{det}.fits"
            write_exposuref(files[(t, det)], image, c, compress=(t != "flat"))
        mask = assemble({a: planes["defects"][a].image.astype(np.uint8) for a in amps}, secs)
        files[("defects", det)] = out / f"defects_{det}.fits"
        write_defects(files[("defects", det)], mask.astype(bool),
                      {"OBSTYPE": "defects", "CALIBDATE": "2025-11-21"})  # fmt: skip
        for t in ("bias", "dark", "flat", "defects"):
            ref = ingest_calib(butler, files[(t, det)], t, det, CALIB_RUN,
                               physical_filter="empty")  # fmt: skip
            uuids[(t, det)] = str(ref.id)
            refs.append(ref)
    bias_r22 = [r for r in refs if str(r.id) == uuids[("bias", "R22_S11")]]
    certify(butler, [r for r in refs if r not in bias_r22], CERT_BEGIN)
    certify(butler, bias_r22, CERT_BEGIN, LATER_BEGIN)
    second = ingest_calib(butler, files[("bias", "R22_S11")], "bias", "R22_S11", LATER_RUN)
    certify(butler, [second], LATER_BEGIN)
    later = str(second.id)
    return Calibs(butler_night, uuids, later, products, files)
