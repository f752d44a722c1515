"""``calibmon simulate``, ``run``, ``demo`` and ``push``: measure a night, publish it."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from calibmon.cli.common import (
    EXIT_OK,
    EXIT_REJECTED,
    Progress,
    add_command,
    add_common,
    day_obs_arg,
    detectors_arg,
    load,
    open_store,
    require_cluster_extra,
    setup_logging,
)
from calibmon.errors import ConfigError

DEMO_DETECTORS = ("R22_S11", "R01_S01")  # one e2v, one ITL

# Columns of the per-amp table: (metric, header, format)
AMP_TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("bias_level", "bias[adu]", "{:9.1f}"),
    ("read_noise_adu", "rn[adu]", "{:7.3f}"),
    ("read_noise", "rn[e-]", "{:6.2f}"),
    ("bias_mean", "bmean", "{:6.2f}"),
    ("bias_noise", "bnoise", "{:6.2f}"),
    ("gain", "gain", "{:6.3f}"),
    ("ptc_gain", "ptc_g", "{:6.3f}"),
    ("ptc_noise", "ptc_n", "{:5.2f}"),
    ("full_well", "fullwell", "{:8.0f}"),
    ("ptc_a00", "a00", "{:8.2e}"),
    ("max_frac_nonlinearity", "nonlin", "{:6.4f}"),
    ("dark_current", "dark[e/s]", "{:9.4f}"),
    ("serial_cti", "s_cti", "{:7.1e}"),
    ("bright_columns", "hotcol", "{:6.0f}"),
    ("dark_columns", "coldcol", "{:7.0f}"),
    ("defect_fraction", "defects", "{:7.5f}"),
)


# --------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------
def print_run_summary(summary: Any, out: TextIO | None = None) -> None:
    """The run's summary: counts, skipped, rejected files, not measured, sinks, alerts."""
    out = out or sys.stdout
    print(
        f"run {summary.run_id}: {summary.n_files} files, "
        f"{len(summary.detector_days)} detector-days, {summary.n_records} records, "
        f"{summary.n_rejected} rejected, {summary.n_skipped} skipped "
        f"({summary.seconds:.1f} s)",
        file=out,
    )
    if summary.skipped:
        parts = ", ".join(f"{n} {why}" for why, n in sorted(summary.skipped.items()))
        print(f"skipped: {parts}", file=out)
    for err in summary.rejected:
        print(str(err), file=out)
    if summary.not_measured:
        print(f"not measured ({len(summary.not_measured)}):", file=out)
        for line in summary.not_measured[:20]:
            print(f"  {line}", file=out)
        if len(summary.not_measured) > 20:
            print(f"  ... {len(summary.not_measured) - 20} more (see the run's notes)", file=out)
    for rep in summary.sink_reports:
        print(f"sink {rep}", file=out)
    if summary.alert_report is not None:
        print(str(summary.alert_report), file=out)


def amp_table(records: Any) -> str:
    """A readable per-amp table of the day's metrics (one row per detector/amp)."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    present: set[str] = set()
    for r in records:
        if r.level != "amp":
            continue
        rows.setdefault((r.detector_name or "", r.amp or ""), {})[r.metric] = r.value
        present.add(r.metric)
    cols = [c for c in AMP_TABLE_COLUMNS if c[0] in present]
    widths = [max(len(h), len(f.format(1.0))) for _, h, f in cols]
    head = "detector amp " + " ".join(h.rjust(w) for (_, h, _), w in zip(cols, widths, strict=True))
    lines = [head, "-" * len(head)]
    for (det, amp), vals in sorted(rows.items()):
        cells = []
        for (m, _, f), w in zip(cols, widths, strict=True):
            v = vals.get(m)
            cells.append((f.format(v) if v is not None and math.isfinite(v) else "-").rjust(w))
        lines.append(f"{det:8s} {amp:3s} " + " ".join(cells))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    """``calibmon simulate``: raw files plus truth.json."""
    from calibmon.simulate import simulate_night

    setup_logging(args)
    truth = simulate_night(
        Path(args.out), args.day_obs, args.detectors, instrument=args.instrument,
        small=args.small, seed=args.seed, camera_seed=args.camera_seed, ptc=args.ptc,
        n_bias=args.n_bias, n_dark=args.n_dark, n_flat=args.n_flat,
    )  # fmt: skip
    n = sum(len(e.get("filenames", [])) or 1 for e in truth.get("exposures", []))
    print(
        f"wrote {n} raw files ({len(truth.get('exposures', []))} exposures of "
        f"{', '.join(args.detectors)}) to {Path(args.out) / args.day_obs}"
    )
    print(f"truth: {Path(args.out) / args.day_obs / 'truth.json'}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """``calibmon run --input DIR`` (or ``--butler REPO``)."""
    from calibmon.service.postrun import after_run
    from calibmon.service.run import run_directory

    settings = load(args, workers=args.workers)
    if getattr(args, "butler", None):
        return _run_butler(args, settings)
    if not args.input:
        raise ConfigError("run needs --input DIR or --butler REPO")
    if not Path(args.input).exists():
        raise ConfigError(f"--input {args.input} does not exist")
    require_cluster_extra(settings)
    with open_store(settings) as store:
        summary = run_directory(
            args.input, settings, store, day_obs=args.day_obs, detectors=args.detectors,
            progress=Progress("measuring"),
        )  # fmt: skip
        after_run(settings, store, summary)
    print_run_summary(summary)
    return EXIT_OK if summary.ok else EXIT_REJECTED


def _run_butler(args: argparse.Namespace, settings: Any) -> int:
    """``run --butler``: the day's raws of a Butler repository (calibmon.service.run_butler)."""
    from calibmon.butler import require_butler

    require_butler()  # one line naming the extra (calibmon[butler]), exit 2
    from calibmon.butler.repo import split_collections
    from calibmon.service.postrun import after_run
    from calibmon.service.run_butler import run_butler

    if args.input or not args.day_obs:
        raise ConfigError("run --butler needs --day-obs and no --input")
    require_cluster_extra(settings)
    with open_store(settings) as store:
        summary, info = run_butler(
            args.butler, settings, store, day_obs=args.day_obs,
            collections=split_collections(args.collections), instrument=args.instrument,
            detectors=args.detectors, progress=Progress("measuring"),
        )  # fmt: skip
        after_run(settings, store, summary)
    copied = f", {info.n_copied} remote files read from local copies" if info.n_copied else ""
    print(f"butler {info.repo} ({', '.join(info.collections)}): {info.n_datasets} raw "
          f"datasets of {info.instrument} day_obs {info.day_obs}{copied}")  # fmt: skip
    print_run_summary(summary)
    return EXIT_OK if summary.ok else EXIT_REJECTED


def cmd_push(args: argparse.Namespace) -> int:
    """``calibmon push [--sink NAME]``: deliver the outbox now."""
    from calibmon.service.postrun import flush_sinks, format_sink_report

    settings = load(args)
    names = [args.sink] if args.sink else None
    if names and names[0] not in {c.name for c in settings.sinks}:
        known = ", ".join(c.name for c in settings.sinks) or "none configured"
        raise ConfigError(f"--sink {args.sink}: no such sink ({known})")
    with open_store(settings) as store:
        reports = flush_sinks(settings, store, sink_names=names)
    if not reports:
        print("no remote sinks configured")
    for rep in reports:
        print(f"sink {format_sink_report(rep)}")
    return EXIT_OK if all(r.ok for r in reports) else EXIT_REJECTED


def cmd_demo(args: argparse.Namespace) -> int:
    """``calibmon demo``: simulate, process, alerts, per-amp table, HTML report."""
    from calibmon.config import load_settings
    from calibmon.report import write_report
    from calibmon.service.postrun import after_run
    from calibmon.service.run import run_directory
    from calibmon.simulate import simulate_night

    workdir = (
        Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="calibmon-demo-"))
    )
    store_path = Path(args.store) if getattr(args, "store", None) else workdir / "calibmon.sqlite"
    settings = load_settings(getattr(args, "config", None), store=store_path)
    setup_logging(args, settings)
    day_obs = args.day_obs
    print(f"calibmon demo: simulating a small night ({', '.join(DEMO_DETECTORS)}) in {workdir}")
    simulate_night(workdir / "raw", day_obs, list(DEMO_DETECTORS), small=True, seed=args.seed,
                   ptc=True)  # fmt: skip
    with open_store(settings) as store:
        summary = run_directory(workdir / "raw", settings, store, day_obs=day_obs,
                                progress=Progress("measuring"))  # fmt: skip
        after_run(settings, store, summary)
        print_run_summary(summary)
        print()
        print(amp_table(list(store.iter_records(day_obs=day_obs, level="amp"))))
        report_path = workdir / f"calibmon-report-{day_obs}.html"
        print(f"\nreport: {report_path}")
        write_report(settings, store, day_obs, report_path)
    print(f"\nstore: {store_path}")
    return EXIT_OK if summary.ok else EXIT_REJECTED


# --------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------
def register(subs: Any) -> None:
    """Add ``demo``, ``simulate`` and ``run`` to the ``calibmon`` parser."""
    p = add_command(subs, "demo", "simulate a small night, process it, print a per-amp summary "
                    "and write an HTML report (no server needed)", "calibmon demo",
                    cmd_demo)  # fmt: skip
    p.add_argument("--workdir", help="where to write raws, store and report (default: a temp dir)")
    p.add_argument("--day-obs", type=day_obs_arg, default="20251121")
    p.add_argument("--seed", type=int, default=0)
    add_common(p)

    p = add_command(subs, "simulate", "write realistic raw calibration files plus truth.json",
                    "calibmon simulate --out /tmp/raw --day-obs 20251121 --detectors "
                    "R22_S11,R01_S01 --small --seed 1", cmd_simulate)  # fmt: skip
    p.add_argument("--out", required=True, help="output directory (files go to OUT/DAY_OBS/)")
    p.add_argument("--day-obs", type=day_obs_arg, required=True)
    p.add_argument("--detectors", type=detectors_arg, default=["R22_S11", "R01_S01"])
    p.add_argument("--instrument", default="LSSTCam", choices=["LSSTCam", "LATISS"])
    p.add_argument("--small", action="store_true", help="tiny amplifiers for fast tests")
    p.add_argument("--seed", type=int, default=0, help="noise seed of the night")
    p.add_argument("--camera-seed", type=int, default=1, help="seed of the camera's amps")
    p.add_argument("--ptc", action="store_true", help="also take a PTC ramp of flat pairs")
    p.add_argument("--n-bias", type=int, default=15)
    p.add_argument("--n-dark", type=int, default=15)
    p.add_argument("--n-flat", type=int, default=16)

    p = add_command(subs, "run", "process every exposure under DIR into the store and sinks; "
                    "exit 0 when all inputs were processed, 1 when some were rejected, 2 on "
                    "usage error",
                    "calibmon run --input /data/raw --day-obs 20251121 --store cm.sqlite\n  "
                    "calibmon run --butler /repo/embargo --collections LSSTCam/raw/all "
                    "--day-obs 20251121",
                    cmd_run)  # fmt: skip
    p.add_argument("--input", help="directory searched for *.fits / *.fits.fz")
    p.add_argument("--day-obs", type=day_obs_arg, help="only this day_obs (YYYYMMDD)")
    p.add_argument("--detectors", type=detectors_arg, help="only these detectors (R22_S11,...)")
    p.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    p.add_argument(
        "--butler",
        metavar="REPO",
        help="instead of --input: the day's bias/dark/"
        "flat raws of this Butler repository (needs calibmon[butler], --day-obs)",
    )
    p.add_argument(
        "--collections",
        help="with --butler: raw collections, comma-separated (default <instrument>/raw/all)",
    )
    p.add_argument("--instrument", help="with --butler: instrument (default from config)")
    add_common(p)


def register_push(subs: Any) -> None:
    """Add ``push`` to the ``calibmon`` parser."""
    p = add_command(subs, "push", "deliver what the outbox still holds to the remote sinks "
                    "(InfluxDB, Sasquatch); exit 1 if a sink is unavailable or rejected the data",
                    "calibmon push --sink sasquatch --config calibmon.yaml",
                    cmd_push)  # fmt: skip
    p.add_argument("--sink", help="only this sink (name from calibmon.yaml)")
    add_common(p)
