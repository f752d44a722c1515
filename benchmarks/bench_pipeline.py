"""Full metric pipeline vs the decompression floor and a ccdproc baseline, per CCD.

    python benchmarks/bench_pipeline.py [--input DIR] [--workers 2] [--skip-ccdproc]

Without --input it simulates one full-size detector's day (R22_S11, e2v): 15 bias,
15 dark, 16 flat and a 30-pair PTC ramp (106 files, RICE-compressed) into a temp dir.
All timings are measured in this run, on this machine:

  floor     decompress every HDU of every file (fitsio), ``--workers`` processes
  pipeline  ``calibmon run`` on the same files (all metrics), ``--workers`` processes
  ccdproc   the daily set (bias/dark/flat) with ccdproc: subtract_overscan (median,
            per row) + trim_image + combine (average, sigma clipping) per amp, plus the
            same flat-pair gain in numpy; one process (ccdproc has no parallel mode)
  run       ``calibmon run`` end to end as a new process (interpreter start, imports,
            discovery, store, records) on a 30-file detector-day: 10 bias, 10 dark,
            10 flat of the input, against the floor of the same 30 files

and the ratios pipeline/floor, run/floor and ccdproc/pipeline (daily set).
``--skip-ptc`` leaves out the PTC ramp (simulated and timed). ``--worker-rss`` also
prints the peak resident set (VmHWM) of one forked pool worker that measures the first
8 amps of the input's detector-day, after importing what ``calibmon run`` imports
(target ≤ 300 MB).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import fitsio
import numpy as np


def decompress(path: str) -> int:
    n = 0
    with fitsio.FITS(path) as f:
        for hdu in f[1:]:
            a = hdu.read()
            n += 0 if a is None else a.size
    return n


def floor_seconds(files: list[Path], workers: int) -> float:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(decompress, [str(p) for p in files], chunksize=1))
    return time.perf_counter() - t0


def pipeline_seconds(root: Path, workers: int, kinds: list[str] | None) -> tuple[float, int]:
    from calibmon.config import load_settings
    from calibmon.service.run import run_directory
    from calibmon.store.sqlite import Store

    with tempfile.TemporaryDirectory() as d:
        settings = load_settings(None, store=Path(d) / "s.sqlite", workers=workers)
        with Store(settings.store_path()) as store:
            t0 = time.perf_counter()
            summary = run_directory(root, settings, store, kinds=kinds)
            return time.perf_counter() - t0, summary.n_records


def run_seconds(files: list[Path], workers: int) -> tuple[float, int]:
    """``calibmon run`` as a new process on ``files`` (symlinked into one directory)."""
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "raw"
        raw.mkdir()
        for p in files:
            (raw / p.name).symlink_to(p.resolve())
        argv = [sys.executable, "-c", "import sys; from calibmon.cli import main; "
                "sys.exit(main(sys.argv[1:]))", "run", "--input", str(raw), "--workers",
                str(workers), "--store", str(Path(d) / "s.sqlite"), "-q"]  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"calibmon run failed ({done.returncode}): {done.stderr[-500:]}")
        return seconds, len(files)


def _measure_and_peak(task: object) -> float:
    """Run one AmpSetTask (in a worker) and return this process's VmHWM, MB."""
    from calibmon.pipeline import measure_amps

    measure_amps(task)
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker_peak_mb(root: Path, amps_per_task: int = 8) -> tuple[float, int]:
    """VmHWM (MB) of a fresh pool worker, forked after the CLI's imports (as in ``calibmon
    run``), measuring the first ``amps_per_task`` amps of the first detector-day."""
    # the run process's imports, inherited by its forked workers
    import calibmon.cli
    import calibmon.service.run  # noqa: F401
    from calibmon.io.discover import discover
    from calibmon.pipeline import AmpHints, AmpSetTask, detector_days
    from calibmon.pipeline.executors import make_executor

    dd = detector_days(discover(root))[0]
    amps = dd.amps[:amps_per_task]
    task = AmpSetTask(dd.instrument, dd.day_obs, dd.detector_name, dd.vendor, amps,
                      dd.frames(), {a: AmpHints() for a in amps})  # fmt: skip
    with make_executor("process", 1) as ex:
        return ex.submit(_measure_and_peak, task).result(), len(amps)


def ccdproc_seconds(files_by_kind: dict[str, list[Path]]) -> float:
    """The daily set with ccdproc, per amp: overscan, trim, sigma-clipped combine."""
    import warnings

    import astropy.units as u
    import ccdproc
    from astropy.nddata import CCDData

    from calibmon.io.geometry import amp_geometry

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    masters: dict[tuple[str, str], CCDData] = {}
    for kind in ("bias", "dark", "flat"):
        per_amp: dict[str, list[CCDData]] = {}
        for p in files_by_kind[kind]:
            with fitsio.FITS(str(p)) as f:
                for hdu in f[1:]:
                    name = hdu.get_extname()
                    data = hdu.read().astype(np.float32)
                    g = amp_geometry(hdu.read_header()["DATASEC"], data.shape)
                    ccd = CCDData(data, unit=u.adu)
                    ccd = ccdproc.subtract_overscan(
                        ccd, overscan=ccd[:, g.overscan_level_cols], overscan_axis=1,
                        median=True,
                    )  # fmt: skip
                    ccd = ccdproc.trim_image(ccd[g.data_rows, g.data_cols])
                    per_amp.setdefault(name, []).append(ccd)
        for name, frames in per_amp.items():
            masters[(kind, name)] = ccdproc.combine(
                frames, method="average", sigma_clip=True, sigma_clip_low_thresh=3,
                sigma_clip_high_thresh=3, mem_limit=4e9,
            )  # fmt: skip
            if kind == "flat":  # flat-pair gain, as calibmon measures it
                for a, b in zip(frames[::2], frames[1::2], strict=False):
                    d = a.data - b.data
                    _ = np.mean(a.data) / (np.var(d) / 2)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--input", type=Path)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--skip-ccdproc", action="store_true")
    ap.add_argument("--skip-ptc", action="store_true", help="no PTC ramp (simulated/timed)")
    ap.add_argument("--skip-run", action="store_true", help="no end-to-end calibmon run")
    ap.add_argument("--worker-rss", action="store_true", help="VmHWM of one 8-amp worker")
    args = ap.parse_args()
    tmp = None
    if args.input is None:
        from calibmon.simulate import simulate_night

        tmp = tempfile.TemporaryDirectory(prefix="calibmon-bench-")
        args.input = Path(tmp.name)
        t0 = time.perf_counter()
        simulate_night(args.input, "20251121", ["R22_S11"], small=False, seed=1,
                       ptc=not args.skip_ptc, n_bias=15, n_dark=15, n_flat=16,
                       n_ptc_pairs=30)  # fmt: skip
        print(f"simulated in {time.perf_counter() - t0:.1f} s")
    from calibmon.io.discover import discover

    disc = discover(args.input)
    by_kind: dict[str, list[Path]] = {}
    for g in disc.groups:
        by_kind.setdefault(g.key.kind, []).extend(Path(e.path) for e in g.exposures)
    daily = [p for k in ("bias", "dark", "flat") for p in by_kind.get(k, [])]
    allf = daily + by_kind.get("ptc", [])
    print(f"files: {len(daily)} daily (bias/dark/flat) + {len(by_kind.get('ptc', []))} PTC; "
          f"{args.workers} worker processes")  # fmt: skip

    fl_daily = floor_seconds(daily, args.workers)
    pl_daily, n_daily = pipeline_seconds(args.input, args.workers, ["bias", "dark", "flat"])
    print(f"daily set   floor {fl_daily:6.1f} s   pipeline {pl_daily:6.1f} s   "
          f"ratio {pl_daily / fl_daily:4.2f}   ({n_daily} records)")  # fmt: skip
    if not args.skip_ptc and by_kind.get("ptc"):
        fl_all = floor_seconds(allf, args.workers)
        pl_all, n_all = pipeline_seconds(args.input, args.workers, None)
        print(f"with PTC    floor {fl_all:6.1f} s   pipeline {pl_all:6.1f} s   "
              f"ratio {pl_all / fl_all:4.2f}   ({n_all} records)")  # fmt: skip
    if not args.skip_run:
        day30 = [p for k in ("bias", "dark", "flat") for p in by_kind.get(k, [])[:10]]
        fl_30 = floor_seconds(day30, args.workers)
        run_30, n_30 = run_seconds(day30, args.workers)
        print(f"calibmon run ({n_30} files, new process)   floor {fl_30:6.1f} s   "
              f"run {run_30:6.1f} s   ratio {run_30 / fl_30:4.2f}")  # fmt: skip
    if args.worker_rss:
        peak, n_amps = worker_peak_mb(args.input)
        print(f"worker      VmHWM {peak:6.0f} MB ({n_amps} amps, one forked pool worker)")
    if not args.skip_ccdproc:
        cp = ccdproc_seconds(by_kind)
        print(f"ccdproc     daily set {cp:6.1f} s (1 process)   ccdproc/pipeline = "
              f"{cp / pl_daily:4.1f}x")  # fmt: skip
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
