"""``calibmon serve`` as a real process: schedule, store, /metrics, /healthz, SIGTERM,
restart without reprocessing, catch-up of missed days, stop between detector-days.

The daemon runs with the test clock (``--test-now``, ``--test-tick-seconds``: documented
as testing only) so a day of schedule takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import (
    DETECTORS,
    NOW,
    Daemon,
    copy_night,
    free_port,
    store_query,
    wait_for,
    write_config,
    write_schedules,
)

pytestmark = pytest.mark.server


def _runs(store: Path) -> list[tuple]:
    return store_query(store, "SELECT run_id, day_obs, status FROM runs ORDER BY run_id")


def _ledger(store: Path) -> list[tuple]:
    return store_query(
        store, "SELECT day_obs, unit, status FROM job_ledger WHERE job='daily' ORDER BY 1, 2"
    )


@pytest.fixture
def workdir(tmp_path: Path) -> dict[str, Path]:
    store = tmp_path / "state" / "calibmon.sqlite"
    return {
        "root": tmp_path,
        "store": store,
        "config": write_config(tmp_path / "calibmon.yaml", store),
        "schedules": write_schedules(tmp_path / "schedules", catch_up=1),
        "input": tmp_path / "raw",
    }


def _start(w: dict[str, Path], *extra: str) -> Daemon:
    w["input"].mkdir(exist_ok=True)
    args = ["--config", str(w["config"]), "--schedules", str(w["schedules"]),
            "--input", str(w["input"]), "--test-now", NOW, *extra]  # fmt: skip
    return Daemon(args, free_port(), w["root"])


def test_serve_processes_a_new_night_serves_metrics_and_stops_cleanly(
    nights: Path, workdir: dict[str, Path]
) -> None:
    store = workdir["store"]
    d = _start(workdir, "--test-tick-seconds", "1")
    try:
        d.wait_healthy()
        status, body = d.get("/healthz")
        assert status == 200 and '"scheduler": "running"' in body
        # Nothing to do yet: the catch-up at start and the first ticks are idle.
        wait_for(lambda: (d.sample("calibmon_job_runs_total", job="daily", outcome="idle") or 0)
                 >= 2, 20, "two idle firings")  # fmt: skip
        assert _runs(store) == []

        copy_night(nights, "20251121", workdir["input"])
        wait_for(lambda: d.sample("calibmon_job_runs_total", job="daily", outcome="success"),
                 30, "a successful firing")  # fmt: skip

        units = _ledger(store)
        assert units == [("20251121", f"LSSTCam/{det}", "ok") for det in sorted(DETECTORS)]
        runs = _runs(store)
        assert len(runs) == len(DETECTORS)
        assert {r[1] for r in runs} == {"20251121"} and {r[2] for r in runs} == {"ok"}
        n_records = store_query(store, "SELECT COUNT(*) FROM records WHERE day_obs='20251121'")
        assert n_records[0][0] > 0
        assert {r[0] for r in store_query(store, "SELECT DISTINCT detector_name FROM records"
                                          " WHERE level='amp'")} == set(DETECTORS)  # fmt: skip

        # Metrics about the work, read from /metrics.
        files = d.sample("calibmon_files_processed_total")
        n_raw = len(list((workdir["input"] / "20251121").glob("*.fits")))
        assert files == n_raw
        assert d.sample("calibmon_files_rejected_total") == 0
        written = d.sample("calibmon_records_written_total", sink="store")
        assert written is not None and written >= n_records[0][0]
        last = d.sample("calibmon_last_success_timestamp_seconds", job="daily")
        assert last is not None and last > 1.6e9
        assert d.sample("calibmon_job_duration_seconds_count", job="daily") >= 3
        assert d.sample("calibmon_job_runs_total", job="daily", outcome="failure") == 0
        # computed at scrape time from the store: equals the firing rows there
        firing = store_query(store, "SELECT COUNT(*) FROM alert_state WHERE state='firing'")
        assert d.sample("calibmon_alerts_firing") == firing[0][0]
        assert d.get("/nowhere")[0] == 404

        rc = d.terminate()
    finally:
        d.kill()
    assert rc == 0, d.log_tail()
    assert d.logged("SIGTERM received"), d.log_tail()
    assert d.logged("calibmon serve: stopped cleanly"), d.log_tail()
    # log_format: json in the config: one JSON object a line
    final = json.loads(d.lines[-1])
    assert final["level"] == "INFO" and final["message"] == "calibmon serve: stopped cleanly"
    assert store.with_name("calibmon.jobs.sqlite").exists()  # persistent job store

    # Restart: the ledger says the day is finished, so nothing is processed again.
    runs_before = _runs(store)
    records_before = store_query(store, "SELECT COUNT(*), MAX(seq) FROM records")
    d2 = _start(workdir, "--test-tick-seconds", "1")
    try:
        d2.wait_healthy()
        wait_for(lambda: (d2.sample("calibmon_job_runs_total", job="daily", outcome="idle") or 0)
                 >= 2, 20, "two idle firings after restart")  # fmt: skip
        assert d2.sample("calibmon_job_runs_total", job="daily", outcome="success") == 0
        # last success survives the restart (computed from the store at scrape time)
        assert d2.sample("calibmon_last_success_timestamp_seconds", job="daily") >= last
        rc2 = d2.terminate()
    finally:
        d2.kill()
    assert rc2 == 0, d2.log_tail()
    assert _runs(store) == runs_before
    assert store_query(store, "SELECT COUNT(*), MAX(seq) FROM records") == records_before


def test_serve_catches_up_missed_days_and_stops_between_detector_days(
    nights: Path, workdir: dict[str, Path]
) -> None:
    """Two nights are waiting when the daemon starts "later": the catch-up at start
    processes both. A SIGTERM in the middle stops after the detector-day in flight; the
    restart finishes the rest, and each detector-day is processed exactly once."""
    store = workdir["store"]
    for day in ("20251120", "20251121"):
        copy_night(nights, day, workdir["input"])
    d = _start(workdir)  # real cron (12:30 UTC): only the catch-up at start runs
    try:
        d.wait_healthy()
        wait_for(lambda: d.logged("processed LSSTCam"), 30, "the first detector-day")
        rc = d.terminate()
    finally:
        d.kill()
    assert rc == 0, d.log_tail()
    assert d.logged("calibmon serve: stopped cleanly")
    done = _ledger(store)
    assert 1 <= len(done) < 4, done  # stopped between detector-days, not after all four
    assert all(status == "ok" for *_, status in done)
    runs = _runs(store)
    assert len(runs) == len(done) and all(r[2] == "ok" for r in runs)  # none left 'running'

    d2 = _start(workdir)
    try:
        d2.wait_healthy()
        wait_for(lambda: len(_ledger(store)) == 4, 40, "all four detector-days")
        wait_for(lambda: d2.sample("calibmon_job_runs_total", job="daily", outcome="success"),
                 20, "the catch-up firing to finish")  # fmt: skip
        rc2 = d2.terminate()
    finally:
        d2.kill()
    assert rc2 == 0, d2.log_tail()
    assert _ledger(store) == [
        (day, f"LSSTCam/{det}", "ok")
        for day in ("20251120", "20251121")
        for det in sorted(DETECTORS)
    ]
    runs = _runs(store)
    assert len(runs) == 4  # every detector-day exactly once across the two processes
    assert sorted(r[1] for r in runs) == ["20251120"] * 2 + ["20251121"] * 2
