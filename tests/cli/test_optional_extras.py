"""An optional dependency that is not installed is one line naming the extra, exit 2, no
traceback. Each case runs ``calibmon`` in a child process where the package is blocked
(``sys.modules[name] = None`` makes ``import name`` raise ImportError)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BUTLER_LINE = (
    "calibmon: the Butler commands need lsst-daf-butler, the optional extra: "
    "pip install 'calibmon[butler]'"
)


def _without(blocked: str, argv: list[str], prelude: str = "") -> subprocess.CompletedProcess:
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        f"{prelude}"
        "from calibmon.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def _one_line(p: subprocess.CompletedProcess, line: str) -> None:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [line]


def test_export_parquet_without_pyarrow(tmp_path: Path) -> None:
    p = _without("pyarrow", ["export", "--format", "parquet", "-o", str(tmp_path / "x.parquet"),
                             "--store", str(tmp_path / "cm.sqlite")])  # fmt: skip
    _one_line(p, "calibmon: export --format parquet needs pyarrow: pip install 'calibmon[parquet]'")
    assert not (tmp_path / "x.parquet").exists()


def test_export_parquet_with_pyarrow_still_works(tmp_path: Path) -> None:
    """The check refuses only a missing package (pyarrow is installed here)."""
    pytest.importorskip("pyarrow")
    from calibmon.cli import main

    out = tmp_path / "x.parquet"
    assert main(["export", "--format", "parquet", "-o", str(out),
                 "--store", str(tmp_path / "cm.sqlite")]) == 0  # fmt: skip
    assert out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--butler", "/repo/embargo", "--day-obs", "20251121"],
        ["calibs", "import", "--butler", "/repo/embargo", "--collections", "LSSTCam/calib"],
        ["calibs", "list", "--butler", "/repo/embargo", "--collections", "LSSTCam/calib",
         "--day-obs", "20251121"],
        ["calibs", "used", "x.fits", "--butler", "/repo/embargo"],
    ],
    ids=["run", "calibs-import", "calibs-list", "calibs-used"],
)  # fmt: skip
def test_butler_commands_without_lsst_daf_butler(tmp_path: Path, argv: list[str]) -> None:
    p = _without("lsst", [*argv, "--store", str(tmp_path / "cm.sqlite")])
    _one_line(p, BUTLER_LINE)


def test_slurm_cluster_without_dask_jobqueue(tmp_path: Path) -> None:
    """``executor: dask`` with ``dask.cluster: slurm`` (pyproject's ``slurm`` extra): the
    processing commands check for dask-jobqueue before any work. Until Settings has its
    ``dask`` model, the child wraps ``load`` to add it; with the model, a YAML file does."""
    from calibmon.config import Settings

    (tmp_path / "raw").mkdir()
    argv = ["run", "--input", str(tmp_path / "raw"), "--store", str(tmp_path / "cm.sqlite")]
    prelude = ""
    if "dask" in Settings.model_fields:
        cfg = tmp_path / "calibmon.yaml"
        cfg.write_text("executor: dask\ndask: {cluster: slurm}\n")
        argv += ["--config", str(cfg)]
    else:
        prelude = (
            "import types, calibmon.cli.common as common, calibmon.cli.run as run\n"
            "_load = common.load\n"
            "def load(args, **flags):\n"
            "    s = _load(args, **flags)\n"
            "    fields = {n: getattr(s, n) for n in type(s).model_fields}\n"
            "    fields.update(executor='dask', dask=types.SimpleNamespace(cluster='slurm'))\n"
            "    return types.SimpleNamespace(**fields, store_path=s.store_path,\n"
            "                                 secret_values=s.secret_values)\n"
            "run.load = load\n"
        )
    p = _without("dask_jobqueue", argv, prelude)
    _one_line(
        p,
        "calibmon: executor dask with dask.cluster slurm needs dask-jobqueue: "
        "pip install 'calibmon[slurm]'",
    )
