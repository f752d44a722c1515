"""Atomic file output: write beside the target, then ``os.replace``.

A crash (or a full disk) while writing leaves the old file, never half a file. Used by
``export -o``, ``report -o`` and ``dashboards build``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Call ``write(fh)`` on a temporary file in ``path``'s directory, then rename it over
    ``path``. ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes). The file gets the
    permissions a plain ``open()`` would give it (``mkstemp`` creates 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["atomic_write"]
