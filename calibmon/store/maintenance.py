"""Store upkeep: retention of binned images and PTC curves, and compaction
(``calibmon store maintain``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def maintain(
    store: Any, *, keep_images_days: int | None, vacuum: bool = False
) -> dict[str, int | str]:
    """Retention and compaction: delete binned images and PTC curves of nights more than
    ``keep_images_days`` (days) before the newest night in the store (metric records are
    kept: they are the history), then ``PRAGMA optimize``, a truncating WAL checkpoint and,
    with ``vacuum``, ``VACUUM`` (rewrites the file: needs free space about its size).
    Returns the counts deleted and the cutoff day_obs."""
    out: dict[str, int | str] = {"images_deleted": 0, "ptc_curves_deleted": 0}
    if keep_images_days is not None:
        newest = store.days(descending=True, limit=1)
        if newest:
            d = datetime.strptime(newest[0], "%Y%m%d") - timedelta(days=keep_images_days)
            cutoff = d.strftime("%Y%m%d")
            out["cutoff_day_obs"] = cutoff
            with store.transaction() as c:
                out["images_deleted"] = c.execute(
                    "DELETE FROM amp_images WHERE day_obs<?", (cutoff,)
                ).rowcount
                out["ptc_curves_deleted"] = c.execute(
                    "DELETE FROM ptc_curves WHERE day_obs<?", (cutoff,)
                ).rowcount
    store.execute("PRAGMA optimize")
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if vacuum:
        store.execute("VACUUM")
    return out
