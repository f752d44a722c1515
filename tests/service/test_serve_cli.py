"""``calibmon serve`` options and errors, in-process (``--once``: no scheduler loop)."""

from __future__ import annotations

import fcntl
import socket
import sqlite3
from pathlib import Path

import pytest

from calibmon.cli import main

from .helpers import DETECTORS, NOW, copy_night, write_config, write_schedules


def _runs(store: Path) -> int:
    with sqlite3.connect(store) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


def test_once_catches_up_and_exits(nights: Path, tmp_path: Path) -> None:
    store = tmp_path / "cm.sqlite"
    cfg = write_config(tmp_path / "calibmon.yaml", store)
    sched = write_schedules(tmp_path / "schedules", catch_up=1)
    raw = tmp_path / "raw"
    for day in ("20251120", "20251121"):
        copy_night(nights, day, raw)
    args = ["serve", "--once", "--config", str(cfg), "--schedules", str(sched),
            "--input", str(raw), "--test-now", NOW, "-q"]  # fmt: skip
    assert main(args) == 0
    assert _runs(store) == 2 * len(DETECTORS)
    assert main(args) == 0  # the ledger holds both days: nothing is redone
    assert _runs(store) == 2 * len(DETECTORS)


def test_shipped_schedules_when_none_given(tmp_path: Path, capsys) -> None:
    """Neither --schedules nor schedules_dir: the shipped Rubin cadence (schedules/)."""
    cfg = write_config(tmp_path / "calibmon.yaml", tmp_path / "cm.sqlite")
    (tmp_path / "raw").mkdir()
    assert main(["serve", "--once", "--config", str(cfg), "--input", str(tmp_path / "raw"),
                 "--metrics-port", "-1"]) == 0  # fmt: skip


def test_schedules_come_from_the_config_when_not_given(tmp_path: Path) -> None:
    store = tmp_path / "cm.sqlite"
    sched = write_schedules(tmp_path / "schedules")
    cfg = write_config(tmp_path / "calibmon.yaml", store, schedules_dir=str(sched))
    (tmp_path / "raw").mkdir()
    assert main(["serve", "--once", "--config", str(cfg), "--input", str(tmp_path / "raw")]) == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("bad", "daily.yaml: cron: invalid cron expression"),
        ("sink", "sinks: job 'daily' names unknown sink 'sasquatch'"),
        ("input", "is not a directory"),
        ("no-input", "daily.yaml: input: job 'daily' has no input"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    cfg = write_config(tmp_path / "calibmon.yaml", tmp_path / "cm.sqlite")
    sched = write_schedules(tmp_path / "schedules")
    args = ["serve", "--once", "--config", str(cfg), "--input", str(tmp_path)]
    args += ["--schedules", str(sched)]
    if setup == "bad":
        (sched / "daily.yaml").write_text(
            (sched / "daily.yaml").read_text().replace("30 12", "99 12")
        )
    if setup == "sink":
        (sched / "daily.yaml").write_text(
            (sched / "daily.yaml").read_text() + "sinks: [sasquatch]\n"
        )
    if setup == "input":
        args[args.index("--input") + 1] = str(tmp_path / "missing")
    if setup == "no-input":
        del args[args.index("--input") : args.index("--input") + 2]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_second_daemon_on_the_same_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "cm.sqlite"
    cfg = write_config(tmp_path / "calibmon.yaml", store)
    sched = write_schedules(tmp_path / "schedules")
    with open(tmp_path / "cm.serve.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running daemon holds it
        rc = main(["serve", "--once", "--config", str(cfg), "--schedules", str(sched),
                   "--input", str(tmp_path)])  # fmt: skip
    assert rc == 2
    assert "another calibmon serve" in capsys.readouterr().err


def test_help_marks_the_test_clock_as_testing_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--test-tick-seconds S TESTING ONLY" in out
    assert "--test-now ISO TESTING ONLY" in out
    assert "example:" in out and "--metrics-port" in out


def test_a_taken_metrics_port_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "calibmon.yaml", tmp_path / "cm.sqlite")
    sched = write_schedules(tmp_path / "schedules")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc = main(["serve", "--config", str(cfg), "--schedules", str(sched),
                   "--input", str(tmp_path), "--metrics-port", str(port)])  # fmt: skip
    assert rc == 2
    assert f"--metrics-port {port}" in capsys.readouterr().err
