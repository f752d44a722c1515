"""No secret leaves calibmon (issue 16 item 6).

One test runs the whole CLI surface — ``run``, ``push``, ``alerts deliver``, ``alerts
test-notify``, ``serve`` (briefly, with its test clock, /metrics scraped), ``report``,
``export`` and ``alerts`` — as subprocesses, with every kind of secret set through
``*_env`` variables: InfluxDB 1.x login (right and wrong password, real influxd with
auth), InfluxDB 2.x token (server down), Sasquatch REST proxy token (right and wrong),
Alertmanager login (real Alertmanager) and token (down), webhook HMAC keys (receiver up,
and one answering 401), SMTP login (real aiosmtpd with AUTH; right and wrong password).
It then looks for every secret — as written, URL-encoded and inside an HTTP Basic header
— in every line the commands printed, the Prometheus page, every file under the test's
directory (output files, the SQLite store and the daemon's job store, byte for byte)
and everything the receivers got.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "alerts"))
from alert_helpers import AM_TEST_CONFIG, Alertmanager, HttpReceiver, SmtpSink
from servers import KafkaRestProxy, ServerMissing, free_port

from calibmon.simulate import simulate_night

DAY = "20251121"
NOW = "2025-11-22T13:00:00Z"  # service clock: day_obs 20251122, "previous" = 20251121
USER = "calibmon-user"
# Distinct, greppable values; the *_WRONG ones are refused by their server (error paths).
SECRETS = {
    "T_INFLUX_PASS": "Infl-pw-7Qx!9@zz",
    "T_INFLUX_WRONG": "Infl-WRONG-3kd%8",
    "T_V2_TOKEN": "v2tok-Lm4pR8sW2",
    "T_REST_TOKEN": "rest-tok-Yb6Hd2",
    "T_REST_WRONG": "rest-WRONG-Ue9Jq",
    "T_AM_PASS": "am-pw-Kc3Vn7+/=",
    "T_AM_TOKEN": "am-tok-Pz5Wd1",
    "T_HOOK_SECRET": "hmac-key-Gh8Tj4",
    "T_HOOK_SECRET2": "hmac-key2-Rx2Ns6",
    "T_SMTP_PASS": "smtp-pw-Fq7Lb3",
    "T_SMTP_WRONG": "smtp-WRONG-Mw1Zc5",
}


def _forms(secret: str) -> set[str]:
    """The secret as it could appear: plain, URL-encoded, in a Basic auth header."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    forms.add(base64.b64encode(f"{USER}:{secret}".encode()).decode())
    return forms


def _leaks(where: str, text: str) -> list[str]:
    return [
        f"{where}: {name}"
        for name, secret in SECRETS.items()
        if any(form in text for form in _forms(secret))
    ]


CONFIG = """\
store: {store}
executor: serial
log_level: DEBUG
sinks:
  - {{name: influx, type: influxdb1, url: "{influx}", username_env: T_USER,
     password_env: T_INFLUX_PASS, create_database: true, timeout_s: 5}}
  - {{name: influx_wrong, type: influxdb1, url: "{influx}", username_env: T_USER,
     password_env: T_INFLUX_WRONG, timeout_s: 5}}
  - {{name: v2, type: influxdb2, url: "http://127.0.0.1:{closed}", org: lsst,
     token_env: T_V2_TOKEN, timeout_s: 2}}
  - {{name: rest, type: sasquatch_rest, url: "{rest}", token_env: T_REST_TOKEN,
     replication_factor: 1}}
  - {{name: rest_wrong, type: sasquatch_rest, url: "{rest}", token_env: T_REST_WRONG,
     replication_factor: 1}}
notifiers:
  - {{name: am, type: alertmanager, url: "{am}", username_env: T_USER,
     password_env: T_AM_PASS}}
  - {{name: am_down, type: alertmanager, url: "http://127.0.0.1:{closed}",
     token_env: T_AM_TOKEN, timeout_s: 2}}
  - {{name: hook, type: webhook, url: "{hook}/ok", secret_env: T_HOOK_SECRET}}
  - {{name: hook_refused, type: webhook, url: "{hook401}/no", secret_env: T_HOOK_SECRET2}}
  - {{name: mail, type: email, host: 127.0.0.1, port: {smtp}, from: cm@example.org,
     to: [oncall@example.org], username_env: T_USER, password_env: T_SMTP_PASS}}
  - {{name: mail_wrong, type: email, host: 127.0.0.1, port: {smtp}, from: cm@example.org,
     to: [oncall@example.org], username_env: T_USER, password_env: T_SMTP_WRONG}}
"""

DAILY_JOB = """\
name: daily
kinds: [bias, dark, flat, gain]
cron: "30 12 * * *"
timezone: UTC
day_obs: previous
catch_up_days: 1
max_attempts: 1
"""


@pytest.fixture
def peers(tmp_path: Path, influxd_auth):
    """Real receivers: Alertmanager → webhook receiver, a webhook receiver answering 401,
    aiosmtpd with AUTH (accepts only T_SMTP_PASS), the REST proxy stand-in (token)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    hook, hook401 = HttpReceiver().start(), HttpReceiver().start()
    hook401.answers.extend([401] * 1000)
    try:
        am = Alertmanager(tmp_path / "am", AM_TEST_CONFIG.format(url=hook.url))
    except ServerMissing as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))
    am.start()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.password.decode() == SECRETS["T_SMTP_PASS"]
        return AuthResult(success=ok, handled=False)

    smtp_sink = SmtpSink()
    smtp = Controller(smtp_sink, hostname="127.0.0.1", port=free_port(),
                      authenticator=authenticator, auth_require_tls=False)  # fmt: skip
    smtp.start()
    rest = KafkaRestProxy(token=SECRETS["T_REST_TOKEN"]).start()
    yield {"am": am, "hook": hook, "hook401": hook401, "smtp": smtp, "smtp_sink": smtp_sink,
           "rest": rest, "influx": influxd_auth}  # fmt: skip
    for stop in (rest.stop, smtp.stop, am.stop, hook.stop, hook401.stop):
        stop()


@pytest.fixture
def influxd_auth(tmp_path: Path):
    """A real influxd with authentication on; admin ``USER`` / ``T_INFLUX_PASS``."""
    from servers import InfluxD1

    server = InfluxD1(tmp_path / "influxd", auth_enabled=True)
    try:
        server.start()
    except ServerMissing as exc:  # pragma: no cover
        pytest.skip(str(exc))
    server.create_admin(USER, SECRETS["T_INFLUX_PASS"])
    yield server
    server.stop()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALIBMON_", "T_"))}
    return {**env, **SECRETS, "T_USER": USER}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calibmon.cli", *args], capture_output=True, text=True,
        env=_env(), cwd=cwd, timeout=300, check=False,
    )  # fmt: skip


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def test_no_secret_in_any_output(tmp_path: Path, peers) -> None:
    raw = tmp_path / "raw"
    simulate_night(raw, DAY, ["R22_S11"], small=True, seed=4, n_bias=3, n_dark=3, n_flat=4,
                   write_truth=False)  # fmt: skip
    closed = free_port()
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text(
        CONFIG.format(
            store=tmp_path / "cm.sqlite",
            influx=peers["influx"].url,
            closed=closed,
            rest=peers["rest"].url,
            am=peers["am"].url,
            hook=peers["hook"].url,
            hook401=peers["hook401"].url,
            smtp=peers["smtp"].port,
        )
    )
    sched = tmp_path / "schedules"
    sched.mkdir()
    (sched / "daily.yaml").write_text(DAILY_JOB)
    c = ("--config", str(cfg))
    outputs: dict[str, str] = {}

    def run(name: str, *args: str, ok: tuple[int, ...] = (0, 1)) -> None:
        res = _cli(*args, cwd=tmp_path)
        outputs[name] = res.stdout + res.stderr
        assert res.returncode in ok, f"{name}: {res.returncode}\n{res.stderr[-3000:]}"
        assert "Traceback" not in res.stderr or "--debug" in args, res.stderr[-3000:]

    run("run", "run", "--input", str(raw), *c)
    run("push", "push", *c)
    run("push rest_wrong", "push", "--sink", "rest_wrong", "--debug", *c)
    run("alerts deliver", "alerts", "deliver", *c)
    run("alerts test-notify", "alerts", "test-notify", *c)
    run("alerts test-notify debug", "alerts", "test-notify", "--notifier", "mail_wrong",
        "--debug", *c)  # fmt: skip
    run("alerts", "alerts", "--format", "json", *c, ok=(0,))
    run("report", "report", "--day-obs", DAY, "-o", str(tmp_path / "night.html"), *c, ok=(0,))
    run("export", "export", "--format", "jsonl", "-o", str(tmp_path / "all.jsonl"), *c, ok=(0,))
    # the wrong-password paths really ran: each server refused
    assert "influx_wrong" in outputs["push"] and "rest_wrong" in outputs["push"]
    assert "mail_wrong" in outputs["alerts test-notify"]

    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "calibmon.cli", "serve", *c, "--schedules", str(sched),
         "--input", str(raw), "--test-now", NOW, "--test-tick-seconds", "2",
         "--metrics-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        page = ""
        while time.monotonic() < deadline:
            try:
                page = _get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                page = ""
            if re.search(r'calibmon_job_runs_total\{[^}]*job="daily"[^}]*\} [1-9]', page):
                break
            time.sleep(0.5)
        assert page, "the daemon never served /metrics"
        outputs["/metrics"] = page
        outputs["/healthz"] = _get(f"http://127.0.0.1:{port}/healthz")
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    outputs["serve"] = out + err
    assert daemon.returncode == 0, err[-3000:]

    leaks: list[str] = []
    for name, text in outputs.items():
        leaks += _leaks(name, text)
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and "influxd" not in path.parts:  # its own user table
            leaks += _leaks(str(path.relative_to(tmp_path)), path.read_bytes().decode("latin-1"))
    for r in peers["hook"].requests + peers["hook401"].requests:
        leaks += _leaks(f"webhook {r.path}", r.body.decode("latin-1"))
    for env in peers["smtp_sink"].envelopes:
        leaks += _leaks("smtp message", bytes(env.content).decode("latin-1"))
    for p in peers["rest"].produced:
        leaks += _leaks("rest produce", repr(p.records))
    assert not leaks, leaks
    # the checks looked at real traffic: records, pages, mail and the HMAC signature
    assert (tmp_path / "all.jsonl").stat().st_size > 0 and peers["rest"].produced
    assert peers["smtp_sink"].envelopes and peers["hook"].requests
    assert any("X-Calibmon-Signature" in r.headers for r in peers["hook"].requests)
