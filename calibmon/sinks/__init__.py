"""Remote time-series sinks fed by the outbox (DESIGN.md §1, §5).

``build_sink(cfg)`` turns one ``sinks:`` entry (:mod:`calibmon.sinks.config`) into a
:class:`~calibmon.sinks.base.Sink`; :mod:`calibmon.sinks.schema` maps records to points;
:func:`calibmon.redact.redact` keeps secrets out of messages.
"""

from calibmon.sinks.base import Ack, Sink
from calibmon.sinks.config import (
    InfluxDB1Config,
    InfluxDB2Config,
    SasquatchRestConfig,
    SinkConfig,
    parse_sink_configs,
)
from calibmon.sinks.registry import build_sink

__all__ = [
    "Ack",
    "InfluxDB1Config",
    "InfluxDB2Config",
    "SasquatchRestConfig",
    "Sink",
    "SinkConfig",
    "build_sink",
    "parse_sink_configs",
]
