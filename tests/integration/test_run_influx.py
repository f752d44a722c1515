"""``calibmon run`` with an InfluxDB 1.x sink configured: points land in ``lsst.cp.bias``
with the DESIGN §5 tags, re-runs overwrite, and a down server loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calibmon.cli import main
from calibmon.simulate import simulate_night

DAY = "20251121"


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("influx_night")
    simulate_night(out, DAY, ["R22_S11", "R01_S01"], small=True, seed=21, n_bias=4, n_dark=2,
                   n_flat=4)  # fmt: skip
    return out


def _config(tmp_path: Path, url: str, db: str) -> Path:
    cfg = tmp_path / "calibmon.yaml"
    # DESIGN.md §3's example as written: credentials named by variables that are not set
    # (this influxd has no auth), and a database that does not exist yet
    cfg.write_text(
        f"store: {tmp_path / 'cm.sqlite'}\n"
        "sinks:\n"
        "  - name: sasquatch\n"
        "    type: influxdb1\n"
        f"    url: {url}\n"
        f"    database: {db}\n"
        "    username_env: INFLUX_USER\n"
        "    password_env: INFLUX_PASSWORD\n"
    )
    return cfg


def test_run_writes_read_noise_for_every_amp(night, influxd, tmp_path, capsys) -> None:
    db = "lsst.cp"
    cfg = _config(tmp_path, influxd.url, db)
    assert main(["run", "--input", str(night), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "sasquatch: ok" in out
    series = influxd.series(
        'SELECT "read_noise", "read_noise_adu", "bias_level" FROM "lsst.cp"."autogen"."lsst.cp.bias"'
        ' GROUP BY "instrument", "detector", "detector_name", "amp"',
        db=db,
    )
    tags = {(s["tags"]["instrument"], s["tags"]["detector"], s["tags"]["detector_name"],
             s["tags"]["amp"]) for s in series}  # fmt: skip
    assert len(tags) == 32
    assert {t[1] for t in tags} == {"94", "1"} and {t[0] for t in tags} == {"LSSTCam"}
    # values equal the store's
    capsys.readouterr()
    assert (
        main(["export", "--format", "jsonl", "--config", str(cfg), "--metric", "read_noise"]) == 0
    )
    stored = {
        (r["detector_name"], r["amp"]): r["value"]
        for r in map(json.loads, capsys.readouterr().out.splitlines())
        if r["level"] == "amp"
    }
    for s in series:
        key = (s["tags"]["detector_name"], s["tags"]["amp"])
        assert s["values"][0][1] == pytest.approx(stored[key], rel=1e-12)
    n = influxd.count_points("lsst.cp.bias", "read_noise", db=db)
    # a re-run rewrites the same points
    assert main(["run", "--input", str(night), "--config", str(cfg)]) == 0
    assert influxd.count_points("lsst.cp.bias", "read_noise", db=db) == n == 32


def test_server_down_then_push(night, influxd, tmp_path, capsys) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:9", "down.db")  # nothing listens on port 9
    assert main(["run", "--input", str(night), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "sasquatch: unavailable" in out and "pending" in out
    cfg.write_text(cfg.read_text().replace("http://127.0.0.1:9", influxd.url))
    assert main(["push", "--config", str(cfg)]) == 0
    assert "0 pending" in capsys.readouterr().out
    assert influxd.count_points("lsst.cp.bias", "read_noise", db="down.db") == 32
