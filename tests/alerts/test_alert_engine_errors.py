"""The engine with errors, signs and limits, on records in a temp store: errors reach the
rules, dark current falling is information (not paged), a new problem on an amp that
already fires is notified as new, lower-limit records are never judged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
from alert_helpers import AMPS_16, nights, record

from calibmon.alerts.engine import evaluate
from calibmon.catalogue import load_catalogue
from calibmon.store import alerts as db
from calibmon.store.sqlite import Store

DAYS = nights(16)
T0 = datetime(2025, 11, 1, 20, 0, tzinfo=UTC)
HOOKS = {
    "notifiers": [
        {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/x"},
        {"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9/am", "re_post": False},
    ]
}


def _eval(store: Store, k: int, cfg: dict | None = None):
    return evaluate(
        store, load_catalogue(), cfg or HOOKS, day_obs=DAYS[k], now=T0 + timedelta(days=k)
    )


def _items(store: Store, notifier: str) -> list[tuple[str, str, str]]:
    out = []
    for row in db.outbox_rows(store, notifier):
        for i in json.loads(row.payload)["items"]:
            out.append((i["rule"], i["amp"], i["severity"]))
    return out


def test_errors_reach_the_rules_from_the_store(store: Store) -> None:
    store.write_records([record("gain", 1.5, DAYS[0], error=0.004)], "t")
    (row,) = db.history_values(store, ["gain"], before_day_obs=DAYS[1], n_nights=5)
    assert row.error == 0.004 and not row.lower_limit
    (today,) = db.day_values(store, DAYS[0], ["gain"])
    assert today.error == 0.004


def test_dark_current_falling_is_information_not_a_page(store: Store) -> None:
    rng = np.random.default_rng(7)
    for k in range(13):
        recs = []
        for a in AMPS_16:
            v = 0.01 + 0.0005 * rng.normal()
            if k == 12:
                v = {"C10": 0.003, "C11": 0.05}.get(a, v)  # C10 fell, C11 rose
            recs.append(record("dark_current", v, DAYS[k], a, error=0.0005))
        store.write_records(recs, "t")
        rep = _eval(store, k)
        if k < 12:
            assert not rep.firing_evaluations, k
    fired = {(e.rule, e.amp, e.severity) for e in rep.firing_evaluations}
    assert fired == {
        ("dark_current_drop", "C10", "info"),
        ("dark_current_drift", "C11", "warning"),
    }
    # The webhook (on-call chat) gets the rise only; Alertmanager gets both and routes
    # info to its null receiver (deploy/alertmanager/alertmanager.yml).
    assert _items(store, "hook") == [("dark_current_drift", "C11", "warning")]
    assert sorted(_items(store, "am")) == sorted(fired)


def test_new_problem_on_an_amp_already_firing_is_notified(store: Store) -> None:
    """The whole CCD's gain steps (16 amps fire gain_drift, one notification); the next
    night C10 grows a hot column: a new identity on a firing amp and detector must be
    notified on its own, and the gain alerts must not be re-notified."""
    rng = np.random.default_rng(11)
    for k in range(14):
        recs = []
        for a in AMPS_16:
            g = 1.5 * (1 + 0.002 * rng.normal()) * (1.05 if k >= 12 else 1.0)
            cols = 1.0 if (k == 13 and a == "C10") else 0.0
            recs += [
                record("gain", g, DAYS[k], a, error=0.003),
                record("bright_columns", cols, DAYS[k], a),
            ]
        store.write_records(recs, "t")
        rep = _eval(store, k)
        if k < 12:
            assert not rep.notifications, k
        if k == 12:
            (n,) = rep.notifications
            assert {i.rule for i in n.items} == {"gain_drift"} and len(n.items) == 16
    assert {(e.rule, e.amp) for e in rep.firing_evaluations} >= {("new_bright_columns", "C10")}
    (n,) = rep.notifications
    assert n.kind == "firing"
    assert [(i.rule, i.amp) for i in n.items] == [("new_bright_columns", "C10")]
    states = db.load_states(store, states=["firing"])
    assert ("new_bright_columns", "LSSTCam", 94, "C10") in states
    assert sum(1 for i in states if i[0] == "gain_drift") == 16
    hook = _items(store, "hook")
    assert hook.count(("new_bright_columns", "C10", "warning")) == 1
    assert sum(1 for r, _, _ in hook if r == "gain_drift") == 16  # once, on night 12


def test_lower_limits_are_never_judged_as_values(store: Store) -> None:
    # A full well that is only a lower limit (ramp without roll-off) is not "< 90 ke-".
    store.write_records(
        [
            record("full_well", 50000.0, DAYS[0], "C10", lower_limit=True),
            record("full_well", 50000.0, DAYS[0], "C11"),
        ],
        "t",
    )
    rep = _eval(store, 0)
    assert {(e.rule, e.amp) for e in rep.evaluations if e.rule == "full_well_low"} == {
        ("full_well_low", "C11")
    }
    # Limits are not in baselines either: 3 real nights at 1.5, then 8 limit nights at
    # 3.0 would make the baseline 3.0 (and 1.5 a collapse) if they counted.
    for k in range(1, 12):
        lim = k > 3
        store.write_records(
            [record("gain", 3.0 if lim else 1.5, DAYS[k], "C12", lower_limit=lim)], "t"
        )
    store.write_records([record("gain", 1.5, DAYS[12], "C12")], "t")
    rep = _eval(store, 12)
    ev = {e.rule: e for e in rep.evaluations if e.amp == "C12"}
    assert ev["gain_collapse"].baseline == 1.5 and not ev["gain_collapse"].firing
    assert ev["gain_collapse"].n_baseline == 3
