"""``calibmon run`` on a real dask cluster (``dask scheduler`` + ``dask worker`` processes).

(a) records identical to the process pool's; (b) a worker SIGKILLed mid-day loses and
duplicates nothing; (c) an unreachable scheduler is one stderr line and exit 2; (d) dask's
log chatter stays out of calibmon's stderr unless --debug.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from servers import free_port

from .conftest import (
    DETECTORS,
    DaskCluster,
    export_records,
    run_cli,
    start_cli,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.server]


@pytest.fixture(scope="module")
def pool_export(cluster_night: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The night processed by the process pool (2 workers): the reference records."""
    work = tmp_path_factory.mktemp("pool")
    store = work / "pool.sqlite"
    cfg = write_config(work / "calibmon.yaml", "executor: process\nworkers: 2\n")
    out = run_cli(["run", "--input", str(cluster_night), "--store", str(store),
                   "--config", str(cfg), "-q"], work)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return export_records(store, work)


@pytest.fixture(scope="module")
def tiny_night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small-amp detector, a few frames of each kind: for the start-up behaviour."""
    from calibmon.simulate import simulate_night

    out = tmp_path_factory.mktemp("tiny_night")
    simulate_night(out, "20251122", ["R22_S11"], small=True, seed=9, n_bias=3, n_dark=3, n_flat=4)
    return out


def _config(path: Path, style: str, address: str) -> Path:
    if style == "dask_address":  # the legacy top-level key: cluster address
        return write_config(path, f"executor: dask\ndask_address: {address}\n")
    return write_config(path, f"executor: dask\ndask:\n  cluster: address\n  address: {address}\n")


@pytest.mark.parametrize("style", ["dask_address", "dask_block"])
def test_records_on_a_dask_cluster_equal_the_process_pool(
    style: str, dask_cluster: DaskCluster, cluster_night: Path, pool_export: list[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    store = tmp_path / "dask.sqlite"
    cfg = _config(tmp_path / "calibmon.yaml", style, dask_cluster.address)
    before = dask_cluster.transitions()
    out = run_cli(["run", "--input", str(cluster_night), "--store", str(store),
                   "--config", str(cfg), "-q"], tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    # the amps were measured by this cluster's workers, not by a pool or a LocalCluster
    assert dask_cluster.transitions() - before >= 2 * len(DETECTORS)
    assert export_records(store, tmp_path) == pool_export


def _detector_days_in(store: Path) -> int:
    """Detector-days whose amp records are in the store (each lands in one transaction)."""
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT COUNT(DISTINCT detector) FROM records WHERE level='amp'")
            return int(row.fetchone()[0])
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def test_a_worker_killed_mid_day_loses_and_duplicates_nothing(
    fresh_dask_cluster: DaskCluster, cluster_night: Path, pool_export: list[str], tmp_path: Path
) -> None:
    cluster = fresh_dask_cluster
    client = cluster.client()
    store = tmp_path / "dask.sqlite"
    cfg = _config(tmp_path / "calibmon.yaml", "dask_address", cluster.address)
    proc = start_cli(["run", "--input", str(cluster_night), "--store", str(store),
                      "--config", str(cfg), "-q"], tmp_path)  # fmt: skip
    busy: list[str] = []

    def first_day_landed_and_a_worker_busy() -> bool:
        if proc.poll() is not None:
            return True
        if _detector_days_in(store) < 1:
            return False
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        busy[:] = [str(names[a]) for a, keys in client.processing().items() if keys]
        return bool(busy)

    try:
        assert wait_until(first_day_landed_and_a_worker_busy, timeout_s=240)
        assert proc.poll() is None, "the run ended before a worker could be killed"
        landed_at_kill = _detector_days_in(store)
        victim = next(w for w in cluster.workers if w.worker_name == busy[0])
        victim.kill_all()  # SIGKILL nanny and worker: its in-flight amps are lost
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 1 <= landed_at_kill < len(DETECTORS)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    # dask re-ran the lost tasks on the survivor: every amp once, values as the pool's
    assert export_records(store, tmp_path) == pool_export
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        dup = db.execute(
            "SELECT metric, detector, amp, day_obs, COUNT(*) FROM records"
            " GROUP BY metric, level, detector, amp, day_obs HAVING COUNT(*) > 1"
        ).fetchall()
        (written,) = db.execute("SELECT n_records FROM runs").fetchone()
        (stored,) = db.execute("SELECT COUNT(*) FROM records").fetchone()
    assert dup == []
    assert written == stored  # no detector-day was written twice (or half)


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tiny_night: Path, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = write_config(
        tmp_path / "calibmon.yaml",
        f"executor: dask\ndask:\n  cluster: address\n  address: {address}\n"
        "  connect_timeout_s: 2\n",
    )
    out = run_cli(["run", "--input", str(tiny_night), "--store", str(tmp_path / "s.sqlite"),
                   "--config", str(cfg), "-q"], tmp_path)  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"calibmon: cannot reach dask scheduler at {address}: ")


def test_dask_log_chatter_stays_out_of_stderr_unless_debug(
    tiny_night: Path, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "calibmon.yaml", "executor: dask\nworkers: 2\n")  # LocalCluster
    args = ["run", "--input", str(tiny_night), "--store", str(tmp_path / "s.sqlite"),
            "--config", str(cfg)]  # fmt: skip
    quiet = run_cli(args, tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "calibmon" in quiet.stderr  # calibmon's own INFO lines are still there
    assert [ln for ln in quiet.stderr.splitlines() if "distributed" in ln] == []
    debug = run_cli([*args, "--debug"], tmp_path)
    assert debug.returncode == 0, debug.stderr
    # the same run with --debug shows what was kept out (so the check above can fail)
    assert [ln for ln in debug.stderr.splitlines() if "distributed." in ln]
