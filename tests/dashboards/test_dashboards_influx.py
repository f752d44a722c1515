"""Every dashboard query runs against a real influxd holding a processed simulated night.

The night is the shared ``small_night`` (R22_S11 e2v + R01_S01 ITL, with a PTC ramp)
processed by calibmon's own pipeline into a store; metrics the pipeline does not measure
yet are added as realistic synthetic records (``nightdata``) so that every panel has data.
The store is delivered to influxd through the project's InfluxDB 1.x sink and outbox, then
each panel's InfluxQL is run with ``$timeFilter`` covering the night and the template
variables set to real values: each must return data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from nightdata import night_records, write_night
from servers import InfluxD1, ServerMissing

from calibmon.catalogue import load_catalogue
from calibmon.config import load_settings
from calibmon.dashboards import build
from calibmon.records import parse_iso_utc
from calibmon.service.run import run_directory
from calibmon.sinks import build_sink, parse_sink_configs
from calibmon.store import frames
from calibmon.store.outbox import deliver
from calibmon.store.sqlite import Store

pytestmark = pytest.mark.server

DAY = "20251121"
DB = "lsst.cp"
DETECTORS = ("R22_S11", "R01_S01")


class Night:
    def __init__(self, server: InfluxD1, store_path: Path, t0_ms: int, t1_ms: int,
                 calib_types: list[str], pipeline_metrics: set[str]) -> None:  # fmt: skip
        self.server = server
        self.store_path = store_path
        self.t0_ms, self.t1_ms = t0_ms, t1_ms
        self.calib_types = calib_types
        self.pipeline_metrics = pipeline_metrics

    def run(self, query: str, **variables) -> list[dict]:
        q = build.interpolate(query, variables, time_from_ms=self.t0_ms, time_to_ms=self.t1_ms)
        return self.server.series(q, db=DB)


@pytest.fixture(scope="module")
def night(small_night: Path, tmp_path_factory) -> Iterator[Night]:
    try:
        server = InfluxD1(tmp_path_factory.mktemp("influxd-dash"))
    except ServerMissing as exc:  # pragma: no cover - depends on the machine
        pytest.skip(str(exc))
    server.start()
    try:
        path = tmp_path_factory.mktemp("dash-store") / "calibmon.sqlite"
        settings = load_settings(None, store=path, executor="serial")
        with Store(path) as store:
            summary = run_directory(small_night, settings, store, day_obs=DAY)
            assert summary.n_records > 0 and summary.ok
            produced = {r[0] for r in store.query("SELECT DISTINCT metric FROM records")}
            missing = [m.name for m in load_catalogue() if m.name not in produced]
            if missing:
                write_night(store, night_records(DAY, DETECTORS, metrics=missing), DAY)
            (cfg,) = parse_sink_configs([{"name": "influx", "type": "influxdb1",
                                          "url": server.url, "database": DB,
                                          "create_database": True}])  # fmt: skip
            sink = build_sink(cfg)
            report = deliver(store, sink, max_attempts=1)
            sink.close()
            assert store.pending_count("influx") == 0, report
            stamps = [r[0] for r in store.query("SELECT timestamp FROM records")]
            types = sorted({r[0] for r in store.query("SELECT DISTINCT calib_type FROM records")})
        t = sorted(parse_iso_utc(s).timestamp() for s in stamps)
        yield Night(server, path, int(t[0] * 1000) - 3_600_000, int(t[-1] * 1000) + 3_600_000,
                    types, produced)  # fmt: skip
    finally:
        server.stop()


def variables_for(dash_name: str) -> dict:
    multi_amp = dash_name in ("calibmon-detector.json", "calibmon-ptc.json")
    return {
        "instrument": "LSSTCam",
        "detector": "R22_S11",
        "amp": ["C10", "C11", "C07"] if multi_amp else "C10",
    }


def influx_targets():
    for name, dash in build.build_all().items():
        for panel in build.iter_panels(dash):
            for t in panel.get("targets", []):
                if t.get("datasource", {}).get("type") == "influxdb":
                    yield pytest.param(name, panel["title"], t["refId"], t["query"],
                                       id=f"{name[9:-5]}:{panel['title']}:{t['refId']}")  # fmt: skip


def test_the_night_used_the_pipeline(night: Night) -> None:
    assert {"read_noise", "bias_level"} <= night.pipeline_metrics
    assert set(night.calib_types) == {"bias", "dark", "flat", "ptc", "defects", "verify"}


@pytest.mark.parametrize(("dash", "title", "ref", "query"), list(influx_targets()))
def test_every_panel_query_returns_data(night: Night, dash, title, ref, query) -> None:
    calib_types = night.calib_types if "calib_type" in query else [None]
    for ct in calib_types:
        variables = variables_for(dash)
        if ct:
            variables["calib_type"] = ct
        series = night.run(query, **variables)
        assert series, f"{dash} / {title} / {ref} ({ct}): no data for\n{query}"
        values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
        assert values, f"{dash} / {title} / {ref} ({ct}): only nulls"


def test_template_variable_queries(night: Night) -> None:
    """The variables' own queries list the instrument, detectors, amps and calib types."""
    for name, dash in build.build_all().items():
        for v in dash["templating"]["list"]:
            if v["type"] != "query":
                continue
            series = night.run(v["query"], instrument="LSSTCam", detector="R22_S11")
            values = {row[-1] if len(row) > 1 else row[0] for s in series for row in s["values"]}
            if v["regex"]:
                rx = re.compile(v["regex"].strip("/"))
                values = {m.group(1) for x in values if (m := rx.match(x))}
            want = {
                "instrument": {"LSSTCam"},
                "detector": set(DETECTORS),
                "amp": {f"C{r}{i}" for r in "01" for i in range(8)},
                "calib_type": set(night.calib_types),
            }[v["name"]]
            assert values == want, (name, v["name"], values)


def test_influx_frame_matches_the_store(night: Night) -> None:
    """The notebook's two paths give the same numbers: store → frame, influxd → influx_frame."""
    q = frames.influxql_query(metric="read_noise", detector_name="R22_S11", since=DAY)
    got = frames.influx_frame(night.server.url, DB, q)
    with Store(night.store_path) as store:
        want = frames.frame(store, metric="read_noise", detector_name="R22_S11", level="amp",
                            since=DAY)  # fmt: skip
    assert len(got) == len(want) == 16
    g = got.set_index("amp")["read_noise"].sort_index()
    w = want.set_index("amp")["value"].sort_index()
    np.testing.assert_allclose(g.to_numpy(), w.to_numpy(), rtol=1e-12)
    assert (got["time"].dt.tz is not None) and set(got["detector_name"]) == {"R22_S11"}
    assert set(got["run"]) == set(want["run"])
    summary = frames.influx_frame(night.server.url, DB, frames.influxql_query(
        metric="read_noise", level="camera", instrument="LSSTCam"))  # fmt: skip
    assert len(summary) == 1 and summary["read_noise_n"].iloc[0] == 32


def test_influx_frame_reports_statement_errors(night: Night) -> None:
    with pytest.raises(RuntimeError, match=r"InfluxQL error|HTTP 400"):
        frames.influx_frame(night.server.url, DB, 'SELECT FROM "nothing"')
