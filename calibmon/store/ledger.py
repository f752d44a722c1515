"""The run ledger of ``calibmon serve``: what each scheduled job finished, per day_obs.

Two tables beside the store's own (created here, idempotently, on first use):

job_ledger   one row per (job, day_obs, unit). For a processing job the unit is a
             detector name; for a staleness job it is ``expected:<kind>``. ``status``:
             ``ok`` (processed), ``rejected`` (processed, some of its files rejected),
             ``failed`` (an error stopped it; retried up to the job's ``max_attempts``),
             ``missing`` (staleness: the expected calibration has not arrived).
             ``n_exposures`` is how many exposures the unit had when processed: more
             exposures later (a late transfer, a ramp still being taken) reprocess it.
job_days     one row per (job, day_obs): ``pending`` from before the day's first unit is
             processed until its camera summaries, sinks and alerts are done, then
             ``finalised``. A kill in between leaves ``pending``; the next firing
             finishes the day even when every unit is done.
job_status   one row per job: the last firing, its outcome, the last success (the
             ``calibmon_last_success_timestamp_seconds`` collector reads it, so the value
             survives a restart).

The scheduler decides *what* to do; this module only reads and writes rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from calibmon.store.sqlite import Store, utc_now_iso

LEDGER_DDL = (
    """CREATE TABLE IF NOT EXISTS job_ledger (
    job TEXT NOT NULL,
    day_obs TEXT NOT NULL,
    unit TEXT NOT NULL,
    status TEXT NOT NULL,
    n_exposures INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    detail TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job, day_obs, unit)
)""",
    """CREATE TABLE IF NOT EXISTS job_days (
    job TEXT NOT NULL,
    day_obs TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job, day_obs)
)""",
    """CREATE TABLE IF NOT EXISTS job_status (
    job TEXT PRIMARY KEY,
    last_run_at TEXT,
    last_outcome TEXT,
    last_success_at TEXT,
    last_error TEXT,
    n_runs INTEGER NOT NULL DEFAULT 0
)""",
)

DONE_STATUSES = frozenset({"ok", "rejected"})
DAY_PENDING, DAY_FINALISED = "pending", "finalised"
# Outcomes of a firing that count as "the job works" for last_success.
SUCCESS_OUTCOMES = frozenset({"success", "rejected", "idle", "stale"})


@dataclass(frozen=True)
class LedgerEntry:
    job: str
    day_obs: str
    unit: str
    status: str
    n_exposures: int
    attempts: int
    run_id: str | None
    detail: str | None
    updated_at: str

    def finished(self, n_exposures_now: int, max_attempts: int) -> bool:
        """True when nothing is left to do for this unit: processed (or given up on after
        ``max_attempts`` failures) with at least as many exposures as there are now."""
        if n_exposures_now > self.n_exposures:
            return False
        if self.status in DONE_STATUSES:
            return True
        return self.status == "failed" and self.attempts >= max_attempts


def iso_to_epoch(text: str) -> float:
    """``2025-11-22T13:00:00.123456Z`` → Unix seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Ledger:
    """Ledger queries over a :class:`~calibmon.store.sqlite.Store` (tables made on init)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.transaction() as c:
            for ddl in LEDGER_DDL:
                c.execute(ddl)

    # -- units -------------------------------------------------------------------------
    def entries(self, job: str, day_obs: str) -> dict[str, LedgerEntry]:
        """Every unit the ledger holds for ``job`` and ``day_obs``, by unit."""
        rows = self.store.query(
            "SELECT * FROM job_ledger WHERE job=? AND day_obs=?", (job, day_obs)
        )
        return {r["unit"]: LedgerEntry(**dict(r)) for r in rows}

    def record(
        self,
        job: str,
        day_obs: str,
        unit: str,
        status: str,
        *,
        n_exposures: int = 0,
        run_id: str | None = None,
        detail: str | dict[str, Any] | None = None,
    ) -> None:
        """Insert or update one unit; ``attempts`` counts every call."""
        if isinstance(detail, dict):
            detail = json.dumps(detail, sort_keys=True, default=str)
        self.store.execute(
            "INSERT INTO job_ledger(job, day_obs, unit, status, n_exposures, attempts, run_id,"
            " detail, updated_at) VALUES (?,?,?,?,?,1,?,?,?) ON CONFLICT(job, day_obs, unit)"
            " DO UPDATE SET status=excluded.status, n_exposures=excluded.n_exposures,"
            " attempts=CASE WHEN excluded.status='failed' AND job_ledger.status='failed'"
            " THEN job_ledger.attempts+1 ELSE 1 END, run_id=excluded.run_id,"
            " detail=excluded.detail, updated_at=excluded.updated_at",
            (job, day_obs, unit, status, n_exposures, run_id, detail, utc_now_iso()),
        )

    # -- days --------------------------------------------------------------------------
    def day_status(self, job: str, day_obs: str) -> str | None:
        """``pending``, ``finalised`` or None (the job never processed that day_obs)."""
        rows = self.store.query(
            "SELECT status FROM job_days WHERE job=? AND day_obs=?", (job, day_obs)
        )
        return str(rows[0][0]) if rows else None

    def mark_day(self, job: str, day_obs: str, status: str) -> None:
        """Set the day's status (``pending`` or ``finalised``)."""
        self.store.execute(
            "INSERT INTO job_days(job, day_obs, status, updated_at) VALUES (?,?,?,?)"
            " ON CONFLICT(job, day_obs) DO UPDATE SET status=excluded.status,"
            " updated_at=excluded.updated_at",
            (job, day_obs, status, utc_now_iso()),
        )

    def days(self, job: str) -> list[str]:
        """Every day_obs the ledger holds for ``job``, oldest first."""
        rows = self.store.query(
            "SELECT DISTINCT day_obs FROM job_ledger WHERE job=? ORDER BY day_obs", (job,)
        )
        return [r[0] for r in rows]

    def summary(self) -> list[dict[str, Any]]:
        """Counts per (job, day_obs, status), newest day first (for people and tests)."""
        rows = self.store.query(
            "SELECT job, day_obs, status, COUNT(*) AS n FROM job_ledger"
            " GROUP BY job, day_obs, status ORDER BY day_obs DESC, job, status"
        )
        return [dict(r) for r in rows]

    # -- jobs ----------------------------------------------------------------------------
    def record_firing(self, job: str, outcome: str, *, error: str | None = None) -> None:
        """The outcome of one firing of ``job`` (success, rejected, idle, failure, ...)."""
        now = utc_now_iso()
        success_at = now if outcome in SUCCESS_OUTCOMES else None
        self.store.execute(
            "INSERT INTO job_status(job, last_run_at, last_outcome, last_success_at, last_error,"
            " n_runs) VALUES (?,?,?,?,?,1) ON CONFLICT(job) DO UPDATE SET"
            " last_run_at=excluded.last_run_at, last_outcome=excluded.last_outcome,"
            " last_success_at=COALESCE(excluded.last_success_at, job_status.last_success_at),"
            " last_error=excluded.last_error, n_runs=job_status.n_runs+1",
            (job, now, outcome, success_at, error),
        )

    def job_status(self) -> dict[str, dict[str, Any]]:
        return {r["job"]: dict(r) for r in self.store.query("SELECT * FROM job_status")}

    def last_success_epoch(self, jobs: Iterable[str] | None = None) -> dict[str, float]:
        """Unix time of each job's last successful firing (jobs that never succeeded are
        absent)."""
        wanted = set(jobs) if jobs is not None else None
        out: dict[str, float] = {}
        for r in self.store.query(
            "SELECT job, last_success_at FROM job_status WHERE last_success_at IS NOT NULL"
        ):
            if wanted is None or r["job"] in wanted:
                out[r["job"]] = iso_to_epoch(r["last_success_at"])
        return out

    def missing_expected(self, jobs: Iterable[str]) -> list[tuple[str, str]]:
        """(job, kind) still missing on each staleness job's latest checked day_obs."""
        out: list[tuple[str, str]] = []
        for job in jobs:
            rows = self.store.query(
                "SELECT unit FROM job_ledger WHERE job=? AND status='missing' AND day_obs="
                "(SELECT MAX(day_obs) FROM job_ledger WHERE job=?)",
                (job, job),
            )
            out.extend((job, r[0].removeprefix("expected:")) for r in rows)
        return out


# -- plain store queries used by the service (no ledger tables needed) -------------------
def firing_alert_count(store: Store) -> int:
    """Alert identities currently firing (``alert_state.state='firing'``)."""
    return int(store.query("SELECT COUNT(*) FROM alert_state WHERE state='firing'")[0][0])


def evidence_present(
    store: Store,
    column: str,
    value: str,
    *,
    first_day_obs: str,
    last_day_obs: str,
    instrument: str | None = None,
    detector_name: str | None = None,
) -> bool:
    """Is there at least one record with ``column == value`` (``calib_type`` or
    ``metric``) between the two day_obs (inclusive)?"""
    if column not in ("calib_type", "metric"):
        raise ValueError(f"unknown evidence column {column!r}")
    sql = f"SELECT 1 FROM records WHERE {column}=? AND day_obs>=? AND day_obs<=?"
    params: list[Any] = [value, first_day_obs, last_day_obs]
    if instrument is not None:
        sql += " AND instrument=?"
        params.append(instrument)
    if detector_name is not None:
        sql += " AND detector_name=?"
        params.append(detector_name)
    return bool(store.query(sql + " LIMIT 1", params))
