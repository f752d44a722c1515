"""``calibmon import`` and ``calibmon store maintain|check`` (DESIGN.md §3).

Registered by :func:`register` from ``calibmon.cli``; the helpers of that module are
imported lazily so the store package does not import the CLI at import time.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from typing import Any

from calibmon.errors import ConfigError


def cmd_import(args: argparse.Namespace) -> int:
    """Stream a JSONL export (``-``: stdin) into the store; exit 1 if a line was bad."""
    from calibmon.cli import EXIT_OK, EXIT_REJECTED, _open_store, _settings, _setup_logging
    from calibmon.store.transfer import import_jsonl

    settings = _settings(args)
    _setup_logging(args, settings)
    if args.file == "-":
        source, fh = "<stdin>", sys.stdin
    else:
        source = args.file
        try:
            fh = open(args.file, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"{args.file}: cannot read: {exc.strerror or exc}") from exc
    try:
        with _open_store(settings) as store:
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


def maintain(
    store: Any, *, keep_images_days: int | None, vacuum: bool = False
) -> dict[str, int | str]:
    """Retention and compaction: delete binned images and PTC curves of nights more than
    ``keep_images_days`` before the newest night in the store (metric records are kept:
    they are the history), then ``PRAGMA optimize``, a truncating WAL checkpoint and, with
    ``vacuum``, ``VACUUM`` (rewrites the file: needs free space about its size)."""
    out: dict[str, int | str] = {"images_deleted": 0, "ptc_curves_deleted": 0}
    if keep_images_days is not None:
        newest = store.days(descending=True, limit=1)
        if newest:
            d = datetime.strptime(newest[0], "%Y%m%d") - timedelta(days=keep_images_days)
            cutoff = d.strftime("%Y%m%d")
            out["cutoff_day_obs"] = cutoff
            with store.transaction() as c:
                out["images_deleted"] = c.execute(
                    "DELETE FROM amp_images WHERE day_obs<?", (cutoff,)
                ).rowcount
                out["ptc_curves_deleted"] = c.execute(
                    "DELETE FROM ptc_curves WHERE day_obs<?", (cutoff,)
                ).rowcount
    store.execute("PRAGMA optimize")
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if vacuum:
        store.execute("VACUUM")
    return out


def cmd_store(args: argparse.Namespace) -> int:
    from calibmon.cli import EXIT_OK, EXIT_REJECTED, _open_store, _settings, _setup_logging

    settings = _settings(args)
    _setup_logging(args, settings)
    with _open_store(settings) as store:
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
    """Add ``import`` and ``store`` to the ``calibmon`` parser."""
    from calibmon.cli import _common, _sub

    p = _sub(subs, "import", "stream records in the export format (JSONL, DESIGN §4) into the "
             "store; a record with the same identity is replaced; exit 1 if a line was bad "
             "(the rest is imported)",
             "calibmon export -o night.jsonl --store a.sqlite && "
             "calibmon import night.jsonl --store b.sqlite", cmd_import)  # fmt: skip
    p.add_argument("file", metavar="FILE.jsonl", help="JSONL export; - reads stdin")
    _common(p)

    p = _sub(subs, "store", "store upkeep: `maintain` prunes old binned images/PTC curves and "
             "compacts; `check` runs PRAGMA integrity_check",
             "calibmon store maintain --keep-images-days 90 --vacuum", cmd_store)  # fmt: skip
    ss = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    m = ss.add_parser("maintain", help="prune binned images and PTC curves, optimize, compact")
    m.add_argument("--keep-images-days", type=int, metavar="N",
                   help="delete binned images and PTC curves of nights more than N days "
                   "before the newest night (metric records are always kept)")  # fmt: skip
    m.add_argument("--vacuum", action="store_true",
                   help="VACUUM: rewrite the file to return freed space (needs free disk "
                   "about the store's size)")  # fmt: skip
    _common(m)
    c = ss.add_parser("check", help="PRAGMA integrity_check; exit 1 if not ok")
    _common(c)
