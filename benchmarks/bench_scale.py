"""Scale: N detector-days with 1 and 2 workers, process pool vs dask, against the floor.

    python benchmarks/bench_scale.py [--n 8] [--small] [--data DIR]

Simulates N full-size LSSTCam detector-days (15 bias, 15 dark, 16 flat each, RICE) with
the project's simulator into a temp dir (or ``--data DIR``, kept and reused), then, all
in this run, on this machine:

  floor     fitsio decoding every image HDU of every file, 1 and 2 processes
  process   ``run_directory`` with the process pool, 1 and 2 workers
  dask      ``run_directory`` on a dask LocalCluster (single-threaded worker processes,
            reached by address as ``executor: dask`` + ``dask_address``), 1 and 2 workers

and prints per row: wall time (s), s per detector-day, efficiency T1/(2·T2), wall/floor
(floor with the same number of processes), the peak RSS (VmHWM) of the largest worker
process (target ≤ 300 MB), and the LSSTCam day (205 detector-days) extrapolated on this
machine and per 100 cores (T2 per detector-day × 2 cores, spread over 100 cores: assumes
the 2-worker efficiency holds). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
from bench_pipeline import floor_seconds  # the same floor as bench_pipeline.py (this folder)

DAY_OBS = "20251121"
LSSTCAM_DETECTOR_DAYS = 205
WORKERS = (1, 2)


# -- data --------------------------------------------------------------------------------
def _simulate_one(args: tuple[str, str, bool, int]) -> None:
    from calibmon.simulate import simulate_night

    out, name, small, seed = args
    simulate_night(Path(out), DAY_OBS, [name], small=small, seed=seed)


def simulate(root: Path, n: int, small: bool) -> list[Path]:
    """N detector-days, one directory each (simulated 2 at a time; reused if present)."""
    from calibmon.io.detectors import is_guider, is_wavefront, lsstcam_detectors

    names = [d for d in lsstcam_detectors() if not (is_guider(d) or is_wavefront(d))][:n]
    todo = [
        (str(root / name), name, small, k)
        for k, name in enumerate(names)
        if not (root / name / DAY_OBS / "truth.json").exists()
    ]
    if todo:
        with ProcessPoolExecutor(2) as ex:
            list(ex.map(_simulate_one, todo))
    return sorted(p for p in root.rglob("*.fits*") if p.is_file())


# -- measurements ------------------------------------------------------------------------
def _vm_hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a process, MB; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextlib.contextmanager
def worker_peaks(every_s: float = 0.1) -> Iterator[dict[int, float]]:
    """Sample the VmHWM of every descendant process (the workers) while the block runs."""
    peaks: dict[int, float] = {}
    stop = threading.Event()
    me = psutil.Process()

    def sample() -> None:
        while not stop.is_set():
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "resource_tracker" in " ".join(child.cmdline()):
                        continue
                    peaks[child.pid] = max(peaks.get(child.pid, 0.0), _vm_hwm_mb(child.pid))
            stop.wait(every_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def run_seconds(root: Path, store_dir: Path, **settings_kw: object) -> tuple[float, int]:
    """Wall time of ``run_directory`` over ``root`` into a fresh store, and its records."""
    from calibmon.config import load_settings
    from calibmon.service.run import run_directory
    from calibmon.store.sqlite import Store

    store = store_dir / f"s{time.monotonic_ns()}.sqlite"
    settings = load_settings(None, store=store, **settings_kw)
    with Store(settings.store_path()) as st:
        t0 = time.perf_counter()
        summary = run_directory(root, settings, st)
        return time.perf_counter() - t0, summary.n_records


def process_run(root: Path, store_dir: Path, workers: int) -> tuple[float, int]:
    return run_seconds(root, store_dir, executor="process", workers=workers)


def dask_run(root: Path, store_dir: Path, workers: int) -> tuple[float, int]:
    """On a fresh LocalCluster (fresh worker processes: their VmHWM is this run's)."""
    from distributed import Client, LocalCluster

    from calibmon.service.cluster import keep_freed_memory_on_workers

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                     dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):  # fmt: skip
        keep_freed_memory_on_workers(client)
        return run_seconds(root, store_dir, executor="dask", dask_address=cluster.scheduler_address)


# -- report ------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="detector-days (>= 8 for the report)")
    ap.add_argument("--small", action="store_true", help="tiny amps (a quick check only)")
    ap.add_argument("--data", type=Path, help="simulate into / reuse this directory")
    args = ap.parse_args()
    import logging

    import distributed  # noqa: F401  (its import sets its loggers' levels: set ours after)

    logging.basicConfig(level=logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "calibmon"):
            # CRITICAL: the pipeline's dask client of each run is never closed and says so
            logging.getLogger(name).setLevel(logging.CRITICAL)

    t_all = time.perf_counter()
    with contextlib.ExitStack() as stack:
        root = args.data or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bs-")))
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        files = simulate(root, args.n, args.small)
        t_sim = time.perf_counter() - t0
        gb = sum(p.stat().st_size for p in files) / 1e9
        print(f"data: {args.n} detector-days, {len(files)} files, {gb:.2f} GB "
              f"({'small' if args.small else 'full-size'} amps; ready in {t_sim:.0f} s); "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        store_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bs-store-")))

        print("load average at start: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
        floor = {w: floor_seconds(files, w) for w in WORKERS}
        runners: dict[str, Callable[[Path, Path, int], tuple[float, int]]] = {
            "process": process_run,
            "dask": dask_run,
        }
        rows = []
        for name, fn in runners.items():
            for w in WORKERS:
                with worker_peaks() as peaks:
                    wall, n_records = fn(root, store_dir, w)
                rows.append((name, w, wall, n_records, max(peaks.values(), default=0.0)))

    print(f"\n{'executor':9} {'workers':>7} {'wall s':>8} {'s/det-day':>9} {'eff':>5} "
          f"{'floor s':>8} {'wall/floor':>10} {'peak RSS MB':>11} {'records':>8}")  # fmt: skip
    for w in WORKERS:
        print(f"{'floor':9} {w:7d} {floor[w]:8.1f} {floor[w] / args.n:9.2f} "
              f"{floor[1] / (2 * floor[2]) if w == 2 else 1.0:5.2f} {floor[w]:8.1f} "
              f"{1.0:10.2f} {'':>11} {'':>8}")  # fmt: skip
    walls = {(n, w): wall for n, w, wall, _, _ in rows}
    for name, w, wall, n_records, peak in rows:
        eff = walls[(name, 1)] / (2 * walls[(name, 2)]) if w == 2 else 1.0
        print(f"{name:9} {w:7d} {wall:8.1f} {wall / args.n:9.2f} {eff:5.2f} {floor[w]:8.1f} "
              f"{wall / floor[w]:10.2f} {peak:11.0f} {n_records:8d}")  # fmt: skip

    print(f"\nLSSTCam day ({LSSTCAM_DETECTOR_DAYS} detector-days), from the 2-worker rows:")
    for name in ["floor", *runners]:
        t2 = floor[2] if name == "floor" else walls[(name, 2)]
        per_dd = t2 / args.n
        here = LSSTCAM_DETECTOR_DAYS * per_dd
        per_100 = LSSTCAM_DETECTOR_DAYS * per_dd * 2 / 100
        print(f"  {name:9} this machine (2 cores): {here / 60:7.1f} min   "
              f"per 100 cores: {per_100 / 60:6.2f} min")  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n(benchmark took {time.perf_counter() - t_all:.0f} s; load average now {load}: "
          "other work on this machine inflates the rows, not all alike)")  # fmt: skip


if __name__ == "__main__":
    main()
