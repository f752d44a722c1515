"""Text helpers of the report: escaping, number formatting, placeholders (pure functions)."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from calibmon.dayobs import day_obs_iso
from calibmon.report.plots import FigureUnavailable


def esc(x: Any) -> str:
    """HTML-escaped text of ``x`` (``""`` for None)."""
    return html.escape("" if x is None else str(x))


def fmt(v: Any) -> str:
    """A number to 4 significant digits (``–`` when not finite); other values as text."""
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        if not math.isfinite(v):
            return "–"
        return f"{v:.4g}"
    return str(v)


def fmt_pm(v: Any, err: Any) -> str:
    """``value ± error`` with the error to two significant digits and the value to the
    same decimal place; just the value when there is no usable error."""
    if err is None or not isinstance(v, float | np.floating) or not math.isfinite(v):
        return fmt(v)
    try:
        e = float(err)
    except (TypeError, ValueError):
        return fmt(v)
    if not math.isfinite(e) or e <= 0:
        return fmt(v)
    decimals = 1 - math.floor(math.log10(e))  # 2 significant digits of the error
    if 0 <= decimals <= 8 and abs(v) < 1e9:
        return f"{v:.{decimals}f} ± {e:.{decimals}f}"
    return f"{v:.4g} ± {e:.2g}"


def reason_of(exc: BaseException) -> str:
    """One line for a reader: the message of a :class:`FigureUnavailable`, else the
    exception's type and message (at most 300 characters)."""
    text = str(exc) if isinstance(exc, FigureUnavailable) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def placeholder(what: str, reason: str) -> str:
    """The visible stand-in for a figure or section that could not be drawn."""
    return f'<div class="placeholder"><b>{esc(what)} could not be drawn:</b> {esc(reason)}</div>'


def day_text(d: str) -> str:
    """``2025-11-21`` for day_obs ``20251121``; any other text as it is."""
    try:
        return day_obs_iso(d)
    except ValueError:
        return d
