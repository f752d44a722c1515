"""The ``--butler`` variants of ``calibmon calibs`` (called by :mod:`calibmon.cli.calibs`,
which checks for the extra first) and ``calibs used``. Printing and exit codes only; the
work is in :mod:`.calibs` and :mod:`.used`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calibmon.cli.common import EXIT_OK, EXIT_REJECTED, load, open_store
from calibmon.errors import ConfigError


def _open(args: argparse.Namespace):
    settings = load(args)
    return settings, open_store(settings)


def _collection(args: argparse.Namespace) -> str:
    from calibmon.butler.repo import split_collections

    colls = split_collections(args.collections)
    if len(colls) != 1:
        raise ConfigError("--butler needs --collections with one CALIBRATION (or chained) "
                          "collection, e.g. LSSTCam/calib")  # fmt: skip
    return colls[0]


def _types(text: str | None) -> list[str]:
    from calibmon.calibs.products import CALIB_TYPES

    types = [t.strip().lower() for t in (text or "").split(",") if t.strip()] or list(CALIB_TYPES)
    bad = [t for t in types if t not in CALIB_TYPES]
    if bad:
        raise ConfigError(f"--calib-type {','.join(bad)}: not one of {', '.join(CALIB_TYPES)}")
    return types


def cmd_import_butler(args: argparse.Namespace) -> int:
    """``calibs import --butler``: one ``<uuid> <type> <detector> [begin, end)`` a line."""
    from calibmon.butler.calibs import import_certified
    from calibmon.butler.repo import split_collections

    if args.file:
        raise ConfigError("calibs import takes FILE or --butler, not both")
    collection = _collection(args)
    settings, store = _open(args)
    with store:
        summary = import_certified(
            args.butler, collection, settings, store, calib_types=_types(args.calib_type),
            instrument=args.instrument, detectors=args.detectors,
            raw_collections=split_collections(args.raw_collections),
            output_dir=Path(args.output_dir) if args.output_dir else None,
        )  # fmt: skip
    for line in summary.lines:
        print(line)
    for line in summary.problems:
        print(f"not imported: {line}", file=sys.stderr)
    print(f"{summary.n_new_products} new products, {summary.n_new_certifications} new "
          f"certifications from {args.butler} {collection}", file=sys.stderr)  # fmt: skip
    return EXIT_OK if summary.ok else EXIT_REJECTED


def cmd_list_butler(args: argparse.Namespace) -> int:
    """``calibs list --butler --day-obs``: what the collection hands out that day."""
    from calibmon.butler.calibs import handed_out

    if not args.day_obs:
        raise ConfigError("calibs list --butler needs --day-obs")
    collection = _collection(args)
    settings, store = _open(args)
    with store:
        rows = handed_out(
            args.butler, collection, args.day_obs, store,
            calib_types=_types(args.calib_type), instrument=args.instrument,
            detectors=args.detectors, settings=settings,
        )  # fmt: skip
    if not rows:
        print(f"{collection}: no certified calibrations")
    for r in rows:
        filt = f" {r.physical_filter}" if r.physical_filter else ""
        print(f"{args.day_obs} {r.detector_name} {r.calib_type}{filt} {r.uuid or '-'} "
              f"{r.run or '-'}: {r.known}")  # fmt: skip
    return EXIT_OK


def cmd_used(args: argparse.Namespace) -> int:
    """``calibs used FILE...``: the ISR calibration cards and what calibmon knows."""
    from calibmon.butler.used import describe
    from calibmon.catalogue import load_catalogue
    from calibmon.science.verify import NEW_DEFECT_PIXELS_ALLOWED

    settings, store = _open(args)
    butler = None
    if args.butler:
        from calibmon.butler.repo import open_butler

        butler = open_butler(args.butler)
    catalogue = load_catalogue(settings.catalogue_dir)
    pass_fraction = 0.5
    if "verify_bias_pass" in catalogue:  # the catalogue's fixed low threshold, as validity uses
        lows = [t.low for t in catalogue["verify_bias_pass"].thresholds
                if t.kind == "fixed" and t.low is not None]  # fmt: skip
        pass_fraction = lows[0] if lows else pass_fraction
    with store:
        found, bad = describe(args.files, store, butler=butler, pass_fraction=pass_fraction,
                              max_new_defects=NEW_DEFECT_PIXELS_ALLOWED)  # fmt: skip
    for item in found:
        if args.format == "json":
            print(json.dumps(item, separators=(",", ":"), default=str))
            continue
        print(f"{item['file']} (day_obs {item['day_obs'] or '?'})")
        if not item["calibs"]:
            print("  no LSST CALIB cards (not an ISR-processed exposure?)")
        for ctype, c in item["calibs"].items():
            print(f"  {ctype:9s} {c['uuid'] or '-'} run {c['run'] or '-'} date {c['date'] or '-'}"
                  f": {_known_text(c)}")  # fmt: skip
    for err in bad:
        print(str(err), file=sys.stderr)
    return EXIT_OK if not bad else EXIT_REJECTED


def _known_text(c: dict) -> str:
    if not c.get("known"):
        return "unknown to calibmon"
    certs = ", ".join(f"[{b}, {e or '∞'})" for b, e in c.get("certifications", [])) or "none"
    text = f"calibmon product (certified {certs})"
    v = c.get("verification")
    if v:
        if v.get("n_amps"):
            text += f"; {v['day_obs']}: {v['status']} ({v['n_failing']}/{v['n_amps']} amps failing)"
        else:
            text += f"; {v['day_obs']}: {v['status']}"
    return text
