"""Fixtures of the fault tests: one small simulated detector-night (few frames: the
faults are under test here, not the science)."""

from __future__ import annotations

from pathlib import Path

import pytest

DAY_OBS = "20251121"
DETECTOR = "R22_S11"


@pytest.fixture(scope="session")
def tiny_night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only: ``<root>/<day_obs>/*.fits``, one detector, 3 bias, 2 dark, 2 flat."""
    from calibmon.simulate import simulate_night

    root = tmp_path_factory.mktemp("tiny_night")
    simulate_night(root, DAY_OBS, [DETECTOR], small=True, seed=5, n_bias=3, n_dark=2, n_flat=2)
    return root
