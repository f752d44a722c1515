"""Rubin's observing day, re-exported for the service modules: the definitions live in
:mod:`calibmon.dayobs` (one owner, lowest layer). ``service/scheduler.py`` and
``service/daemon.py`` import from here until they import :mod:`calibmon.dayobs` directly;
then this module goes."""

from __future__ import annotations

from calibmon.dayobs import (
    DAY_OBS_TZ,
    day_obs_for,
    day_obs_range,
    day_obs_start,
    day_obs_window,
    format_day_obs,
    iter_day_obs,
    next_day_obs,
    parse_day_obs,
    previous_day_obs,
    shift_day_obs,
)

__all__ = [
    "DAY_OBS_TZ",
    "day_obs_for",
    "day_obs_range",
    "day_obs_start",
    "day_obs_window",
    "format_day_obs",
    "iter_day_obs",
    "next_day_obs",
    "parse_day_obs",
    "previous_day_obs",
    "shift_day_obs",
]
