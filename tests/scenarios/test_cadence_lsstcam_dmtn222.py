"""LSSTCam DMTN-222 daily cadence (15 bias, 15 × 30 s darks, 15 flats), 30 nights with incidents: see cadence_history."""

import pytest

from .cadence_checks import module_tests

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lsstcam_dmtn222")]

(
    history,
    test_each_incident_alerts_within_a_night,
    test_stable_amps_raise_no_alert,
    test_transient_resolves,
) = module_tests("lsstcam_dmtn222")
