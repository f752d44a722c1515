"""Store access for the alert engine: metric values, alert state, events, the notification
outbox and silences (tables defined in :mod:`calibmon.store.sqlite`).

Plain functions taking a :class:`~calibmon.store.sqlite.Store`. Writes that belong
together (state + events + outbox of one evaluation) are made inside one
``store.transaction()`` by the caller.

alert_state
    one row per identity ``(rule, instrument, detector, amp)`` (detector -1 and amp ''
    for instrument/detector-level rules); ``state`` is inactive|pending|firing|resolved;
    ``data`` (JSON) holds the counters, the last evaluation, ``since_day_obs``,
    ``last_day_obs``, whether the firing was notified, and ``prev``: the snapshot before
    ``last_day_obs`` was applied, so evaluating that day again replaces its effect instead
    of adding to it (idempotence).
notify_outbox
    one row per (notifier, notification); ``payload`` is the notification JSON;
    delivered rows have ``delivered_at``; a row given up has ``next_attempt_at`` =
    :data:`GAVE_UP` and the reason in ``last_error``.
silences
    ``instrument``/``detector_name``/``amp``/``rule`` NULL = any; active while the
    evaluated day_obs ≤ ``until_day_obs``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from calibmon.store.sqlite import Store

GAVE_UP = "9999-12-31T23:59:59.000000Z"

Identity = tuple[str, str, int, str]  # (rule, instrument, detector, amp)


# --------------------------------------------------------------------------------------
# Metric values
# --------------------------------------------------------------------------------------
class ValueRow(NamedTuple):
    """One stored value, as the rules need it."""

    metric: str
    level: str
    instrument: str
    detector: int
    detector_name: str
    amp: str
    vendor: str
    physical_filter: str
    day_obs: str
    value: float
    error: float | None = None  # 1σ, same unit (None: counts, unknown)
    lower_limit: int = 0  # 1: provenance says the value is only a lower limit (not a value)


# ``lower_limit``: the pipeline marks e.g. a full well from a PTC ramp without roll-off
# with provenance ``lower_limit: true``; rules must not judge it as a value. ``instr``
# first, so the JSON of the ~10⁶ rows of a full-camera history is parsed only where the
# key occurs at all.
_VALUE_COLS = (
    "metric, level, instrument, detector, COALESCE(detector_name, ''), amp, vendor,"
    " physical_filter, day_obs, value, error,"
    " CASE WHEN instr(provenance, '\"lower_limit\"') > 0"
    " THEN COALESCE(json_extract(provenance, '$.lower_limit'), 0) = 1 ELSE 0 END"
)


def _in(col: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    return f"{col} IN ({','.join('?' * len(values))})", list(values)


def day_values(
    store: Store, day_obs: str, metrics: Iterable[str], instrument: str | None = None
) -> list[ValueRow]:
    """Values of ``metrics`` on ``day_obs``: one per (metric, level, instrument, detector,
    amp), the latest timestamp winning when a day holds several."""
    ms = sorted(set(metrics))
    if not ms:
        return []
    where, params = _in("metric", ms)
    sql = f"SELECT {_VALUE_COLS} FROM records WHERE day_obs=? AND {where}"
    args: list[Any] = [day_obs, *params]
    if instrument:
        sql += " AND instrument=?"
        args.append(instrument)
    sql += " ORDER BY timestamp"
    latest: dict[tuple, ValueRow] = {}
    for r in store.query(sql, args):
        row = ValueRow(*r)
        latest[(row.metric, row.level, row.instrument, row.detector, row.amp)] = row
    return list(latest.values())


def history_values(
    store: Store,
    metrics: Iterable[str],
    *,
    before_day_obs: str,
    n_nights: int,
    instrument: str | None = None,
    detector: int | None = None,
) -> list[ValueRow]:
    """Values of ``metrics`` on the last ``n_nights`` day_obs (with any of these metrics)
    before ``before_day_obs``, ordered by day_obs; one per series per night."""
    ms = sorted(set(metrics))
    if not ms:
        return []
    where, params = _in("metric", ms)
    extra, extra_args = "", []
    if instrument:
        extra += " AND instrument=?"
        extra_args.append(instrument)
    if detector is not None:
        extra += " AND detector=?"
        extra_args.append(detector)
    days = store.query(
        f"SELECT DISTINCT day_obs FROM records WHERE {where} AND day_obs<?{extra}"
        " ORDER BY day_obs DESC LIMIT ?",
        [*params, before_day_obs, *extra_args, n_nights],
    )
    if not days:
        return []
    since = days[-1][0]
    rows = _fetch_tuples(
        store,
        f"SELECT {_VALUE_COLS} FROM records WHERE {where} AND day_obs>=? AND day_obs<?{extra}"
        " ORDER BY day_obs, timestamp",
        [*params, since, before_day_obs, *extra_args],
    )
    latest: dict[tuple, ValueRow] = {}
    for r in rows:
        row = ValueRow._make(r)
        latest[(r[0], r[1], r[2], r[3], r[5], r[8])] = row
    return list(latest.values())  # insertion order is day_obs order


def _fetch_tuples(store: Store, sql: str, args: Sequence[Any]) -> list[tuple]:
    """Rows as plain tuples: ~3× faster than ``sqlite3.Row`` for the ~10⁶ rows of a
    full-camera history (the cursor's own row_factory overrides the connection's)."""
    cur = store.execute(sql, args)
    cur.row_factory = None
    return cur.fetchall()


def series_values(
    store: Store,
    metric: str,
    *,
    instrument: str,
    detector: int,
    level: str,
    until_day_obs: str,
    n_nights: int,
    amps: Iterable[str] | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """Per amp, (day_obs, value) of the last ``n_nights`` nights up to ``until_day_obs``
    (for trend plots)."""
    days = store.query(
        "SELECT DISTINCT day_obs FROM records WHERE metric=? AND instrument=? AND detector=?"
        " AND level=? AND day_obs<=? ORDER BY day_obs DESC LIMIT ?",
        (metric, instrument, detector, level, until_day_obs, n_nights),
    )
    if not days:
        return {}
    sql = (
        "SELECT amp, day_obs, value FROM records WHERE metric=? AND instrument=? AND detector=?"
        " AND level=? AND day_obs>=? AND day_obs<=?"
    )
    args: list[Any] = [metric, instrument, detector, level, days[-1][0], until_day_obs]
    if amps is not None:
        a = sorted(set(amps))
        where, params = _in("amp", a)
        sql += f" AND {where}"
        args += params
    sql += " ORDER BY day_obs, timestamp"
    per_day: dict[str, dict[str, float]] = {}
    for amp, day, value in store.query(sql, args):
        per_day.setdefault(amp, {})[day] = float(value)
    return {amp: sorted(d.items()) for amp, d in per_day.items()}


def present_calib_types(store: Store, day_obs: str) -> set[tuple[str, str, str]]:
    """``(instrument, detector_name, calib_type)`` of every record of ``day_obs``."""
    rows = store.query(
        "SELECT DISTINCT instrument, COALESCE(detector_name, ''), calib_type FROM records"
        " WHERE day_obs=?",
        (day_obs,),
    )
    return {(r[0], r[1], r[2]) for r in rows}


# --------------------------------------------------------------------------------------
# Alert state and events
# --------------------------------------------------------------------------------------
@dataclass
class AlertRow:
    """One ``alert_state`` row; ``data`` is its decoded JSON."""

    rule: str
    instrument: str
    detector: int
    amp: str
    state: str = "inactive"
    data: dict[str, Any] = field(default_factory=dict)
    updated_at: str = ""
    exists: bool = False

    @property
    def identity(self) -> Identity:
        return (self.rule, self.instrument, self.detector, self.amp)


def _row(r: Any) -> AlertRow:
    return AlertRow(
        r["rule"], r["instrument"], int(r["detector"]), r["amp"], r["state"],
        json.loads(r["data"] or "{}"), r["updated_at"], True,
    )  # fmt: skip


def load_states(
    store: Store,
    *,
    identities: Iterable[Identity] | None = None,
    states: Sequence[str] | None = None,
    instrument: str | None = None,
) -> dict[Identity, AlertRow]:
    """Alert rows, keyed by identity; filtered by ``states`` and ``instrument``. With
    ``identities``, only those (missing ones are absent from the result)."""
    where, args = [], []
    if states:
        w, a = _in("state", list(states))
        where.append(w)
        args += a
    if instrument:
        where.append("instrument=?")
        args.append(instrument)
    sql = "SELECT * FROM alert_state"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if identities is None:
        return {(r := _row(x)).identity: r for x in store.query(sql, args)}
    wanted = set(identities)
    rules = sorted({i[0] for i in wanted})
    if not rules:
        return {}
    w, a = _in("rule", rules)
    sql += (" AND " if where else " WHERE ") + w
    out = {}
    for x in store.query(sql, [*args, *a]):
        r = _row(x)
        if r.identity in wanted:
            out[r.identity] = r
    return out


def save_state(store: Store, row: AlertRow, now_iso: str) -> None:
    """Insert or replace one alert row."""
    store.execute(
        "INSERT INTO alert_state(rule, instrument, detector, amp, state, data, updated_at)"
        " VALUES (?,?,?,?,?,?,?) ON CONFLICT(rule, instrument, detector, amp) DO UPDATE SET"
        " state=excluded.state, data=excluded.data, updated_at=excluded.updated_at",
        (row.rule, row.instrument, row.detector, row.amp, row.state,
         json.dumps(row.data, sort_keys=True, default=str), now_iso),
    )  # fmt: skip
    row.updated_at = now_iso
    row.exists = True


def add_event(
    store: Store,
    identity: Identity,
    from_state: str,
    to_state: str,
    day_obs: str,
    data: dict[str, Any],
    at_iso: str,
) -> int:
    """Record one transition; returns its id."""
    rule, instrument, detector, amp = identity
    cur = store.execute(
        "INSERT INTO alert_events(rule, instrument, detector, amp, from_state, to_state,"
        " day_obs, data, at) VALUES (?,?,?,?,?,?,?,?,?)",
        (rule, instrument, detector, amp, from_state, to_state, day_obs,
         json.dumps(data, sort_keys=True, default=str), at_iso),
    )  # fmt: skip
    return int(cur.lastrowid or 0)


def events(
    store: Store, *, identity: Identity | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Recent transitions, newest first (``data`` decoded)."""
    sql, args = "SELECT * FROM alert_events", []
    if identity is not None:
        sql += " WHERE rule=? AND instrument=? AND detector=? AND amp=?"
        args = list(identity)
    sql += " ORDER BY id DESC LIMIT ?"
    out = []
    for r in store.query(sql, [*args, limit]):
        d = dict(r)
        d["data"] = json.loads(d["data"] or "{}")
        out.append(d)
    return out


# --------------------------------------------------------------------------------------
# Notification outbox
# --------------------------------------------------------------------------------------
class OutboxRow(NamedTuple):
    id: int
    notifier: str
    payload: str
    created_at: str
    attempts: int
    next_attempt_at: str
    delivered_at: str | None
    last_error: str | None


def enqueue(store: Store, notifier: str, payload: str, now_iso: str) -> int:
    """Add one notification for ``notifier`` (due now); returns the row id."""
    cur = store.execute(
        "INSERT INTO notify_outbox(notifier, payload, created_at, next_attempt_at)"
        " VALUES (?,?,?,?)",
        (notifier, payload, now_iso, now_iso),
    )
    return int(cur.lastrowid or 0)


def drop_undelivered(store: Store, notifier: str, kind: str, group_key: str) -> int:
    """Delete undelivered rows of ``notifier`` with this payload kind and group key
    (a newer refresh supersedes them); returns how many."""
    cur = store.execute(
        "DELETE FROM notify_outbox WHERE notifier=? AND delivered_at IS NULL"
        " AND json_extract(payload, '$.kind')=? AND json_extract(payload, '$.group_key')=?",
        (notifier, kind, group_key),
    )
    return int(cur.rowcount or 0)


def pending_notifications(store: Store, notifier: str, limit: int = 200) -> list[OutboxRow]:
    """Undelivered rows of ``notifier`` not given up, oldest first (due or not: a row
    waiting for its retry holds back the later ones, so order is kept)."""
    rows = store.query(
        "SELECT id, notifier, payload, created_at, attempts, next_attempt_at, delivered_at,"
        " last_error FROM notify_outbox WHERE notifier=? AND delivered_at IS NULL"
        " AND next_attempt_at<>? ORDER BY id LIMIT ?",
        (notifier, GAVE_UP, limit),
    )
    return [OutboxRow(*r) for r in rows]


def mark_sent(store: Store, row_id: int, now_iso: str) -> None:
    store.execute(
        "UPDATE notify_outbox SET delivered_at=?, attempts=attempts+1, last_error=NULL WHERE id=?",
        (now_iso, row_id),
    )


def mark_failed(
    store: Store, row_id: int, error: str, next_attempt_iso: str, tries: int = 1
) -> None:
    """Record ``tries`` failed attempts (message already redacted) and when to retry
    (:data:`GAVE_UP`: never)."""
    store.execute(
        "UPDATE notify_outbox SET attempts=attempts+?, last_error=?, next_attempt_at=? WHERE id=?",
        (tries, error, next_attempt_iso, row_id),
    )


def give_up_older(store: Store, notifier: str, created_before_iso: str) -> int:
    """Give up undelivered rows of ``notifier`` created before the given time."""
    cur = store.execute(
        "UPDATE notify_outbox SET next_attempt_at=?,"
        " last_error='expired: ' || COALESCE(last_error, 'never delivered')"
        " WHERE notifier=? AND delivered_at IS NULL AND created_at<? AND next_attempt_at<>?",
        (GAVE_UP, notifier, created_before_iso, GAVE_UP),
    )
    return int(cur.rowcount or 0)


def outbox_rows(store: Store, notifier: str | None = None) -> list[OutboxRow]:
    sql, args = (
        "SELECT id, notifier, payload, created_at, attempts, next_attempt_at, delivered_at,"
        " last_error FROM notify_outbox",
        [],
    )
    if notifier:
        sql += " WHERE notifier=?"
        args.append(notifier)
    return [OutboxRow(*r) for r in store.query(sql + " ORDER BY id", args)]


def outbox_status(store: Store) -> list[dict[str, Any]]:
    """Per notifier: pending, delivered, given up, last error."""
    rows = store.query(
        "SELECT notifier,"
        " SUM(delivered_at IS NULL AND next_attempt_at<>?) AS pending,"
        " SUM(delivered_at IS NOT NULL) AS delivered,"
        " SUM(delivered_at IS NULL AND next_attempt_at=?) AS gave_up,"
        " MAX(CASE WHEN delivered_at IS NULL THEN last_error END) AS last_error"
        " FROM notify_outbox GROUP BY notifier ORDER BY notifier",
        (GAVE_UP, GAVE_UP),
    )
    return [dict(r) for r in rows]


# --------------------------------------------------------------------------------------
# Silences
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Silence:
    id: int
    instrument: str | None
    detector_name: str | None
    amp: str | None
    rule: str | None
    until_day_obs: str
    reason: str
    created_at: str

    def matches(self, rule: str, instrument: str, detector_name: str, amp: str) -> bool:
        return (
            (self.instrument is None or self.instrument.lower() == instrument.lower())
            and (self.detector_name is None or self.detector_name == detector_name)
            and (self.amp is None or self.amp == amp)
            and (self.rule is None or self.rule == rule)
        )


def add_silence(
    store: Store,
    *,
    until_day_obs: str,
    reason: str,
    now_iso: str,
    instrument: str | None = None,
    detector_name: str | None = None,
    amp: str | None = None,
    rule: str | None = None,
) -> int:
    cur = store.execute(
        "INSERT INTO silences(instrument, detector_name, amp, rule, until_day_obs, reason,"
        " created_at) VALUES (?,?,?,?,?,?,?)",
        (instrument, detector_name, amp, rule, until_day_obs, reason, now_iso),
    )
    return int(cur.lastrowid or 0)


def silences(store: Store, *, active_on: str | None = None) -> list[Silence]:
    """All silences, or those active for ``active_on`` (day_obs ≤ until_day_obs)."""
    sql, args = "SELECT * FROM silences", []
    if active_on is not None:
        sql += " WHERE until_day_obs>=?"
        args.append(active_on)
    rows = store.query(sql + " ORDER BY id", args)
    return [
        Silence(r["id"], r["instrument"], r["detector_name"], r["amp"], r["rule"],
                r["until_day_obs"], r["reason"], r["created_at"])
        for r in rows
    ]  # fmt: skip


def delete_silence(store: Store, silence_id: int) -> bool:
    cur = store.execute("DELETE FROM silences WHERE id=?", (silence_id,))
    return bool(cur.rowcount)
