"""The generated Grafana dashboards: committed JSON is current, and its structure is sound
(ids, grid, datasources, variables, thresholds from the catalogue, PromQL syntax)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from calibmon.catalogue import load_catalogue
from calibmon.dashboards import build

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "dashboards"
PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"
GRAFANA_MACROS = {"timeFilter", "__interval", "__range", "__rate_interval", "tag_amp",
                  "__all", "__url_time_range", "__data", "__value"}  # fmt: skip
PANEL_KEYS = {"id", "type", "title", "gridPos", "datasource", "targets", "fieldConfig",
              "options"}  # fmt: skip


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict]:
    return build.build_all()


def test_committed_json_is_what_the_generator_writes(dashboards) -> None:
    """Run `calibmon dashboards build` after changing the catalogue or the generator."""
    assert sorted(p.name for p in COMMITTED.glob("*.json")) == sorted(dashboards)
    for name, dash in dashboards.items():
        assert (COMMITTED / name).read_text(encoding="utf-8") == build.dumps(dash), name


def test_cli_build_writes_the_same_files(tmp_path, dashboards) -> None:
    from nightdata import cli_with_report

    from calibmon.cli import main

    with cli_with_report():
        assert main(["dashboards", "build", "-o", str(tmp_path)]) == 0
    for name, dash in dashboards.items():
        assert (tmp_path / name).read_text(encoding="utf-8") == build.dumps(dash)
        assert (tmp_path / name).stat().st_mode & 0o044  # readable by others (not 0600)


def test_dashboard_structure(dashboards) -> None:
    uids = set()
    for name, dash in dashboards.items():
        for key in ("uid", "title", "schemaVersion", "panels", "templating", "time", "tags"):
            assert key in dash, (name, key)
        assert dash["uid"] not in uids
        uids.add(dash["uid"])
        assert json.loads(build.dumps(dash)) == dash
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        ids = [p["id"] for p in build.iter_panels(dash)]
        assert len(ids) == len(set(ids)), name
        cells = set()
        for p in build.iter_panels(dash):
            g = p["gridPos"]
            assert {"h", "w", "x", "y"} <= set(g) and g["w"] >= 1 and g["h"] >= 1
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, (name, p["title"], "overlaps")
                    cells.add((x, y))
            if p["type"] == "row":
                continue
            assert set(p) >= PANEL_KEYS, (name, p["title"], PANEL_KEYS - set(p))
            assert p["targets"], (name, p["title"])
            ds_var = p["datasource"]["uid"].strip("${}")
            assert variables[ds_var]["type"] == "datasource"
            assert variables[ds_var]["query"] == p["datasource"]["type"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs))
            for t in p["targets"]:
                assert t["datasource"] == p["datasource"]
                text = t.get("query") or t.get("expr")
                assert text, (name, p["title"])
                if p["datasource"]["type"] == "influxdb":
                    assert "$timeFilter" in text, (name, p["title"])
                    assert t["rawQuery"] is True
                for var in re.findall(r"\$\{?(\w+)", text):
                    assert var in variables or var in GRAFANA_MACROS, (name, p["title"], var)
        for v in variables.values():
            if v["type"] == "query":
                assert v["datasource"]["uid"] == "${influx}"
                for var in re.findall(r"\$\{?(\w+)", v["query"]):
                    assert var in variables, (name, v["name"], var)


def test_required_template_variables(dashboards) -> None:
    want = {
        "calibmon-overview.json": {"instrument", "calib_type"},
        "calibmon-detector.json": {"instrument", "detector", "amp", "calib_type"},
        "calibmon-amp.json": {"instrument", "detector", "amp", "calib_type"},
        "calibmon-ptc.json": {"instrument", "detector", "amp"},
    }
    for name, names in want.items():
        got = {v["name"] for v in dashboards[name]["templating"]["list"]}
        assert names <= got, name
    amp_vars = {v["name"]: v for v in dashboards["calibmon-amp.json"]["templating"]["list"]}
    assert amp_vars["amp"]["multi"] is False  # one amp in the drill-down
    det_vars = {v["name"]: v for v in dashboards["calibmon-detector.json"]["templating"]["list"]}
    assert det_vars["amp"]["multi"] and det_vars["amp"]["includeAll"]


def test_every_metric_has_its_panels_and_catalogue_thresholds(dashboards) -> None:
    cat = load_catalogue()
    amp = {p["title"]: p for p in build.iter_panels(dashboards["calibmon-amp.json"])}
    det = {p["title"] for p in build.iter_panels(dashboards["calibmon-detector.json"])}
    ov = {p["title"] for p in build.iter_panels(dashboards["calibmon-overview.json"])}
    for m in cat:
        assert m.name in amp and f"{m.name} per amp" in det and m.name in ov, m.name
        steps = amp[m.name]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        values = {s["value"] for s in steps if s["value"] is not None}
        fixed = {x for t in m.thresholds if t.kind == "fixed" for x in (t.low, t.high)} - {None}
        assert values == fixed, m.name
        if fixed:
            assert (
                amp[m.name]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
            )
    rn = amp["read_noise"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert rn == [{"color": "green", "value": None}, {"color": "red", "value": 9.0}]
    gain = amp["gain"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in gain] == [None, 1.2, 2.0]


def test_panel_queries_follow_the_schema(dashboards) -> None:
    det = {p["title"]: p for p in build.iter_panels(dashboards["calibmon-detector.json"])}
    q = det["read_noise per amp"]["targets"][0]["query"]
    assert q == (
        'SELECT "read_noise" FROM "lsst.cp.bias" WHERE "instrument" =~ /^$instrument$/ AND '
        '"detector_name" =~ /^$detector$/ AND "amp" =~ /^$amp$/ AND $timeFilter GROUP BY "amp"'
    )
    ov = {p["title"]: p for p in build.iter_panels(dashboards["calibmon-overview.json"])}
    assert '"read_noise_sigma_mad"' in ov["read_noise"]["targets"][1]["query"]
    assert "\"level\" = 'camera'" in ov["read_noise"]["targets"][0]["query"]
    assert ov["Firing alerts"]["targets"][0]["expr"].startswith("sum(calibmon_alerts_firing)")


def test_promql_is_valid(dashboards, tmp_path) -> None:
    """Every PromQL expression parses (promtool check rules, Debian package prometheus)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus, see the Makefile)")
    rules = []
    for dash in dashboards.values():
        for p in build.iter_panels(dash):
            for t in p.get("targets", []):
                if "expr" in t:
                    expr = t["expr"].replace("$__rate_interval", "5m").replace("$__range", "1d")
                    rules.append({"record": f"calibmon:check_{len(rules)}", "expr": expr})
    assert len(rules) >= 12
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_health_dashboard_covers_the_service_metrics(dashboards) -> None:
    exprs = " ".join(
        t["expr"] for p in build.iter_panels(dashboards["calibmon-health.json"])
        for t in p.get("targets", [])
    )  # fmt: skip
    for metric in ("calibmon_job_runs_total", "calibmon_job_duration_seconds",
                   "calibmon_outbox_pending", "calibmon_sink_errors_total",
                   "calibmon_last_success_timestamp_seconds", "calibmon_alerts_firing"):  # fmt: skip
        assert metric in exprs, metric


def test_provisioning_matches_the_dashboards(dashboards) -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "calibmon.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    assert by_uid[build.INFLUX_DS_UID]["type"] == "influxdb"
    assert by_uid[build.INFLUX_DS_UID]["jsonData"]["dbName"] == "lsst.cp"
    assert by_uid[build.INFLUX_DS_UID]["jsonData"]["version"] == "InfluxQL"
    assert by_uid[build.PROM_DS_UID]["type"] == "prometheus"
    assert "password" not in by_uid[build.INFLUX_DS_UID]  # secrets via secureJsonData/env
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "calibmon.yaml").read_text())
    assert prov["providers"][0]["type"] == "file"
    for dash in dashboards.values():
        for v in dash["templating"]["list"]:
            if v["type"] == "datasource":
                assert v["current"]["value"] in by_uid


def test_interpolate_formats_like_grafana() -> None:
    q = 'SELECT "x" FROM "lsst.cp.$calib_type" WHERE "amp" =~ /^$amp$/ AND $timeFilter'
    got = build.interpolate(q, {"calib_type": "bias", "amp": ["C10", "C11"]},
                            time_from_ms=1000, time_to_ms=2000)  # fmt: skip
    assert got == ('SELECT "x" FROM "lsst.cp.bias" WHERE "amp" =~ /^(C10|C11)$/ AND '
                   "time >= 1000ms and time <= 2000ms")  # fmt: skip
    assert "${calib_type}_summary" not in build.interpolate(
        '"lsst.cp.${calib_type}_summary"', {"calib_type": "ptc"}, time_from_ms=0, time_to_ms=1
    )
