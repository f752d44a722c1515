"""Where ``executor: dask`` runs: a local cluster, an existing scheduler, or Slurm jobs.

The configuration (:class:`calibmon.config.DaskConfig`, the ``dask:`` key) is validated
once with the rest of the settings; :func:`dask_config` folds the older top-level
``dask_address`` key into it, and :func:`open_dask_executor` turns it into a
``concurrent.futures.Executor`` (``Client.get_executor()``) for the pipeline, closing
client and cluster on exit.

- ``local``: a ``LocalCluster`` of ``workers`` single-threaded processes on this machine.
- ``address``: an existing scheduler (``dask scheduler`` on a head node, the Kubernetes
  Service of deploy/kubernetes/dask-scheduler.yaml); unreachable within
  ``connect_timeout_s`` is one :class:`ConfigError` line naming the address (exit 2).
- ``slurm``: ``dask_jobqueue.SLURMCluster`` asks Slurm for ``slurm.jobs`` worker jobs
  (USDF, deploy/slurm/).

distributed logs through its own stderr handler (not calibmon's, so neither JSON nor
redacted); unless ``debug`` its loggers are set to ERROR here, in this process and in the
worker processes a local cluster spawns, and its warnings are ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from pydantic import ValidationError

from calibmon.config import DaskConfig, Settings, SlurmConfig
from calibmon.errors import ConfigError
from calibmon.pipeline import keep_freed_memory, make_executor

log = logging.getLogger(__name__)

# Loggers distributed (and the libraries under it) configure with their own handlers.
_DASK_LOGGERS = ("distributed", "dask", "dask_jobqueue", "tornado", "bokeh")

__all__ = [
    "DaskConfig",
    "SlurmConfig",
    "dask_config",
    "keep_freed_memory_on_workers",
    "open_dask_executor",
    "slurm_cluster_kwargs",
    "slurm_job_script",
]


def dask_config(settings: Settings) -> DaskConfig:
    """The ``dask:`` block, or one made from the legacy ``dask_address`` key.

    ``dask_address`` alone means ``cluster: address``; neither means ``cluster: local``;
    both must agree (same address, ``cluster: address``), else :class:`ConfigError`.
    """
    legacy = settings.dask_address
    if settings.dask is not None:
        cfg = settings.dask
        if legacy and (cfg.cluster != "address" or cfg.address != legacy):
            raise ConfigError(
                f"config error: dask_address {legacy} conflicts with dask.cluster "
                f"{cfg.cluster} {cfg.address or ''}".rstrip()
                + "; keep one of them"
            )
        return cfg
    if legacy:
        try:
            return DaskConfig(cluster="address", address=legacy)
        except ValidationError as exc:
            msg = exc.errors(include_input=False, include_url=False)[0]["msg"]
            raise ConfigError(f"config error: dask_address: {msg}") from None
    return DaskConfig()


def slurm_cluster_kwargs(cfg: SlurmConfig) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for these config keys.

    ``memory`` is per job (split between its ``processes`` workers by dask-jobqueue);
    workers are single-threaded processes (the science holds the GIL in numpy loops);
    the scheduler runs in this process without a dashboard.
    """
    kw: dict[str, Any] = {
        "cores": cfg.cores,
        "processes": cfg.processes,
        "memory": cfg.memory,
        "walltime": cfg.walltime,
        "job_name": "calibmon-dask",
        "scheduler_options": {"dashboard_address": None},
    }
    if cfg.queue or cfg.partition:
        kw["queue"] = cfg.queue or cfg.partition
    if cfg.account:
        kw["account"] = cfg.account
    if cfg.job_extra_directives:
        kw["job_extra_directives"] = list(cfg.job_extra_directives)
    if cfg.local_directory:
        kw["local_directory"] = cfg.local_directory
    if cfg.log_directory:
        kw["log_directory"] = cfg.log_directory
    if cfg.python:
        kw["python"] = cfg.python
    return kw


def slurm_job_script(cfg: SlurmConfig) -> str:
    """The sbatch script dask-jobqueue would submit for one worker job (nothing submitted)."""
    from dask_jobqueue import SLURMCluster

    with _quiet_dask(debug=False):
        cluster = SLURMCluster(**slurm_cluster_kwargs(cfg))
        try:
            return cluster.job_script()
        finally:
            cluster.close()


class _KeepFreedMemory:
    """Worker plugin: the pipeline's glibc set-up on every worker, joining later too."""

    name = "calibmon-keep-freed-memory"

    def setup(self, worker: Any) -> None:
        keep_freed_memory()


def keep_freed_memory_on_workers(client: Any) -> None:
    """Run the pipeline's glibc set-up (:func:`keep_freed_memory`) on every worker of
    ``client``'s cluster, those joining later included (a worker plugin)."""
    from distributed import WorkerPlugin

    plugin = type("KeepFreedMemory", (_KeepFreedMemory, WorkerPlugin), {})()
    client.register_plugin(plugin)


def open_executor(settings: Settings) -> contextlib.AbstractContextManager[Executor]:
    """The executor the settings name, as a context manager that closes it: the process pool
    or serial executor of the pipeline, or a dask cluster's (``dask:`` block, or the legacy
    ``dask_address``) through :func:`open_dask_executor`. The one place ``calibmon run`` and
    ``calibmon serve`` get their executor."""
    if settings.executor == "dask":
        return open_dask_executor(dask_config(settings), settings.workers)
    return make_executor(settings.executor, settings.workers)


@contextlib.contextmanager
def open_dask_executor(
    cfg: DaskConfig, workers: int | None = None, *, debug: bool | None = None
) -> Iterator[Executor]:
    """Yield an Executor on the configured dask cluster; close client and cluster on exit.

    ``workers``: processes of a ``local`` cluster (default: CPU count); ignored otherwise.
    ``debug``: let distributed log at DEBUG (default: when the root logger is at DEBUG,
    i.e. ``--debug``), else only its errors.
    Raises :class:`ConfigError` (one line, naming the address) when the scheduler cannot
    be reached within ``cfg.connect_timeout_s`` seconds.
    """
    from distributed import Client

    if debug is None:
        debug = logging.getLogger().isEnabledFor(logging.DEBUG)
    with _quiet_dask(debug), contextlib.ExitStack() as stack:
        cluster: Any = None
        if cfg.cluster == "address":
            client = _connect(Client, str(cfg.address), cfg.connect_timeout_s)
        elif cfg.cluster == "slurm":
            slurm_cluster = _slurm_cluster_class()
            assert cfg.slurm is not None  # DaskConfig fills it in
            cluster = slurm_cluster(**slurm_cluster_kwargs(cfg.slurm))
            stack.callback(_close, cluster)
            cluster.scale(jobs=cfg.slurm.jobs)
            client = Client(cluster, set_as_default=False)
        else:
            from distributed import LocalCluster

            cluster = LocalCluster(
                n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                processes=True, dashboard_address=None,
            )  # fmt: skip
            stack.callback(_close, cluster)
            client = Client(cluster, set_as_default=False)
        stack.callback(_close, client)
        keep_freed_memory_on_workers(client)
        executor = client.get_executor(pure=False)
        stack.enter_context(executor)
        yield executor


def _slurm_cluster_class() -> Any:
    """``dask_jobqueue.SLURMCluster``, or one ConfigError line saying what is missing
    (without ``sbatch`` the worker jobs would never start and the run would wait forever)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ModuleNotFoundError:
        raise ConfigError(
            "config error: dask.cluster slurm needs dask-jobqueue (pip install 'calibmon[slurm]')"
        ) from None
    if shutil.which("sbatch") is None:
        raise ConfigError(
            "config error: dask.cluster slurm: sbatch is not on PATH (run on a Slurm submit host)"
        )
    return SLURMCluster


def _connect(client_cls: Any, address: str, timeout_s: float) -> Any:
    """A Client on ``address`` or one ConfigError line saying it cannot be reached."""
    try:
        return client_cls(address, timeout=timeout_s, set_as_default=False)
    except (OSError, ValueError) as exc:  # TimeoutError is an OSError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if address in reason:  # distributed repeats it: say it once
            reason = f"no answer within {timeout_s:g} s ({type(exc).__name__})"
        raise ConfigError(f"cannot reach dask scheduler at {address}: {reason}") from None


def _close(obj: Any) -> None:
    """Close a client or cluster; a failure to close is logged, never raised."""
    try:
        obj.close()
    except Exception as exc:  # the run's results are already in the store
        log.debug("closing %s: %s", type(obj).__name__, exc)


@contextlib.contextmanager
def _quiet_dask(debug: bool) -> Iterator[None]:
    """distributed's loggers at ERROR (DEBUG with ``debug``) here and in spawned workers."""
    level = logging.DEBUG if debug else logging.ERROR
    names = [
        n for n in list(logging.root.manager.loggerDict)
        if n.split(".")[0] in _DASK_LOGGERS
    ] + list(_DASK_LOGGERS)  # fmt: skip
    saved_levels = {n: logging.getLogger(n).level for n in names}
    env_key = "DASK_LOGGING__DISTRIBUTED"
    saved_env = os.environ.get(env_key)
    with warnings.catch_warnings():
        if not debug:
            warnings.filterwarnings("ignore", module=r"(distributed|dask_jobqueue)(\..*)?")
        os.environ[env_key] = logging.getLevelName(level).lower()
        for n in names:
            logging.getLogger(n).setLevel(level)
        try:
            yield
        finally:
            if saved_env is None:
                os.environ.pop(env_key, None)
            else:
                os.environ[env_key] = saved_env
            for n, lv in saved_levels.items():
                logging.getLogger(n).setLevel(lv)
