"""Sasquatch REST sink: Kafka REST proxy (Confluent REST API v2) with Avro embedded in JSON.

What this follows (facts from Sasquatch's user guide "Kafka REST Proxy" and "Avro schemas"
pages, and from analysis_tools' ``SasquatchDispatcher``):

- one Kafka topic per measurement, named ``<namespace>.<name>`` — the Avro schema's
  ``namespace`` + ``name`` give the same fully qualified name, which Sasquatch's Telegraf
  connector uses as the InfluxDB measurement, so ``lsst.cp.bias`` in Kafka lands as
  measurement ``lsst.cp.bias`` in database ``lsst.cp`` (DESIGN §5);
- ``POST {url}/topics/{topic}`` with ``Content-Type: application/vnd.kafka.avro.v2+json``,
  ``Accept: application/vnd.kafka.v2+json``, ``Authorization: Bearer <token>`` and body
  ``{"value_schema": "<Avro schema as a JSON string>", "records": [{"value": {...}}, ...]}``;
  the proxy registers the schema with the Schema Registry (or checks its compatibility);
- topics may be created first through the v3 API: ``GET {url}/v3/clusters`` →
  ``data[0].cluster_id``, then ``POST {url}/v3/clusters/{id}/topics`` with ``topic_name``,
  ``partitions_count``, ``replication_factor``; a 400 means it exists already;
- a ``timestamp`` field: Avro ``double`` in Unix seconds (``unix``, as analysis_tools sends),
  or ``long`` in ms/µs (``unix_ms``/``unix_us``), to match the connector's
  ``timestamp_format``;
- Sasquatch's convention for optional fields: union ``["null", T]`` with ``default: null``,
  values written in Avro-JSON form (``{"double": 5.43}``); its Telegraf connectors read
  unions in ``nullable`` mode (field name unchanged, nulls dropped). Every metric and
  statistic field is optional like this, so points of one topic with different metric
  sets share one schema, and adding a metric later is a compatible schema change;
- tags are plain string fields (``""`` when missing, as Sasquatch asks) that the connector
  is told to treat as tags: ``instrument, detector, detector_name, amp, level,
  physical_filter, vendor``.

A produce response is 200 with one ``offsets`` entry per record; an entry with an
``error_code`` (1 non-retriable, 2 retriable) fails the batch. A batch spanning several
topics is several POSTs: if a later one fails the whole batch stays pending, and the
re-sent points overwrite the same InfluxDB points (same tags and time).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import requests

from calibmon.errors import SinkRejected, SinkUnavailable
from calibmon.http import http_request, status_is_transient
from calibmon.records import MetricRecord
from calibmon.sinks.base import Ack
from calibmon.sinks.common import MAX_MESSAGE_CHARS, ConfiguredSink
from calibmon.sinks.config import SasquatchRestConfig
from calibmon.sinks.schema import PROVENANCE_FIELDS, TAG_KEYS, MetricPoint, build_points

AVRO_CONTENT_TYPE = "application/vnd.kafka.avro.v2+json"
KAFKA_ACCEPT = "application/vnd.kafka.v2+json"
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIMESTAMP_TYPE = {"unix": "double", "unix_ms": "long", "unix_us": "long"}


def _timestamp_value(time_ms: int, fmt: str) -> float | int:
    if fmt == "unix":
        return time_ms / 1000.0
    if fmt == "unix_ms":
        return time_ms
    return time_ms * 1000


def avro_payload(
    topic: str, namespace: str, points: Sequence[MetricPoint], timestamp_format: str = "unix"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Avro schema (as a dict) and the ``records`` list for ``points`` of one topic.

    Raises ``ValueError`` if the topic or a field is not a valid Avro name.
    """
    prefix = namespace + "."
    if not topic.startswith(prefix) or not _AVRO_NAME.match(topic[len(prefix) :]):
        raise ValueError(f"topic {topic!r} is not '{namespace}.<avro name>'")
    optional: dict[str, str] = {}
    for p in points:
        for k, v in p.fields.items():
            if k in PROVENANCE_FIELDS or k in optional:
                continue
            if not _AVRO_NAME.match(k):
                raise ValueError(f"field {k!r} is not a valid Avro name")
            optional[k] = "long" if isinstance(v, int) else "double"
    fields: list[dict[str, Any]] = [
        {"name": "timestamp", "type": _TIMESTAMP_TYPE[timestamp_format]},
    ]
    fields += [{"name": t, "type": "string", "default": ""} for t in TAG_KEYS]
    for name in PROVENANCE_FIELDS:
        avro_type = "long" if name == "n_exposures" else "string"
        fields.append(
            {"name": name, "type": avro_type, "default": 0 if avro_type == "long" else ""}
        )
    fields += [
        {"name": k, "type": ["null", optional[k]], "default": None} for k in sorted(optional)
    ]
    schema = {
        "type": "record",
        "namespace": namespace,
        "name": topic[len(prefix) :],
        "fields": fields,
    }
    records = []
    for p in points:
        value: dict[str, Any] = {"timestamp": _timestamp_value(p.time_ms, timestamp_format)}
        value.update(p.tags)
        for name in PROVENANCE_FIELDS:
            v = p.fields.get(name)
            value[name] = (0 if name == "n_exposures" else "") if v is None else v
        for k, avro_type in optional.items():
            v = p.fields.get(k)
            if v is None:
                value[k] = None
            else:
                value[k] = {avro_type: float(v) if avro_type == "double" else int(v)}
        records.append({"value": value})
    return schema, records


class SasquatchRestSink(ConfiguredSink):
    """Sends records to Sasquatch through its Kafka REST proxy."""

    def __init__(
        self, cfg: SasquatchRestConfig, *, session: requests.Session | None = None
    ) -> None:
        super().__init__(cfg)
        self._cfg = cfg
        self._session = session or requests.Session()
        self._auth_headers: dict[str, str] = {}
        if cfg.token is not None:
            self._auth_headers["Authorization"] = f"Bearer {cfg.token.get_secret_value()}"
        self._cluster_id: str | None = None
        self._topics_ready: set[str] = set()

    # -- Sink ----------------------------------------------------------------------------
    def write(self, batch: Sequence[MetricRecord]) -> Ack:
        t0 = time.perf_counter()
        if not batch:
            return Ack(0, 0.0)
        by_topic: dict[str, list[MetricPoint]] = {}
        try:
            for p in build_points(batch, self._cfg.namespace):
                by_topic.setdefault(p.measurement, []).append(p)
            payloads = {
                topic: avro_payload(topic, self._cfg.namespace, pts, self._cfg.timestamp_format)
                for topic, pts in by_topic.items()
            }
        except ValueError as exc:
            raise SinkRejected(self.name, f"cannot encode batch: {exc}") from exc
        n_points = 0
        for topic, (schema, records) in payloads.items():
            if self._cfg.create_topics:
                self._ensure_topic(topic)
            body = json.dumps({"value_schema": json.dumps(schema), "records": records})
            resp = self._request(
                "POST",
                f"/topics/{topic}",
                data=body.encode(),
                headers={"Content-Type": AVRO_CONTENT_TYPE, "Accept": KAFKA_ACCEPT},
            )
            if not resp.ok:
                self._raise_for(resp, f"produce to {topic}")
            self._check_offsets(resp, topic, len(records))
            n_points += len(records)
        return Ack(n_points, time.perf_counter() - t0)

    def close(self) -> None:
        self._session.close()

    # -- topics --------------------------------------------------------------------------
    def _ensure_topic(self, topic: str) -> None:
        if topic in self._topics_ready:
            return
        if self._cluster_id is None:
            resp = self._request("GET", "/v3/clusters", headers={"Accept": "application/json"})
            if not resp.ok:
                self._raise_for(resp, "list clusters")
            try:
                self._cluster_id = str(resp.json()["data"][0]["cluster_id"])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise SinkRejected(self.name, "list clusters: no cluster_id in answer") from exc
        resp = self._request(
            "POST",
            f"/v3/clusters/{self._cluster_id}/topics",
            json={
                "topic_name": topic,
                "partitions_count": self._cfg.partitions,
                "replication_factor": self._cfg.replication_factor,
            },
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        # 400/409: the topic exists already (what the v3 API answers, as analysis_tools relies on).
        if not resp.ok and resp.status_code not in (400, 409):
            self._raise_for(resp, f"create topic {topic}")
        self._topics_ready.add(topic)

    # -- helpers -------------------------------------------------------------------------
    def _check_offsets(self, resp: requests.Response, topic: str, n_records: int) -> None:
        try:
            offsets = resp.json().get("offsets")
        except (ValueError, AttributeError):
            offsets = None
        if not isinstance(offsets, list):
            return  # a 2xx without per-record detail: the proxy took the whole request
        failed = [o for o in offsets if isinstance(o, dict) and o.get("error_code") is not None]
        if not failed:
            return
        first = failed[0]
        msg = self._redact(
            f"produce to {topic}: {len(failed)} of {n_records} records failed: "
            f"error_code {first.get('error_code')}: {first.get('error') or ''}"[:MAX_MESSAGE_CHARS]
        )
        if any(o.get("error_code") == 2 for o in failed):
            raise SinkUnavailable(self.name, msg)
        raise SinkRejected(self.name, msg)

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self._auth_headers, **kwargs.pop("headers", {})}
        return http_request(
            self._session, method, self._cfg.url + path, self._cfg.timeout_s, self._redact,
            lambda msg: SinkUnavailable(self.name, msg), headers=headers, **kwargs,
        )  # fmt: skip

    def _raise_for(self, resp: requests.Response, what: str) -> NoReturn:
        text = ""
        try:
            body = resp.json()
            if isinstance(body, dict):
                text = str(body.get("message") or body.get("error") or "")
                if body.get("error_code") is not None:
                    text = f"error_code {body['error_code']}: {text}"
        except ValueError:
            pass
        text = (text or resp.text.strip() or resp.reason or "")[:MAX_MESSAGE_CHARS]
        msg = self._redact(f"{what}: HTTP {resp.status_code}: {text}")
        if status_is_transient(resp.status_code):
            raise SinkUnavailable(self.name, msg)
        raise SinkRejected(self.name, msg)
