"""The scheduler's :class:`Service` in-process: window, ledger, failures, settling,
stop requests, staleness, and the persistent APScheduler job store."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from calibmon.config import load_settings
from calibmon.io.fits import read_primary_header
from calibmon.service.postrun import evaluate_staleness as alert_engine_staleness
from calibmon.service.prometheus import build_metrics
from calibmon.service.run import run_directory
from calibmon.service.scheduler import Service, jobstore_path, shifted_clock
from calibmon.service.schedules import JobSpec
from calibmon.store.ledger import Ledger
from calibmon.store.sqlite import Store

from .helpers import DETECTORS, FRAMES, copy_night

NOW = datetime(2025, 11, 22, 13, 0, tzinfo=UTC)


def _job(**kw) -> JobSpec:
    base = {"name": "daily", "kinds": ["bias"], "cron": "30 12 * * *",
            "catch_up_days": 1, "max_attempts": 2}  # fmt: skip
    base.update(kw)
    return JobSpec.model_validate(base)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "calibmon.sqlite") as s:
        yield s


def _service(store: Store, jobs, input_dir: Path | str, **kw) -> Service:
    settings = load_settings(None, store=store.path, executor="serial")
    kw.setdefault("clock", shifted_clock(NOW))
    return Service(settings, store, jobs, input_override=input_dir, **kw)


def _n_runs(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) FROM runs")[0][0])


def test_fire_processes_the_window_once(nights: Path, store: Store) -> None:
    registry = CollectorRegistry()
    metrics = build_metrics(registry, store=store, jobs=["daily"])
    post_runs: list[tuple] = []

    def after_run(settings, store, summary) -> None:
        post_runs.append((summary.day_obs, sorted(d[2] for d in summary.detector_days)))

    svc = _service(store, [_job()], str(nights) + "/{day_obs}", metrics=metrics,
                   after_run=after_run)  # fmt: skip
    assert svc.target_day_obs(svc.jobs["daily"]) == "20251121"

    first = svc.fire("daily")
    assert first is not None and first.outcome == "success"
    assert first.day_obs == ["20251120", "20251121"]  # oldest first
    assert first.units_done == 4 and first.units_failed == 0
    assert _n_runs(store) == 4
    assert {r[0] for r in store.query("SELECT command FROM runs")} == {"serve:daily"}
    # sinks and alerts run once per day_obs, over all of its detector-days
    assert post_runs == [(["20251120"], sorted(DETECTORS)), (["20251121"], sorted(DETECTORS))]
    n_files = 2 * len(DETECTORS) * FRAMES["bias"]  # two nights, biases only
    assert registry.get_sample_value("calibmon_files_processed_total") == n_files
    assert (
        registry.get_sample_value("calibmon_job_runs_total", {"job": "daily", "outcome": "success"})
        == 1
    )

    again = svc.fire("daily")
    assert again is not None and again.outcome == "idle" and again.units_done == 0
    assert _n_runs(store) == 4
    assert len(post_runs) == 2  # no sink has anything pending: nothing to flush
    assert registry.get_sample_value("calibmon_files_processed_total") == n_files


def test_failed_detector_is_recorded_and_the_rest_goes_on(nights: Path, store: Store) -> None:
    calls: list[str] = []

    def flaky_runner(input_dir, settings, store, **kw):
        calls.append(kw["detectors"][0])
        if kw["detectors"] == ["R01_S01"]:
            raise OSError("disk went away")
        return run_directory(input_dir, settings, store, **kw)

    svc = _service(store, [_job(catch_up_days=0)], nights / "20251121", runner=flaky_runner)
    f1 = svc.fire("daily")
    assert f1 is not None and f1.outcome == "failure"
    assert f1.units_done == 1 and f1.units_failed == 1 and "failed" in (f1.error or "")
    entries = Ledger(store).entries("daily", "20251121")
    assert entries["LSSTCam/R22_S11"].status == "ok"
    failed = entries["LSSTCam/R01_S01"]
    assert failed.status == "failed" and "disk went away" in (failed.detail or "")
    assert failed.attempts == 1

    f2 = svc.fire("daily")  # retried (max_attempts=2); the finished detector is not
    assert f2 is not None and f2.outcome == "failure"
    assert calls == ["R01_S01", "R22_S11", "R01_S01"]
    assert Ledger(store).entries("daily", "20251121")["LSSTCam/R01_S01"].attempts == 2

    f3 = svc.fire("daily")  # given up after max_attempts
    assert f3 is not None and f3.outcome == "idle" and len(calls) == 3
    assert Ledger(store).job_status()["daily"]["last_outcome"] == "idle"


def test_stop_request_takes_effect_between_detector_days(nights: Path, store: Store) -> None:
    holder: dict[str, Service] = {}

    def runner_then_stop(*args, **kw):
        summary = run_directory(*args, **kw)
        holder["svc"].request_stop()  # as SIGTERM would, while a detector-day runs
        return summary

    svc = _service(store, [_job()], str(nights) + "/{day_obs}", runner=runner_then_stop)
    holder["svc"] = svc
    f = svc.fire("daily")
    assert f is not None and f.outcome == "interrupted" and f.units_done == 1
    assert _n_runs(store) == 1
    assert svc.fire("daily") is None  # a stopping service starts nothing new

    rest = _service(store, [_job()], str(nights) + "/{day_obs}").fire("daily")
    assert rest is not None and rest.outcome == "success" and rest.units_done == 3
    assert _n_runs(store) == 4


def test_files_still_arriving_wait_for_settle_seconds(
    nights: Path, store: Store, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    copy_night(nights, "20251121", raw)
    job = _job(kinds=["bias"], catch_up_days=0, settle_seconds=3600)
    svc = _service(store, [job], raw / "20251121")
    f = svc.fire("daily")
    assert f is not None and f.outcome == "idle" and f.units_waiting == len(DETECTORS)
    assert _n_runs(store) == 0
    old = time.time() - 7200
    for p in (raw / "20251121").iterdir():
        os.utime(p, (old, old))
    f = svc.fire("daily")
    assert f is not None and f.outcome == "success" and f.units_done == len(DETECTORS)


def test_more_exposures_later_reprocess_the_detector_day(
    nights: Path, store: Store, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    day = copy_night(nights, "20251121", raw)
    biases = [p for p in sorted(day.glob("*R22_S11.fits")) if read_primary_header(p).kind == "bias"]
    late = biases[-2:]
    hidden = tmp_path / "late"
    hidden.mkdir()
    for p in late:
        p.rename(hidden / p.name)
    svc = _service(store, [_job(catch_up_days=0)], day)
    assert svc.fire("daily").units_done == 2  # type: ignore[union-attr]
    for p in hidden.iterdir():
        p.rename(day / p.name)
    f = svc.fire("daily")
    assert f is not None and f.units_done == 1  # only R22_S11 has new exposures
    entry = Ledger(store).entries("daily", "20251121")["LSSTCam/R22_S11"]
    assert entry.n_exposures == FRAMES["bias"]


def test_staleness_reports_expected_calibrations_missing(nights: Path, store: Store) -> None:
    daily = _job(kinds=["bias"], catch_up_days=0, detectors=["R22_S11"])
    stale = JobSpec.model_validate({
        "name": "staleness", "kinds": ["staleness"], "cron": "0 15 * * *",
        "day_obs": "current", "catch_up_days": 1, "instrument": "LSSTCam",
        "expected": [{"kind": "bias", "within_days": 2}, "dark"],
    })  # fmt: skip
    registry = CollectorRegistry()
    metrics = build_metrics(registry, store=store, jobs=["daily", "staleness"],
                            staleness_jobs=["staleness"])  # fmt: skip
    svc = _service(store, [daily, stale], nights / "20251121", metrics=metrics,
                   staleness_hook=alert_engine_staleness)  # fmt: skip
    assert svc.fire("daily").outcome == "success"  # type: ignore[union-attr]
    f = svc.fire("staleness")
    assert f is not None and f.outcome == "stale"
    # window 20251121..20251122; biases of 20251121 count for 20251122 (within 2 days)
    assert sorted(f.missing) == ["20251121 dark", "20251122 dark"]
    entries = Ledger(store).entries("staleness", "20251122")
    assert entries["expected:dark"].status == "missing"
    assert entries["expected:bias"].status == "ok"
    assert (
        registry.get_sample_value("calibmon_calibs_missing", {"job": "staleness", "kind": "dark"})
        == 1
    )
    assert (
        registry.get_sample_value("calibmon_calibs_missing", {"job": "staleness", "kind": "bias"})
        is None
    )
    assert (
        registry.get_sample_value(
            "calibmon_job_runs_total", {"job": "staleness", "outcome": "stale"}
        )
        == 1
    )
    # the target day_obs went to the alert engine: stale_dark fires, bias (expected over
    # two days, which only the job checks) is not the engine's business
    alerts = {(r[0], r[1]) for r in store.query("SELECT rule, state FROM alert_state")}
    assert ("stale_dark", "firing") in alerts
    assert not any(rule == "stale_bias" for rule, _ in alerts)
    assert registry.get_sample_value("calibmon_alerts_firing") >= 1
    # the check ran: it counts as the job working
    assert (
        registry.get_sample_value("calibmon_last_success_timestamp_seconds", {"job": "staleness"})
        is not None
    )


def test_detector_list_and_sink_subset_reach_the_run(nights: Path, store: Store) -> None:
    seen: list[tuple] = []

    def recording_runner(input_dir, settings, store, **kw):
        seen.append((tuple(kw["detectors"]), tuple(kw["kinds"]), settings.instrument,
                     [s.name for s in settings.sinks]))  # fmt: skip
        return run_directory(input_dir, settings, store, **kw)

    settings = load_settings(None, store=store.path, executor="serial", sinks=[
        {"name": "a", "type": "influxdb1", "url": "http://127.0.0.1:1", "database": "x"},
        {"name": "b", "type": "influxdb1", "url": "http://127.0.0.1:1", "database": "x"},
    ])  # fmt: skip
    job = _job(kinds=["gain"], detectors="R01_S01", catch_up_days=0, sinks=["b"],
               instrument="LSSTCam")  # fmt: skip
    post_runs: list[tuple] = []

    def after_run(settings, store, summary) -> None:
        post_runs.append(([s.name for s in settings.sinks], summary.day_obs))

    svc = Service(settings, store, [job], input_override=nights / "20251121",
                  runner=recording_runner, clock=shifted_clock(NOW),
                  after_run=after_run)  # fmt: skip
    assert svc.fire("daily").outcome == "success"  # type: ignore[union-attr]
    assert seen == [(("R01_S01",), ("flat",), "LSSTCam", ["b"])]
    assert post_runs == [(["b"], ["20251121"])]
    # nothing new, but sink "b" still has records pending: the firing retries delivery
    assert store.pending_count("b") > 0
    assert svc.fire("daily").outcome == "idle"  # type: ignore[union-attr]
    assert post_runs[-1] == (["b"], [])


def test_persistent_job_store_keeps_next_run_and_drops_removed_jobs(
    store: Store, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    jobs = [_job(), _job(name="weekly", cron="0 14 * * 1")]
    svc = _service(store, jobs, empty)
    svc.start()
    try:
        assert svc.running and svc.health()[0]
        stored = {j.id: j.next_run_time for j in svc._scheduler.get_jobs(jobstore="default")}
        assert set(stored) == {"daily", "weekly"}
        assert stored["daily"].astimezone(UTC).strftime("%H:%M") == "12:30"
        assert stored["weekly"].astimezone(UTC).strftime("%a %H:%M") == "Mon 14:00"
    finally:
        svc.shutdown()
    assert not svc.running and not svc.health()[0]
    assert jobstore_path(store.path).exists()

    svc2 = _service(store, [_job()], empty)  # 'weekly' removed from the schedules
    svc2.start()
    try:
        again = {j.id: j.next_run_time for j in svc2._scheduler.get_jobs(jobstore="default")}
    finally:
        svc2.shutdown()
    assert again == {"daily": stored["daily"]}


def test_an_unreadable_file_is_counted_once_and_blames_no_detector(
    nights: Path, store: Store, tmp_path: Path
) -> None:
    day = copy_night(nights, "20251121", tmp_path / "raw")
    (day / "LSSTCam_O_20251121_000999_R22_S11.fits").write_bytes(b"SIMPLE  =  not FITS at all")
    registry = CollectorRegistry()
    metrics = build_metrics(registry, store=store, jobs=["daily"])
    svc = _service(store, [_job(catch_up_days=0)], day, metrics=metrics)
    f = svc.fire("daily")
    assert f is not None and f.outcome == "rejected" and f.n_rejected == 1
    assert f.units_done == len(DETECTORS)
    entries = Ledger(store).entries("daily", "20251121")
    assert {e.status for e in entries.values()} == {"ok"}
    assert registry.get_sample_value("calibmon_files_rejected_total") == 1
    again = svc.fire("daily")  # nothing left to do: no new count, no new run
    assert again is not None and again.outcome == "idle"
    assert registry.get_sample_value("calibmon_files_rejected_total") == 1
    assert _n_runs(store) == len(DETECTORS)
