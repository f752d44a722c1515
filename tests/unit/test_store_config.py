"""Store (identity, transactions, cursors) and configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibmon.config import load_settings
from calibmon.errors import ConfigError
from calibmon.records import MetricRecord, Provenance
from calibmon.store.sqlite import Store


def rec(metric: str = "read_noise", value: float = 5.0, amp: str | None = "C10",
        ts: str = "2025-11-21T18:00:00.000Z") -> MetricRecord:  # fmt: skip
    return MetricRecord(
        metric=metric, value=value, unit="electron", calib_type="bias", level="amp",
        instrument="LSSTCam", detector=94, detector_name="R22_S11", amp=amp,
        day_obs="20251121", timestamp=ts,
        provenance=Provenance(run="r1", exposures=[2025112100001], n_exposures=1,
                              software_version="0.1.0", config_hash="x",
                              processed_at="2025-11-22T00:00:00.000Z"),
    )  # fmt: skip


def test_rewrite_replaces_and_bumps_seq(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.write_records([rec(), rec(amp="C11")], "r1")
        assert s.count_records() == 2
        assert len(s.pending_records("influx")) == 2
        s.mark_delivered("influx", 2)
        assert s.pending_records("influx") == []
        s.write_records([rec(value=6.0)], "r2")
        assert s.count_records() == 2
        pending = s.pending_records("influx")
        assert [r.value for _, r in pending] == [6.0]


def test_transaction_rolls_back(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        with pytest.raises(RuntimeError), s.transaction():
            s.write_records([rec()], "r1")
            raise RuntimeError("crash mid-group")
        assert s.count_records() == 0


def test_camera_level_identity(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        r = rec(amp=None).model_copy(update={"level": "camera", "detector": None,
                                             "detector_name": None})  # fmt: skip
        s.write_records([r, r], "r1")
        assert s.count_records() == 1
        back = next(s.iter_records())
        assert back.detector is None and back.amp is None


def test_latest_value_prefers_ptc_on_same_day(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.write_records([rec("gain", 1.70), rec("ptc_gain", 1.72)], "r1")
        found = s.latest_value(["ptc_gain", "gain"], "LSSTCam", 94, "C10",
                               on_or_before_day_obs="20251122")  # fmt: skip
        assert found == ("ptc_gain", 1.72, "20251121")
        assert s.latest_value(["gain"], "LSSTCam", 94, "C10",
                              on_or_before_day_obs="20251120") is None  # fmt: skip


def test_config_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text("store: x.sqlite\nsinkz: []\n")
    with pytest.raises(ConfigError, match=r"calibmon.yaml: sinkz: unknown key"):
        load_settings(cfg)


def test_config_bad_value(tmp_path: Path) -> None:
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text("nominal_gain: {ITL: -3}\n")
    with pytest.raises(ConfigError, match="nominal_gain"):
        load_settings(cfg)


def test_config_priority_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text("store: /from/file.sqlite\nworkers: 1\n")
    assert load_settings(cfg).store == Path("/from/file.sqlite")
    monkeypatch.setenv("CALIBMON_STORE", "/from/env.sqlite")
    assert load_settings(cfg).store == Path("/from/env.sqlite")
    assert load_settings(cfg, store="/from/flag.sqlite").store == Path("/from/flag.sqlite")
    monkeypatch.setenv("CALIBMON_CONFIG", str(cfg))
    assert load_settings().workers == 1


def test_record_rejects_nan() -> None:
    with pytest.raises(ValueError):
        rec(value=float("nan"))


def test_secrets_from_env_are_known_for_redaction(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text(
        "sinks:\n  - {name: s, type: influxdb1, url: 'http://127.0.0.1:8086',"
        " username_env: U, password_env: P}\n"
    )
    monkeypatch.setenv("U", "user1")
    monkeypatch.setenv("P", "hunter2-secret")
    settings = load_settings(cfg)
    assert "hunter2-secret" in settings.secret_values()
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in str(settings.sinks)


def test_log_lines_are_redacted(tmp_path: Path, monkeypatch, capsys) -> None:
    import logging

    from calibmon.logs import configure_logging

    configure_logging("INFO", secrets=["hunter2-secret"])
    logging.getLogger("calibmon.test").warning(
        "failed http://user:hunter2-secret@h:8086/write?u=x&p=hunter2-secret"
    )
    err = capsys.readouterr().err
    assert "hunter2-secret" not in err and "failed" in err
