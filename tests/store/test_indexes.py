"""A year of history stays fast: the read paths of a night, a look-back window and a
series seek through day-major indexes instead of scanning the records table.

Asserted on SQLite's query plans (deterministic), not on timings; the timings are in
``benchmarks/bench_store.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from calibmon.store import alerts as db
from calibmon.store import queries
from calibmon.store.maintenance import maintain
from calibmon.store.sqlite import Store

from .helpers import days, night_records


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "s.sqlite") as s:
        for d in days(5):
            s.write_records(night_records(d), "r")
        s.write_records(night_records(days(5)[2], instrument="LATISS"), "r")
        yield s


class _Plans:
    """Records every statement's query plan through SQLite's trace callback."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sql: list[str] = []

    def __enter__(self) -> _Plans:
        self.store._conn.set_trace_callback(self.sql.append)
        return self

    def __exit__(self, *exc: object) -> None:
        self.store._conn.set_trace_callback(None)

    def full_scans(self) -> list[str]:
        """Statements whose plan walks all of ``records`` or one of its indexes (SCAN,
        not SEARCH): their cost grows with the history."""
        bad = []
        for sql in self.sql:
            if not sql.lstrip().upper().startswith("SELECT") or "records" not in sql:
                continue
            plan = self.store._conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            if any(p[3].startswith(("SCAN records", "SCAN TABLE records")) for p in plan):
                bad.append(sql)
        return bad


def test_reads_of_a_night_and_a_window_use_indexes(store: Store) -> None:
    d = days(5)
    with _Plans(store) as plans:
        assert queries.day_obs_list(store, "LATISS") == [d[2]]
        assert queries.day_obs_list(store) == d
        assert queries.instruments_on(store, d[2]) == ["LATISS", "LSSTCam"]  # same count: by name
        assert len(queries.day_amp_values(store, "LSSTCam", d[4])) == 12
        assert len(queries.summary_values(store, "LSSTCam", d[-3:])) == 3 * 6
        assert len(queries.amp_values_of_days(store, "LSSTCam", d[-3:], ["read_noise"])) == 18
        n_nights = 5 + 1  # the LATISS night has an R22_S11 too
        assert len(store.frame(metric="read_noise", detector_name="R22_S11")) == n_nights * 4
        assert len(list(store.iter_records(day_obs=d[1]))) == 18
        assert len(db.day_values(store, d[4], ["read_noise"], "LSSTCam")) == 9
        hist = db.history_values(store, ["read_noise"], before_day_obs=d[4], n_nights=2,
                                 instrument="LSSTCam")  # fmt: skip
        assert sorted({r.day_obs for r in hist}) == d[2:4]
        hist = db.history_values(store, ["read_noise"], before_day_obs=d[4], n_nights=2,
                                 instrument="LSSTCam", detector=94)  # fmt: skip
        assert sorted({r.day_obs for r in hist}) == d[2:4] and {r.detector for r in hist} == {94}
        ser = db.series_values(store, "dark_current", instrument="LSSTCam", detector=0,
                               level="amp", until_day_obs=d[3], n_nights=3)  # fmt: skip
        assert sorted(ser) == ["C00", "C10", "C11"] and [x[0] for x in ser["C10"]] == d[1:4]
        assert store.latest_value(["read_noise"], "LSSTCam", 94, "C11",
                                  on_or_before_day_obs=d[3]) == ("read_noise", 5.194, d[3])  # fmt: skip
        assert store.latest_value(["read_noise"], "LSSTCam", 94, "C99",
                                  on_or_before_day_obs=d[3]) is None  # fmt: skip
    assert plans.sql and plans.full_scans() == []


def test_trends_read_only_the_summary_records(store: Store) -> None:
    """The report's trend query reads the window's detector/camera records through the
    partial index, not every amp record of the window (bench_store.py: 1.3 s -> 0.6 s for
    30 nights of a full camera)."""
    d = days(5)
    with _Plans(store) as plans:
        queries.summary_values(store, "LSSTCam", d[-3:])
    sql = [q for q in plans.sql if "level IN ('detector','camera')" in q]
    assert sql
    plan = store._conn.execute("EXPLAIN QUERY PLAN " + sql[0]).fetchall()
    assert any("records_summary_day" in p[3] for p in plan), plan


def test_nightly_inserts_append_to_day_major_indexes(store: Store) -> None:
    """No records index leads with a per-series column (metric, instrument, detector, amp):
    those make a night's inserts touch one leaf page per series."""
    rows = store.query("SELECT name, sql FROM sqlite_master WHERE tbl_name='records'"
                       " AND type='index'")  # fmt: skip
    lead = {r["name"]: r["sql"].split("(")[1].split(",")[0].strip() for r in rows if r["sql"]}
    assert lead == {"records_identity": "timestamp", "records_seq": "seq)",
                    "records_day": "day_obs", "records_summary_day": "day_obs"}  # fmt: skip
    auto = [r["name"] for r in rows if r["sql"] is None]
    assert auto == []  # no inline UNIQUE constraint (its key would be metric-major)


def test_maintain_prunes_old_pictures_only(store: Store) -> None:
    import numpy as np

    d = days(5)
    img = np.zeros((2, 2), np.float32)
    for day in d:
        store.write_amp_images([("LSSTCam", day, 94, "C10", "bias", img, None)], "r", 1)
        store.write_ptc_curves([("LSSTCam", day, 94, "C10", {"mu_adu": [1.0]})], "r")
    n = store.count_records()
    out = maintain(store, keep_images_days=2, vacuum=True)
    assert out["images_deleted"] == 2 and out["ptc_curves_deleted"] == 2
    assert out["cutoff_day_obs"] == d[2]
    kept = {r[0] for r in store.query("SELECT day_obs FROM amp_images")}
    assert kept == set(d[2:]) and store.count_records() == n
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
