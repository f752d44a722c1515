"""calibmon → a real Alertmanager (API v2) → its webhook receiver; and the deploy config."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from alert_helpers import AMPS_16, REPO, nights, record

from calibmon.alerts.config import alerts_config
from calibmon.alerts.engine import evaluate_and_deliver
from calibmon.alerts.notifiers.registry import build_notifiers
from calibmon.catalogue import load_catalogue
from calibmon.records import parse_iso_utc
from calibmon.store import alerts as db

pytestmark = pytest.mark.server

DAYS = nights(16)


def write_gain_night(store, k: int, factor: float) -> None:
    rng = np.random.default_rng([7, k])
    recs = [
        record("gain", (1.4 + 0.02 * i) * (1 + 0.003 * rng.normal()) * factor, DAYS[k], a)
        for i, a in enumerate(AMPS_16)
    ]
    store.write_records(recs, "t")


def am_alerts(am, **params):
    return [a for a in am.alerts(**params) if a["labels"].get("alertname") == "gain_drift"]


def test_whole_ccd_pages_once_through_alertmanager_and_resolves(
    store, alertmanager, receiver
) -> None:
    """16 amps of R22_S11 step +3 % on night 12 → 16 alerts in Alertmanager, ONE grouped
    page; re-evaluating (refresh) does not page again; values back on nights 13–14 →
    resolved (clear_for = 2): Alertmanager drops them from the active list and its
    receiver gets the resolved group."""
    cfg = alerts_config(
        {"notifiers": [{"name": "am", "type": "alertmanager", "url": alertmanager.url}],
         "dashboard_url": "https://grafana.example.org/d/calibmon-amp"}
    )  # fmt: skip
    cat = load_catalogue()
    notifiers = build_notifiers(cfg.notifiers)
    now = datetime.now(UTC)
    t0 = now - timedelta(days=14)  # night 14 is now: evaluation times are never in the future

    def night(k: int, factor: float):
        write_gain_night(store, k, factor)
        return evaluate_and_deliver(store, cat, cfg, day_obs=[DAYS[k]], notifiers=notifiers,
                                    now=t0 + timedelta(days=k))  # fmt: skip

    for k in range(12):
        night(k, 1.0)
    assert am_alerts(alertmanager) == []
    rep = night(12, 1.03)
    assert len(rep.notifications) == 1 and len(rep.notifications[0].items) == 16
    assert rep.deliveries[0].ok and rep.deliveries[0].delivered == 2  # firing + refresh

    alerts = am_alerts(alertmanager)
    assert sorted(a["labels"]["amp"] for a in alerts) == sorted(AMPS_16)
    a = next(x for x in alerts if x["labels"]["amp"] == "C10")
    assert a["labels"] == {"alertname": "gain_drift", "severity": "warning", "instrument": "LSSTCam",
                           "detector": "R22_S11", "amp": "C10", "metric": "gain"}  # fmt: skip
    ann = a["annotations"]
    for key in ("summary", "description", "value", "threshold", "baseline", "day_obs",
                "since_day_obs", "dashboard", "change", "action"):  # fmt: skip
        assert ann.get(key), key
    assert ann["since_day_obs"] == DAYS[12] and ann["day_obs"] == DAYS[12]
    assert "var-detector=R22_S11" in a["generatorURL"] and "var-amp=C10" in a["generatorURL"]
    assert a["status"]["state"] == "active"
    assert parse_iso_utc(a["endsAt"]) > now + timedelta(hours=30)  # alert_ttl_s, not 5 min

    # Alertmanager groups by alertname+instrument+detector: one page for 16 amps
    assert receiver.wait_for(lambda rs: any(r.path == "/am" for r in rs))
    pages = [r.json() for r in receiver.requests if r.path == "/am"]
    assert len(pages) == 1 and pages[0]["status"] == "firing" and len(pages[0]["alerts"]) == 16
    assert pages[0]["groupLabels"] == {
        "alertname": "gain_drift",
        "instrument": "LSSTCam",
        "detector": "R22_S11",
    }

    # the same day again: idempotent, only a refresh re-post; no new page
    again = evaluate_and_deliver(store, cat, cfg, day_obs=[DAYS[12]], notifiers=notifiers,
                                 now=t0 + timedelta(days=12, hours=1))  # fmt: skip
    assert again.notifications == [] and again.deliveries[0].delivered == 1
    assert len(am_alerts(alertmanager)) == 16

    night(13, 1.0)  # clear once: still firing (hysteresis)
    assert len(am_alerts(alertmanager)) == 16
    rep = night(14, 1.0)  # clear twice: resolved
    assert [n.kind for n in rep.notifications] == ["resolved"]
    assert am_alerts(alertmanager) == []  # endsAt in the past: no longer active
    assert receiver.wait_for(
        lambda rs: any(r.path == "/am" and r.json()["status"] == "resolved" for r in rs)
    )
    pages = [r.json() for r in receiver.requests if r.path == "/am"]
    assert [p["status"] for p in pages] == ["firing", "resolved"]
    resolved = pages[1]["alerts"]
    assert len(resolved) == 16 and all(x["status"] == "resolved" for x in resolved)
    assert all(parse_iso_utc(x["endsAt"]) <= datetime.now(UTC) for x in resolved)
    for n in notifiers:
        n.close()


def test_outage_delays_and_never_loses(store, alertmanager) -> None:
    """Alertmanager down at delivery: the run goes on, the outbox keeps the notification;
    once Alertmanager is back (a later delivery call) it arrives."""
    cfg = alerts_config({"notifiers": [{"name": "am", "type": "alertmanager", "url": alertmanager.url,
                                        "timeout_s": 2}]})  # fmt: skip
    cat = load_catalogue()
    now = datetime.now(UTC)
    for k in range(12):
        write_gain_night(store, k, 1.0)
    write_gain_night(store, 12, 1.03)
    alertmanager.stop()
    rep = evaluate_and_deliver(store, cat, cfg, day_obs=DAYS[:13], now=now, sleep=lambda s: None)
    (d,) = rep.deliveries
    assert not d.ok and d.pending >= 1 and "cannot reach" in d.error
    alertmanager.start()
    later = now + timedelta(minutes=5)  # past retry_after_s
    rep = evaluate_and_deliver(store, cat, cfg, day_obs=[], now=later)
    assert rep.deliveries[0].ok and rep.deliveries[0].pending == 0
    assert len(am_alerts(alertmanager)) == 16
    assert all(r.delivered_at for r in db.outbox_rows(store, "am"))


def test_deploy_config_passes_amtool_and_routes_by_severity() -> None:
    amtool = shutil.which("amtool") or "/usr/bin/amtool"
    if not shutil.which(amtool):
        pytest.skip("amtool is not installed (Debian prometheus-alertmanager)")
    cfg = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
    out = subprocess.run([amtool, "check-config", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

    def receivers(*labels: str) -> str:
        r = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={cfg}", *labels],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return r.stdout.strip()

    assert receivers("severity=critical", "alertname=dead_amp") == "calib-pager,calib-email"
    assert receivers("severity=warning", "alertname=gain_drift") == "calib-email,calib-chat"
    assert receivers("severity=info") == "null"
