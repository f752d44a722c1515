"""The ``calibmon`` command (DESIGN.md §3): the parser with every command group, and
:func:`main`, the only place that turns errors into exit codes (0 all inputs processed,
1 some inputs rejected, the rest processed, 2 usage or configuration error).

Each command group is a module of this package, imported here by name: a module that
fails to import fails ``calibmon`` loudly instead of its command vanishing.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence

from calibmon import __version__
from calibmon.cli import alerts, calibs, report, run, serve, store, transfer
from calibmon.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    Parser,
    add_common_everywhere,
)
from calibmon.errors import CalibmonError, ConfigError, StoreError


def build_parser() -> argparse.ArgumentParser:
    """The ``calibmon`` parser: every command, ``--store``/``--config`` anywhere."""
    parser = Parser(
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
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    # The order of `calibmon --help`.
    run.register(subs)  # demo, simulate, run
    transfer.register_export(subs)
    run.register_push(subs)
    alerts.register(subs)
    calibs.register(subs)
    serve.register(subs)  # serve, dayobs
    report.register(subs)  # report, dashboards
    transfer.register_import(subs)
    store.register(subs)
    add_common_everywhere(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``calibmon`` command line; returns its exit code."""
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
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `calibmon export | head`: the reader is gone, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
