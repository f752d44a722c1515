"""The checks each cadence's test module runs on its 30-night history (issue 12): a
stable camera pages no one and every incident pages within a night. One module per
cadence (``test_cadence_*.py``), each in its own xdist group, so the histories are built
once each and in parallel.

Measured false-alarm rate: the number of alerts on stable amps over all stable
amp-nights, printed by the stable-amps check (zero expected; with n stable amp-nights
and no alert, the 95 % upper limit on the rate is 3/n).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calibmon.cli import main

from .cadence_history import CADENCES, INCIDENTS, N_NIGHTS, day, run_history


@pytest.fixture(scope="module", params=sorted(CADENCES))
def history(request, tmp_path_factory: pytest.TempPathFactory):
    c = CADENCES[request.param]
    root = tmp_path_factory.mktemp(c.name)
    store, cfg = run_history(c, root)
    return c, store, cfg


def _alerts(cfg: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["alerts", "--format", "json", "--all", "--config", str(cfg)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def _incident_amps(c) -> set[tuple[str, str]]:
    return {(c.detectors[i.detector], i.amp) for i in INCIDENTS}


def check_each_incident_alerts_within_a_night(history, capsys) -> None:
    c, _store, cfg = history
    fired = [a for a in _alerts(cfg, capsys) if a["state"] in ("firing", "resolved")]
    missed = []
    for inc in INCIDENTS:
        det = c.detectors[inc.detector]
        mine = [a for a in fired
                if a["detector_name"] == det and a["amp"] == inc.amp and a["metric"] == inc.metric]  # fmt: skip
        if not mine:
            missed.append((det, inc.amp, inc.metric, "no alert"))
            continue
        since = min(a["since_day_obs"] for a in mine)
        if not day(inc.first) <= since <= day(inc.first + 1):
            missed.append((det, inc.amp, inc.metric, f"since {since}, incident {day(inc.first)}"))
    assert missed == [], (c.name, missed, [(a["rule"], a["amp"]) for a in fired])


def check_stable_amps_raise_no_alert(history, capsys) -> None:
    c, _store, cfg = history
    bad = _incident_amps(c)
    alerts = _alerts(cfg, capsys)
    stray = [
        (a["rule"], a["detector_name"], a["amp"], a.get("since_day_obs"), a["state"])
        for a in alerts
        if a["state"] in ("firing", "resolved", "pending")
        and (a["detector_name"], a["amp"]) not in bad
    ]
    stable_amp_nights = (16 * len(c.detectors) - len(bad)) * N_NIGHTS
    print(f"{c.name}: {len(stray)} alerts on {stable_amp_nights} stable amp-nights")
    assert stray == [], (c.name, stray)


def check_transient_resolves(history, capsys) -> None:
    c, _store, cfg = history
    transients = [i for i in INCIDENTS if i.last is not None]
    alerts = _alerts(cfg, capsys)
    for inc in transients:
        det = c.detectors[inc.detector]
        mine = [a for a in alerts
                if a["detector_name"] == det and a["amp"] == inc.amp and a["metric"] == inc.metric]  # fmt: skip
        assert mine and all(a["state"] == "resolved" for a in mine), (c.name, inc, mine)
