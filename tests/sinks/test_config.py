"""Sink configuration: discriminated union, secrets from env/file only, strict keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from calibmon.sinks import Sink, build_sink
from calibmon.sinks.config import (
    InfluxDB1Config,
    InfluxDB2Config,
    SasquatchRestConfig,
    parse_sink_configs,
    secret_values,
)
from calibmon.sinks.influxdb1 import InfluxDB1Sink
from calibmon.sinks.influxdb2 import InfluxDB2Sink
from calibmon.sinks.sasquatch_rest import SasquatchRestSink


def test_design_example_parses_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_USER", "calibmon")
    monkeypatch.setenv("INFLUX_PASSWORD", "pw-from-env")
    (cfg,) = parse_sink_configs(
        [
            {
                "name": "sasquatch",
                "type": "influxdb1",
                "url": "http://127.0.0.1:8086/",
                "database": "lsst.cp",
                "username_env": "INFLUX_USER",
                "password_env": "INFLUX_PASSWORD",
            }
        ]
    )
    assert isinstance(cfg, InfluxDB1Config)
    assert cfg.url == "http://127.0.0.1:8086"
    assert (cfg.database, cfg.retention_policy, cfg.precision) == ("lsst.cp", None, "ms")
    assert (cfg.timeout_s, cfg.batch_size, cfg.namespace) == (10.0, 5000, "lsst.cp")
    assert cfg.username == "calibmon"
    assert cfg.password is not None and cfg.password.get_secret_value() == "pw-from-env"
    assert "pw-from-env" not in repr(cfg) and "pw-from-env" not in str(cfg.model_dump())
    assert secret_values([cfg]) == ["pw-from-env"]


def test_each_type_builds_its_sink(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    monkeypatch.setenv("SQ_TOKEN", "env-token")
    cfgs = parse_sink_configs(
        [
            {"name": "a", "type": "influxdb1", "url": "http://h:8086"},
            {
                "name": "b",
                "type": "influxdb2",
                "url": "https://h",
                "org": "rubin",
                "token_file": str(token_file),
            },
            {
                "name": "c",
                "type": "sasquatch_rest",
                "url": "https://h/sasquatch-rest-proxy",
                "token_env": "SQ_TOKEN",
            },
        ]
    )
    assert [type(c) for c in cfgs] == [InfluxDB1Config, InfluxDB2Config, SasquatchRestConfig]
    assert cfgs[1].token.get_secret_value() == "file-token"
    assert cfgs[1].bucket == "lsst.cp"
    assert cfgs[2].token.get_secret_value() == "env-token"
    sinks = [build_sink(c) for c in cfgs]
    assert [type(s) for s in sinks] == [InfluxDB1Sink, InfluxDB2Sink, SasquatchRestSink]
    assert [s.name for s in sinks] == ["a", "b", "c"]
    assert all(isinstance(s, Sink) for s in sinks)
    for s in sinks:
        s.close()


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"name": "x", "type": "influxdb1", "url": "http://h", "password": "pw"}, "password"),
        ({"name": "x", "type": "influxdb2", "url": "http://h", "org": "o", "token": "t"}, "token"),
        ({"name": "x", "type": "influxdb1", "url": "http://u:pw@h:8086"}, "credentials"),
        ({"name": "x", "type": "influxdb1", "url": "http://h/?p=pw"}, "query"),
        ({"name": "x", "type": "influxdb1", "url": "ftp://h"}, "http"),
        ({"name": "x", "type": "kafka", "url": "http://h"}, "type"),
        ({"name": "", "type": "influxdb1", "url": "http://h"}, "name"),
        ({"name": "x", "type": "influxdb1", "url": "http://h", "batch_size": 0}, "batch_size"),
        ({"name": "x", "type": "influxdb1", "url": "http://h", "timeout_s": 0}, "timeout_s"),
        (
            {"name": "x", "type": "influxdb1", "url": "http://h", "password_env": "NOPE_UNSET"},
            "username",
        ),
        (
            {
                "name": "x",
                "type": "influxdb2",
                "url": "http://h",
                "org": "o",
                "token_file": "/nonexistent/t",
            },
            "token",
        ),
    ],
)
def test_bad_entries_are_refused(entry: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_sink_configs([entry])
    assert needle in str(info.value)


def test_password_without_username_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "x")
    with pytest.raises(ValidationError, match="username"):
        InfluxDB1Config(name="x", type="influxdb1", url="http://h", password_env="PW")


def test_names_must_be_unique() -> None:
    entry = {"name": "dup", "type": "influxdb1", "url": "http://h"}
    with pytest.raises(ValueError, match="dup"):
        parse_sink_configs([entry, entry])


def test_unset_credential_variables_warn_and_mean_no_login(caplog) -> None:
    """DESIGN's example keeps username_env/password_env; against an InfluxDB without auth
    the variables may be unset: a WARNING naming them, and no credentials."""
    cfg = InfluxDB1Config(
        name="x", type="influxdb1", url="http://h", username_env="NOPE_U", password_env="NOPE_P"
    )
    assert cfg.username is None and cfg.password is None
    assert "NOPE_U" in caplog.text
