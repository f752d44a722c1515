"""``calibmon alerts`` commands and the post-run hook."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from alert_helpers import AMPS_16, nights, record

import calibmon.cli as cli
from calibmon.config import load_settings
from calibmon.service.postrun import evaluate_run_alerts as post_run_hook
from calibmon.store import alerts as db
from calibmon.store.sqlite import Store

DAYS = nights(14)


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's logging handler writes to the captured stderr: remove it afterwards."""
    root = logging.getLogger()
    level = root.level
    yield
    for h in list(root.handlers):
        if getattr(h, "_calibmon", False):
            root.removeHandler(h)
    root.setLevel(level)


def write(path: Path, k: int, factor: dict[str, float] | None = None) -> None:
    rng = np.random.default_rng([3, k])
    with Store(path) as s:
        s.write_records(
            [
                record(
                    "gain",
                    (1.4 + 0.02 * i) * (1 + 0.003 * rng.normal()) * (factor or {}).get(a, 1.0),
                    DAYS[k],
                    a,
                )
                for i, a in enumerate(AMPS_16)
            ]
            + [record("verify_bias_pass", 0.2 if (k >= 12 and factor) else 1.0, DAYS[k], "C11")],
            "t",
        )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    return rc, capsys.readouterr().out


def test_evaluate_list_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "cm.sqlite"
    for k in range(13):
        write(store, k, {"C10": 1.03} if k == 12 else None)
        rc, out = run(capsys, "alerts", "evaluate", "--day-obs", DAYS[k], "--store", str(store))
        assert rc == 0
    assert "2 firing" in out and "firing:" in out
    rc, out = run(capsys, "alerts", "--format", "json", "--store", str(store))
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and {r["rule"] for r in rows} == {"gain_drift", "bias_verification_failing"}
    g = next(r for r in rows if r["rule"] == "gain_drift")
    keys = {"rule", "metric", "severity", "state", "instrument", "detector", "detector_name", "amp",
            "value", "threshold", "baseline", "since_day_obs", "last_day_obs"}  # fmt: skip
    assert keys <= set(g)
    assert (g["state"], g["detector"], g["detector_name"], g["amp"], g["since_day_obs"]) == (
        "firing", 94, "R22_S11", "C10", DAYS[12],
    )  # fmt: skip
    v = next(r for r in rows if r["rule"] == "bias_verification_failing")
    assert (
        v["description"] == f"bias for R22_S11 C11 no longer verifies since {DAYS[12]}: recertify"
    )
    rc, out = run(capsys, "alerts", "--store", str(store))
    assert "gain_drift" in out and "R22_S11" in out and "2 firing" in out


def test_silence_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "cm.sqlite"
    rc, out = run(capsys, "alerts", "silence", "--detector", "R22_S11", "--amp", "C10",
                  "--until", "2025-11-30", "--reason", "REB swap", "--store", str(store))  # fmt: skip
    assert rc == 0 and "until day_obs 20251130" in out
    with Store(store) as s:
        (sil,) = db.silences(s, active_on="20251120")
        assert (sil.detector_name, sil.amp, sil.until_day_obs) == ("R22_S11", "C10", "20251130")
    rc, out = run(capsys, "alerts", "silences", "--all", "--store", str(store))
    assert "REB swap" in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["alerts", "silence", "--detector", "R22_S11", "--until", "nope", "--reason", "x"])
    assert exc.value.code == 2


def test_test_notify(tmp_path: Path, receiver, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text(
        f"store: {tmp_path / 'cm.sqlite'}\n"
        "notifiers:\n"
        f"  - {{name: hook, type: webhook, url: '{receiver.url}/t'}}\n"
        "  - {name: dead, type: webhook, url: 'http://127.0.0.1:9/x', timeout_s: 2}\n"
    )
    rc, out = run(capsys, "alerts", "test-notify", "--config", str(cfg))
    assert rc == 1 and "hook (webhook): sent" in out and "dead (webhook): FAILED" in out
    assert receiver.requests[0].json()["status"] == "test"
    rc, out = run(capsys, "alerts", "test-notify", "--notifier", "hook", "--config", str(cfg))
    assert rc == 0


def test_post_run_hook_evaluates_each_day_and_delivers(tmp_path: Path, receiver) -> None:
    settings = load_settings(
        store=tmp_path / "cm.sqlite",
        notifiers=[{"name": "hook", "type": "webhook", "url": f"{receiver.url}/h"}],
    )
    for k in range(13):
        write(settings.store, k, {a: 1.03 for a in AMPS_16} if k == 12 else None)
    summary = SimpleNamespace(day_obs=DAYS[:13], alert_report=None)
    with Store(settings.store) as s:
        post_run_hook(settings, s, summary)
    rep = summary.alert_report
    assert len(rep.reports) == 13
    # one detector, one evaluation: the gain drift of 16 amps and C11's failing bias
    # verification are ONE notification
    (n,) = rep.notifications
    assert n.kind == "firing" and {i.rule for i in n.items} == {
        "gain_drift",
        "bias_verification_failing",
    }
    assert rep.deliveries[0].delivered == 1
    (body,) = [r.json() for r in receiver.requests]
    assert len(body["alerts"]) == 17 and "bias for R22_S11 C11 no longer verifies" in body["text"]
    assert "firing" in str(rep)
