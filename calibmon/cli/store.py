"""``calibmon store maintain|check``: store upkeep."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from calibmon.cli.common import EXIT_OK, EXIT_REJECTED, add_command, add_common, load, open_store
from calibmon.errors import ConfigError


def cmd_store(args: argparse.Namespace) -> int:
    """``store maintain`` (retention, compaction) or ``store check`` (integrity)."""
    from calibmon.store.maintenance import maintain

    settings = load(args)
    with open_store(settings) as store:
        if args.store_command == "maintain":
            if args.keep_images_days is not None and args.keep_images_days < 0:
                raise ConfigError("--keep-images-days must be >= 0")
            out = maintain(store, keep_images_days=args.keep_images_days, vacuum=args.vacuum)
            print(
                f"store {store.path}: {out['images_deleted']} binned images and "
                f"{out['ptc_curves_deleted']} PTC curves deleted"
                + (f" (before {out['cutoff_day_obs']})" if "cutoff_day_obs" in out else "")
                + (", vacuumed" if args.vacuum else "")
            )
            return EXIT_OK
        problems = [r[0] for r in store.query("PRAGMA integrity_check")]
        if problems == ["ok"]:
            print(f"store {store.path}: integrity ok, {store.count_records()} records")
            return EXIT_OK
        for p in problems[:20]:
            print(f"store {store.path}: {p}", file=sys.stderr)
        return EXIT_REJECTED


def register(subs: Any) -> None:
    """Add ``store`` to the ``calibmon`` parser."""
    p = add_command(subs, "store", "store upkeep: `maintain` prunes old binned images/PTC "
                    "curves and compacts; `check` runs PRAGMA integrity_check",
                    "calibmon store maintain --keep-images-days 90 --vacuum",
                    cmd_store)  # fmt: skip
    ss = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    m = ss.add_parser("maintain", help="prune binned images and PTC curves, optimize, compact")
    m.add_argument("--keep-images-days", type=int, metavar="N",
                   help="delete binned images and PTC curves of nights more than N days "
                   "before the newest night (metric records are always kept)")  # fmt: skip
    m.add_argument("--vacuum", action="store_true",
                   help="VACUUM: rewrite the file to return freed space (needs free disk "
                   "about the store's size)")  # fmt: skip
    add_common(m)
    c = ss.add_parser("check", help="PRAGMA integrity_check; exit 1 if not ok")
    add_common(c)
