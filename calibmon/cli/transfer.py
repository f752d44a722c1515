"""``calibmon export`` and ``calibmon import``: records out of and into the store in the
export format (DESIGN.md §4)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from calibmon.cli.common import (
    EXIT_OK,
    EXIT_REJECTED,
    add_command,
    add_common,
    day_obs_arg,
    load,
    open_store,
    require_extra,
)
from calibmon.errors import ConfigError
from calibmon.io.atomic import atomic_write


def cmd_export(args: argparse.Namespace) -> int:
    """``calibmon export``: jsonl (default), csv or parquet, to stdout or ``-o FILE``."""
    from calibmon.store import transfer

    settings = load(args)
    if args.format == "parquet":
        require_extra("pyarrow", "export --format parquet", "pyarrow", "parquet")
        if not args.output:
            raise ConfigError("--format parquet needs -o FILE")
    write_fmt = {"jsonl": transfer.export_jsonl, "csv": transfer.export_csv,
                 "parquet": transfer.export_parquet}[args.format]  # fmt: skip
    n = 0
    with open_store(settings) as store:  # streamed: one day of records in memory at a time

        def write(fh: Any) -> None:
            nonlocal n
            n = write_fmt(store, fh, day_obs=args.day_obs, metric=args.metric)

        if args.output:
            atomic_write(Path(args.output), write, "wb" if args.format == "parquet" else "w")
        else:
            write(sys.stdout)
    if args.output:
        print(f"wrote {n} records to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """Stream a JSONL export (``-``: stdin) into the store; exit 1 if a line was bad."""
    from calibmon.store.transfer import import_jsonl

    settings = load(args)
    if args.file == "-":
        source, fh = "<stdin>", sys.stdin
    else:
        source = args.file
        try:
            fh = open(args.file, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"{args.file}: cannot read: {exc.strerror or exc}") from exc
    try:
        with open_store(settings) as store:
            rep = import_jsonl(store, fh, source)
    finally:
        if fh is not sys.stdin:
            fh.close()
    for line in rep.bad:
        print(line, file=sys.stderr)
    print(
        f"imported {rep.n_records} records from {source} into {settings.store_path()}"
        + (f"; {len(rep.bad)} bad lines skipped" if rep.bad else "")
    )
    return EXIT_OK if rep.ok else EXIT_REJECTED


def register_export(subs: Any) -> None:
    """Add ``export`` to the ``calibmon`` parser."""
    p = add_command(subs, "export", "write the stored metric records (jsonl: one JSON object "
                    "a line)", "calibmon export --format jsonl --day-obs 20251121 -o night.jsonl",
                    cmd_export)  # fmt: skip
    p.add_argument("--format", choices=["jsonl", "csv", "parquet"], default="jsonl")
    p.add_argument("--day-obs", type=day_obs_arg)
    p.add_argument("--metric", help="only this metric")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    add_common(p)


def register_import(subs: Any) -> None:
    """Add ``import`` to the ``calibmon`` parser."""
    p = add_command(subs, "import", "stream records in the export format (JSONL, DESIGN §4) "
                    "into the store; a record with the same identity is replaced; exit 1 if a "
                    "line was bad (the rest is imported)",
                    "calibmon export -o night.jsonl --store a.sqlite && "
                    "calibmon import night.jsonl --store b.sqlite", cmd_import)  # fmt: skip
    p.add_argument("file", metavar="FILE.jsonl", help="JSONL export; - reads stdin")
    add_common(p)
