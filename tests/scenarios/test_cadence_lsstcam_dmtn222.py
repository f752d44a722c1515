"""LSSTCam DMTN-222 daily cadence (15 bias, 15 × 30 s darks, 15 flats), 30 nights with incidents: see cadence_history."""

from __future__ import annotations

import pytest

from . import cadence_checks as checks
from .cadence_history import CADENCES, run_history

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lsstcam_dmtn222")]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory):
    c = CADENCES["lsstcam_dmtn222"]
    store, cfg = run_history(c, tmp_path_factory.mktemp(c.name))
    return c, store, cfg


def test_each_incident_alerts_within_a_night(history, capsys) -> None:
    checks.check_each_incident_alerts_within_a_night(history, capsys)


def test_stable_amps_raise_no_alert(history, capsys) -> None:
    checks.check_stable_amps_raise_no_alert(history, capsys)


def test_transient_resolves(history, capsys) -> None:
    checks.check_transient_resolves(history, capsys)
