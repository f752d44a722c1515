"""Fixtures of the Butler tests: a real daf_butler repository holding a simulated night."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

DETECTORS = ["R22_S11", "R01_S01"]
NIGHT1, NIGHT2 = "20251121", "20251122"
SIM = {"small": True, "camera_seed": 5, "n_bias": 5, "n_dark": 5, "n_flat": 6}


@dataclass
class Repo:
    root: Path
    raw: Path  # simulated raws, NIGHT1/ and NIGHT2/ below


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
