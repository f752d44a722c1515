"""Outages (issue 16): influxd, or the notifiers (Alertmanager, a webhook receiver, an SMTP
server), or all of them, are down while ``calibmon serve`` processes a night and stay down
for the rest of the simulated day (the daemon's test clock: ``--test-now`` plus one-second
ticks, so every tick is a firing of the daily job). The night has one amp whose read noise
fires an alert. Then they come back — on a day with no new data — and every record must
reach influxd exactly once and every notification must be delivered exactly once: none
lost, none twice.

Real servers, real daemon process; nothing mocked. The store is read from outside (WAL).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "alerts"))
from alert_helpers import AM_TEST_CONFIG, Alertmanager, HttpReceiver, SmtpSink
from servers import InfluxD1, ServerMissing
from service.helpers import (
    NOW,
    Daemon,
    copy_night,
    free_port,
    store_query,
    wait_for,
    write_schedules,
)

from calibmon.sinks.schema import build_points
from calibmon.store.sqlite import Store

from .conftest import DAY_OBS, DETECTOR

pytestmark = [pytest.mark.server, pytest.mark.xdist_group("outages")]

DATABASE = "cp_outage"
NOTIFIERS = ("am", "hook", "mail")
NOISY_AMP = "C10"  # read noise far above read_noise_high's limit: a firing alert


@pytest.fixture(scope="module")
def noisy_night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/<day_obs>/*.fits``: one small detector-night whose amp C10 reads 15 e-."""
    from calibmon.simulate import simulate_night

    root = tmp_path_factory.mktemp("noisy_night")
    simulate_night(root, DAY_OBS, [DETECTOR], small=True, seed=5, n_bias=3, n_dark=2,
                   n_flat=2, overrides={DETECTOR: {NOISY_AMP: {"read_noise_e": 15.0}}})  # fmt: skip
    return root


def _config(path: Path, store: Path, influx_url: str, am_url: str, hook_port: int,
            smtp_port: int) -> Path:  # fmt: skip
    path.write_text(f"""\
store: {store}
executor: serial
log_format: json
sinks:
  - {{name: influx, type: influxdb1, url: "{influx_url}", database: {DATABASE}, timeout_s: 2,
      max_attempts: 1}}
notifiers:
  - {{name: am, type: alertmanager, url: "{am_url}", timeout_s: 2}}
  - {{name: hook, type: webhook, url: "http://127.0.0.1:{hook_port}/hook", timeout_s: 2}}
  - {{name: mail, type: email, host: 127.0.0.1, port: {smtp_port}, from: calibmon@test,
      to: [oncall@test], trend_plots: false, timeout_s: 2}}
alerts:
  delivery: {{max_attempts: 2, backoff_s: [0.1], retry_after_s: 0.5, max_retry_after_s: 2}}
""")
    return path


def _outbox(store: Path, notifier: str) -> list[tuple]:
    """(payload id, kind, delivered_at, next_attempt_at, attempts) of ``notifier``'s rows."""
    return store_query(
        store,
        "SELECT json_extract(payload, '$.id'), json_extract(payload, '$.kind'), delivered_at,"
        " next_attempt_at, attempts FROM notify_outbox WHERE notifier=? ORDER BY id",
        (notifier,),
    )


def _pending_records(store: Path) -> int:
    n = store_query(
        store,
        "SELECT COUNT(*) FROM records WHERE seq > COALESCE((SELECT seq FROM sink_cursors"
        " WHERE sink='influx'), 0)",
    )
    return int(n[0][0]) if n else -1


def _expected_points(path: Path) -> Counter[str]:
    """Points per measurement that the stored records map to (DESIGN §5); read with the
    daemon stopped."""
    store = Store(path)
    try:
        records = [r for _, r in store.pending_records("(expected)", limit=10**7)]
    finally:
        store.close()
    return Counter(p.measurement for p in build_points(records, "lsst.cp"))


def _influx_points(influxd: InfluxD1) -> Counter[str]:
    out: Counter[str] = Counter()
    for s in influxd.series("SHOW MEASUREMENTS", db=DATABASE):
        for (name,) in s["values"]:
            # every point carries the provenance field "run" (DESIGN §5)
            out[name] = influxd.count_points(name, "run", db=DATABASE)
    return out


@pytest.mark.parametrize("down", ["everything", "influxd", "notifiers"])
def test_down_for_a_day_then_everything_delivered_once(
    noisy_night: Path, tmp_path: Path, down: str
) -> None:
    """``down``: which peers are down for the simulated day; the others are up throughout
    and must get their share at once (one peer's outage never holds up another's)."""
    from aiosmtpd.controller import Controller

    influxd = InfluxD1(tmp_path / "influxd")
    webhook = HttpReceiver(port=free_port())
    am_receiver = HttpReceiver().start()
    try:
        am = Alertmanager(tmp_path / "am", AM_TEST_CONFIG.format(url=am_receiver.url))
    except ServerMissing as exc:
        am_receiver.stop()
        pytest.skip(str(exc))
    smtp = SmtpSink()
    smtp_port = free_port()
    mail = Controller(smtp, hostname="127.0.0.1", port=smtp_port)

    influx_down = down in ("everything", "influxd")
    notifiers_down = down in ("everything", "notifiers")
    notifier_servers = (am.start, webhook.start, mail.start)
    if not influx_down:
        influxd.start()
    if not notifiers_down:
        for start in notifier_servers:
            start()

    store = tmp_path / "state" / "calibmon.sqlite"
    config = _config(tmp_path / "calibmon.yaml", store, influxd.url, am.url, webhook.port,
                     smtp_port)  # fmt: skip
    schedules = write_schedules(tmp_path / "schedules", catch_up=0)
    raw = tmp_path / "raw"
    raw.mkdir()
    daemon = Daemon(
        ["--config", str(config), "--schedules", str(schedules), "--input", str(raw),
         "--test-now", NOW, "--test-tick-seconds", "1"],
        free_port(), tmp_path,
    )  # fmt: skip
    try:
        daemon.wait_healthy()
        # -- the outage: the peers of ``down`` are down while the night arrives ------------
        copy_night(noisy_night, DAY_OBS, raw)
        wait_for(lambda: store_query(store, "SELECT 1 FROM job_ledger WHERE job='daily'"
                                     " AND day_obs=? AND status='ok'", (DAY_OBS,)),
                 60, "the night processed")  # fmt: skip
        n_records = store_query(store, "SELECT COUNT(*) FROM records")[0][0]
        assert n_records > 0
        wait_for(lambda: all(_outbox(store, n) for n in NOTIFIERS), 30,
                 "notifications queued for every notifier")  # fmt: skip
        # The rest of the simulated day: firings go by; every try at a peer that is down
        # fails, a peer that is up has its share at once.
        ticks = daemon.sample("calibmon_job_runs_total", job="daily", outcome="idle") or 0
        wait_for(lambda: (daemon.sample("calibmon_job_runs_total", job="daily", outcome="idle")
                          or 0) >= ticks + 3, 40, "three more daily firings")  # fmt: skip
        if influx_down:
            wait_for(lambda: (daemon.sample("calibmon_sink_errors_total", sink="influx") or 0)
                     >= 3, 30, "failed deliveries to influxd")  # fmt: skip
            assert _pending_records(store) == n_records
        else:
            wait_for(lambda: _pending_records(store) == 0, 30, "records delivered at once")
        if notifiers_down:
            wait_for(lambda: all(max(r[4] for r in _outbox(store, n)) >= 4 for n in NOTIFIERS),
                     30, "failed delivery attempts on every notifier")  # fmt: skip
            assert all(r[2] is None for n in NOTIFIERS for r in _outbox(store, n))
            assert not webhook.requests and not smtp.envelopes
        else:
            wait_for(lambda: all(r[2] is not None for n in NOTIFIERS for r in _outbox(store, n)),
                     30, "notifications delivered at once")  # fmt: skip

        # -- they come back; no new data arrives ----------------------------------------
        if influx_down:
            influxd.start()
        if notifiers_down:
            for start in notifier_servers:
                start()
        wait_for(lambda: _pending_records(store) == 0, 30, "the sink outbox emptied")
        wait_for(lambda: all(r[2] is not None for n in NOTIFIERS for r in _outbox(store, n)),
                 30, "every notification delivered")  # fmt: skip
        time.sleep(3)  # a few more ticks: nothing may be sent twice

        assert daemon.sample("calibmon_records_written_total", sink="influx") == n_records

        # -- every notification delivered exactly once ------------------------------------
        hook_rows = _outbox(store, "hook")
        hook_ids = Counter(r.json()["id"] for r in webhook.requests)
        assert hook_ids == Counter(r[0] for r in hook_rows), hook_ids
        assert any(r[1] == "firing" for r in hook_rows)
        mail_rows = _outbox(store, "mail")
        assert len(smtp.envelopes) == len(mail_rows)
        sent_ids = Counter(
            next(r[0] for r in mail_rows if r[0][:16] in env.content.decode(errors="replace"))
            for env in smtp.envelopes
        )
        assert sent_ids == Counter(r[0] for r in mail_rows), sent_ids
        am_rows = _outbox(store, "am")
        assert all(r[2] is not None for r in am_rows)
        firing = {(a["labels"]["alertname"], a["labels"].get("amp")) for a in am.alerts()}
        assert ("read_noise_high", NOISY_AMP) in firing, firing
        assert daemon.terminate() == 0, daemon.log_tail()

        # -- every record reached influxd exactly once -----------------------------------
        expected = _expected_points(store)
        assert sum(expected.values()) > 0
        assert _influx_points(influxd) == expected
    finally:
        daemon.kill()
        if getattr(mail, "server", None) is not None:
            mail.stop()
        webhook.stop()
        am.stop()
        am_receiver.stop()
        influxd.stop()
