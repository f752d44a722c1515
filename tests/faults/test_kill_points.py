"""SIGKILL of ``calibmon run`` and ``calibmon serve`` at every store write (issue 16).

The store's fault hook ``CALIBMON_TEST_KILL_AT=N`` SIGKILLs the process at its Nth kill
point: each transaction has two (all written but not committed; committed), each
autocommitted write one. For every point of a run and of a ``serve --once`` firing, on a
fresh store: the killed process left a store that passes ``PRAGMA integrity_check``, in
which every detector-day (records, binned images, PTC curves) is there whole or not at
all and no identity is duplicated; the rerun then completes and leaves exactly the
records of an uninterrupted run. Children are forked from the test process, so a run
costs its work, not an interpreter start.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import DAY_OBS
from .helpers import KILLED, integrity, run_cli, state, whole_or_nothing

POINTS_PER_KIND = 26
"""Kill points tried per command (52 in all), evenly spread over all of the command's
points (the first and the last included): every point would cost a run and a rerun each
(~600 points a run), the spread reaches every kind of write (run row, detector-day
records/images, camera records, alert state/events/outbox, ledger, run end)."""


def _config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / "calibmon.yaml"
    cfg.write_text(f"store: {directory / 'calibmon.sqlite'}\nexecutor: serial\n")
    return cfg


SERVE_END_POINTS = 8
"""Kill points of a ``serve`` firing's end tried besides the spread ones."""

SCHEDULE = """\
name: daily
kinds: [bias, dark, flat, gain]
cron: "30 12 * * *"
timezone: UTC
day_obs: previous
catch_up_days: 0
max_attempts: 2
"""
NOW = "2025-11-22T13:00:00Z"  # day_obs 20251122: the "previous" day_obs is DAY_OBS


def _argv(kind: str, cfg: Path, night: Path) -> list[str]:
    if kind == "run":
        return ["run", "--input", str(night), "--day-obs", DAY_OBS, "--config", str(cfg)]
    sched = cfg.parent / "schedules"
    sched.mkdir(exist_ok=True)
    (sched / "daily.yaml").write_text(SCHEDULE)
    return ["serve", "--once", "--config", str(cfg), "--schedules", str(sched),
            "--input", str(night), "--test-now", NOW]  # fmt: skip


@pytest.mark.parametrize("kind", ["run", "serve"])
def test_sigkill_at_store_writes(kind: str, tiny_night: Path, tmp_path: Path) -> None:
    ref_cfg = _config(tmp_path / "ref")
    ref_rc, n_points = run_cli(_argv(kind, ref_cfg, tiny_night), {"CALIBMON_TEST_KILL_AT": "0"})
    assert ref_rc == 0
    ref = state(ref_cfg.parent / "calibmon.sqlite")
    assert ref["values"] and ref["images"] and not ref["duplicates"]
    assert n_points >= POINTS_PER_KIND
    step = (n_points - 1) / (POINTS_PER_KIND - 1)
    points = sorted({1 + round(i * step) for i in range(POINTS_PER_KIND)})
    if kind == "serve":
        # and every point of the firing's end: the day's camera summaries, alerts and
        # ledger marks after its last unit (the crash gap of issue 16)
        points = sorted(set(points) | set(range(max(1, n_points - SERVE_END_POINTS), n_points + 1)))

    for k in points:
        cfg = _config(tmp_path / f"k{k}")
        store = cfg.parent / "calibmon.sqlite"
        rc, _ = run_cli(_argv(kind, cfg, tiny_night), {"CALIBMON_TEST_KILL_AT": str(k)})
        assert rc == KILLED, f"kill point {k} of {n_points} not reached"
        if store.exists():
            assert integrity(store) == "ok", f"kill point {k}"
            assert whole_or_nothing(state(store), ref) == [], f"kill point {k}"
        assert run_cli(_argv(kind, cfg, tiny_night))[0] == 0, f"rerun after kill point {k}"
        assert integrity(store) == "ok"
        got = state(store)
        # serve: a kill after the last unit's ledger entry and before the day's camera
        # summaries and alerts leaves the day "pending" in the ledger; the rerun finishes
        # it (calibmon.service.scheduler, issue 16), so the camera records are there too
        assert got["values"] == ref["values"], f"rerun after kill point {k}"
        assert (got["groups"], got["images"], got["ptc"]) == (
            ref["groups"], ref["images"], ref["ptc"]
        ), f"rerun after kill point {k}"  # fmt: skip
    assert len(points) >= POINTS_PER_KIND
