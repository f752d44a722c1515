"""``Settings.alerts`` is an ``AlertsConfig`` and ``Settings.notifiers`` a list of notifier
models, from the YAML file and the environment; a bad key is one line naming key and file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from calibmon.alerts.config import AlertmanagerConfig, AlertsConfig, WebhookConfig, alerts_config
from calibmon.config import load_settings
from calibmon.errors import ConfigError
from calibmon.models import KnownBad

YAML = """\
notifiers:
  - {name: oncall, type: alertmanager, url: "http://127.0.0.1:9093"}
  - {name: chat, type: webhook, url: "https://hooks.example.org/x", secret_env: HOOK_KEY}
known_bad:
  - {instrument: LSSTCam, detector_name: R22_S11, amp: C10, reason: hot}
alerts:
  clear_for: 3
  rules:
    gain_drift: {for: 2, severity: critical}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "calibmon.yaml"
    p.write_text(text)
    return p


def test_yaml_gives_typed_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_KEY", "s3cret-hook-key")
    s = load_settings(_write(tmp_path, YAML))
    assert isinstance(s.alerts, AlertsConfig)
    assert s.alerts.clear_for == 3 and s.alerts.rules["gain_drift"].for_evaluations == 2
    assert [type(n) for n in s.notifiers] == [AlertmanagerConfig, WebhookConfig]
    assert isinstance(s.known_bad[0], KnownBad)
    # the secret is read once and known for redaction
    assert "s3cret-hook-key" in s.secret_values()
    cfg = alerts_config(s)  # still works: the typed model joined with the top-level keys
    assert isinstance(cfg, AlertsConfig)
    assert cfg.clear_for == 3 and [n.name for n in cfg.notifiers] == ["oncall", "chat"]
    assert cfg.known_bad[0].amp == "C10" and cfg.dashboard_url == s.dashboard_url


def test_environment_overrides_nested_alert_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_KEY", "k")
    monkeypatch.setenv("CALIBMON_ALERTS__NSIGMA", "4.5")
    s = load_settings(_write(tmp_path, "alerts: {nsigma: 6}\n"))
    assert s.alerts.nsigma == 4.5
    assert alerts_config(s).nsigma == 4.5


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("alerts: {nsigma: 0}\n", "alerts.nsigma"),
        ("alerts: {no_such: 1}\n", "alerts.no_such: unknown key"),
        ("alerts: {rules: {gain_drift: {for: 0}}}\n", "alerts.rules.gain_drift.for"),
        ("notifiers: [{name: a, type: slack, url: 'http://x'}]\n", "notifiers.0"),
        ("notifiers: [{name: a, type: alertmanager, url: 'ftp://x'}]\n", "notifiers.0"),
        ("notifiers: [{name: a, type: alertmanager, url: 'http://x'},"
         " {name: a, type: alertmanager, url: 'http://y'}]\n", "used twice"),
        ("alerts: {known_bad: []}\n", "alerts: Value error, known_bad belong at the top level"),
    ],
)  # fmt: skip
def test_bad_alert_config_is_one_line_naming_key_and_file(
    tmp_path: Path, text: str, key: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"config error in {path}: ") and key in msg


def test_config_and_alert_config_do_not_import_each_other() -> None:
    """The old cycle config.py <-> alerts/config.py is gone: alerts.config loads alone."""
    code = (
        "import sys; import calibmon.alerts.config\n"
        "assert 'calibmon.config' not in sys.modules, sorted(sys.modules)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
