"""Sink type name → class: the one place that knows every concrete sink.

``build_sink(cfg)`` builds the sink of one ``sinks:`` entry. A new sink is one module
plus one line in :data:`SINK_TYPES`. :mod:`calibmon.sinks.base` (the seam) imports none
of the concrete sinks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from calibmon.plugins import build_by_type
from calibmon.sinks.influxdb1 import InfluxDB1Sink
from calibmon.sinks.influxdb2 import InfluxDB2Sink
from calibmon.sinks.sasquatch_rest import SasquatchRestSink

if TYPE_CHECKING:
    from calibmon.sinks.base import Sink
    from calibmon.sinks.config import SinkConfig

SINK_TYPES: dict[str, Callable[[Any], Sink]] = {
    "influxdb1": InfluxDB1Sink,
    "influxdb2": InfluxDB2Sink,
    "sasquatch_rest": SasquatchRestSink,
}


def build_sink(cfg: SinkConfig) -> Sink:
    """The sink for one ``sinks:`` entry."""
    return build_by_type(SINK_TYPES, cfg, "sink")
