"""Sasquatch REST proxy sink against a local validating stand-in (tests/servers.py)."""

from __future__ import annotations

import json
import logging

import pytest
from servers import KafkaRestProxy
from sink_factory import night_records

from calibmon.errors import SinkRejected, SinkUnavailable
from calibmon.sinks.config import SasquatchRestConfig
from calibmon.sinks.sasquatch_rest import SasquatchRestSink
from calibmon.sinks.schema import timestamp_ms
from calibmon.store.outbox import deliver
from calibmon.store.sqlite import Store

TOKEN = "s3cr3t-t0ken"


def rest_sink(
    proxy: KafkaRestProxy, monkeypatch: pytest.MonkeyPatch, token: str = TOKEN, **kw: object
) -> SasquatchRestSink:
    monkeypatch.setenv("SASQUATCH_TOKEN", token)
    cfg = SasquatchRestConfig(
        name="sasquatch-rest",
        type="sasquatch_rest",
        url=proxy.url,
        token_env="SASQUATCH_TOKEN",
        **kw,
    )
    return SasquatchRestSink(cfg)


def test_night_is_produced_as_valid_avro_per_topic(
    kafka_rest: KafkaRestProxy, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = night_records(calib_types=["bias", "flat"], detectors=["R22_S11", "R22_S12"])
    store.write_records(records, run_id="r1")
    report = deliver(store, rest_sink(kafka_rest, monkeypatch), batch_size=1000)
    assert (report.delivered, report.pending, report.error) == (len(records), 0, None)
    assert kafka_rest.errors == []
    topics = {p.topic for p in kafka_rest.produced}
    assert topics == {
        "lsst.cp.bias",
        "lsst.cp.bias_summary",
        "lsst.cp.flat",
        "lsst.cp.flat_summary",
    }
    assert sorted(set(kafka_rest.topics_created)) == sorted(topics)
    first = kafka_rest.produced[0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["Accept"] == "application/vnd.kafka.v2+json"
    assert first.schema["namespace"] == "lsst.cp" and first.schema["type"] == "record"

    got = {}
    for req in kafka_rest.produced:
        for value in req.records:
            got[(req.topic, value["detector"], value["amp"])] = value
    for r in records:
        topic = f"lsst.cp.{r.calib_type}" + ("" if r.level == "amp" else "_summary")
        value = got[(topic, "" if r.detector is None else str(r.detector), r.amp or "")]
        assert value[r.metric] == r.value
        assert value["timestamp"] == timestamp_ms(r.timestamp) / 1000
        assert value["level"] == r.level and value["instrument"] == "LSSTCam"
        assert value["physical_filter"] == r.physical_filter and value["detector_name"] == (
            r.detector_name or ""
        )
        assert value["run"] == "run-20251121" and value["n_exposures"] == 15
        assert value["exposures"] == ",".join(map(str, r.provenance.exposures))
        if r.stats is not None:
            assert value[f"{r.metric}_n"] == r.stats.n_points
            assert value[f"{r.metric}_sigma_mad"] == r.stats.sigma_mad
    # One topic per measurement; metric fields are optional (["null", T]) as Sasquatch
    # recommends, tags and provenance plain.
    bias_schema = next(p.schema for p in kafka_rest.produced if p.topic == "lsst.cp.bias")
    types = {f["name"]: f["type"] for f in bias_schema["fields"]}
    assert types["read_noise"] == ["null", "double"] and types["timestamp"] == "double"
    assert types["amp"] == "string" and types["n_exposures"] == "long"


def test_timestamp_in_microseconds_when_asked(
    kafka_rest: KafkaRestProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = rest_sink(kafka_rest, monkeypatch, timestamp_format="unix_us", create_topics=False)
    records = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    assert sink.write(records).n_points == 16
    (req,) = kafka_rest.produced
    assert {f["name"]: f["type"] for f in req.schema["fields"]}["timestamp"] == "long"
    assert req.records[0]["timestamp"] == 1763748000123000
    assert kafka_rest.topics_created == []


def test_points_with_different_metric_sets_share_one_valid_schema(
    kafka_rest: KafkaRestProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False)
    partial = [r for r in records if not (r.amp == "C10" and r.metric == "read_noise")]
    rest_sink(kafka_rest, monkeypatch).write(partial)
    assert kafka_rest.errors == []
    (req,) = kafka_rest.produced
    c10 = next(v for v in req.records if v["amp"] == "C10")
    assert c10["read_noise"] is None and c10["bias_level"] is not None


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (500, {"error_code": 50001, "message": "Kafka error"}, SinkUnavailable, "Kafka error"),
        (503, None, SinkUnavailable, "HTTP 503"),
        (429, {"message": "slow down"}, SinkUnavailable, "slow down"),
        (
            422,
            {"error_code": 42201, "message": "Schema being registered is incompatible"},
            SinkRejected,
            "incompatible",
        ),
        (
            404,
            {"error_code": 40403, "message": "Topic not found."},
            SinkRejected,
            "Topic not found",
        ),
        (
            200,
            {
                "offsets": [
                    {
                        "partition": 0,
                        "offset": None,
                        "error_code": 2,
                        "error": "leader not available",
                    }
                ]
            },
            SinkUnavailable,
            "leader not available",
        ),
        (
            200,
            {
                "offsets": [
                    {"partition": 0, "offset": None, "error_code": 1, "error": "record too large"}
                ]
            },
            SinkRejected,
            "record too large",
        ),
    ],
)
def test_proxy_answers_map_to_our_types(
    kafka_rest: KafkaRestProxy,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    body: object,
    error: type,
    text: str,
) -> None:
    kafka_rest.respond(status, body)
    sink = rest_sink(kafka_rest, monkeypatch)
    with pytest.raises(error, match=text) as info:
        sink.write(night_records(calib_types=["bias"], detectors=["R22_S11"], summaries=False))
    assert info.value.sink == "sasquatch-rest"


def test_wrong_token_is_rejected_and_not_shown(
    kafka_rest: KafkaRestProxy,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store.write_records(night_records(calib_types=["bias"], detectors=["R22_S11"]), run_id="r")
    report = deliver(
        store, rest_sink(kafka_rest, monkeypatch, token="Wrong-Token-999"), batch_size=100
    )
    assert report.rejected and "401" in (report.error or "")
    assert "Wrong-Token-999" not in caplog.text and "Wrong-Token-999" not in (report.error or "")
    assert kafka_rest.produced == []


def test_stand_in_refuses_a_bad_request(kafka_rest: KafkaRestProxy) -> None:
    """The stand-in really validates: a record missing a field or a bare union is refused."""
    import requests

    schema = {"type": "record", "namespace": "lsst.cp", "name": "bias", "fields": [
        {"name": "timestamp", "type": "double"}, {"name": "x", "type": ["null", "double"], "default": None}]}  # fmt: skip
    headers = {
        "Content-Type": "application/vnd.kafka.avro.v2+json",
        "Authorization": f"Bearer {TOKEN}",
    }
    for records in ([{"value": {"timestamp": 1.0}}], [{"value": {"timestamp": 1.0, "x": 2.0}}]):
        body = {"value_schema": json.dumps(schema), "records": records}
        r = requests.post(
            f"{kafka_rest.url}/topics/lsst.cp.bias", json=body, headers=headers, timeout=5
        )
        assert r.status_code == 422
    ok = {
        "value_schema": json.dumps(schema),
        "records": [{"value": {"timestamp": 1.0, "x": {"double": 2.0}}}],
    }
    assert requests.post(
        f"{kafka_rest.url}/topics/lsst.cp.bias", json=ok, headers=headers, timeout=5
    ).ok
    bad_type = {**ok, "records": [{"value": {"timestamp": "noon", "x": None}}]}
    assert (
        requests.post(
            f"{kafka_rest.url}/topics/lsst.cp.bias", json=bad_type, headers=headers, timeout=5
        ).status_code
        == 422
    )
    wrong_ct = requests.post(
        f"{kafka_rest.url}/topics/lsst.cp.bias",
        json=ok,
        headers={**headers, "Content-Type": "application/json"},
        timeout=5,
    )
    assert wrong_ct.status_code == 422
