"""Fixtures of the calibs tests: the simulated history (see calib_history.py)."""

from __future__ import annotations

import pytest
from calib_history import History, build_history


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(tmp_path_factory)
