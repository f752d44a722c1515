"""Grafana dashboards generated from the metric catalogue (see :mod:`calibmon.dashboards.build`).

``calibmon dashboards build [-o DIR]`` writes them; the committed copies live in
``dashboards/`` and ``deploy/grafana/`` provisions them.
"""

from calibmon.dashboards.build import build_all, dumps, write_all

__all__ = ["build_all", "dumps", "write_all"]
