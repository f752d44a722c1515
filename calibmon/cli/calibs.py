"""``calibmon calibs``: build, certify, list, check and import master calibrations.

``register(subparsers)`` adds the command group to the main parser
(:mod:`calibmon.cli.main`)::

    calibmon calibs build --calib-type bias --input DIR --day-obs 20251101 [--detectors ...]
    calibmon calibs certify ID --begin 2025-11-01 [--end 2025-12-01]
    calibmon calibs list [--calib-type bias] [--all]
    calibmon calibs validity ID
    calibmon calibs import FILE...
    calibmon calibs import --butler REPO --collections LSSTCam/calib [--calib-type bias,flat]
    calibmon calibs list --butler REPO --collections LSSTCam/calib --day-obs 20251122
    calibmon calibs used FILE... [--format json] [--butler REPO]

Exit codes as everywhere (:mod:`calibmon.cli.common`): 0 done, 1 an input was wrong (unknown id,
unusable product file, frames rejected or a detector not built), 2 usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from calibmon.cli import butler as butler_cli
from calibmon.cli.common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    add_command,
    add_common,
    day_obs_arg,
    detectors_arg,
    load,
    open_store,
    require_cluster_extra,
)
from calibmon.errors import CalibError, ConfigError, InputError

log = logging.getLogger(__name__)


def _date(text: str) -> str:
    from calibmon.calibs.registry import to_iso_date

    try:
        return to_iso_date(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _open(args: argparse.Namespace):
    settings = load(args)
    return settings, open_store(settings)


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------
def cmd_build(args: argparse.Namespace) -> int:
    from calibmon.service.build_calibs import build_calibs

    if not Path(args.input).exists():
        raise ConfigError(f"--input {args.input} does not exist")
    settings, store = _open(args)
    require_cluster_extra(settings)
    with store:
        summary = build_calibs(
            args.input, args.calib_type, args.day_obs, settings, store,
            detectors=args.detectors, output_dir=args.output_dir,
        )  # fmt: skip
    for p in summary.products:
        print(p.id)
    for err in summary.rejected:
        print(str(err), file=sys.stderr)
    for line in summary.problems:
        print(f"not built: {line}", file=sys.stderr)
    return EXIT_OK if summary.ok else EXIT_REJECTED


def cmd_certify(args: argparse.Namespace) -> int:
    from calibmon.calibs import registry
    from calibmon.store import calibs as db

    _, store = _open(args)
    with store:
        row = registry.certify(store, args.id, args.begin, args.end)
        p = row.product
        others = [
            c for c in db.list_certifications(
                store, calib_type=p.calib_type, instrument=p.instrument,
                detector_name=p.detector_name,
            )
            if c.cert_id != row.cert_id and c.product.physical_filter == p.physical_filter
            and _overlap(c.begin_date, c.end_date, row.begin_date, row.end_date)
        ]  # fmt: skip
    print(f"certified {registry.format_association(row)}")
    for c in others:
        print(
            f"  overlaps {registry.format_range(c.begin_date, c.end_date)} {c.product.id}: "
            "this certification wins where they overlap"
        )
    return EXIT_OK


def _overlap(b1: str, e1: str | None, b2: str, e2: str | None) -> bool:
    return (e1 is None or b2 < e1) and (e2 is None or b1 < e2)


def cmd_list(args: argparse.Namespace) -> int:
    from calibmon.calibs import registry
    from calibmon.store import calibs as db

    if getattr(args, "butler", None):
        return _butler_cmd(args, "cmd_list_butler")
    _, store = _open(args)
    with store:
        certs = db.list_certifications(store, calib_type=args.calib_type)
        products = db.list_products(store, calib_type=args.calib_type) if args.all else []
    for c in certs:
        print(registry.format_association(c))
    certified = {c.product.id for c in certs}
    for p in products:
        if p.id not in certified:
            filt = f" {p.physical_filter}" if p.physical_filter else ""
            print(f"[not certified] {p.id} {p.source_run or '-'} {p.calib_type} {p.instrument} "
                  f"{p.detector_name}{filt} (built from {p.day_obs})")  # fmt: skip
    if not certs and not products:
        print(
            "no certified calibrations" + (f" of type {args.calib_type}" if args.calib_type else "")
        )
    return EXIT_OK


def cmd_validity(args: argparse.Namespace) -> int:
    from calibmon.calibs import registry
    from calibmon.catalogue import load_catalogue
    from calibmon.science.verify import NEW_DEFECT_PIXELS_ALLOWED

    settings, store = _open(args)
    catalogue = load_catalogue(settings.catalogue_dir)
    with store:
        product = registry.resolve_product(store, args.id)
        metric = registry.PASS_METRIC[product.calib_type]
        low = next((t.low for t in catalogue[metric].thresholds
                    if t.kind == "fixed" and t.low is not None), 0.5) if metric in catalogue else 0.5  # fmt: skip
        v = registry.validity(store, product.id, pass_fraction=low,
                              max_new_defects=NEW_DEFECT_PIXELS_ALLOWED)  # fmt: skip
    for line in v.lines():
        print(line)
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """``calibs import FILE...``: each product file is checked and registered on its own; a
    bad one is one line naming it and the reason, and the rest of the batch goes on
    (exit 1 if any was refused)."""
    if getattr(args, "butler", None):
        return _butler_cmd(args, "cmd_import_butler")
    if not args.file:
        raise ConfigError("calibs import needs FILE or --butler REPO --collections COLL")
    _, store = _open(args)
    refused = 0
    with store:
        for name in args.file:
            try:
                pid = _import_product(store, Path(name), args.output_dir)
            except CalibError as exc:
                if getattr(args, "debug", False):
                    raise
                print(f"calibmon: {exc}", file=sys.stderr)
                refused += 1
                continue
            print(pid)
    return EXIT_REJECTED if refused else EXIT_OK


def check_product_file(src: Path) -> None:
    """Refuse a product file before any FITS library trusts it: it must exist, and its HDU
    structure (:func:`calibmon.io.validate.check_file_structure`: header sizes, compressed
    axes, every HDU inside the file) must hold — CFITSIO dies with SIGFPE on a zero
    ``ZNAXISn`` and reads past the end of a truncated file. Raises :class:`CalibError`
    ``"<file>: <reason>"``."""
    from calibmon.io.validate import check_file_structure

    if not src.is_file():
        raise CalibError(f"{src}: no such file")
    try:
        check_file_structure(str(src), src.stat().st_size)
    except InputError as exc:
        raise CalibError(f"{src}: {exc.reason}") from None
    except OSError as exc:
        raise CalibError(f"{src}: cannot read: {exc.strerror or exc}") from None


def _import_product(store: Any, src: Path, output_dir: str | None) -> str:
    """Check one product file, copy it beside the store and register it; its id."""
    from calibmon.calibs import registry
    from calibmon.calibs.products import read_header, validate_product
    from calibmon.pipeline.masters import default_calib_dir
    from calibmon.store import calibs as db
    from calibmon.store.sqlite import utc_now_iso

    check_product_file(src)
    first = read_header(src)
    header, shape = validate_product(
        src, registry.known_shapes(store, first.instrument, first.detector_name)
    )
    pid = header.calib_id or str(uuid.uuid4())
    if db.get_product(store, pid) is not None:
        raise CalibError(f"{src}: CALIB_ID {pid} is already registered")
    out_dir = (Path(output_dir) if output_dir else default_calib_dir(store)) / "imported"
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{pid[:8]}_{src.name}"
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    if not header.calib_id:
        _set_calib_id(tmp, pid)
    os.replace(tmp, dest)
    meta: dict[str, Any] = {
        "vendor": header.vendor, "n_exposures": len(header.exposures),
        "exposures": header.exposures, "software_version": header.software_version,
        "config_hash": header.config_hash, "amp_shape": list(shape),
        "imported_from": str(src.resolve()),
    }  # fmt: skip
    db.insert_product(store, db.ProductRow(
        id=pid, calib_type=header.calib_type, instrument=header.instrument,
        detector=header.detector, detector_name=header.detector_name,
        physical_filter=header.physical_filter, day_obs=header.day_obs,
        path=str(dest.resolve()), source_run="import", created_at=utc_now_iso(), meta=meta,
    ))  # fmt: skip
    return pid


def _butler_cmd(args: argparse.Namespace, name: str) -> int:
    """The ``--butler`` variants live in :mod:`calibmon.cli.butler` (need calibmon[butler]:
    without it, one line naming the extra, exit 2)."""
    from calibmon.butler import require_butler

    require_butler()
    return int(getattr(butler_cli, name)(args))


def cmd_used(args: argparse.Namespace) -> int:
    """Reading the cards needs no Butler; ``--butler`` does (calibmon[butler])."""
    if getattr(args, "butler", None):
        return _butler_cmd(args, "cmd_used")
    return int(butler_cli.cmd_used(args))


def _set_calib_id(path: Path, pid: str) -> None:
    import fitsio

    with fitsio.FITS(str(path), "rw") as f:
        f[0].write_key("CALIB_ID", pid, comment="calibmon product id (UUID), set on import")


# --------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------
def register(subparsers: Any) -> None:
    """Add ``calibmon calibs`` and its actions to the main parser's sub-commands."""
    p = add_command(subparsers, "calibs", "master calibrations: build them from a day's exposures, "
                    "certify them for a validity range, list, import, and see how long they verified",
                    "calibmon calibs list --calib-type bias", _no_action)  # fmt: skip
    p.set_defaults(_calibs_parser=p)
    actions = p.add_subparsers(dest="calibs_action", metavar="ACTION", parser_class=type(p))

    a = add_command(actions, "build", "build master calibration products (per-amp FITS) from one "
                    "day's exposures and register them; prints the id of each product, one a line",
                    "calibmon calibs build --calib-type bias --input /data/raw --day-obs 20251101 "
                    "--store cm.sqlite", cmd_build)  # fmt: skip
    a.add_argument("--calib-type", required=True, choices=["bias", "dark", "flat", "defects"])
    a.add_argument("--input", required=True, help="directory searched for raw *.fits / *.fits.fz")
    a.add_argument("--day-obs", type=day_obs_arg, required=True, help="day_obs of the inputs")
    a.add_argument("--detectors", type=detectors_arg, help="only these detectors (R22_S11,...)")
    a.add_argument(
        "--output-dir", help="where product files go (default: calibs/ beside the store)"
    )
    add_common(a)

    a = add_command(actions, "certify", "certify a product for the validity range [BEGIN, END) of "
                    "day_obs dates (end exclusive, open-ended without --end); where ranges overlap "
                    "the most recent certification wins",
                    "calibmon calibs certify 3f2a9c1e-... --begin 2025-11-01 --end 2025-12-01",
                    cmd_certify)  # fmt: skip
    a.add_argument("id", help="product id (or a unique prefix of at least 6 characters)")
    a.add_argument("--begin", type=_date, required=True, help="first valid day, YYYY-MM-DD")
    a.add_argument("--end", type=_date, help="first day no longer valid, YYYY-MM-DD")
    add_common(a)

    a = add_command(actions, "list", "list certifications as '[begin, end) id source-run type "
                    "instrument detector [filter]'; with --butler and --day-obs, which dataset the "
                    "collection hands out per detector that day and whether calibmon has it",
                    "calibmon calibs list --calib-type flat\n  calibmon calibs list --butler "
                    "/repo/embargo --collections LSSTCam/calib --day-obs 20251122", cmd_list)  # fmt: skip
    a.add_argument("--calib-type", choices=["bias", "dark", "flat", "defects"])
    a.add_argument("--all", action="store_true", help="also products never certified")
    _butler_args(a, day_obs=True)
    add_common(a)

    a = add_command(actions, "validity", "per detector (and failing amp), the day_obs range over "
                    "which verification against a product passed and the first day it failed",
                    "calibmon calibs validity 3f2a9c1e", cmd_validity)  # fmt: skip
    a.add_argument("id", help="product id (or a unique prefix of at least 6 characters)")
    add_common(a)

    a = add_command(actions, "import", "register an externally built product of calibmon's per-amp "
                    "layout after checking it (every amp HDU present, trimmed shape of its geometry); "
                    "prints its id; with --butler, the certified calibrations of a CALIBRATION "
                    "collection under their UUIDs, one '<uuid> <type> <detector> [begin, end)' a line",
                    "calibmon calibs import bias_R22_S11.fits\n  calibmon calibs import --butler "
                    "/repo/embargo --collections LSSTCam/calib --calib-type bias,dark,flat,defects",
                    cmd_import)  # fmt: skip
    a.add_argument("file", nargs="*", help="product FITS file(s), each checked on its own: a "
                   "bad one is reported and the rest imported (or --butler)")  # fmt: skip
    a.add_argument("--output-dir", help="where the copy goes (default: calibs/ beside the store)")
    _butler_args(a)
    add_common(a)

    a = add_command(actions, "used", "which calibrations were applied to processed exposures (their "
                    "LSST CALIB RUN/UUID/DATE <TYPE> cards) and what calibmon knows of each UUID: "
                    "product, certification, that day's verification",
                    "calibmon calibs used postISRCCD_*.fits --format json --butler /repo/embargo",
                    cmd_used)  # fmt: skip
    a.add_argument("files", nargs="+", metavar="FILE", help="processed exposures (FITS)")
    a.add_argument("--format", choices=["text", "json"], default="text",
                   help="json: one object a line")  # fmt: skip
    a.add_argument("--butler", metavar="REPO", help="also the datasets' type/run/data id here")
    add_common(a)


def _butler_args(a: argparse.ArgumentParser, day_obs: bool = False) -> None:
    """``--butler`` options of ``calibs import`` / ``calibs list`` (calibmon.cli.butler)."""
    a.add_argument("--butler", metavar="REPO", help="a Butler repository (needs calibmon[butler])")
    a.add_argument("--collections", help="with --butler: the CALIBRATION (or chained) collection")
    a.add_argument("--instrument", help="with --butler: instrument (default LSSTCam)")
    a.add_argument("--detectors", type=detectors_arg, help="with --butler: only these detectors")
    if day_obs:
        a.add_argument("--day-obs", type=day_obs_arg,
                       help="with --butler: what the collection hands out on this day_obs")  # fmt: skip
    else:
        a.add_argument("--calib-type", help="with --butler: comma-separated subset of "
                       "bias,dark,flat,defects (default all)")  # fmt: skip
        a.add_argument("--raw-collections", help="with --butler: raws giving each detector's "
                       "amp geometry (default <instrument>/raw/all)")  # fmt: skip


def _no_action(args: argparse.Namespace) -> int:
    args._calibs_parser.print_help()
    return EXIT_USAGE
