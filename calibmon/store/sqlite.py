"""SQLite store: the source of truth (DESIGN.md §1).

Tables
------
runs            one row per ``calibmon run``/job: inputs, counts, status, config hash
records         metric records, unique on (metric, level, instrument, detector, amp,
                timestamp); ``seq`` is a store-wide change counter bumped on every insert
                or replace, so a remote sink's delivery cursor is "highest seq acknowledged"
sink_cursors    per remote sink: highest ``seq`` the server acknowledged (outbox, §1)
rejections      input files rejected, with reasons, per run
alert_state     one row per alert identity (rule, instrument, detector, amp)
alert_events    transitions (pending/firing/resolved) for history and notification
notify_outbox   notifications to deliver, per notifier, with attempts/backoff
silences        operator silences
calib_products  master calibration products (id, type, file, detector, inputs, ...)
certifications  validity ranges of products (Butler CALIBRATION-collection style)
amp_images      binned master images per amp and day (pictures in the HTML report)
ptc_curves      per-amp PTC points and fit (PTC plots)

Writes go through :meth:`Store.transaction` (one transaction per group/detector), so a
crash mid-run leaves either all of a group's records or none. WAL mode lets a reader
(``calibmon export``, Grafana exporters) run while a job writes.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from calibmon.errors import StoreError
from calibmon.records import MetricRecord, Provenance, Stats, StoredRecord

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    command TEXT NOT NULL,
    input_dir TEXT,
    day_obs TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    n_files INTEGER NOT NULL DEFAULT 0,
    n_rejected INTEGER NOT NULL DEFAULT 0,
    n_skipped INTEGER NOT NULL DEFAULT 0,
    n_records INTEGER NOT NULL DEFAULT 0,
    software_version TEXT,
    config_hash TEXT,
    notes TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    metric TEXT NOT NULL,
    level TEXT NOT NULL,
    instrument TEXT NOT NULL,
    detector INTEGER NOT NULL,          -- -1 for camera-level records
    amp TEXT NOT NULL,                  -- '' for detector/camera-level records
    timestamp TEXT NOT NULL,
    value REAL NOT NULL,
    error REAL,                         -- 1-sigma uncertainty of amp-level values (§4)
    unit TEXT NOT NULL,
    calib_type TEXT NOT NULL,
    detector_name TEXT,
    day_obs TEXT NOT NULL,
    physical_filter TEXT NOT NULL DEFAULT '',
    vendor TEXT NOT NULL DEFAULT '',
    stats TEXT,
    provenance TEXT NOT NULL,
    run_id TEXT NOT NULL,
    UNIQUE (metric, level, instrument, detector, amp, timestamp)
);
CREATE INDEX IF NOT EXISTS records_seq ON records(seq);
CREATE INDEX IF NOT EXISTS records_day ON records(day_obs, metric);
CREATE INDEX IF NOT EXISTS records_series
    ON records(metric, instrument, detector, amp, day_obs);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sink_cursors (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TEXT,
    last_success_at TEXT,
    last_error TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_state (
    rule TEXT NOT NULL,
    instrument TEXT NOT NULL,
    detector INTEGER NOT NULL,
    amp TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (rule, instrument, detector, amp)
);
CREATE TABLE IF NOT EXISTS alert_events (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    instrument TEXT NOT NULL,
    detector INTEGER NOT NULL,
    amp TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    day_obs TEXT,
    data TEXT NOT NULL DEFAULT '{}',
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY,
    notifier TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY,
    instrument TEXT,
    detector_name TEXT,
    amp TEXT,
    rule TEXT,
    until_day_obs TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calib_products (
    id TEXT PRIMARY KEY,
    calib_type TEXT NOT NULL,
    instrument TEXT NOT NULL,
    detector INTEGER NOT NULL,
    detector_name TEXT NOT NULL,
    physical_filter TEXT NOT NULL DEFAULT '',
    day_obs TEXT,
    path TEXT NOT NULL,
    source_run TEXT,
    created_at TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS amp_images (
    instrument TEXT NOT NULL,
    day_obs TEXT NOT NULL,
    detector INTEGER NOT NULL,
    amp TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- bias (adu) | dark (e-/s) | flat (normalised)
    bin INTEGER NOT NULL,
    n_rows INTEGER NOT NULL,
    n_cols INTEGER NOT NULL,
    data BLOB NOT NULL,                 -- float32, C order, n_rows x n_cols, readout order
    detsec TEXT,                        -- the amp's DETSEC for assembling CCD pictures
    run_id TEXT,
    PRIMARY KEY (instrument, day_obs, detector, amp, kind)
);
CREATE TABLE IF NOT EXISTS ptc_curves (
    instrument TEXT NOT NULL,
    day_obs TEXT NOT NULL,
    detector INTEGER NOT NULL,
    amp TEXT NOT NULL,
    data TEXT NOT NULL,                 -- JSON: exptime_s, mu_adu, var_adu2, model_var_adu2,
                                        --       used, linearity residual_frac
    run_id TEXT,
    PRIMARY KEY (instrument, day_obs, detector, amp)
);
CREATE TABLE IF NOT EXISTS certifications (
    id INTEGER PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES calib_products(id),
    begin_date TEXT NOT NULL,
    end_date TEXT,
    certified_at TEXT NOT NULL
);
"""


def default_store_path() -> Path:
    """``$CALIBMON_STORE`` or ``<user data dir>/calibmon/calibmon.sqlite``."""
    env = os.environ.get("CALIBMON_STORE")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("calibmon", appauthor=False)) / "calibmon.sqlite"


def utc_now_iso() -> str:
    """Current UTC time, ISO-8601 with microseconds and ``Z`` (for bookkeeping only)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row_to_record(row: sqlite3.Row, cache: dict[str, Any] | None = None) -> MetricRecord:
    """A stored row as a record. Rows were validated when written, so the models are
    built with ``model_construct`` (no re-validation: ~5x faster, which matters when the
    outbox streams a full LSSTCam day of ~10⁵ records); identical provenance JSON (the
    metrics of one amp and kind) is parsed once per call through ``cache``."""
    det = row["detector"]
    stats = row["stats"]
    prov_json = row["provenance"]
    prov = cache.get(prov_json) if cache is not None else None
    if prov is None:
        prov = Provenance.model_construct(**json.loads(prov_json))
        if cache is not None:
            cache[prov_json] = prov
    return MetricRecord.model_construct(
        metric=row["metric"],
        value=row["value"],
        unit=row["unit"],
        calib_type=row["calib_type"],
        level=row["level"],
        instrument=row["instrument"],
        detector=None if det == -1 else det,
        detector_name=row["detector_name"],
        amp=row["amp"] or None,
        day_obs=row["day_obs"],
        physical_filter=row["physical_filter"],
        vendor=row["vendor"],
        timestamp=row["timestamp"],
        provenance=prov,
        stats=Stats.model_construct(**json.loads(stats)) if stats else None,
        error=row["error"],
    )


class Store:
    """The embedded SQLite store. One instance per process/thread of work.

    ``Store(path)`` creates the file and schema if needed. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable calibmon store: {exc}") from exc

    # -- plumbing -------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema {version}, newer than this calibmon ({SCHEMA_VERSION})"
            )
        with self.transaction():
            if 0 < version < 2:  # schema 1 had no error column
                cols = {r[1] for r in self._conn.execute("PRAGMA table_info(records)")}
                if "error" not in cols:
                    self._conn.execute("ALTER TABLE records ADD COLUMN error REAL")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on error). Re-entrant in one thread."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        """Run one statement (autocommit unless inside :meth:`transaction`)."""
        with self._lock:
            return self._conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run a SELECT and return all rows."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self, n: int) -> int:
        """Reserve ``n`` sequence numbers; returns the first. Call inside a transaction."""
        row = self._conn.execute("SELECT value FROM counters WHERE name='seq'").fetchone()
        start = (row[0] if row else 0) + 1
        self._conn.execute(
            "INSERT INTO counters(name, value) VALUES('seq', ?) "
            "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (start + n - 1,),
        )
        return start

    # -- runs -----------------------------------------------------------------------
    def begin_run(
        self,
        run_id: str,
        command: str,
        *,
        input_dir: str | None = None,
        day_obs: str | None = None,
        software_version: str = "",
        config_hash: str = "",
    ) -> None:
        """Record the start of a run."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO runs(run_id, started_at, command, input_dir, day_obs,"
                " software_version, config_hash) VALUES (?,?,?,?,?,?,?)",
                (run_id, utc_now_iso(), command, input_dir, day_obs, software_version, config_hash),
            )

    def finish_run(self, run_id: str, status: str, **counts: Any) -> None:
        """Record the end of a run with its counts (n_files, n_rejected, n_skipped, n_records)
        and a ``notes`` dict."""
        notes = counts.pop("notes", None)
        sets = ["finished_at=?", "status=?"]
        vals: list[Any] = [utc_now_iso(), status]
        for k in ("n_files", "n_rejected", "n_skipped", "n_records"):
            if k in counts:
                sets.append(f"{k}=?")
                vals.append(int(counts[k]))
        if notes is not None:
            sets.append("notes=?")
            vals.append(json.dumps(notes, sort_keys=True, default=str))
        vals.append(run_id)
        with self.transaction() as c:
            c.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id=?", vals)

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def add_rejection(self, run_id: str, path: str, reason: str) -> None:
        self.execute(
            "INSERT INTO rejections(run_id, path, reason, at) VALUES (?,?,?,?)",
            (run_id, path, reason, utc_now_iso()),
        )

    # -- records ----------------------------------------------------------------------
    def write_records(self, records: Sequence[MetricRecord], run_id: str) -> int:
        """Insert or replace ``records`` in one transaction; returns how many were written.

        A record with the same identity (metric, level, instrument, detector, amp,
        timestamp) replaces the stored one and gets a new ``seq``, so remote sinks
        re-deliver it (the server overwrites the same point).
        """
        if not records:
            return 0
        with self.transaction() as c:
            first = self._next_seq(len(records))
            rows = []
            for i, r in enumerate(records):
                metric, level, instrument, det, amp, ts = r.identity()
                rows.append(
                    (
                        first + i, metric, level, instrument, det, amp, ts, r.value, r.error,
                        r.unit,
                        r.calib_type, r.detector_name, r.day_obs, r.physical_filter, r.vendor,
                        r.stats.model_dump_json() if r.stats else None,
                        r.provenance.model_dump_json(), run_id,
                    )
                )  # fmt: skip
            c.executemany(
                "INSERT INTO records(seq, metric, level, instrument, detector, amp, timestamp,"
                " value, error, unit, calib_type, detector_name, day_obs, physical_filter,"
                " vendor, stats, provenance, run_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(metric, level, instrument, detector, amp, timestamp) DO UPDATE SET"
                " seq=excluded.seq, value=excluded.value, error=excluded.error,"
                " unit=excluded.unit,"
                " calib_type=excluded.calib_type, detector_name=excluded.detector_name,"
                " day_obs=excluded.day_obs, physical_filter=excluded.physical_filter,"
                " vendor=excluded.vendor, stats=excluded.stats,"
                " provenance=excluded.provenance, run_id=excluded.run_id",
                rows,
            )
        return len(records)

    def iter_records(
        self,
        *,
        day_obs: str | None = None,
        metric: str | Iterable[str] | None = None,
        instrument: str | None = None,
        detector_name: str | None = None,
        amp: str | None = None,
        level: str | None = None,
        since_day_obs: str | None = None,
        until_day_obs: str | None = None,
    ) -> Iterator[MetricRecord]:
        """Stored records matching every given filter, ordered by day_obs, metric,
        instrument, detector, amp, timestamp."""
        where, params = [], []
        if day_obs is not None:
            where.append("day_obs=?")
            params.append(day_obs)
        if metric is not None:
            ms = [metric] if isinstance(metric, str) else list(metric)
            where.append(f"metric IN ({','.join('?' * len(ms))})")
            params.extend(ms)
        for col, val in (
            ("instrument", instrument),
            ("detector_name", detector_name),
            ("amp", amp),
            ("level", level),
        ):
            if val is not None:
                where.append(f"{col}=?")
                params.append(val)
        if since_day_obs is not None:
            where.append("day_obs>=?")
            params.append(since_day_obs)
        if until_day_obs is not None:
            where.append("day_obs<=?")
            params.append(until_day_obs)
        sql = "SELECT * FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY day_obs, metric, instrument, detector, amp, timestamp"
        cache: dict[str, Any] = {}
        for row in self.query(sql, params):
            yield _row_to_record(row, cache)

    def frame(self, **filters: Any):
        """Records as a pandas DataFrame, one row per record, provenance flattened
        (notebook API; filters: metric, calib_type, instrument, detector_name, detector,
        amp, level, day_obs, since, until — see :func:`calibmon.store.frames.frame`)."""
        from calibmon.store.frames import frame

        return frame(self, **filters)

    def count_records(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM records")[0][0])

    def latest_value(
        self,
        metrics: Sequence[str],
        instrument: str,
        detector: int,
        amp: str,
        *,
        on_or_before_day_obs: str,
    ) -> tuple[str, float, str] | None:
        """Most recent (metric, value, day_obs) among ``metrics`` for one amp, not after the
        given day_obs; the first metric in ``metrics`` wins on the same day_obs."""
        ms = list(metrics)
        order = " ".join(f"WHEN '{m}' THEN {i}" for i, m in enumerate(ms))
        rows = self.query(
            f"SELECT metric, value, day_obs FROM records WHERE metric IN ({','.join('?' * len(ms))})"
            " AND level='amp' AND instrument=? AND detector=? AND amp=? AND day_obs<=?"
            f" ORDER BY day_obs DESC, CASE metric {order} END, timestamp DESC LIMIT 1",
            [*ms, instrument, detector, amp, on_or_before_day_obs],
        )
        if not rows:
            return None
        r = rows[0]
        return r["metric"], float(r["value"]), r["day_obs"]

    def latest_measurement(
        self,
        metrics: Sequence[str],
        instrument: str,
        detector: int,
        amp: str,
        *,
        on_or_before_day_obs: str,
    ) -> tuple[str, float, float, str] | None:
        """Like :meth:`latest_value`, with the record's error: (metric, value, error,
        day_obs); error NaN when the record has none. Lower limits are not measurements
        and are skipped."""
        ms = list(metrics)
        order = " ".join(f"WHEN '{m}' THEN {i}" for i, m in enumerate(ms))
        rows = self.query(
            f"SELECT metric, value, error, day_obs FROM records WHERE metric IN"
            f" ({','.join('?' * len(ms))}) AND level='amp' AND instrument=? AND detector=?"
            " AND amp=? AND day_obs<=? AND provenance NOT LIKE '%\"lower_limit\":true%'"
            f" ORDER BY day_obs DESC, CASE metric {order} END, timestamp DESC LIMIT 1",
            [*ms, instrument, detector, amp, on_or_before_day_obs],
        )
        if not rows:
            return None
        r = rows[0]
        err = r["error"]
        return r["metric"], float(r["value"]), math.nan if err is None else float(err), r["day_obs"]

    # -- pictures: binned master images and PTC curves ------------------------------------
    def write_amp_images(
        self, rows: Sequence[tuple[str, str, int, str, str, np.ndarray, str | None]],
        run_id: str, bin_factor: int,
    ) -> None:  # fmt: skip
        """Store binned masters: rows of (instrument, day_obs, detector, amp, kind, image,
        detsec); image float32, readout order."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO amp_images(instrument, day_obs, detector, amp, kind, bin,"
                " n_rows, n_cols, data, detsec, run_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        inst,
                        day,
                        det,
                        amp,
                        kind,
                        bin_factor,
                        img.shape[0],
                        img.shape[1],
                        np.ascontiguousarray(img, dtype=np.float32).tobytes(),
                        detsec,
                        run_id,
                    )
                    for inst, day, det, amp, kind, img, detsec in rows
                ],
            )

    def amp_images(
        self, day_obs: str, kind: str, instrument: str | None = None
    ) -> list[dict[str, Any]]:
        """Binned masters of a day: dicts with instrument, detector, amp, detsec, image."""
        sql = "SELECT * FROM amp_images WHERE day_obs=? AND kind=?"
        params: list[Any] = [day_obs, kind]
        if instrument:
            sql += " AND instrument=?"
            params.append(instrument)
        out = []
        for r in self.query(sql + " ORDER BY instrument, detector, amp", params):
            img = np.frombuffer(r["data"], dtype=np.float32).reshape(r["n_rows"], r["n_cols"])
            out.append(
                {"instrument": r["instrument"], "detector": r["detector"], "amp": r["amp"],
                 "detsec": r["detsec"], "bin": r["bin"], "image": img}
            )  # fmt: skip
        return out

    def write_ptc_curves(
        self, rows: Sequence[tuple[str, str, int, str, dict[str, Any]]], run_id: str
    ) -> None:
        """Store PTC points and fits: rows of (instrument, day_obs, detector, amp, data)."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO ptc_curves(instrument, day_obs, detector, amp, data,"
                " run_id) VALUES (?,?,?,?,?,?)",
                [
                    (i, d, det, a, json.dumps(data, allow_nan=True), run_id)
                    for i, d, det, a, data in rows
                ],
            )

    def ptc_curves(self, day_obs: str, instrument: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM ptc_curves WHERE day_obs=?"
        params: list[Any] = [day_obs]
        if instrument:
            sql += " AND instrument=?"
            params.append(instrument)
        return [
            {"instrument": r["instrument"], "detector": r["detector"], "amp": r["amp"],
             **json.loads(r["data"])}
            for r in self.query(sql + " ORDER BY instrument, detector, amp", params)
        ]  # fmt: skip

    # -- outbox (remote sinks) -----------------------------------------------------------
    def sink_cursor(self, sink: str) -> int:
        rows = self.query("SELECT seq FROM sink_cursors WHERE sink=?", (sink,))
        return int(rows[0][0]) if rows else 0

    def pending_records(
        self, sink: str, limit: int = 5000, after_seq: int | None = None
    ) -> list[tuple[int, StoredRecord]]:
        """Records not yet acknowledged by ``sink``: (seq, record), in seq order.

        The records are :class:`StoredRecord` (same attributes as ``MetricRecord``,
        built without pydantic) because the outbox streams whole days through here."""
        cursor = self.sink_cursor(sink) if after_seq is None else after_seq
        rows = self._conn_query_tuples(
            "SELECT seq, metric, value, unit, calib_type, level, instrument, detector,"
            " detector_name, amp, day_obs, physical_filter, vendor, timestamp, provenance,"
            " stats, error FROM records WHERE seq>? ORDER BY seq LIMIT ?",
            (cursor, limit),
        )
        provs: dict[str, Provenance] = {}
        out = []
        for (seq, metric, value, unit, ctype, level, inst, det, det_name, amp, day, filt,
             vendor, ts, prov_json, stats_json, error) in rows:  # fmt: skip
            prov = provs.get(prov_json)
            if prov is None:
                prov = provs[prov_json] = Provenance.model_construct(**json.loads(prov_json))
            stats = Stats.model_construct(**json.loads(stats_json)) if stats_json else None
            out.append(
                (seq, StoredRecord(metric, value, unit, ctype, level, inst,
                                   None if det == -1 else det, det_name, amp or None, day,
                                   filt, vendor, ts, prov, stats, error))
            )  # fmt: skip
        return out

    def _conn_query_tuples(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """A SELECT returning plain tuples (no ``sqlite3.Row``: faster for bulk reads)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.row_factory = None
            return cur.execute(sql, params).fetchall()

    def pending_count(self, sink: str) -> int:
        cursor = self.sink_cursor(sink)
        return int(self.query("SELECT COUNT(*) FROM records WHERE seq>?", (cursor,))[0][0])

    def mark_delivered(self, sink: str, up_to_seq: int) -> None:
        """Advance ``sink``'s cursor to ``up_to_seq`` (after the server's 2xx)."""
        now = utc_now_iso()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO sink_cursors(sink, seq, last_attempt_at, last_success_at,"
                " consecutive_failures) VALUES (?,?,?,?,0) ON CONFLICT(sink) DO UPDATE SET"
                " seq=MAX(seq, excluded.seq), last_attempt_at=excluded.last_attempt_at,"
                " last_success_at=excluded.last_success_at, last_error=NULL,"
                " consecutive_failures=0",
                (sink, up_to_seq, now, now),
            )

    def mark_sink_failure(self, sink: str, error: str) -> None:
        """Record a failed delivery attempt (the message must already be redacted)."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO sink_cursors(sink, seq, last_attempt_at, last_error,"
                " consecutive_failures) VALUES (?,0,?,?,1) ON CONFLICT(sink) DO UPDATE SET"
                " last_attempt_at=excluded.last_attempt_at, last_error=excluded.last_error,"
                " consecutive_failures=consecutive_failures+1",
                (sink, utc_now_iso(), error),
            )

    def sink_status(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.query("SELECT * FROM sink_cursors ORDER BY sink")]
