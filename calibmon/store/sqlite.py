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

SCHEMA_VERSION = 3

# The records table and its indexes (schema 3). Every index is day- or time-major, so a
# night's inserts append at the right edge of each B-tree instead of touching one leaf page
# per series (schema 2's metric-major unique key and series index made a full-camera
# night of ~49k records dirty ~49k scattered pages per index once the history was long,
# which is what slowed nightly writes 1.0 s -> 3.3 s and wrote 64 GB for 3.4 GB).
#   records_identity  the unique record identity (DESIGN §4), timestamp first
#   records_seq       the outbox cursor (seq only grows)
#   records_day       day-major read path in iter_records' order; level and detector_name
#                     ride along so day filters on them are answered from the index
_RECORDS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
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
    run_id TEXT NOT NULL
);
"""
_RECORDS_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS records_identity
    ON records(timestamp, instrument, metric, level, detector, amp);
CREATE INDEX IF NOT EXISTS records_seq ON records(seq);
CREATE INDEX IF NOT EXISTS records_day
    ON records(day_obs, metric, instrument, detector, amp, timestamp, level, detector_name);
CREATE INDEX IF NOT EXISTS records_summary_day
    ON records(day_obs, instrument) WHERE level IN ('detector','camera');
"""
# records_summary_day: the report's trends read ~3k summary records a night; without it
# SQLite walks every amp record of the window (30 nights x 50k) to find them (1.3 s -> 0.6 s
# at 365 nights of a full camera, bench_store.py). Partial: a few hundred entries a night,
# built once (12 s for a year) when a store without it is opened.
_RECORD_COLUMNS = (
    "id, seq, metric, level, instrument, detector, amp, timestamp, value, error, unit,"
    " calib_type, detector_name, day_obs, physical_filter, vendor, stats, provenance, run_id"
)

_SCHEMA = (
    """
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
"""
    + _RECORDS_TABLE.format(name="records")
    + _RECORDS_INDEXES
    + """
CREATE TABLE IF NOT EXISTS record_days (
    instrument TEXT NOT NULL,
    metric TEXT NOT NULL,
    day_obs TEXT NOT NULL,
    PRIMARY KEY (instrument, metric, day_obs)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_days_day ON record_days(day_obs);
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
)


_KILL_STATE = {"n": 0}
_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLAC")


def _test_kill_point() -> None:
    """Fault-injection hook for tests: with ``CALIBMON_TEST_KILL_AT=N`` in the environment
    the process SIGKILLs itself at its Nth kill point; ``0`` only counts them (in
    ``_KILL_STATE``). Kill points: the start of every write statement (each row of an
    ``executemany``; through SQLite's trace callback, installed only when the variable is
    set), every transaction once all is written but before ``COMMIT`` and just after it,
    and every autocommitted write after it. Unset in production: one environment lookup
    per transaction."""
    at = os.environ.get("CALIBMON_TEST_KILL_AT")
    if not at:
        return
    _KILL_STATE["n"] += 1
    if _KILL_STATE["n"] == int(at):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _trace_kill_point(sql: str) -> None:
    if sql.lstrip()[:6].upper() in _WRITE_VERBS:
        _test_kill_point()


def _is_storage_error(exc: BaseException) -> bool:
    """A full disk or failing I/O (not a bug in a statement): shown as one line naming the
    store, never a traceback."""
    if not isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        return False
    text = str(exc).lower()
    return any(k in text for k in ("full", "disk i/o", "readonly", "read-only"))


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
            # 64 MiB page cache (default 2 MiB): a night's write and a report's reads stay
            # in memory; the WAL file is truncated back to 64 MiB after checkpoints instead
            # of keeping its high-water mark
            self._conn.execute("PRAGMA cache_size=-65536")
            self._conn.execute("PRAGMA journal_size_limit=67108864")
            self._migrate()
            if os.environ.get("CALIBMON_TEST_KILL_AT"):  # fault tests only
                self._conn.set_trace_callback(_trace_kill_point)
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
            if 0 < version < 3:
                # schema 2's records had a metric-major inline UNIQUE key, which only a
                # rebuild can drop: move the rows over once, in day order (minutes for
                # a year of a full camera; the old file's space is reused, not returned:
                # run `calibmon store maintain --vacuum` to shrink it)
                self._conn.execute("ALTER TABLE records RENAME TO records_v2")
                for name in ("records_seq", "records_day", "records_series"):
                    self._conn.execute(f"DROP INDEX IF EXISTS {name}")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            if 0 < version < 3:
                self._conn.execute(
                    f"INSERT INTO records({_RECORD_COLUMNS}) SELECT {_RECORD_COLUMNS}"
                    " FROM records_v2 ORDER BY day_obs, timestamp"
                )
                self._conn.execute("DROP TABLE records_v2")
                self._conn.execute(
                    "INSERT OR IGNORE INTO record_days(instrument, metric, day_obs)"
                    " SELECT DISTINCT instrument, metric, day_obs FROM records"
                )
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
                _test_kill_point()  # all of the transaction written, not committed
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if _is_storage_error(exc):
                    raise StoreError(f"store {self.path}: {exc}") from exc
                raise
            else:
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise StoreError(f"store {self.path}: cannot commit: {exc}") from exc
                _test_kill_point()  # committed

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        """Run one statement (autocommit unless inside :meth:`transaction`)."""
        with self._lock:
            try:
                cur = self._conn.execute(sql, params)
            except sqlite3.Error as exc:
                if _is_storage_error(exc):
                    raise StoreError(f"store {self.path}: {exc}") from exc
                raise
            if not self._conn.in_transaction and sql.lstrip()[:6].upper() not in (
                "SELECT", "PRAGMA",
            ):  # fmt: skip
                _test_kill_point()  # an autocommitted write, committed
            return cur

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
    def write_records(self, records: Sequence[MetricRecord], run_id: str | None) -> int:
        """Insert or replace ``records`` in one transaction; returns how many were written.

        A record with the same identity (metric, level, instrument, detector, amp,
        timestamp) replaces the stored one and gets a new ``seq``, so remote sinks
        re-deliver it (the server overwrites the same point). ``run_id`` None stores each
        record under its own ``provenance.run`` (``calibmon import``).
        """
        if not records:
            return 0
        # the records of one amp and kind share their Provenance object: serialise it once
        prov_json: dict[int, str] = {}
        with self.transaction() as c:
            first = self._next_seq(len(records))
            rows = []
            for i, r in enumerate(records):
                pj = prov_json.get(id(r.provenance))
                if pj is None:
                    pj = prov_json[id(r.provenance)] = r.provenance.model_dump_json()
                metric, level, instrument, det, amp, ts = r.identity()
                rows.append(
                    (
                        first + i, metric, level, instrument, det, amp, ts, r.value, r.error,
                        r.unit,
                        r.calib_type, r.detector_name, r.day_obs, r.physical_filter, r.vendor,
                        r.stats.model_dump_json() if r.stats else None,
                        pj,
                        run_id if run_id is not None else r.provenance.run,
                    )
                )  # fmt: skip
            c.executemany(
                "INSERT OR IGNORE INTO record_days(instrument, metric, day_obs) VALUES (?,?,?)",
                sorted({(r.instrument, r.metric, r.day_obs) for r in records}),
            )
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

    def days(
        self,
        *,
        instrument: str | None = None,
        metric: str | Iterable[str] | None = None,
        since_day_obs: str | None = None,
        until_day_obs: str | None = None,
        before_day_obs: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[str]:
        """Distinct day_obs holding records (of ``instrument``/``metric`` when given),
        within the inclusive ``since``/``until`` bounds and before ``before_day_obs``.

        Read from ``record_days`` (one row per instrument, metric and day, kept by
        :meth:`write_records`), so it costs the number of days, not of records."""
        where, params = ["1"], []
        if instrument is not None:
            where.append("instrument=?")
            params.append(instrument)
        if metric is not None:
            ms = [metric] if isinstance(metric, str) else list(metric)
            where.append(f"metric IN ({','.join('?' * len(ms))})")
            params.extend(ms)
        for op, val in ((">=", since_day_obs), ("<=", until_day_obs), ("<", before_day_obs)):
            if val is not None:
                where.append(f"day_obs{op}?")
                params.append(val)
        sql = (
            f"SELECT DISTINCT day_obs FROM record_days WHERE {' AND '.join(where)}"
            f" ORDER BY day_obs {'DESC' if descending else 'ASC'}"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [r[0] for r in self._conn_query_tuples(sql, params)]

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
        instrument, detector, amp, timestamp.

        Streams one day at a time through the day-major index (``records_day``): memory
        is one day's records whatever the history, and a day or a metric of a detector
        costs what that day or series costs."""
        cache: dict[str, Any] = {}
        for _day, rows in self._record_rows(
            "*", day_obs=day_obs, metric=metric, instrument=instrument,
            detector_name=detector_name, amp=amp, level=level, since_day_obs=since_day_obs,
            until_day_obs=until_day_obs, tuples=False,
        ):  # fmt: skip
            cache.clear()
            for row in rows:
                yield _row_to_record(row, cache)

    EXPORT_COLUMNS = (
        "metric, value, unit, calib_type, level, instrument, detector, detector_name, amp,"
        " day_obs, physical_filter, vendor, timestamp, provenance, stats, error"
    )
    """Columns of :meth:`iter_record_rows`, in the order of the export form (§4)."""

    def iter_record_rows(self, **filters: Any) -> Iterator[tuple]:
        """Like :meth:`iter_records` (same filters and order) but plain tuples of
        :data:`EXPORT_COLUMNS`, detector -1 and amp '' as stored: the streamed exports
        build their output from these without making a record per row."""
        for _day, rows in self._record_rows(self.EXPORT_COLUMNS, tuples=True, **filters):
            yield from rows

    def _record_rows(
        self,
        columns: str,
        *,
        day_obs: str | None = None,
        metric: str | Iterable[str] | None = None,
        instrument: str | None = None,
        detector_name: str | None = None,
        amp: str | None = None,
        level: str | None = None,
        since_day_obs: str | None = None,
        until_day_obs: str | None = None,
        tuples: bool,
    ) -> Iterator[tuple[str, list]]:
        """(day_obs, that day's matching rows), day by day, oldest first."""
        ms = None if metric is None else ([metric] if isinstance(metric, str) else list(metric))
        where, params = ["day_obs=?"], []
        if ms is not None:
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
        sql = (
            f"SELECT {columns} FROM records INDEXED BY records_day WHERE {' AND '.join(where)}"
            " ORDER BY metric, instrument, detector, amp, timestamp"
        )
        if day_obs is not None:
            if (since_day_obs is not None and day_obs < since_day_obs) or (
                until_day_obs is not None and day_obs > until_day_obs
            ):
                return
            days = [day_obs]
        else:
            days = self.days(
                instrument=instrument, metric=ms, since_day_obs=since_day_obs,
                until_day_obs=until_day_obs,
            )  # fmt: skip
        for day in days:
            args = [day, *params]
            yield day, self._conn_query_tuples(sql, args) if tuples else self.query(sql, args)

    def frame(self, **filters: Any):
        """Records as a pandas DataFrame, one row per record, provenance flattened
        (notebook API; filters: metric, calib_type, instrument, detector_name, detector,
        amp, level, day_obs, since, until — see :func:`calibmon.store.dataframes.frame`)."""
        from calibmon.store.dataframes import frame

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
        found = self.latest_measurement(
            metrics, instrument, detector, amp, on_or_before_day_obs=on_or_before_day_obs
        )
        return None if found is None else (found[0], found[1], found[3])

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
        day_obs); error NaN when the record has none. Lower limits (provenance
        ``lower_limit``) are not measurements and are skipped.

        Looks at the days that hold any of ``metrics`` newest first, in chunks of 1, 4,
        16, … days: one index seek per metric and day, so the usual case (the value is
        on the newest such day) costs one query whatever the history."""
        ms = list(metrics)
        if not ms:
            return None
        days = self.days(
            instrument=instrument, metric=ms, until_day_obs=on_or_before_day_obs,
            descending=True,
        )  # fmt: skip
        order = " ".join(f"WHEN '{m}' THEN {i}" for i, m in enumerate(ms))
        start, size = 0, 1
        while start < len(days):
            chunk = days[start : start + size]
            rows = self.query(
                "SELECT metric, value, error, day_obs FROM records INDEXED BY records_day"
                f" WHERE day_obs IN ({','.join('?' * len(chunk))})"
                f" AND metric IN ({','.join('?' * len(ms))})"
                " AND instrument=? AND detector=? AND amp=? AND level='amp'"
                " AND provenance NOT LIKE '%\"lower_limit\":true%'"
                f" ORDER BY day_obs DESC, CASE metric {order} END, timestamp DESC LIMIT 1",
                [*chunk, *ms, instrument, detector, amp],
            )
            if rows:
                r = rows[0]
                err = r["error"]
                return (
                    r["metric"], float(r["value"]), math.nan if err is None else float(err),
                    r["day_obs"],
                )  # fmt: skip
            start, size = start + size, size * 4
        return None

    def most_precise_measurement(
        self,
        metric: str,
        instrument: str,
        detector: int,
        amp: str,
        *,
        on_or_before_day_obs: str,
        max_days: int = 60,
    ) -> tuple[str, float, float, str] | None:
        """The record of ``metric`` with the smallest error among the newest ``max_days``
        days that hold it (metric, value, error, day_obs); None without one. For slowly
        varying properties (a00, k2) a full ramp's number beats a daily_PTC's."""
        days = self.days(
            instrument=instrument, metric=metric, until_day_obs=on_or_before_day_obs,
            descending=True, limit=max_days,
        )  # fmt: skip
        if not days:
            return None
        rows = self.query(
            "SELECT metric, value, error, day_obs FROM records INDEXED BY records_day"
            f" WHERE day_obs IN ({','.join('?' * len(days))}) AND metric=?"
            " AND instrument=? AND detector=? AND amp=? AND level='amp' AND error IS NOT NULL"
            " ORDER BY error ASC, day_obs DESC LIMIT 1",
            [*days, metric, instrument, detector, amp],
        )
        if not rows:
            return None
        r = rows[0]
        return r["metric"], float(r["value"]), float(r["error"]), r["day_obs"]

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
