"""Executors the pipeline's tasks run on: a process pool (default) or serial; and the
worker set-up (SIGINT ignored, glibc keeps freed memory). Every one is a plain
:class:`concurrent.futures.Executor`; a dask cluster's (local, an address, Slurm) is opened
by the service layer (:func:`calibmon.service.cluster.open_executor`), which owns its
configuration and lifetime."""

from __future__ import annotations

import ctypes
import os
import signal
from concurrent.futures import Executor, ProcessPoolExecutor


def make_executor(kind: str, workers: int | None) -> Executor:
    """A process pool of ``workers`` processes (default: CPU count), or serial.

    ``kind`` ``"dask"`` is not made here: see :func:`calibmon.service.cluster.open_executor`.
    """
    if kind == "serial":
        return _SerialExecutor()
    if kind == "dask":
        raise ValueError("a dask executor is opened by calibmon.service.cluster.open_executor")
    return ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, initializer=_worker_init)


def executor_workers(ex: Executor) -> int | None:
    """How many tasks ``ex`` runs at once, when it says: a process pool's workers, a dask
    client's worker threads (``max_workers`` on any other executor); else None."""
    n = getattr(ex, "max_workers", None) or getattr(ex, "_max_workers", None)
    if n:
        return int(n)
    client = getattr(ex, "client", None) or getattr(ex, "_client", None)
    if client is None:
        return None
    try:
        workers = client.scheduler_info()["workers"].values()
        return sum(int(w.get("nthreads", 1)) for w in workers) or None
    except Exception:  # a client that cannot tell: the caller's default
        return None


def _worker_init() -> None:
    """Worker set-up. SIGINT is ignored: Ctrl-C in a terminal reaches the whole process
    group, and the parent (CLI or daemon) decides how to stop; a worker dying mid-amp
    would lose it. glibc is told to keep freed memory (see :func:`keep_freed_memory`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()


# glibc mallopt parameters (malloc.h): M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> None:
    """Ask glibc to keep large freed blocks instead of returning them to the kernel.

    numpy's per-frame temporaries (4–60 MB) are above glibc's mmap threshold, so each one
    is mmap'ed, page-faulted in and unmapped again; DESIGN.md §8 measured this kernel time
    at ≈ 40 s vs ≈ 10 s per run with ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``
    raised. ``mallopt`` sets the same two knobs from inside the worker (no environment
    needed). A no-op where glibc is not the allocator."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum on 64-bit
        libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):
        pass


class _SerialExecutor(Executor):
    """Runs tasks in the calling process (debugging, --workers 1, tests)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        from concurrent.futures import Future

        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut
