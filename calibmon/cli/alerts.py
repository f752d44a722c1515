"""``calibmon alerts``: list, evaluate, silence, test notifiers (DESIGN.md §3).

``register(subparsers)`` adds the command to the main parser (:mod:`calibmon.cli.main`);
alerts after each ``calibmon run`` are evaluated by :mod:`calibmon.service.postrun`.

    calibmon alerts [--format json] [--all]              firing and recent alerts
    calibmon alerts evaluate --day-obs D [--expect bias,dark,flat --instrument LSSTCam]
    calibmon alerts silence --detector R22_S11 [--amp C10] --until DATE --reason TEXT
    calibmon alerts silences | unsilence ID
    calibmon alerts test-notify [--notifier NAME]
    calibmon alerts deliver                               retry the notification outbox now

Options (``--store``, ``--config``, ``--debug``, ``-q``) may stand anywhere on the line:
``calibmon --store cm.sqlite alerts evaluate``, ``calibmon alerts --store cm.sqlite
evaluate`` and ``calibmon alerts evaluate --store cm.sqlite`` are the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from calibmon.cli.common import add_command, add_common, day_obs_arg, load, open_store
from calibmon.dayobs import shift_day_obs
from calibmon.errors import ConfigError

# Order of states in listings: what needs attention first.
_STATE_ORDER = {"firing": 0, "pending": 1, "resolved": 2, "inactive": 3}
_SEV_ORDER = {"critical": 0, "warning": 1, "info": 2}


# --------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------
def alert_rows(
    store, cfg, *, show_all: bool = False, instrument: str | None = None
) -> list[dict[str, Any]]:
    """Alerts as flat dicts (the JSON listing): firing, pending and recently resolved
    (within ``alerts.recent_nights`` of the newest evaluated day_obs); ``show_all``: every
    identity the store remembers."""
    from calibmon.store import alerts as db

    rows = list(db.load_states(store, instrument=instrument).values())
    newest = max((r.data.get("last_day_obs") or "" for r in rows), default="")
    cutoff = shift_day_obs(newest, -cfg.recent_nights) if newest else ""
    out = []
    for r in rows:
        d, snap, last = r.data, r.data.get("snap", {}), r.data.get("last", {})
        if not show_all:
            if r.state == "inactive":
                continue
            if r.state == "resolved" and (snap.get("resolved_day_obs") or "") < cutoff:
                continue
        out.append(
            {
                "rule": r.rule,
                "metric": d.get("metric", ""),
                "severity": d.get("severity", ""),
                "state": r.state,
                "instrument": r.instrument,
                "detector": None if r.detector < 0 else r.detector,
                "detector_name": d.get("detector_name") or None,
                "amp": r.amp or None,
                "value": last.get("value"),
                "threshold": last.get("threshold"),
                "baseline": last.get("baseline"),
                "baseline_sigma": last.get("baseline_sigma"),
                "unit": d.get("unit", ""),
                "change": last.get("change", ""),
                "since_day_obs": snap.get("since_day_obs"),
                "last_day_obs": d.get("last_day_obs"),
                "resolved_day_obs": snap.get("resolved_day_obs"),
                "notified": bool(d.get("notified")),
                "suppressed": d.get("suppressed") or None,
                "description": last.get("description", ""),
            }
        )
    out.sort(
        key=lambda a: (
            _STATE_ORDER.get(a["state"], 9), _SEV_ORDER.get(a["severity"], 9), a["instrument"],
            a["detector_name"] or "", a["rule"], a["amp"] or "",
        )
    )  # fmt: skip
    return out


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}"


def format_table(alerts: list[dict[str, Any]]) -> str:
    """A readable table of :func:`alert_rows`."""
    if not alerts:
        return "no firing or recent alerts"
    head = ("STATE", "SEVERITY", "RULE", "DETECTOR", "AMP", "VALUE", "THRESHOLD", "BASELINE",
            "CHANGE", "SINCE", "LAST", "NOTE")  # fmt: skip
    rows = [head]
    for a in alerts:
        note = a["suppressed"] or ""
        if a["state"] == "resolved":
            note = f"resolved {a['resolved_day_obs']}" + (f"; {note}" if note else "")
        base = _num(a["baseline"])
        if a["baseline_sigma"] is not None:
            base += f"±{a['baseline_sigma']:.2g}"
        rows.append(
            (a["state"], a["severity"], a["rule"], a["detector_name"] or a["instrument"],
             a["amp"] or "-", _num(a["value"]), _num(a["threshold"]), base,
             a["change"] or "-", a["since_day_obs"] or "-", a["last_day_obs"] or "-", note)
        )  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    n_firing = sum(1 for a in alerts if a["state"] == "firing")
    lines.append(f"{n_firing} firing, {len(alerts) - n_firing} other")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------
def _load(args: argparse.Namespace):
    from calibmon.alerts.config import alerts_config

    settings = load(args)
    return settings, alerts_config(settings)


def cmd_list(args: argparse.Namespace) -> int:
    settings, cfg = _load(args)
    with open_store(settings) as store:
        alerts = alert_rows(store, cfg, show_all=args.all, instrument=args.instrument)
    if args.format == "json":
        for a in alerts:
            sys.stdout.write(json.dumps(a, separators=(",", ":")) + "\n")
    else:
        print(format_table(alerts))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from calibmon.alerts.engine import evaluate_and_deliver
    from calibmon.alerts.rules import Expectation
    from calibmon.catalogue import load_catalogue

    settings, cfg = _load(args)
    expected = None
    if args.expect:
        if not args.instrument:
            raise ConfigError("--expect needs --instrument")
        expected = [
            Expectation(instrument=args.instrument, calib_type=c.strip())
            for c in args.expect.split(",")
            if c.strip()
        ]
    catalogue = load_catalogue(settings.catalogue_dir)
    with open_store(settings) as store:
        rep = evaluate_and_deliver(
            store, catalogue, cfg, day_obs=[args.day_obs], instrument=args.instrument,
            expected=expected, deliver=not args.no_deliver,
        )  # fmt: skip
    print(rep)
    for n in rep.notifications:
        print(f"  {n.kind}: {n.title}")
    return 0


def _day_arg(text: str) -> str:
    t = text.replace("-", "")
    if len(t) != 8 or not t.isdigit():
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD or YYYYMMDD, got {text!r}")
    return t


def cmd_silence(args: argparse.Namespace) -> int:
    from calibmon.store import alerts as db

    settings, _ = _load(args)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    instrument = args.instrument or settings.instrument
    with open_store(settings) as store:
        sid = db.add_silence(
            store, until_day_obs=args.until, reason=args.reason, now_iso=now,
            instrument=instrument, detector_name=args.detector, amp=args.amp, rule=args.rule,
        )  # fmt: skip
    what = " ".join(x for x in (instrument, args.detector, args.amp, args.rule) if x)
    print(f"silence {sid}: {what} until day_obs {args.until} ({args.reason})")
    return 0


def cmd_silences(args: argparse.Namespace) -> int:
    from calibmon.store import alerts as db

    settings, _ = _load(args)
    today = datetime.now(UTC).strftime("%Y%m%d")
    with open_store(settings) as store:
        rows = db.silences(store, active_on=None if args.all else today)
    for s in rows:
        what = " ".join(x or "*" for x in (s.instrument, s.detector_name, s.amp, s.rule))
        print(f"{s.id:4d}  {what}  until {s.until_day_obs}  {s.reason}")
    if not rows:
        print("no silences")
    return 0


def cmd_unsilence(args: argparse.Namespace) -> int:
    from calibmon.store import alerts as db

    settings, _ = _load(args)
    with open_store(settings) as store:
        ok = db.delete_silence(store, args.id)
    print(f"silence {args.id} {'removed' if ok else 'not found'}")
    return 0 if ok else 1


def test_notification(cfg) -> Any:
    """A harmless notification for ``test-notify`` (severity info, one item)."""
    from calibmon.alerts.notifiers.base import AlertItem, Notification, dashboard_link

    now = datetime.now(UTC)
    iso = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    day = now.strftime("%Y%m%d")
    url = dashboard_link(cfg.dashboard_url, "LSSTCam", "R22_S11", "C10")
    item = AlertItem(
        rule="calibmon_test", kind="test", metric="gain", unit="electron/adu", severity="info",
        state="firing", instrument="LSSTCam", detector=94, detector_name="R22_S11", amp="C10",
        value=1.545, threshold=1.515, baseline=1.5, baseline_sigma=0.003, band=0.015,
        change="+0.045 electron/adu (+3.0 %, +15.0σ)", day_obs=day, since_day_obs=day,
        starts_at=iso, summary="Test notification from calibmon alerts test-notify.",
        description="This is a test: no calibration changed.",
        action="Nothing to do; this only checks that notifications arrive.",
        dashboard_url=url,
    )  # fmt: skip
    return Notification(
        id=f"test-{now.strftime('%Y%m%dT%H%M%S')}", kind="test", group_key="test",
        instrument="LSSTCam", detector=94, detector_name="R22_S11", day_obs=day,
        severity="info", created_at=iso, title="calibmon test notification", items=[item],
        dashboard_url=url,
    )  # fmt: skip


def cmd_test_notify(args: argparse.Namespace) -> int:
    from calibmon.alerts.notifiers.registry import build_notifier
    from calibmon.errors import NotifierError

    _, cfg = _load(args)
    targets = [n for n in cfg.notifiers if args.notifier in (None, n.name)]
    if not targets:
        raise ConfigError(
            f"no notifier named {args.notifier}" if args.notifier else "no notifiers configured"
        )
    n = test_notification(cfg)
    failed = 0
    for nc in targets:
        notifier = build_notifier(nc)
        try:
            notifier.send(n)
        except NotifierError as exc:
            failed += 1
            print(f"{nc.name} ({nc.type}): FAILED: {exc}")
        else:
            print(f"{nc.name} ({nc.type}): sent")
        finally:
            notifier.close()
    return 1 if failed else 0


def cmd_deliver(args: argparse.Namespace) -> int:
    from calibmon.alerts.engine import deliver_notifications
    from calibmon.alerts.notifiers.registry import build_notifiers

    settings, cfg = _load(args)
    notifiers = build_notifiers(cfg.notifiers)
    with open_store(settings) as store:
        reports = deliver_notifications(store, notifiers, delivery=cfg.delivery)
    for n in notifiers:
        n.close()
    for r in reports:
        print(r)
    if not reports:
        print("no notifiers configured")
    return 0 if all(r.ok for r in reports) else 1


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------
def register(subparsers: Any) -> None:
    """Add ``calibmon alerts`` (and its actions) to the main parser's sub-commands."""
    p = add_command(subparsers, "alerts", "list firing and recent alerts from the store (JSON: one "
                    "object a line); actions evaluate, silence, silences, unsilence, test-notify, "
                    "deliver", "calibmon alerts --format json", cmd_list)  # fmt: skip
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--all", action="store_true", help="also inactive and older resolved alerts")
    p.add_argument("--instrument", help="only this instrument")
    add_common(p)
    actions = p.add_subparsers(dest="alerts_action", metavar="ACTION")

    a = add_command(actions, "evaluate", "evaluate alert rules for one day_obs, update alert state "
                    "and send notifications", "calibmon alerts evaluate --day-obs 20251121",
                    cmd_evaluate)  # fmt: skip
    a.add_argument("--day-obs", type=day_obs_arg, required=True)
    # SUPPRESS: `alerts --instrument X evaluate` keeps X (the parent's option, default None)
    a.add_argument("--instrument", default=argparse.SUPPRESS, help="only this instrument")
    a.add_argument("--expect", help="calib types expected this day (staleness), e.g. "
                   "bias,dark,flat; needs --instrument (default: alerts.expected)")  # fmt: skip
    a.add_argument("--no-deliver", action="store_true", help="queue notifications only")
    add_common(a)

    a = add_command(actions, "silence", "silence alerts of a detector (or one amp/rule) until a date; "
                    "they keep their state but do not notify",
                    "calibmon alerts silence --detector R22_S11 --amp C10 --until 2025-12-01 "
                    "--reason 'REB swap'", cmd_silence)  # fmt: skip
    a.add_argument("--detector", required=True, help="detector name, e.g. R22_S11")
    a.add_argument("--amp", help="only this amp, e.g. C10")
    a.add_argument("--rule", help="only this rule, e.g. gain_drift")
    a.add_argument("--instrument", default=argparse.SUPPRESS,
                   help="only this instrument (default: config instrument)")  # fmt: skip
    a.add_argument("--until", type=_day_arg, required=True, help="last day_obs silenced")
    a.add_argument("--reason", required=True)
    add_common(a)

    a = add_command(actions, "silences", "list active silences (--all: also expired)",
                    "calibmon alerts silences", cmd_silences)  # fmt: skip
    a.add_argument("--all", action="store_true")
    add_common(a)

    a = add_command(actions, "unsilence", "remove a silence by id", "calibmon alerts unsilence 3",
                    cmd_unsilence)  # fmt: skip
    a.add_argument("id", type=int)
    add_common(a)

    a = add_command(actions, "test-notify", "send a test notification (severity info) to every "
                    "configured notifier; exit 1 if one fails", "calibmon alerts test-notify",
                    cmd_test_notify)  # fmt: skip
    a.add_argument("--notifier", help="only this notifier")
    add_common(a)

    a = add_command(actions, "deliver", "deliver queued notifications now (retries included)",
                    "calibmon alerts deliver", cmd_deliver)  # fmt: skip
    add_common(a)
