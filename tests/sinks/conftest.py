"""Fixtures for the sink tests: real influxd / victoria-metrics / REST proxy stand-in.

A test skips only when a server binary is missing (with the reason); any other failure to
start is an error.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for servers.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/sinks for sink_factory.py

from servers import InfluxD1, KafkaRestProxy, ServerMissing, VictoriaMetrics

from calibmon.store.sqlite import Store

_db_counter = itertools.count()


@pytest.fixture(autouse=True)
def _clean_sink_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxies (requests to 127.0.0.1 must go direct) and no inherited credentials."""
    for key in list(os.environ):
        upper = key.upper()
        if upper.endswith("_PROXY") or upper.startswith(("INFLUX", "CALIBMON_", "SASQUATCH")):
            monkeypatch.delenv(key, raising=False)


def _start(server):
    try:
        server.start()
    except ServerMissing as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))
    return server


def _session_server(factory: pytest.TempPathFactory, cls, name: str):
    """Start one ``cls`` server for the session (skip when its binary is missing)."""
    try:
        server = cls(factory.mktemp(name))
    except ServerMissing as exc:  # pragma: no cover
        pytest.skip(str(exc))
    return _start(server)


@pytest.fixture(scope="session")
def influxd_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxD1]:
    """One influxd for tests that only write and read (each uses its own database)."""
    server = _session_server(tmp_path_factory, InfluxD1, "influxd-shared")
    yield server
    server.stop()


@pytest.fixture
def influx_db(influxd_shared: InfluxD1) -> str:
    """A fresh database name on the shared influxd (created)."""
    name = f"lsst.cp.t{next(_db_counter)}"
    influxd_shared.create_database(name)
    return name


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[InfluxD1]:
    """An influxd of this test's own, which the test may stop, kill and restart."""
    try:
        server = InfluxD1(tmp_path / "influxd")
    except ServerMissing as exc:  # pragma: no cover
        pytest.skip(str(exc))
    _start(server)
    yield server
    server.kill()


@pytest.fixture
def influxd_auth(tmp_path: Path) -> Iterator[InfluxD1]:
    """An influxd with ``auth-enabled = true`` (no user yet)."""
    try:
        server = InfluxD1(tmp_path / "influxd-auth", auth_enabled=True)
    except ServerMissing as exc:  # pragma: no cover
        pytest.skip(str(exc))
    _start(server)
    yield server
    server.kill()


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    server = _session_server(tmp_path_factory, VictoriaMetrics, "victoria")
    yield server
    server.stop()


@pytest.fixture
def kafka_rest() -> Iterator[KafkaRestProxy]:
    import fastavro  # noqa: F401  (a dev dependency: fail here, never skip, if missing)

    proxy = KafkaRestProxy(token="s3cr3t-t0ken").start()
    yield proxy
    proxy.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "calibmon.sqlite")
    yield s
    s.close()
