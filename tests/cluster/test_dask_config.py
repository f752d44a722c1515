"""The ``dask:`` configuration block, its legacy form, and what it asks of a cluster
(no scheduler needed: the Slurm job script is rendered by dask-jobqueue, not submitted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from servers import free_port

from calibmon.config import load_settings
from calibmon.errors import ConfigError
from calibmon.service.cluster import (
    DaskConfig,
    SlurmConfig,
    dask_config,
    open_dask_executor,
    slurm_job_script,
)

pytestmark = pytest.mark.xdist_group("cluster")

REPO = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, text: str):
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text(text)
    return load_settings(cfg)


def test_the_dask_block_is_read_and_validated_once(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        "executor: dask\ndask:\n  cluster: slurm\n  slurm:\n    partition: milano\n"
        "    account: rubin:commissioning\n    jobs: 3\n",
    )
    cfg = dask_config(s)
    assert cfg.cluster == "slurm" and cfg.slurm is not None
    assert (cfg.slurm.partition, cfg.slurm.account, cfg.slurm.jobs) == (
        "milano", "rubin:commissioning", 3,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dask:\n  clustr: local\n", "dask.clustr: unknown key"),
        (
            "dask:\n  cluster: slurm\n  slurm:\n    partiton: x\n",
            "dask.slurm.partiton: unknown key",
        ),
        ("dask:\n  cluster: address\n", "dask: Value error, cluster: address needs address"),
        ("dask:\n  cluster: kubernetes\n", "dask.cluster: Input should be 'local', 'address'"),
        ("dask:\n  cluster: local\n  slurm: {}\n", "slurm: keys given but cluster is 'local'"),
        ("dask:\n  cluster: address\n  address: 127.0.0.1:8786\n", "must look like tcp://"),
        ("dask:\n  cluster: slurm\n  slurm: {cores: 2, processes: 4}\n", "cannot exceed cores"),
    ],
)
def test_a_bad_dask_key_is_one_line_naming_it(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        _settings(tmp_path, text)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"config error in {tmp_path / 'calibmon.yaml'}: ")
    assert expected in msg


def test_legacy_dask_address_alone_means_cluster_address(tmp_path: Path) -> None:
    s = _settings(tmp_path, "executor: dask\ndask_address: tcp://10.0.0.5:8786\n")
    assert dask_config(s) == DaskConfig(cluster="address", address="tcp://10.0.0.5:8786")
    assert dask_config(_settings(tmp_path, "executor: dask\n")).cluster == "local"


def test_legacy_and_block_must_agree(tmp_path: Path) -> None:
    same = "dask_address: tcp://h:8786\ndask: {cluster: address, address: tcp://h:8786}\n"
    assert dask_config(_settings(tmp_path, same)).address == "tcp://h:8786"
    other = "dask_address: tcp://h:8786\ndask: {cluster: local}\n"
    with pytest.raises(
        ConfigError, match=r"dask_address tcp://h:8786 conflicts with dask\.cluster"
    ):
        dask_config(_settings(tmp_path, other))
    with pytest.raises(ConfigError, match=r"^config error: dask_address: .*tcp://"):
        dask_config(_settings(tmp_path, "dask_address: h:8786\n"))


def test_an_unreachable_scheduler_is_a_config_error_naming_the_address() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = DaskConfig(cluster="address", address=address, connect_timeout_s=1)
    with pytest.raises(ConfigError) as err, open_dask_executor(cfg):
        pass
    msg = str(err.value)
    assert msg.startswith(f"cannot reach dask scheduler at {address}: ")
    assert "\n" not in msg and msg.count(address) == 1


def test_the_slurm_job_script_carries_the_config_keys() -> None:
    cfg = SlurmConfig(
        partition="milano", account="rubin:commissioning", cores=8, processes=8,
        memory="16GiB", walltime="04:00:00", local_directory="/lscratch/calibmon",
        job_extra_directives=["--exclusive"], python="/sdf/group/rubin/calibmon/bin/python",
    )  # fmt: skip
    script = slurm_job_script(cfg)
    lines = script.splitlines()
    assert "#SBATCH -p milano" in lines
    assert "#SBATCH -A rubin:commissioning" in lines
    assert "#SBATCH -t 04:00:00" in lines
    assert "#SBATCH --cpus-per-task=8" in lines
    assert "#SBATCH --exclusive" in lines
    assert any(ln.startswith("#SBATCH --mem=") and ln.endswith("G") for ln in lines)
    worker = next(ln for ln in lines if "distributed.cli.dask_worker" in ln)
    assert worker.startswith("/sdf/group/rubin/calibmon/bin/python ")
    assert "--nworkers 8" in worker and "--nthreads 1" in worker
    assert "--local-directory /lscratch/calibmon" in worker


def test_the_shipped_slurm_example_is_a_valid_config(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("INFLUX_USER", "calibmon")
    monkeypatch.setenv("INFLUX_PASSWORD", "not-a-real-password")
    s = load_settings(REPO / "deploy" / "slurm" / "calibmon.yaml")
    cfg = dask_config(s)
    assert s.executor == "dask" and cfg.cluster == "slurm" and cfg.slurm is not None
    script = slurm_job_script(cfg.slurm)
    assert f"#SBATCH -p {cfg.slurm.partition or cfg.slurm.queue}" in script
    assert f"#SBATCH -A {cfg.slurm.account}" in script
    assert f"#SBATCH -t {cfg.slurm.walltime}" in script


def test_slurm_without_sbatch_is_one_config_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here: not a Slurm submit host
    expected = r"^config error: dask\.cluster slurm: sbatch is not on PATH"
    with (
        pytest.raises(ConfigError, match=expected),
        open_dask_executor(DaskConfig(cluster="slurm")),
    ):
        pass
