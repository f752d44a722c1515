"""Shared fixtures: a clean environment, simulated nights (cached per session)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's CALIBMON_*/INFLUX_* settings or proxies."""
    for key in list(os.environ):
        if key.startswith(("CALIBMON_", "INFLUX_")) or key.lower() in (
            "http_proxy", "https_proxy", "all_proxy", "no_proxy",
        ):  # fmt: skip
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def small_night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small two-detector night (R22_S11 e2v, R01_S01 ITL) with a PTC ramp; read-only."""
    from calibmon.simulate import simulate_night

    out = tmp_path_factory.mktemp("small_night")
    simulate_night(out, "20251121", ["R22_S11", "R01_S01"], small=True, seed=3, ptc=True)
    return out


# tests/servers.py (real influxd, victoria-metrics, ...) importable from every test package
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory):
    """A real InfluxDB 1.x server on a free 127.0.0.1 port for the whole session."""
    from servers import InfluxD1, ServerMissing

    server = InfluxD1(tmp_path_factory.mktemp("influxd"))
    try:
        server.start()
    except ServerMissing as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))
    yield server
    server.stop()
