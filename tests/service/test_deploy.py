"""deploy/: Prometheus rules checked and unit-tested by promtool; the Kubernetes, Helm,
systemd and cron files agree with the schedules and the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from calibmon.config import load_settings
from calibmon.service.schedules import JobSpec, load_schedules

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMTOOL = shutil.which("promtool") or (
    "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
)


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)"
)
@pytest.mark.parametrize("command", [["check", "rules", "calibmon-rules.yml"],
                                     ["test", "rules", "calibmon-rules.test.yml"]])  # fmt: skip
def test_promtool_accepts_and_tests_the_rules(command: list[str]) -> None:
    proc = subprocess.run([PROMTOOL, *command], cwd=DEPLOY / "prometheus", capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_rules_cover_the_service_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "calibmon-rules.yml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    for metric in ("calibmon_job_runs_total", "calibmon_last_success_timestamp_seconds",
                   "calibmon_outbox_pending", "calibmon_sink_errors_total"):  # fmt: skip
        assert metric in exprs


def _jobs_from(mapping: dict[str, object]) -> dict[str, JobSpec]:
    out = {}
    for text_or_obj in mapping.values():
        data = yaml.safe_load(text_or_obj) if isinstance(text_or_obj, str) else text_or_obj
        job = JobSpec.model_validate(data)
        out[job.name] = job
    return out


def _comparable(job: JobSpec) -> dict[str, object]:
    return job.model_dump(exclude={"description"})


@pytest.fixture
def sink_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example configs name INFLUX_USER/INFLUX_PASSWORD; validation wants them set."""
    monkeypatch.setenv("INFLUX_USER", "calibmon")
    monkeypatch.setenv("INFLUX_PASSWORD", "not-a-real-password")


def test_kubernetes_manifests_parse_and_match_the_schedules(
    tmp_path: Path, sink_secrets: None
) -> None:
    docs = [d for f in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]  # fmt: skip
    kinds = {d["kind"]: d for d in docs}
    assert {"ConfigMap", "Deployment", "CronJob", "Service", "PersistentVolumeClaim"} <= set(kinds)

    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 120
    container = pod["containers"][0]
    assert container["args"][0] == "serve"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    cron = kinds["CronJob"]
    assert cron["spec"]["schedule"] == "30 12 * * *"
    script = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "calibmon dayobs --previous" in script and "calibmon run" in script

    maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    shipped = {j.name: _comparable(j) for j in load_schedules(REPO / "schedules")}
    in_cluster = {n: _comparable(j) for n, j in _jobs_from(maps["calibmon-schedules"]).items()}
    assert in_cluster == shipped

    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text(maps["calibmon-config"]["calibmon.yaml"])
    settings = load_settings(cfg)
    assert str(settings.store) == "/var/lib/calibmon/calibmon.sqlite"
    assert str(settings.schedules_dir) == "/etc/calibmon/schedules"


def test_helm_values_hold_valid_config_and_the_shipped_schedules(
    tmp_path: Path, sink_secrets: None
) -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["mode"] in ("serve", "cronjob")
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text(yaml.safe_dump(values["config"]))
    load_settings(cfg)
    shipped = {j.name: _comparable(j) for j in load_schedules(REPO / "schedules")}
    assert {n: _comparable(j) for n, j in _jobs_from(values["schedules"]).items()} == shipped


def test_cron_and_systemd_run_the_previous_day_obs() -> None:
    cron = (DEPLOY / "cron" / "calibmon").read_text()
    lines = [
        line
        for line in cron.splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(lines) == 1
    fields = lines[0].split(None, 6)
    assert fields[:5] == ["30", "12", "*", "*", "*"] and fields[5] == "calibmon"
    assert '--day-obs "$(calibmon dayobs --previous)"' in fields[6]
    assert "%" not in fields[6]  # cron would cut the line there

    run = (DEPLOY / "systemd" / "calibmon-run.service").read_text()
    assert "$$(/opt/calibmon/bin/calibmon dayobs --previous)" in run
    assert "SuccessExitStatus=1" in run
    timer = (DEPLOY / "systemd" / "calibmon-run.timer").read_text()
    assert "OnCalendar=*-*-* 12:30:00 UTC" in timer and "Persistent=true" in timer
    serve = (DEPLOY / "systemd" / "calibmon.service").read_text()
    assert "calibmon serve" in serve and "KillMode=mixed" in serve


def test_dockerfile_runs_calibmon_as_pid_1_with_the_data_files() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "pip install ." in text
    assert 'ENTRYPOINT ["calibmon"]' in text  # exec form: SIGTERM reaches calibmon
    assert "COPY metrics" in text and "COPY schedules" in text
