"""Fixtures of the service tests: two small simulated nights (see helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import DETECTORS, FRAMES, NIGHTS


@pytest.fixture(scope="session")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only: ``<root>/<day_obs>/*.fits`` for both nights, two detectors each (few
    frames per kind: the service is under test here, not the science)."""
    from calibmon.simulate import simulate_night

    root = tmp_path_factory.mktemp("service_nights")
    for i, day in enumerate(NIGHTS):
        simulate_night(root, day, list(DETECTORS), small=True, seed=10 + i,
                       n_bias=FRAMES["bias"], n_dark=FRAMES["dark"], n_flat=FRAMES["flat"])  # fmt: skip
    return root
