"""InfluxDB line protocol, encoded by calibmon (DESIGN.md §5).

The same text influxdb-client's ``Point.to_line_protocol`` writes for calibmon's points
— tags and fields in sorted key order, empty tags left out, floats as Python's shortest
``repr`` without a trailing ``.0``, integers with ``i``, non-finite floats left out (a
point with no field left is the empty line) — at a fraction of its cost, because the
outbox encodes every point of a day (issue 13).

Escaping (InfluxDB 1.x/2.x line protocol): in the measurement ``,`` and space; in tag
keys, tag values and field keys ``,``, ``=`` and space; in string field values ``"`` and
``\\``. What the protocol cannot carry back unchanged is refused with ``ValueError``
(the sink reports it as rejected, never sends it): a line break (``\\n``, ``\\r``) or tab
anywhere, a backslash in a measurement, key or tag value, and a measurement starting with
``#`` (a comment line).
``tests/sinks/test_lineprotocol.py`` round-trips generated names and values through a
real influxd.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from math import isfinite

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})
_NEVER = ("\n", "\r", "\t")  # anywhere
_NEVER_IN_NAMES = (*_NEVER, "\\")  # measurement, keys, tag values


def _check(text: str, forbidden: tuple[str, ...], what: str) -> None:
    for ch in forbidden:
        if ch in text:
            raise ValueError(f"{what} {text!r} contains {ch!r}: not allowed in line protocol")


@lru_cache(maxsize=1024)
def escape_measurement(name: str) -> str:
    """The measurement name escaped (``,`` and space)."""
    _check(name, _NEVER_IN_NAMES, "measurement")
    if name.startswith("#"):
        raise ValueError(f"measurement {name!r} starts with '#': a comment in line protocol")
    return name.translate(_MEASUREMENT)


@lru_cache(maxsize=65536)
def escape_key(text: str) -> str:
    """A tag key, tag value or field key escaped (``,``, ``=`` and space)."""
    _check(text, _NEVER_IN_NAMES, "key or tag value")
    return text.translate(_KEY)


def escape_string(value: str) -> str:
    """A string field value, quoted, with ``"`` and ``\\`` escaped."""
    _check(value, _NEVER, "string field")
    return '"' + value.translate(_STRING) + '"'


def format_field(value: float | int | str | bool) -> str | None:
    """One field value in line protocol; None for a non-finite float (left out)."""
    if isinstance(value, float):
        if not isfinite(value):
            return None
        s = repr(value)
        return s[:-2] if s.endswith(".0") else s
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, str):
        return escape_string(value)
    raise ValueError(f"field value {value!r} of type {type(value).__name__} is not supported")


def encode_line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | str | bool],
    time: int,
) -> str:
    """One point as a line (no newline); ``""`` when no field is left to write.

    ``time`` is an integer in the write's precision; empty tag values are left out.
    """
    parts = []
    for k in sorted(fields):
        v = fields[k]
        t = type(v)
        if t is float:  # the common case, inline: format_field's float branch
            if not isfinite(v):
                continue
            text = repr(v)
            if text[-2:] == ".0":
                text = text[:-2]
        elif t is int:
            text = f"{v}i"
        else:
            text = format_field(v)  # type: ignore[assignment]
            if text is None:
                continue
        parts.append(f"{escape_key(k)}={text}")
    if not parts:
        return ""
    head = escape_measurement(measurement)
    tag_text = ",".join([f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v])
    if tag_text:
        head = f"{head},{tag_text}"
    return f"{head} {','.join(parts)} {time}"
