"""A year of a full camera's history in the store: is on-call still fast?

    python benchmarks/bench_store.py [--nights 365] [--store PATH] [--keep] [--push]
    python benchmarks/bench_store.py --store PATH --only report [--baseline-python PY] [--repeat N]

Builds a synthetic LSSTCam history (every detector of ``lsstcam_detectors()``, 16 amps
each, 8 for wavefront sensors: 3,216 amps; 15 amp metrics plus detector and camera
summaries: ~52k records a night) through the store's own API (``Store.write_records``,
one transaction a night, as ``calibmon run`` writes), timing each night's write. Then,
against the full history, as an operator would run them (subprocesses of the
``calibmon`` CLI, peak RSS from ``getrusage``):

- ``calibmon report`` of the last night,
- ``calibmon alerts evaluate`` of the last night (30-night look-back),
- ``Store.frame(metric, detector_name)`` (in process),
- ``calibmon export --day-obs`` of one night and full exports (jsonl, parquet),
- with ``--push`` and an ``influxd`` on PATH: ``calibmon push`` of the last night.

Prints each time and the ratios that carry the targets (issue 16): report of a night
<= 5 s, full export <= 500 MB peak RSS, nightly write of night N within 20 % of night 1
(mean of the first and last 5 nights: one night's write is noisy on a shared machine).
``--store PATH`` reuses (or builds once into) a store, so the queries can be re-run
without building again. ``--only report`` times just the report of the last night;
``--baseline-python`` (another checkout's interpreter, e.g. ``/work/main/.venv/bin/python``)
times the same report with that code, alternating runs, and prints the ratios (a shared
machine's load changes both alike).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from calibmon.io.detectors import detector_number, is_wavefront, lsstcam_detectors
from calibmon.records import MetricRecord, Provenance, Stats
from calibmon.store.sqlite import Store

INSTRUMENT = "LSSTCam"
AMPS16 = tuple(f"C1{i}" for i in range(8)) + tuple(f"C0{i}" for i in range(8))
# (calib_type, metric, unit, typical value, scatter between amps, night-to-night noise)
METRICS = (
    ("bias", "bias_level", "adu", 25000.0, 1500.0, 2.0),
    ("bias", "read_noise", "electron", 6.0, 0.6, 0.05),
    ("bias", "read_noise_adu", "adu", 4.0, 0.4, 0.03),
    ("bias", "bias_mean", "adu", 0.0, 0.3, 0.05),
    ("bias", "bias_noise", "adu", 4.2, 0.4, 0.03),
    ("dark", "dark_current", "electron/s", 0.002, 0.0005, 0.0001),
    ("dark", "dark_current_p95", "electron/s", 0.004, 0.001, 0.0002),
    ("dark", "bright_pixels", "count", 20.0, 10.0, 2.0),
    ("dark", "bright_columns", "count", 0.5, 0.5, 0.1),
    ("flat", "flat_level", "adu", 20000.0, 2000.0, 50.0),
    ("flat", "gain", "electron/adu", 1.5, 0.1, 0.003),
    ("flat", "dark_pixels", "count", 10.0, 5.0, 1.0),
    ("flat", "dark_columns", "count", 0.3, 0.3, 0.1),
    ("flat", "serial_cti", "1", 2e-6, 1e-6, 1e-7),
    ("defects", "defect_fraction", "1", 1e-4, 5e-5, 5e-6),
)
START = datetime(2025, 1, 1)


def camera() -> list[tuple[int, str, str, tuple[str, ...]]]:
    """(detector number, name, vendor, amps) of the full LSSTCam."""
    out = []
    for i, name in enumerate(lsstcam_detectors()):
        amps = AMPS16[:8] if is_wavefront(name) else AMPS16
        out.append((detector_number(INSTRUMENT, name), name, "ITL" if i % 2 else "E2V", amps))
    return out


def night_records(night: int, cam, base: dict[str, np.ndarray]) -> list[MetricRecord]:
    """One night's records: every amp x metric, a summary per detector and metric, and a
    camera summary per metric. Built with ``model_construct`` (the values are valid by
    construction; validation would cost more than the write being measured)."""
    rng = np.random.default_rng(night)
    day = START + timedelta(days=night)
    day_obs = day.strftime("%Y%m%d")
    out: list[MetricRecord] = []
    for k, (ctype, metric, unit, _typ, _scatter, noise) in enumerate(METRICS):
        ts = (day + timedelta(hours=18, minutes=10 * k)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        vals = base[metric] + rng.normal(0.0, noise, base[metric].shape)
        j = 0
        all_vals = []
        for det, name, vendor, amps in cam:
            prov = Provenance.model_construct(
                run=f"night-{day_obs}", exposures=[int(day_obs) * 100000 + 10 + k],
                n_exposures=15, software_version="0.1.0", config_hash="bench",
                input_calibs={}, processed_at=ts,
            )  # fmt: skip
            v = vals[j : j + len(amps)]
            j += len(amps)
            all_vals.append(v)
            for amp, x in zip(amps, v, strict=True):
                out.append(
                    MetricRecord.model_construct(
                        metric=metric, value=float(x), unit=unit, calib_type=ctype,
                        level="amp", instrument=INSTRUMENT, detector=det, detector_name=name,
                        amp=amp, day_obs=day_obs, physical_filter="", vendor=vendor,
                        timestamp=ts, provenance=prov, stats=None, error=abs(noise),
                    )
                )  # fmt: skip
            med = float(np.median(v))
            out.append(
                MetricRecord.model_construct(
                    metric=metric, value=med, unit=unit, calib_type=ctype, level="detector",
                    instrument=INSTRUMENT, detector=det, detector_name=name, amp=None,
                    day_obs=day_obs, physical_filter="", vendor=vendor, timestamp=ts,
                    provenance=prov, error=None,
                    stats=Stats.model_construct(median=med, sigma_mad=float(np.std(v)),
                                                n_points=len(v), min=float(v.min()),
                                                max=float(v.max())),
                )
            )  # fmt: skip
        allv = np.concatenate(all_vals)
        med = float(np.median(allv))
        out.append(
            MetricRecord.model_construct(
                metric=metric, value=med, unit=unit, calib_type=ctype, level="camera",
                instrument=INSTRUMENT, detector=None, detector_name=None, amp=None,
                day_obs=day_obs, physical_filter="", vendor="", timestamp=ts, provenance=prov,
                error=None,
                stats=Stats.model_construct(median=med, sigma_mad=float(np.std(allv)),
                                            n_points=len(allv), min=float(allv.min()),
                                            max=float(allv.max())),
            )
        )  # fmt: skip
    return out


def build(path: Path, nights: int) -> list[float]:
    """Write ``nights`` nights; returns each night's write time (s)."""
    cam = camera()
    n_amps = sum(len(a) for *_, a in cam)
    rng = np.random.default_rng(0)
    base = {m: typ + rng.normal(0.0, sc, n_amps) for _, m, _, typ, sc, _ in METRICS}
    times = []
    with Store(path) as store:
        done = len(store.days())
        for night in range(done, nights):
            recs = night_records(night, cam, base)
            t0 = time.perf_counter()
            store.write_records(recs, recs[0].provenance.run)
            times.append(time.perf_counter() - t0)
            if night % 25 == 0 or night == nights - 1:
                size = path.stat().st_size / 1e9
                print(f"  night {night + 1}/{nights}: {len(recs)} records in {times[-1]:.2f} s "
                      f"(store {size:.2f} GB)", flush=True)  # fmt: skip
    return times


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run a command (stdout discarded); (wall s, CPU s, peak RSS MB) of that child alone.
    CPU time is the steadier figure on a shared machine."""
    # getrusage's ru_maxrss survives exec (it would report this big process's RSS), so the
    # child prints its own VmHWM (peak RSS of its address space) at exit
    launcher = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('VmHWM', open('/proc/self/status').read()"
        ".split('VmHWM:')[1].split()[0], file=sys.stderr))\n"
        "sys.argv = ['calibmon', *sys.argv[1:]]\n"
        "runpy.run_module('calibmon.cli', run_name='__main__')\n"
    )
    t0 = time.perf_counter()
    # run outside any checkout: ``python -c`` puts the working directory first on sys.path,
    # and each interpreter must import its own calibmon (the baseline's, or this one's)
    proc = subprocess.Popen(
        [cmd[0], "-c", launcher, *cmd[3:]], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    hwm = [ln.split()[1] for ln in err.splitlines() if ln.startswith("VmHWM ")]
    return wall, ru.ru_utime + ru.ru_stime, int(hwm[-1]) / 1024 if hwm else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--store", type=Path, help="build into / reuse this store")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    ap.add_argument("--push", action="store_true", help="also push the last night to influxd")
    ap.add_argument("--skip-exports", action="store_true", help="no full exports (slow)")
    ap.add_argument("--only", choices=["report"], help="time only this step")
    ap.add_argument("--baseline-python", help="also time the report with this interpreter")
    ap.add_argument("--repeat", type=int, default=3, help="report runs each (--only report)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    path = args.store or tmp / "year.sqlite"
    env = {**os.environ, "CALIBMON_STORE": str(path)}
    cal = [sys.executable, "-m", "calibmon.cli"]
    try:
        print(f"building {args.nights} nights into {path}")
        t0 = time.perf_counter()
        times = build(path, args.nights)
        print(
            f"built in {time.perf_counter() - t0:.0f} s; store {path.stat().st_size / 1e9:.2f} GB"
        )
        with Store(path) as store:
            days = store.days()
            n_records = store.count_records()
        last = days[-1]
        print(f"{n_records} records, {len(days)} nights")
        if args.only == "report":
            time_report(cal, env, last, tmp, args.repeat, args.baseline_python)
            return

        results: dict[str, tuple[float, float, float]] = {}
        results["report of one night"] = run_child(
            [*cal, "report", "--day-obs", last, "-o", str(tmp / "r.html")], env
        )
        results["  its store queries (in process)"] = report_queries(path, last)
        results["alert evaluation of one night"] = run_child(
            [*cal, "alerts", "evaluate", "--day-obs", last, "--no-deliver"], env
        )
        with Store(path) as store:
            t0, c0 = time.perf_counter(), time.process_time()
            df = store.frame(metric="read_noise", detector_name="R22_S11")
            results[f"frame(read_noise, R22_S11): {len(df)} rows"] = (
                time.perf_counter() - t0, time.process_time() - c0,
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            )  # fmt: skip
        for label, extra in (
            ("export --day-obs (jsonl)", ["--day-obs", last, "-o", str(tmp / "d.jsonl")]),
            ("full export jsonl (to stdout)", []),
            ("full export parquet", ["--format", "parquet", "-o", str(tmp / "all.parquet")]),
        ):
            if args.skip_exports and label.startswith("full"):
                continue
            results[label] = run_child([*cal, "export", *extra], env)
            for f in tmp.glob("all.*"):
                f.unlink()
        if args.push:
            push_last_night(path, last, tmp, results)

        print(f"\n{'step':44s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MB':>12s}")
        for label, (wall, cpu, rss) in results.items():
            print(f"{label:44s} {wall:8.2f} {cpu:8.2f} {rss:12.0f}")
        fresh_t, full_t = write_ratio(path, tmp)
        f_med, h_med = float(np.median(fresh_t)), float(np.median(full_t))
        print(f"\nnightly write, back to back: empty store {f_med:.2f} s, after {len(days)} "
              f"nights {h_med:.2f} s (medians of {len(fresh_t)}), ratio {h_med / f_med:.2f} "
              "(target <= 1.20)")  # fmt: skip
        k = min(5, max(1, len(times) // 2))
        if len(times) >= 2:
            first, lastn = float(np.mean(times[:k])), float(np.mean(times[-k:]))
            print(f"nightly write during the build (~{n_records // len(days)} records): nights 1-{k} "
                  f"{first:.2f} s, nights {len(times) - k + 1}-{len(times)} {lastn:.2f} s, "
                  f"ratio {lastn / first:.2f} (target <= 1.20)")  # fmt: skip
        rep = results["report of one night"][0]
        exp_rss = max([v[2] for k, v in results.items() if k.startswith("full export")] or [0])
        print(f"report of a night {rep:.1f} s (target <= 5 s); full export peak RSS "
              f"{exp_rss:.0f} MB (target <= 500 MB)")  # fmt: skip
    finally:
        if not args.keep and args.store is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


def time_report(
    cal: list[str], env: dict[str, str], day_obs: str, tmp: Path, repeat: int, baseline: str | None
) -> None:
    """``calibmon report`` of ``day_obs``, ``repeat`` times (alternating with the baseline
    interpreter when given); prints median wall and CPU seconds and the ratios."""
    pythons = {"this checkout": cal[0]} | ({"baseline": baseline} if baseline else {})
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in pythons}
    for _ in range(repeat):
        for label, py in pythons.items():
            runs[label].append(
                run_child([py, *cal[1:], "report", "--day-obs", day_obs, "-o",
                           str(tmp / "r.html")], env)
            )  # fmt: skip
    med = {k: (float(np.median([r[0] for r in v])), float(np.median([r[1] for r in v])))
           for k, v in runs.items()}  # fmt: skip
    for label, (wall, cpu) in med.items():
        print(f"report of {day_obs} ({label}): wall {wall:.2f} s, CPU {cpu:.2f} s "
              f"(medians of {repeat}; target wall <= 5 s)")  # fmt: skip
    if baseline:
        (w, c), (bw, bc) = med["this checkout"], med["baseline"]
        print(f"ratio to baseline: wall {w / bw:.2f}, CPU {c / bc:.2f}")


def write_ratio(path: Path, tmp: Path, reps: int = 3) -> tuple[list[float], list[float]]:
    """Nightly write on a full history vs on an empty store, measured back to back (same
    machine load): the same new nights written into a fresh store (its nights 1..reps)
    and into the history (nights N+1..N+reps), alternating; returns the CPU+wait wall
    seconds of each. The added nights are deleted from the history afterwards."""
    cam = camera()
    n_amps = sum(len(a) for *_, a in cam)
    rng = np.random.default_rng(0)
    base = {m: typ + rng.normal(0.0, sc, n_amps) for _, m, _, typ, sc, _ in METRICS}
    fresh_t, full_t = [], []
    with Store(path) as full, Store(tmp / "fresh.sqlite") as fresh:
        n = len(full.days())
        added = []
        for i in range(reps):
            recs = night_records(n + 30 + i, cam, base)
            added.append(recs[0].day_obs)
            for store, out in ((fresh, fresh_t), (full, full_t)):
                t0 = time.perf_counter()
                store.write_records(recs, recs[0].provenance.run)
                out.append(time.perf_counter() - t0)
        with full.transaction() as c:
            marks = ",".join("?" * len(added))
            c.execute(f"DELETE FROM records WHERE day_obs IN ({marks})", added)
            c.execute(f"DELETE FROM record_days WHERE day_obs IN ({marks})", added)
    return fresh_t, full_t


def report_queries(path: Path, day_obs: str) -> tuple[float, float, float]:
    """The store's share of the report: the night's data as the report gathers it
    (``calibmon.report.nightdata.load_night``-style reads through ``calibmon.store.queries``),
    without rendering a figure."""
    from calibmon.store import queries

    with Store(path) as store:
        t0, c0 = time.perf_counter(), time.process_time()
        days = [d for d in queries.day_obs_list(store, INSTRUMENT) if d <= day_obs][-14:]
        queries.instruments_on(store, day_obs)
        queries.runs_for_day(store, INSTRUMENT, day_obs)
        queries.day_amp_values(store, INSTRUMENT, day_obs)
        queries.summary_values(store, INSTRUMENT, days)
        queries.amp_values_of_days(store, INSTRUMENT, days, ["read_noise"])
        return (time.perf_counter() - t0, time.process_time() - c0,
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # fmt: skip


def push_last_night(path: Path, last: str, tmp: Path, results: dict) -> None:
    """Push the last night to a real influxd (started here) from a copy of the store whose
    cursor is just before that night."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from servers import InfluxD1, ServerMissing

    from calibmon.config import load_settings
    from calibmon.sinks import build_sink
    from calibmon.store.outbox import deliver_all

    server = InfluxD1(tmp / "influxd")
    try:
        server.start()
    except ServerMissing as exc:
        print(f"push skipped: {exc}")
        return
    try:
        server.create_database("lsst.cp")
        cfg = tmp / "c.yaml"
        cfg.write_text(f"sinks:\n  - name: influx\n    type: influxdb1\n    url: {server.url}\n"
                       "    database: lsst.cp\n")  # fmt: skip
        settings = load_settings(cfg, store=path)
        with Store(path) as store:
            first = store.query("SELECT MIN(seq) FROM records WHERE day_obs=?", (last,))[0][0]
            store.mark_delivered("influx", first - 1)
            sink = build_sink(settings.sinks[0])
            t0, c0 = time.perf_counter(), time.process_time()
            deliver_all(store, [sink])
            results["push of one night (influxd)"] = (
                time.perf_counter() - t0, time.process_time() - c0,
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            )  # fmt: skip
            sink.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
