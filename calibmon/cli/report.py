"""``calibmon report`` and ``calibmon dashboards build``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from calibmon.cli.common import EXIT_OK, add_command, add_common, day_obs_arg, load, open_store
from calibmon.errors import ConfigError


def cmd_report(args: argparse.Namespace) -> int:
    from calibmon.report.html import write_report
    from calibmon.store import queries

    settings = load(args)
    if args.nights < 1:
        raise ConfigError("--nights must be at least 1")
    with open_store(settings) as store:
        day_obs = args.day_obs
        if day_obs is None:
            days = queries.day_obs_list(store, args.instrument)
            if not days:
                raise ConfigError(f"the store {settings.store_path()} holds no records")
            day_obs = days[-1]
        path = write_report(
            settings,
            store,
            day_obs,
            Path(args.output),
            nights=args.nights,
            instrument=args.instrument,
            metrics=args.metric or None,
        )
    print(f"wrote {path} (day_obs {day_obs})", file=sys.stderr)
    return EXIT_OK


def cmd_dashboards_build(args: argparse.Namespace) -> int:
    from calibmon.catalogue import load_catalogue
    from calibmon.dashboards.build import write_all

    settings = load(args)  # --config: catalogue_dir and logging; no store is opened
    cat = load_catalogue(args.catalogue or getattr(settings, "catalogue_dir", None))
    for p in write_all(args.output, cat, args.namespace):
        print(p)
    return EXIT_OK


def register(subs: Any) -> None:
    """Add ``report`` and ``dashboards`` to the ``calibmon`` parser."""
    p = add_command(
        subs,
        "report",
        "write a self-contained HTML report of one day: focal-plane maps per metric, binned "
        "combined bias/dark/flat, histograms, PTC curves, trends, alerts and a per-amp table",
        "calibmon report --day-obs 20251121 --nights 14 -o report-20251121.html",
        cmd_report,
    )
    p.add_argument("--day-obs", type=day_obs_arg, help="day to report (default: the latest stored)")
    p.add_argument("--nights", type=int, default=14, help="nights shown in the trends (14)")
    p.add_argument("--instrument", help="only this instrument (default: all that day)")
    p.add_argument("--metric", action="append", help="only this metric (repeatable)")
    p.add_argument("-o", "--output", required=True, help="HTML file to write")
    add_common(p)

    p = add_command(
        subs,
        "dashboards",
        "Grafana dashboards generated from the metric catalogue (InfluxQL on the lsst.cp schema)",
        "calibmon dashboards build -o dashboards/",
        lambda a: (p.print_help(), 2)[1],
    )
    dsubs = p.add_subparsers(dest="dashboards_command", metavar="COMMAND", parser_class=type(p))
    b = add_command(
        dsubs,
        "build",
        "write the dashboards' JSON files",
        "calibmon dashboards build -o dashboards/",
        cmd_dashboards_build,
    )
    b.add_argument("-o", "--output", help="directory (default: ./dashboards)")
    b.add_argument("--namespace", default="lsst.cp", help="measurement prefix (lsst.cp)")
    b.add_argument(
        "--catalogue",
        help="metric catalogue directory (default: catalogue_dir of the config, else the "
        "shipped metrics/)",
    )
    add_common(b)
