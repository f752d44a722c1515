"""E-mail (aiosmtpd), webhook (local http.server, HMAC) and notifier configuration."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import logging
import shutil
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alert_helpers import AMPS_16, free_port, nights, record
from pydantic import ValidationError

from calibmon.alerts.config import alerts_config, parse_notifier_configs
from calibmon.alerts.engine import deliver_notifications, evaluate
from calibmon.alerts.notifiers import Notification, build_notifier, render_text
from calibmon.alerts.notifiers.trend import render_trend_png
from calibmon.alerts.notifiers.webhook import SIGNATURE_HEADER, signature
from calibmon.catalogue import load_catalogue
from calibmon.errors import ConfigError, NotifierError
from calibmon.store.sqlite import Store

DAYS = nights(20)
T0 = datetime.now(UTC) - timedelta(days=12)  # night 12 is "now"


def gain_step_notification(
    store: Store, amps: tuple[str, ...] = ("C10",), cfg: object = None
) -> Notification:
    """Twelve quiet nights, then +3 % on ``amps``: the firing notification the engine
    builds (with its trends; queued for ``cfg``'s notifiers)."""
    cat = load_catalogue()
    for k in range(13):
        rng = np.random.default_rng(k)
        recs = []
        for i, a in enumerate(AMPS_16):
            g = (1.4 + 0.02 * i) * (1 + 0.003 * rng.normal())
            if k == 12 and a in amps:
                g *= 1.03
            recs.append(record("gain", g, DAYS[k], a))
        store.write_records(recs, "t")
        rep = evaluate(store, cat, cfg or {}, day_obs=DAYS[k], now=T0 + timedelta(days=k))
    (n,) = rep.notifications
    return n


# --------------------------------------------------------------------------------------
# E-mail
# --------------------------------------------------------------------------------------
def _parts(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    return msg, text, html, images


def test_email_lists_amp_value_threshold_baseline_since_with_inline_plot(
    store, smtp_server
) -> None:
    ctl, sink = smtp_server
    n = gain_step_notification(store)
    item = n.items[0]
    cfg = {"name": "mail", "type": "email", "host": "127.0.0.1", "port": ctl.port,
           "from": "calibmon@example.org", "to": ["oncall@example.org", "calib@example.org"]}  # fmt: skip
    notifier = build_notifier(parse_notifier_configs([cfg])[0])
    notifier.send(n)
    (env,) = sink.envelopes
    assert env.mail_from == "calibmon@example.org"
    assert env.rcpt_tos == ["oncall@example.org", "calib@example.org"]
    msg, text, html, images = _parts(env.content)
    assert (
        "FIRING warning" in msg["Subject"]
        and "R22_S11" in msg["Subject"]
        and "C10" in msg["Subject"]
    )
    for needle in ("C10", "gain_drift", f"{item.value:.4g}", f"{item.threshold:.4g}",
                   f"{item.baseline:.4g}", "since", DAYS[12], "What to do", "var-amp=C10"):  # fmt: skip
        assert needle in text, needle
    assert "+3." in text and "%" in text  # by how much
    assert "<table" in html and "C10" in html
    assert len(images) == 1
    cid = images[0]["Content-ID"].strip("<>")
    assert f"cid:{cid}" in html
    assert images[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"


def test_email_login_from_env_and_password_never_logged(store, monkeypatch, caplog) -> None:
    """AUTH LOGIN/PLAIN with credentials from the environment; a refused login is one
    redacted line."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult
    from alert_helpers import SmtpSink

    password = "s3cret-Pa55word"
    monkeypatch.setenv("SMTP_USER", "calibmon")
    monkeypatch.setenv("SMTP_PASSWORD", password)
    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append(auth_data.login.decode())
        ok = auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    sink = SmtpSink()
    ctl = Controller(sink, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                     auth_require_tls=False)  # fmt: skip
    ctl.start()
    try:
        cfg = {"name": "mail", "type": "email", "host": "127.0.0.1", "port": ctl.port,
               "from": "cm@example.org", "to": ["x@example.org"], "username_env": "SMTP_USER",
               "password_env": "SMTP_PASSWORD"}  # fmt: skip
        nc = parse_notifier_configs([cfg])[0]
        assert password not in repr(nc) and password not in nc.model_dump_json()
        n = gain_step_notification(store)
        build_notifier(nc).send(n)
        assert seen == ["calibmon"] and len(sink.envelopes) == 1
        monkeypatch.setenv("SMTP_PASSWORD", "wrong-" + password)
        bad = build_notifier(parse_notifier_configs([cfg])[0])
        with caplog.at_level(logging.DEBUG), pytest.raises(NotifierError) as err:
            bad.send(n)
        assert "refused the login" in str(err.value) and password not in str(err.value)
        assert password not in caplog.text
    finally:
        ctl.stop()


def test_email_starttls_with_site_ca(store, tmp_path: Path) -> None:
    """STARTTLS against aiosmtpd with a self-signed certificate trusted via ca_file."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    from aiosmtpd.controller import Controller
    from alert_helpers import SmtpSink

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    sink = SmtpSink()
    ctl = Controller(sink, hostname="127.0.0.1", port=free_port(), tls_context=ctx,
                     require_starttls=True)  # fmt: skip
    ctl.start()
    try:
        base = {"name": "mail", "type": "email", "host": "127.0.0.1", "port": ctl.port,
                "from": "cm@example.org", "to": ["x@example.org"], "starttls": True}  # fmt: skip
        n = gain_step_notification(store)
        with pytest.raises(NotifierError):  # the system CAs do not know this certificate
            build_notifier(parse_notifier_configs([base])[0]).send(n)
        build_notifier(parse_notifier_configs([{**base, "ca_file": str(cert)}])[0]).send(n)
        assert len(sink.envelopes) == 1
    finally:
        ctl.stop()


def test_smtp_down_is_a_notifier_error(store) -> None:
    cfg = {"name": "mail", "type": "email", "host": "127.0.0.1", "port": free_port(),
           "from": "a@example.org", "to": ["b@example.org"], "timeout_s": 2}  # fmt: skip
    with pytest.raises(NotifierError, match=r"SMTP 127\.0\.0\.1"):
        build_notifier(parse_notifier_configs([cfg])[0]).send(gain_step_notification(store))


def test_trend_plot_for_many_amps(store) -> None:
    n = gain_step_notification(store, amps=AMPS_16)
    assert len(n.items) == 16
    png = render_trend_png(n.trends[0])
    assert png[:4] == b"\x89PNG" and 5_000 < len(png) < 200_000
    assert "16 amps" in n.title and "gain_drift on 16 amps" in render_text(n)


# --------------------------------------------------------------------------------------
# Webhook
# --------------------------------------------------------------------------------------
def test_webhook_posts_json_signed_with_hmac(store, receiver, monkeypatch) -> None:
    secret = "hmac-key-from-env"
    monkeypatch.setenv("CALIBMON_WEBHOOK_SECRET", secret)
    cfg = alerts_config(
        {"notifiers": [{"name": "chat", "type": "webhook", "url": f"{receiver.url}/hook",
                        "secret_env": "CALIBMON_WEBHOOK_SECRET", "headers": {"X-Team": "calib"}}]}
    )  # fmt: skip
    gain_step_notification(store, cfg=cfg)
    receiver.answers.extend([503])  # one transient failure first
    waits = []
    (rep,) = deliver_notifications(
        store, [build_notifier(cfg.notifiers[0])], delivery=cfg.delivery, sleep=waits.append
    )
    assert rep.ok and rep.delivered == 1 and waits == [1.0]
    (req,) = receiver.requests
    assert req.path == "/hook" and req.headers["X-Team"] == "calib"
    expected = "sha256=" + hmac.new(secret.encode(), req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers[SIGNATURE_HEADER], expected)
    assert signature(secret, req.body) == expected
    body = req.json()
    assert body["status"] == "firing" and body["detector_name"] == "R22_S11"
    (alert,) = body["alerts"]
    assert (
        alert["amp"] == "C10"
        and alert["rule"] == "gain_drift"
        and alert["since_day_obs"] == DAYS[12]
    )
    assert {"value", "threshold", "baseline", "baseline_sigma", "dashboard_url"} <= set(alert)
    assert "C10" in body["text"] and "trends" not in body
    assert secret not in req.body.decode()


def test_webhook_4xx_is_rejected_5xx_retried(receiver) -> None:
    from calibmon.alerts.notifiers.base import NotifierRejected
    from calibmon.cli.alerts import test_notification

    cfg = alerts_config({"notifiers": [{"name": "w", "type": "webhook", "url": receiver.url}]})
    w = build_notifier(cfg.notifiers[0])
    n = test_notification(cfg)
    receiver.answers.extend([500, 404])
    with pytest.raises(NotifierError) as e5:
        w.send(n)
    assert not isinstance(e5.value, NotifierRejected)
    with pytest.raises(NotifierRejected, match="404"):
        w.send(n)
    w.send(n)
    assert receiver.requests[0].json()["status"] == "test"


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------
def test_notifier_config_is_strict(monkeypatch) -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        parse_notifier_configs(
            [{"name": "a", "type": "webhook", "url": "http://x", "password": "p"}]
        )
    with pytest.raises(ValidationError, match=r"union_tag_invalid|does not match any"):
        parse_notifier_configs([{"name": "a", "type": "slack", "url": "http://x"}])
    # an unset secret variable is a WARNING naming it (and no secret), not an error
    (unsigned,) = parse_notifier_configs(
        [{"name": "a", "type": "webhook", "url": "http://x", "secret_env": "NOPE_X"}]
    )
    assert unsigned.secret_values() == []
    with pytest.raises(ValidationError, match="credentials must not be in the URL"):
        parse_notifier_configs([{"name": "a", "type": "alertmanager", "url": "http://u:p@am:9093"}])
    with pytest.raises(ValidationError, match="secret"):
        parse_notifier_configs(
            [{"name": "a", "type": "webhook", "url": "http://x", "headers": {"Authorization": "x"}}]
        )
    with pytest.raises(ValueError, match="used twice"):
        parse_notifier_configs([{"name": "a", "type": "webhook", "url": "http://x"}] * 2)
    with pytest.raises(ConfigError, match=r"alerts\.clear_band"):
        alerts_config({"clear_band": 3})
    monkeypatch.setenv("AM_TOKEN", "tok-123456")
    (am,) = parse_notifier_configs(
        [{"name": "am", "type": "alertmanager", "url": "http://am:9093/", "token_env": "AM_TOKEN"}]
    )
    assert am.url == "http://am:9093" and am.refresh and "tok-123456" not in repr(am)
    assert am.secret_values() == ["tok-123456"]


def test_alerts_config_from_settings() -> None:
    from calibmon.config import load_settings

    s = load_settings(
        notifiers=[{"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9093"}],
        known_bad=[{"detector_name": "R22_S11", "amp": "C10", "reason": "hot"}],
        alerts={"clear_for": 3, "rules": {"gain_drift": {"for": 2}}},
        dashboard_url="https://grafana.example.org/d/amp",
    )
    cfg = alerts_config(s)
    assert cfg.clear_for == 3 and cfg.rules["gain_drift"].for_evaluations == 2
    assert cfg.notifiers[0].name == "am" and cfg.known_bad[0].amp == "C10"
    assert cfg.dashboard_url == "https://grafana.example.org/d/amp"
