"""The alert state machine (pure): one identity's snapshot after one evaluation.

::

    inactive/resolved ──fire──► pending ──fire × K──► firing ──clear × H──► resolved
           ▲                       │ not fire                │ fire or in the hysteresis gap:
           └───────────────────────┘                         └ stays firing, clear count reset

K is the rule's ``for`` (default 1), H its ``clear_for`` (default 2). A snapshot is a plain
dict (stored as JSON in the alert row): ``state``, ``pending``, ``clear``,
``since_day_obs``, ``firing_day_obs``, ``resolved_day_obs``.
"""

from __future__ import annotations

from typing import Any

STATES: tuple[str, ...] = ("inactive", "pending", "firing", "resolved")
_AT_REST = {"inactive", "resolved"}


def new_snapshot() -> dict[str, Any]:
    return {"state": "inactive", "pending": 0, "clear": 0, "since_day_obs": None,
            "firing_day_obs": None, "resolved_day_obs": None}  # fmt: skip


def advance(
    snap: dict[str, Any], verdict: str, day_obs: str, k_for: int, h_clear: int
) -> dict[str, Any]:
    """Next snapshot after one evaluation; ``verdict`` is ``fire``, ``clear`` or ``hold``
    (inside the limits but not back inside the narrower band)."""
    s = dict(snap)
    st = s["state"]
    if st in _AT_REST:
        if verdict == "fire":
            s.update(pending=1, clear=0, since_day_obs=day_obs, resolved_day_obs=None)
            s["state"] = "pending"
            if k_for <= 1:
                s.update(state="firing", firing_day_obs=day_obs)
    elif st == "pending":
        if verdict == "fire":
            s["pending"] += 1
            if s["pending"] >= k_for:
                s.update(state="firing", firing_day_obs=day_obs, clear=0)
        else:
            s.update(state="inactive", pending=0, since_day_obs=None)
    elif st == "firing":
        if verdict == "clear":
            s["clear"] += 1
            if s["clear"] >= h_clear:
                s.update(state="resolved", resolved_day_obs=day_obs, pending=0)
        else:
            s["clear"] = 0
    return s
