"""LATISS daily cadence (3 bias, 3 × 1 s darks, 20 flats, a 4-pair daily_PTC), 30 nights with incidents, small amps: see cadence_history (full-size nights: test_latiss_full_size)."""

import pytest

from .cadence_checks import module_tests

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("latiss")]

(
    history,
    test_each_incident_alerts_within_a_night,
    test_stable_amps_raise_no_alert,
    test_transient_resolves,
) = module_tests("latiss")
