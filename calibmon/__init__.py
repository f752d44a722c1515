"""calibmon: calibration-quality monitoring for multi-amplifier astronomical cameras.

Notebook entry point: ``calibmon.open_store(path)`` (see ``calibmon.store``).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "open_store"]


def open_store(path=None):
    """Open the embedded SQLite store (default location when ``path`` is None)."""
    from calibmon.store.sqlite import Store, default_store_path

    return Store(path or default_store_path())
