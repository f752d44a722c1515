"""A day as one batch: bounded in-flight tasks on a real process pool, the scheduler's
units sharing one executor, and a stop request between units.

Every result is compared with a serial run of the same night: the batch changes when
work runs, never what it measures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from calibmon.config import load_settings
from calibmon.pipeline import executor_workers, in_flight_limit
from calibmon.service.cluster import open_executor
from calibmon.service.run import run_directory
from calibmon.service.scheduler import Service, shifted_clock, unit_concurrency
from calibmon.service.schedules import JobSpec
from calibmon.store.ledger import DAY_FINALISED, Ledger
from calibmon.store.sqlite import Store

DAY_OBS = "20251121"
DETECTORS = ("R22_S11", "R01_S01", "R22_S12", "R01_S02")
NOW = datetime(2025, 11, 22, 13, 0, tzinfo=UTC)  # "previous" day_obs is DAY_OBS


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from calibmon.simulate import simulate_night

    root = tmp_path_factory.mktemp("batch_night")
    simulate_night(root, DAY_OBS, list(DETECTORS), small=True, seed=7, n_bias=3, n_dark=2,
                   n_flat=2)  # fmt: skip
    return root / DAY_OBS


class CountingExecutor(Executor):
    """A real executor that records the most tasks it held at once."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.now = self.peak = self.submitted = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[override]
        with self._lock:
            self.now += 1
            self.submitted += 1
            self.peak = max(self.peak, self.now)
        fut = self.inner.submit(fn, *args, **kwargs)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, _: Future) -> None:
        with self._lock:
            self.now -= 1

    def shutdown(self, wait: bool = True, **kw: Any) -> None:
        self.inner.shutdown(wait=wait)


def _values(store: Store) -> dict[tuple, float]:
    """Records by identity (run ids and processing times differ between runs)."""
    return {
        (r.metric, r.level, r.detector_name, r.amp, r.day_obs): r.value
        for r in store.iter_records(day_obs=DAY_OBS)
    }


def _reference(tmp_path: Path, night: Path) -> dict[tuple, float]:
    settings = load_settings(None, store=tmp_path / "ref.sqlite", executor="serial")
    with Store(tmp_path / "ref.sqlite") as store:
        run_directory(night, settings, store, day_obs=DAY_OBS)
        return _values(store)


def test_run_keeps_in_flight_tasks_bounded(night: Path, tmp_path: Path) -> None:
    ref = _reference(tmp_path, night)
    settings = load_settings(None, store=tmp_path / "c.sqlite", executor="process", workers=1)
    limit = in_flight_limit(1)  # the counting wrapper does not say its workers
    with ProcessPoolExecutor(max_workers=3) as pool:
        assert executor_workers(pool) == 3
    with Store(tmp_path / "c.sqlite") as store:
        ex = CountingExecutor(ProcessPoolExecutor(max_workers=2))
        with ex:
            summary = run_directory(night, settings, store, day_obs=DAY_OBS, executor=ex)
        assert len(summary.detector_days) == len(DETECTORS)
        assert ex.submitted == 2 * len(DETECTORS) > limit  # two tasks of 8 amps a CCD
        assert 1 <= ex.peak <= limit
        assert _values(store) == ref


def _job() -> JobSpec:
    return JobSpec.model_validate({
        "name": "daily", "kinds": ["bias", "dark", "flat", "gain"], "cron": "30 12 * * *",
        "day_obs": "previous", "catch_up_days": 0, "max_attempts": 2,
    })  # fmt: skip


def _service(store: Store, night: Path, **kw: Any) -> Service:
    settings = load_settings(None, store=store.path, executor="process", workers=2)
    return Service(settings, store, [_job()], input_override=night, clock=shifted_clock(NOW),
                   **kw)  # fmt: skip


def test_service_runs_the_day_as_one_batch(night: Path, tmp_path: Path) -> None:
    ref = _reference(tmp_path, night)
    executors: set[int] = set()
    made: list[CountingExecutor] = []

    def runner(*args: Any, **kw: Any):
        executors.add(id(kw["executor"]))  # every unit on the day's one executor
        return run_directory(*args, **kw)

    def factory(settings: Any) -> Executor:  # what a cluster plugs in
        made.append(CountingExecutor(ProcessPoolExecutor(max_workers=settings.workers)))
        return made[-1]

    with Store(tmp_path / "s.sqlite") as store:
        svc = _service(store, night, runner=runner, executor_factory=factory)
        f = svc.fire("daily")
        assert f is not None and f.outcome == "success" and f.units_done == len(DETECTORS)
        assert len(made) == 1 and executors == {id(made[0])}
        # two tasks a CCD, plus the pool's start-up task
        assert made[0].submitted == 2 * len(DETECTORS) + 1
        entries = Ledger(store).entries("daily", DAY_OBS)
        assert {u: e.status for u, e in entries.items()} == {
            f"LSSTCam/{d}": "ok" for d in DETECTORS
        }
        assert Ledger(store).day_status("daily", DAY_OBS) == DAY_FINALISED
        assert store.query("SELECT COUNT(*) FROM runs")[0][0] == len(DETECTORS)
        got = _values(store)
    # the serial reference has camera summaries too (written once, after the batch)
    assert got == ref


def test_stop_lets_running_units_finish_and_starts_no_new_one(night: Path, tmp_path: Path) -> None:
    holder: dict[str, Service] = {}
    at_once = unit_concurrency(2)
    assert at_once < len(DETECTORS)

    def runner_then_stop(*args: Any, **kw: Any):
        summary = run_directory(*args, **kw)
        holder["svc"].request_stop()  # as SIGTERM would, while units run
        return summary

    with Store(tmp_path / "stop.sqlite") as store:
        svc = _service(store, night, runner=runner_then_stop)
        holder["svc"] = svc
        f = svc.fire("daily")
        assert f is not None and f.outcome == "interrupted"
        # the units ran at once: every one started before the first ended (and asked to
        # stop) finished and is in the ledger
        assert f.units_done == at_once
        entries = Ledger(store).entries("daily", DAY_OBS)
        assert len(entries) == at_once and {e.status for e in entries.values()} == {"ok"}

        rest = _service(store, night).fire("daily")
        assert rest is not None and rest.outcome == "success"
        assert rest.units_done == len(DETECTORS) - at_once
        assert len(Ledger(store).entries("daily", DAY_OBS)) == len(DETECTORS)
        assert Ledger(store).day_status("daily", DAY_OBS) == DAY_FINALISED


def test_dask_executor_runs_the_same_batch(night: Path, tmp_path: Path) -> None:
    """dask.distributed's executor (a LocalCluster of two worker processes) through the
    same bounded batch: the same records as the serial run."""
    pytest.importorskip("distributed")
    ref = _reference(tmp_path, night)
    settings = load_settings(None, store=tmp_path / "d.sqlite", executor="dask", workers=2)
    with open_executor(settings) as ex:
        assert executor_workers(ex) == 2  # the in-flight bound follows the cluster
    with Store(tmp_path / "d.sqlite") as store:
        summary = run_directory(night, settings, store, day_obs=DAY_OBS)
        assert len(summary.detector_days) == len(DETECTORS)
        assert _values(store) == ref
