"""Run the ``calibmon`` CLI in a forked child (no interpreter start-up per run), with
the store's fault hook ``CALIBMON_TEST_KILL_AT``; read a store's state from outside."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from pathlib import Path

KILLED = -9  # os.waitstatus_to_exitcode of a SIGKILLed child


def run_cli(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, int]:
    """``calibmon.cli.main(argv)`` in a forked child with ``env`` added: (exit code or
    ``KILLED``, kill points the child passed; counted with ``CALIBMON_TEST_KILL_AT=0``).
    The child's output goes to /dev/null; the parent must hold no open SQLite connection
    to the store (a connection must not cross a fork)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 70
        os.close(r)
        try:
            import calibmon.store.sqlite as sq

            os.environ.update(env or {})
            sq._KILL_STATE["n"] = 0
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            from calibmon.cli import main

            code = main(argv)
            os.write(w, str(sq._KILL_STATE["n"]).encode())
        except BaseException:
            code = 71
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        passed = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), int(passed or 0)


def integrity(store: Path) -> str:
    conn = sqlite3.connect(store)
    try:
        return ";".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def state(store: Path) -> dict[str, object]:
    """What a detector-day left in the store: per (detector, calib_type, level) the
    record count; binned images and PTC curves per detector; the values by identity;
    and how many identities appear more than once."""
    conn = sqlite3.connect(store)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='records'").fetchall():
            return {"groups": Counter(), "images": Counter(), "ptc": Counter(), "values": {},
                    "duplicates": 0}  # fmt: skip
        groups = Counter(
            {(d, c, lv): n for d, c, lv, n in conn.execute(
                "SELECT detector, calib_type, level, COUNT(*) FROM records"
                " GROUP BY 1, 2, 3")}
        )  # fmt: skip
        images = Counter(dict(conn.execute(
            "SELECT detector, COUNT(*) FROM amp_images GROUP BY 1")))  # fmt: skip
        ptc = Counter(dict(conn.execute("SELECT detector, COUNT(*) FROM ptc_curves GROUP BY 1")))
        values = {
            row[:6]: row[6]
            for row in conn.execute(
                "SELECT metric, level, instrument, detector, amp, timestamp, value FROM records"
            )
        }
        dup = conn.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM records GROUP BY metric, level, instrument,"
            " detector, amp, timestamp HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        return {"groups": groups, "images": images, "ptc": ptc, "values": values,
                "duplicates": dup}  # fmt: skip
    finally:
        conn.close()


def whole_or_nothing(got: dict[str, object], ref: dict[str, object]) -> list[str]:
    """Problems of a store left by a killed run against the complete reference: every
    group is either absent or complete, and a detector-day's records and pictures are
    there together or not at all."""
    problems = []
    for key in ("groups", "images", "ptc"):
        g, r = got[key], ref[key]
        for k, n in g.items():  # type: ignore[union-attr]
            if n != r.get(k):  # type: ignore[union-attr]
                problems.append(f"{key} {k}: {n} of {r.get(k)}")  # type: ignore[union-attr]
    amp_dets = {d for (d, _c, lv) in got["groups"] if lv == "amp"}  # type: ignore[union-attr]
    if set(got["images"]) != amp_dets & set(ref["images"]):  # type: ignore[arg-type]
        problems.append(f"images of {set(got['images'])} but records of {amp_dets}")  # type: ignore[arg-type]
    if got["duplicates"]:
        problems.append(f"{got['duplicates']} duplicated identities")
    return problems
