"""InfluxDB 1.x sink against a real influxd: the night read back with InfluxQL (DESIGN §5)."""

from __future__ import annotations

import logging
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import InfluxD1, free_port
from sink_factory import night_records

from calibmon.errors import SinkRejected, SinkUnavailable
from calibmon.records import MetricRecord
from calibmon.sinks.config import InfluxDB1Config
from calibmon.sinks.influxdb1 import InfluxDB1Sink
from calibmon.store.outbox import deliver
from calibmon.store.sqlite import Store

pytestmark = pytest.mark.server

BIAS = ("bias_level", "read_noise", "read_noise_adu", "bias_mean", "bias_noise")


def sink_for(url: str, db: str, **kw: object) -> InfluxDB1Sink:
    return InfluxDB1Sink(
        InfluxDB1Config(name="influx-test", type="influxdb1", url=url, database=db, **kw)
    )


def by_key(records: list[MetricRecord]) -> dict[tuple, MetricRecord]:
    return {(r.level, r.detector, r.amp, r.metric): r for r in records}


def test_a_night_reads_back_with_influxql(influxd_shared: InfluxD1, store: Store) -> None:
    """(a) 2 detectors × 16 amps × bias metrics + summaries, read back per DESIGN §5."""
    server, db = influxd_shared, "lsst.cp"
    server.query(f'DROP DATABASE "{db}"', post=True)  # other tests may use it too
    server.create_database(db)
    records = night_records(calib_types=["bias"], detectors=["R22_S11", "R22_S12"])
    store.write_records(records, run_id="run-20251121")
    report = deliver(store, sink_for(server.url, db), batch_size=5000)
    assert (report.delivered, report.pending, report.error) == (len(records), 0, None)
    expected = by_key(records)

    # The query of the issue: one amp, grouped by detector.
    series = server.series(
        """SELECT * FROM "lsst.cp"."autogen"."lsst.cp.bias" WHERE amp='C10' GROUP BY detector""",
        db=db,
    )
    assert sorted(s["tags"]["detector"] for s in series) == ["94", "95"]
    for s in series:
        (row,) = [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]
        det = int(s["tags"]["detector"])
        assert row["time"] == 1763748000123  # 2025-11-21T18:00:00.123Z in ms
        assert row["amp"] == "C10" and row["level"] == "amp" and row["instrument"] == "LSSTCam"
        assert row["detector_name"] == {94: "R22_S11", 95: "R22_S12"}[det]
        assert row["vendor"] == "E2V"
        assert row.get("physical_filter") is None  # empty: the tag is absent (see schema.py)
        for metric in BIAS:
            assert row[metric] == expected[("amp", det, "C10", metric)].value
        r0 = expected[("amp", det, "C10", "read_noise")]
        assert row["run"] == r0.provenance.run and row["day_obs"] == "20251121"
        assert row["exposures"] == ",".join(map(str, r0.provenance.exposures))
        assert row["n_exposures"] == 15
        assert row["software_version"] == "0.1.0" and row["config_hash"] == "c0ffee12"

    # Every amp, every metric, exact values; one point per amp.
    series = server.series('SELECT * FROM "lsst.cp.bias" GROUP BY detector, amp', db=db)
    assert len(series) == 32
    for s in series:
        (row,) = [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]
        det, amp = int(s["tags"]["detector"]), s["tags"]["amp"]
        for metric in BIAS:
            assert row[metric] == expected[("amp", det, amp, metric)].value

    # Summaries: detector and camera level in <ns>.bias_summary with the stats fields.
    series = server.series('SELECT * FROM "lsst.cp.bias_summary" GROUP BY level, detector', db=db)
    assert sorted((s["tags"]["level"], s["tags"]["detector"]) for s in series) == [
        ("camera", ""),
        ("detector", "94"),
        ("detector", "95"),
    ]
    for s in series:
        (row,) = [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]
        det = int(s["tags"]["detector"]) if s["tags"]["detector"] else None
        level = s["tags"]["level"]
        assert row.get("amp") is None
        for metric in BIAS:
            r = expected[(level, det, None, metric)]
            assert r.stats is not None
            assert row[metric] == r.value == r.stats.median
            assert row[f"{metric}_median"] == r.stats.median
            assert row[f"{metric}_sigma_mad"] == r.stats.sigma_mad
            assert row[f"{metric}_n"] == r.stats.n_points == (16 if det is not None else 32)
            assert row[f"{metric}_min"] == r.stats.min and row[f"{metric}_max"] == r.stats.max


def test_empty_tag_behaves_as_empty_string_in_influxql(
    influxd_shared: InfluxD1, influx_db: str
) -> None:
    """physical_filter '' is not written (line protocol cannot), yet queries see ''."""
    flat = night_records(calib_types=["flat"], detectors=["R22_S11"], summaries=False)
    bias = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    sink = sink_for(influxd_shared.url, influx_db)
    flat_level = [
        r.model_copy(update={"calib_type": "bias"}) for r in flat if r.metric == "flat_level"
    ]
    read_noise = [r for r in bias if r.metric == "read_noise"]
    sink.write(flat_level + read_noise)
    series = influxd_shared.series(
        'SELECT count("read_noise") AS n_rn, count("flat_level") AS n_fl FROM "lsst.cp.bias" '
        "GROUP BY physical_filter",
        db=influx_db,
    )
    groups = {s["tags"]["physical_filter"]: s["values"][0][1:] for s in series}
    assert groups == {"": [16, None], "empty": [None, 16]}
    where = influxd_shared.series(
        """SELECT count("read_noise") FROM "lsst.cp.bias" WHERE physical_filter=''""", db=influx_db
    )
    assert where[0]["values"][0][1] == 16


ODD = st.text(
    st.one_of(
        st.sampled_from(list(" ,=\"'~_.:é")),
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\"),
    ),
    min_size=1,
    max_size=24,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(physical_filter=ODD, vendor=ODD)
def test_odd_tag_values_round_trip(
    influxd_shared: InfluxD1, physical_filter: str, vendor: str
) -> None:
    """Spaces, commas, '=' and quotes in tag values survive influxd (escaped by Point)."""
    db = "lsst.cp.odd"
    influxd_shared.create_database(db)
    influxd_shared.query('DROP SERIES FROM "lsst.cp.bias"', db=db, post=True)
    (r,) = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)[:1]
    r = r.model_copy(update={"physical_filter": physical_filter, "vendor": vendor})
    sink_for(influxd_shared.url, db).write([r])
    series = influxd_shared.series('SELECT * FROM "lsst.cp.bias" GROUP BY *', db=db)
    assert len(series) == 1
    assert series[0]["tags"]["physical_filter"] == physical_filter
    assert series[0]["tags"]["vendor"] == vendor


def test_retention_policy_and_create_database(influxd_shared: InfluxD1) -> None:
    db = "lsst.cp.created"
    sink = sink_for(influxd_shared.url, db, create_database=True)
    records = night_records(calib_types=["dark"], detectors=["R22_S11"], summaries=False)
    assert sink.write(records).n_points == 16
    influxd_shared.query(
        f'CREATE RETENTION POLICY "week" ON "{db}" DURATION 10000d REPLICATION 1', post=True
    )
    sink_rp = sink_for(influxd_shared.url, db, retention_policy="week")
    sink_rp.write(records[:16])
    n_rp = influxd_shared.series(
        f'SELECT count("dark_current") FROM "{db}"."week"."lsst.cp.dark"', db=db
    )
    n_default = influxd_shared.series(
        f'SELECT count("dark_current") FROM "{db}"."autogen"."lsst.cp.dark"', db=db
    )
    assert n_rp[0]["values"][0][1] == 16 and n_default[0]["values"][0][1] == 16


def test_unknown_database_is_rejected_with_the_server_message(influxd_shared: InfluxD1) -> None:
    sink = sink_for(influxd_shared.url, "no-such-db", create_database=False)
    records = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    with pytest.raises(SinkRejected) as info:
        sink.write(records)
    assert info.value.sink == "influx-test"
    assert "404" in str(info.value) and "database not found" in str(info.value)


def test_missing_database_is_created_on_demand_by_default(influxd_shared: InfluxD1) -> None:
    """create_database unset: the first write's "database not found" creates it, once."""
    sink = sink_for(influxd_shared.url, "made-on-demand")
    records = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    assert sink.write(records).n_points > 0
    assert influxd_shared.count_points("lsst.cp.bias", "read_noise", db="made-on-demand") == 16


def test_field_type_conflict_is_rejected(influxd_shared: InfluxD1, influx_db: str) -> None:
    requests_ = __import__("requests")
    requests_.post(
        f"{influxd_shared.url}/write",
        params={"db": influx_db, "precision": "ms"},
        data='lsst.cp.bias,amp=C10 read_noise="text" 1763748000123',
        timeout=10,
    ).raise_for_status()
    records = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    with pytest.raises(SinkRejected, match="400"):
        sink_for(influxd_shared.url, influx_db).write(records)


def test_connection_refused_is_unavailable() -> None:
    sink = sink_for(f"http://127.0.0.1:{free_port()}", "x")
    records = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    with pytest.raises(SinkUnavailable, match="cannot connect"):
        sink.write(records)


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        sink = sink_for(url, "x", timeout_s=0.3)
        with pytest.raises(SinkUnavailable, match="timeout"):
            sink.write(night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False))


def test_bad_credentials_are_rejected_and_never_leak(
    influxd_auth: InfluxD1,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """(e) auth-enabled influxd: wrong password → SinkRejected naming the sink, no secret anywhere."""
    good, bad = "Adm1n-S3cret-pw", "Wr0ng-S3cret-pw"
    influxd_auth.create_admin("admin", good)
    influxd_auth.create_database("lsst.cp", auth=("admin", good))
    monkeypatch.setenv("INFLUX_USER", "admin")
    monkeypatch.setenv("INFLUX_PASSWORD", bad)
    cfg = InfluxDB1Config(
        name="sasquatch", type="influxdb1", url=influxd_auth.url, database="lsst.cp",
        username_env="INFLUX_USER", password_env="INFLUX_PASSWORD",
    )  # fmt: skip
    records = night_records(calib_types=["bias"], detectors=["R22_S11"])
    store.write_records(records, run_id="r")
    caplog.set_level(logging.DEBUG)
    sink = InfluxDB1Sink(cfg)
    with pytest.raises(SinkRejected) as info:
        sink.write(records)
    text = f"{info.value} {info.value!r} {info.value.args}"
    assert info.value.sink == "sasquatch" and "sink sasquatch" in str(info.value)
    assert "401" in text and "authorization failed" in text

    report = deliver(store, sink, batch_size=1000, sleep=lambda s: None)
    assert report.rejected and report.delivered == 0 and report.pending == len(records)
    assert "authorization failed" in (report.error or "")
    stored_error = store.sink_status()[0]["last_error"]
    for secret in (bad, good):
        assert secret not in text
        assert secret not in caplog.text
        assert secret not in (report.error or "")
        assert secret not in stored_error
    import base64

    assert base64.b64encode(f"admin:{bad}".encode()).decode() not in caplog.text

    # The right password goes through on the same server.
    monkeypatch.setenv("INFLUX_PASSWORD", good)
    ok = deliver(store, InfluxDB1Sink(cfg.model_validate(cfg.model_dump())), batch_size=1000)
    assert (ok.delivered, ok.pending, ok.error) == (len(records), 0, None)
    assert (
        influxd_auth.count_points("lsst.cp.bias", "run", db="lsst.cp", auth=("admin", good)) == 16
    )
    assert good not in caplog.text
