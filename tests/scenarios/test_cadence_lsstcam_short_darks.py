"""LSSTCam daily cadence with only 3 darks of 30 s, 30 nights with incidents: see cadence_history."""

from __future__ import annotations

import pytest

from . import cadence_checks as checks
from .cadence_history import CADENCES, run_history

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lsstcam_short_darks")]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory):
    c = CADENCES["lsstcam_short_darks"]
    store, cfg = run_history(c, tmp_path_factory.mktemp(c.name))
    return c, store, cfg


def test_each_incident_alerts_within_a_night(history, capsys) -> None:
    checks.check_each_incident_alerts_within_a_night(history, capsys)


def test_stable_amps_raise_no_alert(history, capsys) -> None:
    checks.check_stable_amps_raise_no_alert(history, capsys)


def test_transient_resolves(history, capsys) -> None:
    checks.check_transient_resolves(history, capsys)
