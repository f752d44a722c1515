"""deploy/kubernetes/dask-*.yaml: loaded with yaml and checked field by field (kubectl is
not available): the workers talk to the scheduler Service calibmon's config names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from calibmon.config import load_settings
from calibmon.service.cluster import dask_config

pytestmark = pytest.mark.xdist_group("cluster")

K8S = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def _docs(name: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all((K8S / name).read_text()) if d}


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    return spec["template"]["spec"]


def _calibmon_image() -> str:
    cron = _docs("cronjob.yaml")["CronJob"]
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]


def test_the_scheduler_deployment_and_service() -> None:
    docs = _docs("dask-scheduler.yaml")
    dep, svc = docs["Deployment"], docs["Service"]
    assert dep["spec"]["replicas"] == 1
    (c,) = _pod(dep)["containers"]
    assert c["image"] == _calibmon_image()
    assert c["command"] == ["dask"] and c["args"][0] == "scheduler"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert sorted(ports.values()) == [8786, 8787]
    assert "--port" in c["args"] and c["args"][c["args"].index("--port") + 1] == "8786"
    # the Service selects the scheduler pod and forwards both ports by name
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert {p["port"]: ports[p["targetPort"]] for p in svc["spec"]["ports"]} == {
        8786: 8786, 8787: 8787,
    }  # fmt: skip
    assert svc["metadata"]["namespace"] == dep["metadata"]["namespace"] == "calibmon"


def test_the_workers_use_the_scheduler_service_with_one_cpu_and_1_5_gib() -> None:
    service = _docs("dask-scheduler.yaml")["Service"]["metadata"]["name"]
    dep = _docs("dask-worker.yaml")["Deployment"]
    pod = _pod(dep)
    (c,) = pod["containers"]
    assert c["image"] == _calibmon_image()
    assert c["command"] == ["dask"] and c["args"][0] == "worker"
    assert c["args"][1] == f"tcp://{service}:8786"
    assert "--nthreads=1" in c["args"] and "--nworkers=1" in c["args"]
    res = c["resources"]
    assert res["requests"]["cpu"] == res["limits"]["cpu"] == "1"
    assert res["requests"]["memory"] == res["limits"]["memory"] == "1.5Gi"
    assert "--memory-limit=1.5GiB" in c["args"]
    # workers read the raws themselves: same claim, same path as the calibmon pod
    cron_pod = _docs("cronjob.yaml")["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    raw_mount = {m["name"]: m for m in cron_pod["containers"][0]["volumeMounts"]}["raw"]
    worker_mount = {m["name"]: m for m in c["volumeMounts"]}["raw"]
    assert worker_mount["mountPath"] == raw_mount["mountPath"]
    claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
    cron_claims = {v["name"]: v.get("persistentVolumeClaim") for v in cron_pod["volumes"]}
    assert claims["raw"]["claimName"] == cron_claims["raw"]["claimName"]


def test_calibmon_config_points_at_the_scheduler_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFLUX_USER", "calibmon")
    monkeypatch.setenv("INFLUX_PASSWORD", "not-a-real-password")
    service = _docs("dask-scheduler.yaml")["Service"]["metadata"]["name"]
    maps = {
        d["metadata"]["name"]: d["data"]
        for d in yaml.safe_load_all((K8S / "configmap.yaml").read_text())
        if d and d["kind"] == "ConfigMap"
    }
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text(maps["calibmon-config"]["calibmon.yaml"])
    settings = load_settings(cfg)
    assert settings.executor == "dask"
    dask = dask_config(settings)
    assert (dask.cluster, dask.address) == ("address", f"tcp://{service}:8786")
