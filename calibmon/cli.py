"""The ``calibmon`` command (DESIGN.md §3). The only place that prints summaries and picks
exit codes: 0 all inputs processed, 1 some inputs rejected (the rest processed),
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import sys
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from calibmon import __version__
from calibmon.errors import CalibmonError, ConfigError, StoreError

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("calibmon")


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 2 and a one-line error (DESIGN.md §3)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"calibmon: error: {message}\n")


def _day_obs(text: str) -> str:
    t = text.replace("-", "")
    if len(t) != 8 or not t.isdigit():
        raise argparse.ArgumentTypeError(f"day_obs must be YYYYMMDD, got {text!r}")
    return t


def _detectors(text: str) -> list[str]:
    from calibmon.io.detectors import is_valid_name

    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        if not is_valid_name(n):
            raise argparse.ArgumentTypeError(f"{n!r} is not a detector name like R22_S11")
    return names


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write beside the target, then ``os.replace``: a crash leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
        # mkstemp creates 0600; give the file the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------
# Settings/store helpers
# --------------------------------------------------------------------------------------
def _settings(args: argparse.Namespace, **flags: Any):
    from calibmon.config import load_settings

    store = getattr(args, "store", None)
    return load_settings(getattr(args, "config", None), store=store, **flags)


def _open_store(settings):
    from calibmon.store.sqlite import Store

    return Store(settings.store_path())


def _setup_logging(args: argparse.Namespace, settings=None) -> None:
    from calibmon.logs import configure_logging

    level = "DEBUG" if getattr(args, "debug", False) else (
        "WARNING" if getattr(args, "quiet", False) else (settings.log_level if settings else "INFO")
    )  # fmt: skip
    fmt = settings.log_format if settings else "text"
    configure_logging(level, fmt, secrets=_secret_values(settings))


def _secret_values(settings) -> list[str]:
    """Values of every secret the configuration holds (for log redaction)."""
    return settings.secret_values() if settings is not None else []


class _Progress:
    """A progress bar on a terminal; quiet log lines (every 10 %) otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        if self.tty:
            n = int(frac * 30)
            sys.stderr.write(f"\r{self.label} [{'#' * n}{'.' * (30 - n)}] {done}/{total} amps")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        else:
            step = int(frac * 10)
            if step != self._last:
                self._last = step
                log.info("%s: %d/%d amps (%d %%)", self.label, done, total, int(frac * 100))


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    from calibmon.simulate import simulate_night

    _setup_logging(args)
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


def _print_run_summary(summary, out=None) -> None:
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


def _after_run(settings, store, summary) -> None:
    """Flush the outbox to remote sinks and evaluate alerts (when configured)."""
    hooks: list[Callable] = [h if callable(h) else _import(h) for h in _POST_RUN_HOOKS]
    for hook in hooks:
        try:
            hook(settings, store, summary)
        except Exception as exc:  # post-run work must never lose the run's records
            log.error("post-run step %s failed: %s", getattr(hook, "__name__", hook), exc)


def flush_sinks(settings, store, summary=None, sink_names: Sequence[str] | None = None) -> list:
    """Deliver what the outbox holds to the configured remote sinks (never raises)."""
    from calibmon.sinks import build_sink
    from calibmon.store.outbox import deliver_all

    configs = [c for c in settings.sinks if not sink_names or c.name in sink_names]
    sinks = [build_sink(c) for c in configs]
    try:
        reports = deliver_all(store, sinks)
    finally:
        for s in sinks:
            s.close()
    if summary is not None:
        summary.sink_reports = [_format_sink_report(r) for r in reports]
    return reports


def _format_sink_report(rep) -> str:
    status = "ok" if rep.ok else ("REJECTED" if rep.rejected else "unavailable")
    line = f"{rep.sink}: {status}, {rep.delivered} delivered, {rep.pending} pending"
    if rep.error:
        line += f" ({rep.error})"
    return line


# Post-run steps (kept as data, run in order): publish, then alert layers add theirs.
_POST_RUN_HOOKS: list[Callable | str] = [flush_sinks, "calibmon.alerts.cli:post_run_hook"]


def cmd_run(args: argparse.Namespace) -> int:
    from calibmon.service.run import run_directory

    settings = _settings(args, workers=args.workers)
    _setup_logging(args, settings)
    if not Path(args.input).exists():
        raise ConfigError(f"--input {args.input} does not exist")
    with _open_store(settings) as store:
        summary = run_directory(
            args.input, settings, store, day_obs=args.day_obs, detectors=args.detectors,
            progress=_Progress("measuring"),
        )  # fmt: skip
        _after_run(settings, store, summary)
    _print_run_summary(summary)
    return EXIT_OK if summary.ok else EXIT_REJECTED


def cmd_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(args, settings)
    with _open_store(settings) as store:
        records = list(store.iter_records(day_obs=args.day_obs, metric=args.metric))
    if args.format == "jsonl":

        def write(fh) -> None:
            for r in records:
                fh.write(json.dumps(r.to_json_dict(), separators=(",", ":")) + "\n")

        if args.output:
            _atomic_write(Path(args.output), write)
        else:
            write(sys.stdout)
    else:
        from calibmon.store.frames import records_frame

        df = records_frame(records)
        if args.format == "csv":
            if args.output:
                _atomic_write(Path(args.output), lambda fh: df.to_csv(fh, index=False))
            else:
                df.to_csv(sys.stdout, index=False)
        else:  # parquet
            if not args.output:
                raise ConfigError("--format parquet needs -o FILE")
            _atomic_write(Path(args.output), lambda fh: df.to_parquet(fh, index=False), "wb")
    if args.output:
        print(f"wrote {len(records)} records to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(args, settings)
    names = [args.sink] if args.sink else None
    if names and names[0] not in {c.name for c in settings.sinks}:
        known = ", ".join(c.name for c in settings.sinks) or "none configured"
        raise ConfigError(f"--sink {args.sink}: no such sink ({known})")
    with _open_store(settings) as store:
        reports = flush_sinks(settings, store, sink_names=names)
    if not reports:
        print("no remote sinks configured")
    for rep in reports:
        print(f"sink {_format_sink_report(rep)}")
    return EXIT_OK if all(r.ok for r in reports) else EXIT_REJECTED


DEMO_DETECTORS = ("R22_S11", "R01_S01")  # one e2v, one ITL


def cmd_demo(args: argparse.Namespace) -> int:
    from calibmon.config import load_settings
    from calibmon.service.run import run_directory
    from calibmon.simulate import simulate_night

    workdir = (
        Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="calibmon-demo-"))
    )
    store_path = Path(args.store) if getattr(args, "store", None) else workdir / "calibmon.sqlite"
    settings = load_settings(getattr(args, "config", None), store=store_path)
    _setup_logging(args, settings)
    day_obs = args.day_obs
    print(f"calibmon demo: simulating a small night ({', '.join(DEMO_DETECTORS)}) in {workdir}")
    simulate_night(workdir / "raw", day_obs, list(DEMO_DETECTORS), small=True, seed=args.seed,
                   ptc=True)  # fmt: skip
    with _open_store(settings) as store:
        summary = run_directory(workdir / "raw", settings, store, day_obs=day_obs,
                                progress=_Progress("measuring"))  # fmt: skip
        _after_run(settings, store, summary)
        _print_run_summary(summary)
        print()
        print(amp_table(list(store.iter_records(day_obs=day_obs, level="amp"))))
        report_path = workdir / f"calibmon-report-{day_obs}.html"
        if _DEMO_REPORT_HOOKS:
            print(f"\nreport: {report_path}")
        for hook in _DEMO_REPORT_HOOKS:
            (_import(hook) if isinstance(hook, str) else hook)(
                settings, store, day_obs, report_path
            )
    print(f"\nstore: {store_path}")
    return EXIT_OK if summary.ok else EXIT_REJECTED


_DEMO_REPORT_HOOKS: list[Callable | str] = ["calibmon.report.html:demo_report_hook"]

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


def amp_table(records) -> str:
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
# Parser
# --------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, store: bool = True) -> None:
    """``--store``, ``--config``, ``--debug`` and ``-q`` on one (sub-)parser.

    Their defaults are ``argparse.SUPPRESS``: argparse parses a sub-command into a fresh
    namespace and copies it over its parent's, so a default there would erase the value
    given earlier on the line (``calibmon alerts --store S evaluate``); an option not
    given is simply absent (read it with ``getattr(args, name, None)``). Options already
    on the parser are left alone, so this may run twice (``build_parser`` runs it on
    every parser once all are registered)."""
    options: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("--config",), {"help": "calibmon.yaml (default: $CALIBMON_CONFIG)"}),
        (("--debug",), {"action": "store_true", "help": "debug logging with tracebacks"}),
        (("-q", "--quiet"), {"action": "store_true", "help": "warnings and errors only"}),
    ]
    if store:
        options.insert(
            0, (("--store",), {"help": "SQLite store (default: $CALIBMON_STORE or user data dir)"})
        )
    for flags, kwargs in options:
        if not any(f in p._option_string_actions for f in flags):
            p.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)


def _common_everywhere(parser: argparse.ArgumentParser) -> None:
    """:func:`_common` on ``parser`` and every sub-command parser below it, so that
    ``--store``/``--config`` may stand before a command, between a command and its
    action, or after it, for every command a registrar added."""
    _common(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                _common_everywhere(sub)


def _sub(subs, name: str, help_: str, example: str, func) -> argparse.ArgumentParser:
    p = subs.add_parser(
        name,
        help=help_,
        description=help_,
        epilog="example:\n  " + example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=func)
    return p


# Sub-command groups that live beside their feature: "module:function" adding a parser.
# Imported when the parser is built (the modules import this one's helpers lazily).
_REGISTRARS: list[str] = [
    "calibmon.alerts.cli:register",
    "calibmon.calibs.cli:register",
    "calibmon.service.daemon:register",
    "calibmon.report.cli:register",
]


def _import(spec: str | Callable) -> Callable:
    if callable(spec):
        return spec
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="calibmon",
        description=textwrap.dedent(
            """\
            calibmon: calibration-quality monitoring for multi-amplifier cameras.
            Measures per-amplifier bias, dark, flat, PTC, linearity, CTI and defect
            metrics from raw calibration exposures, stores them, publishes them to
            InfluxDB/Sasquatch and alerts when calibrations drift."""
        ),
        epilog="example:\n  calibmon demo\n  calibmon run --input /data/raw --day-obs 20251121",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"calibmon {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = _sub(subs, "demo", "simulate a small night, process it, print a per-amp summary and "
             "write an HTML report (no server needed)", "calibmon demo", cmd_demo)  # fmt: skip
    p.add_argument("--workdir", help="where to write raws, store and report (default: a temp dir)")
    p.add_argument("--day-obs", type=_day_obs, default="20251121")
    p.add_argument("--seed", type=int, default=0)
    _common(p)

    p = _sub(subs, "simulate", "write realistic raw calibration files plus truth.json",
             "calibmon simulate --out /tmp/raw --day-obs 20251121 --detectors R22_S11,R01_S01 "
             "--small --seed 1", cmd_simulate)  # fmt: skip
    p.add_argument("--out", required=True, help="output directory (files go to OUT/DAY_OBS/)")
    p.add_argument("--day-obs", type=_day_obs, required=True)
    p.add_argument("--detectors", type=_detectors, default=["R22_S11", "R01_S01"])
    p.add_argument("--instrument", default="LSSTCam", choices=["LSSTCam", "LATISS"])
    p.add_argument("--small", action="store_true", help="tiny amplifiers for fast tests")
    p.add_argument("--seed", type=int, default=0, help="noise seed of the night")
    p.add_argument("--camera-seed", type=int, default=1, help="seed of the camera's amps")
    p.add_argument("--ptc", action="store_true", help="also take a PTC ramp of flat pairs")
    p.add_argument("--n-bias", type=int, default=15)
    p.add_argument("--n-dark", type=int, default=15)
    p.add_argument("--n-flat", type=int, default=16)

    p = _sub(subs, "run", "process every exposure under DIR into the store and sinks; exit 0 "
             "when all inputs were processed, 1 when some were rejected, 2 on usage error",
             "calibmon run --input /data/raw --day-obs 20251121 --store cm.sqlite",
             cmd_run)  # fmt: skip
    p.add_argument("--input", required=True, help="directory searched for *.fits / *.fits.fz")
    p.add_argument("--day-obs", type=_day_obs, help="only this day_obs (YYYYMMDD)")
    p.add_argument("--detectors", type=_detectors, help="only these detectors (R22_S11,...)")
    p.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    _common(p)

    p = _sub(subs, "export", "write the stored metric records (jsonl: one JSON object a line)",
             "calibmon export --format jsonl --day-obs 20251121 -o night.jsonl",
             cmd_export)  # fmt: skip
    p.add_argument("--format", choices=["jsonl", "csv", "parquet"], default="jsonl")
    p.add_argument("--day-obs", type=_day_obs)
    p.add_argument("--metric", help="only this metric")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    _common(p)

    p = _sub(subs, "push", "deliver what the outbox still holds to the remote sinks (InfluxDB, "
             "Sasquatch); exit 1 if a sink is unavailable or rejected the data",
             "calibmon push --sink sasquatch --config calibmon.yaml", cmd_push)  # fmt: skip
    p.add_argument("--sink", help="only this sink (name from calibmon.yaml)")
    _common(p)

    for spec in _REGISTRARS:
        try:
            registrar = _import(spec)
        except ModuleNotFoundError:  # a feature module not installed in this build
            continue
        registrar(subs)
    _common_everywhere(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"calibmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, CalibmonError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"calibmon: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, StoreError) else EXIT_REJECTED
    except KeyboardInterrupt:
        print("calibmon: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `calibmon export | head`: the reader is gone, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
