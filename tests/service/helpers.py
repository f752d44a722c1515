"""Helpers of the service tests: nights, configs, schedules, a daemon process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

NIGHTS = ("20251120", "20251121")
DETECTORS = ("R22_S11", "R01_S01")  # one e2v, one ITL
FRAMES = {"bias": 5, "dark": 4, "flat": 4}  # per detector and night (conftest.nights)
# "Now" for the service clock: 13:00 UTC on 2025-11-22 is day_obs 20251122, so the
# previous day_obs is 20251121 and a one-day catch-up window reaches 20251120.
NOW = "2025-11-22T13:00:00Z"


def copy_night(nights: Path, day_obs: str, dest_root: Path) -> Path:
    """Copy one night into ``dest_root/<day_obs>`` atomically (copy beside, then rename),
    so a running daemon never sees half a night."""
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = dest_root / f".{day_obs}.partial"
    shutil.copytree(nights / day_obs, tmp)
    final = dest_root / day_obs
    tmp.rename(final)
    return final


def write_config(path: Path, store: Path, **extra: str) -> Path:
    lines = [f"store: {store}", "executor: serial", "log_format: json"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


DAILY_JOB = """\
name: daily
kinds: [bias, dark, flat, gain]
cron: "30 12 * * *"
timezone: UTC
day_obs: previous
catch_up_days: {catch_up}
max_attempts: 2
"""


def write_schedules(directory: Path, catch_up: int = 1) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "daily.yaml").write_text(DAILY_JOB.format(catch_up=catch_up))
    return directory


# --------------------------------------------------------------------------------------
# A real `calibmon serve` process
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.2):
    """Poll ``predicate`` until it returns a truthy value; AssertionError after timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def store_query(store: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the store from outside the daemon (read-only connection; WAL lets us)."""
    if not store.exists():
        return []
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return []
    finally:
        conn.close()


class Daemon:
    """``python -m calibmon.cli serve ...`` with its stderr collected line by
    line (JSON logs) in a thread, so the pipe never fills."""

    def __init__(self, args: list[str], port: int, cwd: Path) -> None:
        self.port = port
        self.lines: list[str] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALIBMON_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "calibmon.cli", "serve",
             "--metrics-port", str(port), *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    # -- logs ----------------------------------------------------------------------------
    def messages(self) -> list[str]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line)["message"])
            except (ValueError, KeyError, TypeError):
                out.append(line)
        return out

    def logged(self, text: str) -> bool:
        return any(text in m for m in self.messages())

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    # -- HTTP ----------------------------------------------------------------------------
    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def sample(self, name: str, **labels: str) -> float | None:
        """One sample from /metrics (text format), or None when absent."""
        from prometheus_client.parser import text_string_to_metric_families

        status, text = self.get("/metrics")
        if status != 200:
            return None
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    def wait_healthy(self, timeout_s: float = 30) -> None:
        def ok() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log_tail()}")
            return self.get("/healthz")[0] == 200

        wait_for(ok, timeout_s, "/healthz 200")

    # -- stop ----------------------------------------------------------------------------
    def terminate(self, timeout_s: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop on SIGTERM:\n{self.log_tail()}") from None
        self._reader.join(timeout=5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
