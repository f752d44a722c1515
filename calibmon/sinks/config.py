"""Configuration of remote time-series sinks (DESIGN.md §3 ``sinks:``, §5).

One pydantic model per sink type, joined in :data:`SinkConfig`, a union discriminated on
``type``::

    sinks:
      - name: sasquatch
        type: influxdb1                 # influxdb1 | influxdb2 | sasquatch_rest
        url: http://127.0.0.1:8086
        database: lsst.cp
        username_env: INFLUX_USER       # secrets come from the environment or a file,
        password_env: INFLUX_PASSWORD   # never from the YAML itself

Secrets are read once, when the model is validated (``*_env`` names an environment
variable, ``*_file`` a file whose stripped content is the secret), and kept as
:class:`~pydantic.SecretStr`. A named variable or file that is missing is a validation
error, so a bad deployment fails at start-up, not at the first push. Unknown keys (such as
``password:``) and URLs with user-info are refused.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
)

from calibmon.secrets import LoginFromEnv, TokenFromEnv, held_secrets

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
_NAMESPACE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


class _SinkBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=_NAME, description="unique sink name (outbox cursor key)")]
    url: str
    namespace: Annotated[str, Field(pattern=_NAMESPACE)] = "lsst.cp"
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    batch_size: Annotated[int, Field(gt=0, le=1_000_000)] = 5000
    # retries of one delivery call while the server is unavailable (calibmon.retry);
    # the next call (the service retries periodically, ``calibmon push``) starts afresh
    max_attempts: Annotated[int, Field(ge=1)] = 5
    backoff_s: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0]
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials must not be in the URL; use the *_env or *_file settings")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        return v.rstrip("/")

    def secret_values(self) -> list[str]:
        """Plain secret values of this sink, for :func:`calibmon.redact.redact`."""
        return held_secrets(self)


class InfluxDB1Config(_SinkBase, LoginFromEnv):
    """InfluxDB 1.x (and Sasquatch's InfluxDB Enterprise) via ``POST /write``."""

    type: Literal["influxdb1"]
    database: str = "lsst.cp"
    retention_policy: str | None = None
    precision: Literal["ms", "us", "ns"] = "ms"
    # True: CREATE DATABASE before the first write; None (default): only when a write is
    # answered "database not found" (then once, and retry); False: never.
    create_database: bool | None = None


class InfluxDB2Config(_SinkBase, TokenFromEnv):
    """InfluxDB 2.x/3.x (or any ``/api/v2/write`` server) via influxdb-client."""

    type: Literal["influxdb2"]
    org: str
    bucket: str = "lsst.cp"


class SasquatchRestConfig(_SinkBase, TokenFromEnv):
    """Sasquatch's Kafka REST proxy (Confluent REST v2, Avro embedded in JSON).

    ``url`` is the proxy's base, e.g. ``https://usdf-rsp-dev.slac.stanford.edu/sasquatch-rest-proxy``.
    ``timestamp_format`` must match the Telegraf connector's ``timestamp_format`` for the
    namespace: ``unix`` (Avro double, seconds — what analysis_tools sends), ``unix_ms`` or
    ``unix_us`` (Avro long).
    """

    type: Literal["sasquatch_rest"]
    timestamp_format: Literal["unix", "unix_ms", "unix_us"] = "unix"
    create_topics: bool = True
    partitions: Annotated[int, Field(gt=0)] = 1
    replication_factor: Annotated[int, Field(gt=0)] = 3
    batch_size: Annotated[int, Field(gt=0, le=1_000_000)] = 1000


SinkConfig = Annotated[
    InfluxDB1Config | InfluxDB2Config | SasquatchRestConfig, Field(discriminator="type")
]
"""One entry of ``sinks:`` in ``calibmon.yaml``."""

_ADAPTER: TypeAdapter[list[SinkConfig]] = TypeAdapter(list[SinkConfig])


def parse_sink_configs(data: object) -> list[SinkConfig]:
    """Validate a ``sinks:`` list (raises :class:`pydantic.ValidationError`), names unique."""
    sinks = _ADAPTER.validate_python(data)
    check_unique_names(sinks)
    return sinks


def check_unique_names(sinks: list[SinkConfig]) -> None:
    """Raise ``ValueError`` if two sinks share a name (the name keys the outbox cursor)."""
    seen: set[str] = set()
    for s in sinks:
        if s.name in seen:
            raise ValueError(f"sinks: name {s.name!r} is used twice")
        seen.add(s.name)


def secret_values(sinks: list[SinkConfig]) -> list[str]:
    """Every secret value of every sink (for the logging handler's redaction)."""
    return [v for s in sinks for v in s.secret_values()]


__all__ = [
    "InfluxDB1Config",
    "InfluxDB2Config",
    "SasquatchRestConfig",
    "SinkConfig",
    "check_unique_names",
    "parse_sink_configs",
    "secret_values",
]
