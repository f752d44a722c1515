"""Real dask clusters for the cluster tests: ``dask scheduler`` and ``dask worker``
processes started with dask's own CLI on loopback, a simulated small night, and helpers
to run the ``calibmon`` CLI and compare exports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import _Process, free_port

VENV_BIN = Path(sys.executable).parent
DASK = str(VENV_BIN / "dask")
CALIBMON = str(VENV_BIN / "calibmon")
DAY_OBS = "20251121"
DETECTORS = ["R22_S11", "R01_S01", "R10_S00", "R10_S01"]


class DaskScheduler(_Process):
    """``dask scheduler`` on 127.0.0.1:<free port>, no dashboard."""

    name = "dask-scheduler"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                "--no-dashboard"]  # fmt: skip

    def ready(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", self.port)) == 0


class DaskWorker(_Process):
    """``dask worker`` (a nanny and its single-threaded worker process), named ``name``."""

    def __init__(self, workdir: Path, scheduler: str, worker_name: str) -> None:
        self.name = f"dask-worker-{worker_name}"
        super().__init__(workdir)
        self.scheduler = scheduler
        self.worker_name = worker_name

    def command(self) -> list[str]:
        return [DASK, "worker", self.scheduler, "--nworkers", "1", "--nthreads", "1",
                "--no-dashboard", "--memory-limit", "0", "--name", self.worker_name,
                "--host", "127.0.0.1"]  # fmt: skip

    def ready(self) -> bool:
        return True  # the cluster waits until the scheduler sees it

    def kill_all(self) -> None:
        """SIGKILL nanny and worker process at once (the whole session): a lost node."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the session (nanny and worker); SIGKILL what is left after ``timeout_s``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None


class DaskCluster:
    """A scheduler and ``n`` workers; :meth:`client` is a test-side Client on it."""

    def __init__(self, workdir: Path, n_workers: int) -> None:
        self.scheduler = DaskScheduler(workdir)
        self.address = self.scheduler.address
        self.workers = [DaskWorker(workdir, self.address, f"w{i}") for i in range(n_workers)]
        self._client: Any = None

    def start(self, timeout_s: float = 60.0) -> DaskCluster:
        self.scheduler.start()
        for w in self.workers:
            w.start()
        self.client().wait_for_workers(len(self.workers), timeout=timeout_s)
        return self

    def client(self) -> Any:
        if self._client is None:
            from distributed import Client

            self._client = Client(self.address, timeout=10, set_as_default=False)
        return self._client

    def transitions(self) -> int:
        """Task transitions the scheduler has made so far (grows iff tasks ran on it)."""
        # a lambda travels by value (this module is not importable on the scheduler)
        return int(
            self.client().run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
        )

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        for w in self.workers:
            w.stop()
        self.scheduler.stop()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A scheduler and two workers shared by a module's tests (nothing is killed)."""
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"), 2)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def fresh_dask_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler and two workers of this test alone (it may kill one)."""
    cluster = DaskCluster(tmp_path / "dask", 2)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def cluster_night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small-amp detectors (e2v and ITL), each a full daily set (15 bias, 15 dark,
    16 flat): 8 tasks of 8 amps, enough to kill a worker between the first detector-day
    and the last."""
    from calibmon.simulate import simulate_night

    out = tmp_path_factory.mktemp("cluster_night")
    simulate_night(out, DAY_OBS, DETECTORS, small=True, seed=5)
    return out


def run_cli(args: list[str], cwd: Path, **popen: Any) -> subprocess.CompletedProcess[str]:
    """``calibmon ARGS`` in a clean environment; stdout/stderr captured as text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALIBMON_", "DASK_"))}
    return subprocess.run([CALIBMON, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, **popen)  # fmt: skip


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """``calibmon ARGS`` started in the background (stdout/stderr to pipes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALIBMON_", "DASK_"))}
    return subprocess.Popen([CALIBMON, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def export_records(store: Path, cwd: Path) -> list[str]:
    """The store's records as sorted JSON lines without run id and processing time."""
    out = run_cli(["export", "--format", "jsonl", "--store", str(store)], cwd)
    assert out.returncode == 0, out.stderr
    lines = []
    for line in out.stdout.splitlines():
        rec = json.loads(line)
        rec["provenance"].pop("run", None)
        rec["provenance"].pop("processed_at", None)
        lines.append(json.dumps(rec, sort_keys=True))
    return sorted(lines)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def wait_until(cond: Any, timeout_s: float, every_s: float = 0.02) -> bool:
    """Poll ``cond()`` until true or ``timeout_s`` passed (test orchestration, not timing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every_s)
    return False
