"""LSSTCam daily cadence with only 3 darks of 30 s, 30 nights with incidents: see cadence_history."""

import pytest

from .cadence_checks import module_tests

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lsstcam_short_darks")]

(
    history,
    test_each_incident_alerts_within_a_night,
    test_stable_amps_raise_no_alert,
    test_transient_resolves,
) = module_tests("lsstcam_short_darks")
