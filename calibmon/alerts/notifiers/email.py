"""SMTP e-mail notifier (stdlib ``smtplib``).

One message per notification::

    multipart/alternative
    ├── text/plain            render_text(): amps, values, thresholds, baselines, change,
    │                         since when, what to do, dashboard link
    └── multipart/related
        ├── text/html         the same as tables, each amp linked to its dashboard,
        │                     <img src="cid:..."> per alerting metric
        └── image/png …       trend plots (notifiers/trend.py), Content-ID referenced above

Connection: ``SMTP(host, port)`` with optional STARTTLS, or implicit TLS (``ssl: true``,
usually port 465); ``login`` when a username/password is configured. ``refresh``
notifications are not e-mailed. Failures raise NotifierError (5xx replies to the
recipients, refused authentication: NotifierRejected).
"""

from __future__ import annotations

import html
import logging
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from calibmon.alerts.config import EmailConfig
from calibmon.alerts.notifiers.base import (
    Notification,
    NotifierRejected,
    fmt,
    render_text,
    rule_sections,
    subject_line,
)
from calibmon.errors import NotifierError
from calibmon.redact import redact

log = logging.getLogger(__name__)

_COLORS = {"critical": "#b00020", "warning": "#b26a00", "info": "#2b5797"}


class EmailNotifier:
    """Sends each firing/resolved/test notification as one e-mail."""

    def __init__(self, config: EmailConfig) -> None:
        self.config = config
        self.name = config.name

    # -- message ---------------------------------------------------------------------
    def message(self, n: Notification) -> EmailMessage:
        """The complete MIME message (plain text, HTML, inline trend PNGs)."""
        cfg = self.config
        msg = EmailMessage()
        msg["Subject"] = f"{cfg.subject_prefix} {subject_line(n)}".strip()
        msg["From"] = cfg.from_addr
        msg["To"] = ", ".join(cfg.to)
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(idstring=n.id[:16], domain="calibmon")
        msg["X-Calibmon-Severity"] = n.severity
        msg["X-Calibmon-Group"] = n.group_key
        msg.set_content(render_text(n))
        images: list[tuple[str, bytes]] = []
        if cfg.trend_plots and n.trends:
            from calibmon.alerts.notifiers.trend import render_trend_png

            for t in n.trends:
                try:
                    png = render_trend_png(t)
                except Exception as exc:  # a plot must never stop the page
                    log.warning("email %s: trend plot for %s failed: %s", self.name, t.rule, exc)
                    continue
                images.append((make_msgid(domain="calibmon"), png))
        msg.add_alternative(self.html(n, [cid for cid, _ in images]), subtype="html")
        if images:
            html_part = msg.get_payload()[1]
            for cid, png in images:
                html_part.add_related(png, "image", "png", cid=cid, disposition="inline")
        return msg

    def html(self, n: Notification, cids: list[str]) -> str:
        """The HTML body; ``cids`` are the Content-IDs (``<...>``) of the trend images."""
        e = html.escape
        color = _COLORS.get(n.severity, "#333")
        out = [
            "<!DOCTYPE html><html><body style='font-family:sans-serif;font-size:14px'>",
            f"<h2 style='color:{color}'>{e(subject_line(n))}</h2>",
        ]
        for rule, items, first, unit in rule_sections(n):
            unit_text = f" [{e(unit)}]" if unit else ""
            out.append(f"<h3>{e(rule)} — {e(first.metric)}{unit_text} ({e(first.severity)})</h3>")
            if first.summary:
                out.append(f"<p>{e(first.summary)}</p>")
            out.append(
                "<table border='1' cellpadding='4' cellspacing='0' "
                "style='border-collapse:collapse;font-size:13px'>"
                "<tr><th>amp</th><th>value</th><th>threshold</th><th>baseline ± σ</th>"
                "<th>change</th><th>since</th><th>state</th></tr>"
            )
            for i in items:
                where = e(i.amp or i.detector_name or i.instrument)
                if i.dashboard_url:
                    where = f"<a href='{e(i.dashboard_url)}'>{where}</a>"
                base = (
                    "-" if i.baseline is None else f"{fmt(i.baseline)} ± {fmt(i.baseline_sigma, 2)}"
                )
                state = i.state if not i.resolved_day_obs else f"resolved {i.resolved_day_obs}"
                if i.suppressed:
                    state += f" (silenced: {i.suppressed})"
                out.append(
                    f"<tr><td>{where}</td><td>{fmt(i.value)}</td><td>{fmt(i.threshold)}</td>"
                    f"<td>{e(base)}</td><td>{e(i.change or '-')}</td>"
                    f"<td>{e(i.since_day_obs or '-')}</td><td>{e(state)}</td></tr>"
                )
            out.append("</table><ul>")
            out.extend(f"<li>{e(i.description)}</li>" for i in items)
            out.append("</ul>")
            if first.action:
                out.append(f"<p><b>What to do:</b> {e(first.action)}</p>")
            if first.spec:
                out.append(f"<p><b>Spec:</b> {e(first.spec)}</p>")
        for cid in cids:
            out.append(f"<p><img src='cid:{e(cid[1:-1])}' alt='trend plot'></p>")
        if n.dashboard_url:
            out.append(f"<p><a href='{e(n.dashboard_url)}'>Open the dashboard</a></p>")
        out.append("</body></html>")
        return "\n".join(out)

    # -- delivery --------------------------------------------------------------------
    def send(self, notification: Notification) -> None:
        if notification.kind == "refresh":
            return
        msg = self.message(notification)
        cfg = self.config
        secrets = cfg.secret_values()
        try:
            context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            if cfg.ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout_s, context=context
                )
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with smtp:
                if cfg.starttls:
                    smtp.starttls(context=context)
                if cfg.username and cfg.password:
                    smtp.login(cfg.username, cfg.password.get_secret_value())
                refused = smtp.send_message(msg, from_addr=cfg.from_addr, to_addrs=cfg.to)
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifierRejected(
                self.name,
                redact(f"SMTP {cfg.host}:{cfg.port} refused the login: {exc.smtp_code}", secrets),
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise NotifierRejected(
                self.name,
                redact(f"SMTP {cfg.host}:{cfg.port} refused all recipients: {exc}", secrets),
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifierError(
                self.name,
                redact(f"SMTP {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}", secrets),
            ) from None
        if refused:
            log.warning("email %s: recipients refused: %s", self.name, ", ".join(sorted(refused)))
        log.debug("email %s: sent %s to %d recipients", self.name, notification.id, len(cfg.to))

    def close(self) -> None:
        pass
