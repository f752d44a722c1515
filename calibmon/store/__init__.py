"""The embedded store (SQLite): records, runs, sink cursors, alert state, calibrations."""

from calibmon.store.sqlite import Store, default_store_path

__all__ = ["Store", "default_store_path"]
