"""Push a full LSSTCam day into a local influxd: calibmon's outbox vs a raw line-protocol POST.

Builds the records of one LSSTCam day — 3216 amps × every per-amp metric of DESIGN §4,
plus detector (205) and camera summaries — writes them to a fresh store, starts a local
``influxd`` 1.x (``tests/servers.py``), then in the same run, each into a fresh database:

(a) ``deliver()`` with an :class:`InfluxDB1Sink` — reads the store, merges records into
    points, encodes them with influxdb-client's ``Point``, POSTs, moves the cursor;
(b) a raw POST of the same points: line-protocol bodies built beforehand (not timed), the
    same batches (same batch size in records), one ``requests.Session``.

Prints points/s of both and the ratio (a)/(b) in time; the target is ≤ 1.5×. The order of
(a) and (b) alternates between repeats; the best time of each is compared.

Usage::

    .venv/bin/python benchmarks/bench_influx_push.py [--batch-size 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


servers = _load("calibmon_test_servers", ROOT / "tests" / "servers.py")
factory = _load("calibmon_test_sink_factory", ROOT / "tests" / "sinks" / "sink_factory.py")

from calibmon.sinks.config import InfluxDB1Config  # noqa: E402
from calibmon.sinks.influxdb1 import InfluxDB1Sink  # noqa: E402
from calibmon.sinks.schema import build_points  # noqa: E402
from calibmon.store.outbox import deliver  # noqa: E402
from calibmon.store.sqlite import Store  # noqa: E402


def run_calibmon(
    store: Store, url: str, db: str, batch_size: int, prefetch: bool
) -> tuple[float, int]:
    cfg = InfluxDB1Config(name=f"bench-{db}", type="influxdb1", url=url, database=db)
    sink = InfluxDB1Sink(cfg)
    t0 = time.perf_counter()
    report = deliver(store, sink, batch_size=batch_size, sleep=lambda s: None, prefetch=prefetch)
    seconds = time.perf_counter() - t0
    sink.close()
    if report.error:
        raise SystemExit(f"calibmon delivery failed: {report.error}")
    return seconds, report.delivered


def run_raw(bodies: list[bytes], url: str, db: str) -> float:
    session = requests.Session()
    t0 = time.perf_counter()
    for body in bodies:
        resp = session.post(
            f"{url}/write", params={"db": db, "precision": "ms"}, data=body, timeout=60
        )
        if resp.status_code != 204:
            raise SystemExit(f"raw POST failed: {resp.status_code} {resp.text[:300]}")
    seconds = time.perf_counter() - t0
    session.close()
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=5000, help="records per batch (5000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each path (3)")
    ap.add_argument("--detectors", default=None, help="comma list (default: all 205)")
    ap.add_argument("--no-prefetch", action="store_true", help="deliver(prefetch=False)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    detectors = args.detectors.split(",") if args.detectors else None
    t0 = time.perf_counter()
    records = factory.night_records(
        "20251121", calib_types=list(factory.METRICS), detectors=detectors
    )
    n_amps = sum(len(d[3]) for d in factory.detector_list(detectors))
    n_metrics = sum(len(m) for m in factory.METRICS.values())
    print(
        f"records: {len(records)} ({n_amps} amps × {n_metrics} per-amp metrics + summaries), "
        f"built in {time.perf_counter() - t0:.1f} s"
    )

    with tempfile.TemporaryDirectory(prefix="calibmon-bench-") as tmp:
        store = Store(Path(tmp) / "calibmon.sqlite")
        store.write_records(records, run_id="bench")
        n_records = len(records)
        # The raw path gets the very same batches the outbox will send, pre-encoded.
        stored = [r for _, r in store.pending_records("raw", limit=len(records) + 1)]
        bodies, n_points = [], 0
        for i in range(0, len(stored), args.batch_size):
            points = build_points(stored[i : i + args.batch_size])
            n_points += len(points)
            bodies.append("\n".join(p.to_line() for p in points).encode())
        print(
            f"points: {n_points} in {len(bodies)} batches of {args.batch_size} records; "
            f"{sum(map(len, bodies)) / 1e6:.1f} MB of line protocol"
        )

        # The benchmark's own objects (the 100k records built above) are not calibmon's
        # heap in a real push: move them out of the garbage collector's sight.
        del records, stored
        gc.collect()
        gc.freeze()

        # Where calibmon's own time goes, each step alone on one thread, batch by batch.
        t_read = t_encode = 0.0
        after = 0
        while True:
            t0 = time.perf_counter()
            batch = store.pending_records("breakdown", args.batch_size, after)
            t_read += time.perf_counter() - t0
            if not batch:
                break
            after = batch[-1][0]
            t0 = time.perf_counter()
            "\n".join(p.to_line() for p in build_points([r for _, r in batch])).encode()
            t_encode += time.perf_counter() - t0
        print(f"calibmon alone: store read {t_read:.2f} s, merge + encode {t_encode:.2f} s")

        server = servers.InfluxD1(Path(tmp) / "influxd")
        server.start()
        try:
            cal_times, raw_times = [], []
            for k in range(args.repeat):
                db_cal, db_raw = f"cal{k}", f"raw{k}"
                server.create_database(db_cal)
                server.create_database(db_raw)
                order = ("raw", "cal") if k % 2 == 0 else ("cal", "raw")
                for which in order:
                    if which == "raw":
                        raw_times.append(run_raw(bodies, server.url, db_raw))
                    else:
                        seconds, delivered = run_calibmon(
                            store, server.url, db_cal, args.batch_size, not args.no_prefetch
                        )
                        assert delivered == n_records, (delivered, n_records)
                        cal_times.append(seconds)
                n_cal = server.count_points("lsst.cp.bias", "run", db=db_cal)
                n_raw = server.count_points("lsst.cp.bias", "run", db=db_raw)
                assert n_cal == n_raw, (n_cal, n_raw)
                print(
                    f"run {k + 1} ({order[0]} first): calibmon {cal_times[-1]:.2f} s, "
                    f"raw {raw_times[-1]:.2f} s, ratio {cal_times[-1] / raw_times[-1]:.2f}"
                )
        finally:
            server.stop()
        store.close()

    best_cal, best_raw = min(cal_times), min(raw_times)
    ratio = best_cal / best_raw
    print(
        f"calibmon deliver(): {n_points / best_cal:,.0f} points/s "
        f"({n_records / best_cal:,.0f} records/s), best {best_cal:.2f} s"
    )
    print(f"raw line-protocol POST: {n_points / best_raw:,.0f} points/s, best {best_raw:.2f} s")
    print(
        f"ratio calibmon/raw (time): {ratio:.2f}× best, "
        f"{statistics.median(c / r for c, r in zip(cal_times, raw_times, strict=True)):.2f}× "
        f"median per run (target ≤ 1.5×)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
