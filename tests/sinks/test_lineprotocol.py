"""calibmon's own line-protocol encoder (calibmon.sinks.lineprotocol): generated names and
values round-trip through a real influxd, the text equals influxdb-client's where both
accept the input, and what cannot round-trip is refused before anything is sent."""

from __future__ import annotations

import itertools
import math

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from calibmon.sinks.lineprotocol import encode_line
from calibmon.sinks.schema import build_points

SPECIAL = ' ,="\\\n\t\r#'
chars = st.one_of(
    st.sampled_from(SPECIAL),
    st.characters(blacklist_categories=("Cs", "Cc")),  # any unicode but surrogates/controls
)
text = st.text(chars, min_size=1, max_size=12)
# what the encoder accepts (the refusals are the first test's business): every special
# character line protocol escapes, quotes, '#', and any other unicode
safe_chars = st.one_of(
    st.sampled_from(' ,="#'), st.characters(blacklist_categories=("Cs", "Cc"),
                                            blacklist_characters="\\")
)  # fmt: skip
safe_text = st.text(safe_chars, min_size=1, max_size=12)
string_values = st.text(st.one_of(st.sampled_from('"\\'), safe_chars), min_size=0, max_size=12)
floats = st.floats(allow_nan=True, allow_infinity=True)
ints = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
_time = itertools.count(1_700_000_000_000)
_meas = itertools.count()


def _refused_name(s: str) -> bool:
    return any(c in s for c in "\n\r\t\\")


def _refused_string(s: str) -> bool:
    return any(c in s for c in "\n\r\t")


def _written(fields: dict) -> dict:
    """The fields that make it into a line: non-finite floats are left out."""
    return {k: v for k, v in fields.items() if not (isinstance(v, float) and not math.isfinite(v))}


def _should_refuse(measurement: str, tags: dict, fields: dict) -> bool:
    """Whether the encoder must refuse the point (a point with no field written is the
    empty line: nothing is sent, nothing to refuse)."""
    fields = _written(fields)
    if not fields:
        return False
    names = [measurement, *tags, *(v for v in tags.values() if v), *fields]
    strings = [v for v in fields.values() if isinstance(v, str)]
    return (
        any(_refused_name(n) for n in names)
        or any(_refused_string(s) for s in strings)
        or measurement.startswith("#")
    )


@settings(max_examples=300, deadline=None)
@given(
    measurement=text,
    tags=st.dictionaries(text, text, max_size=4),
    fields=st.dictionaries(
        text, st.one_of(floats, ints, text, st.booleans()), min_size=1, max_size=5
    ),
    time=ints,
)
def test_same_text_as_influxdb_client_or_refused(measurement, tags, fields, time) -> None:
    if _should_refuse(measurement, tags, fields):
        with pytest.raises(ValueError, match=r"not allowed|comment"):
            encode_line(measurement, tags, fields, time)
        return
    p = Point(measurement)
    for k, v in tags.items():
        p.tag(k, v)
    for k, v in fields.items():
        p.field(k, v)
    assert encode_line(measurement, tags, fields, time) == p.time(time, "ms").to_line_protocol()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tags=st.dictionaries(safe_text, safe_text, min_size=1, max_size=3),
    label=safe_text,
    value=floats,
    count=ints,
    note=string_values,
)
def test_round_trip_through_influxd(influxd_shared, influx_db, tags, label, value, count,
                                    note) -> None:  # fmt: skip
    measurement = f"m{next(_meas)} {label}"
    tags = {f"t_{k}": v for k, v in tags.items()}
    fields = {f"f_{label}": value, "f_count": count, "f_note": note}
    assert not _should_refuse(measurement, tags, fields)
    t = next(_time)
    line = encode_line(measurement, tags, fields, t)
    resp = requests.post(f"{influxd_shared.url}/write", params={"db": influx_db,
                         "precision": "ms"}, data=line.encode(), timeout=10)  # fmt: skip
    assert resp.status_code == 204, (line, resp.text)
    quoted = measurement.replace("\\", "\\\\").replace('"', '\\"')
    (series,) = influxd_shared.series(f'SELECT * FROM "{quoted}"', db=influx_db)
    assert series["name"] == measurement
    (row,) = series["values"]
    got = dict(zip(series["columns"], row, strict=True))
    assert got.pop("time") == t
    expected: dict[str, object] = {**tags, "f_count": count, "f_note": note}
    if math.isfinite(value):
        # a whole float may come back as a JSON integer: same number, compare as floats
        assert float(got.pop(f"f_{label}")) == value
    else:  # left out, as influxdb-client does: the column is absent
        assert got.get(f"f_{label}") is None
        got.pop(f"f_{label}", None)
    assert got == expected


def test_a_batch_with_a_newline_in_a_tag_is_refused_not_sent() -> None:
    from sink_factory import night_records

    (rec, *_) = night_records(detectors=("R22_S11",))
    bad = rec.model_copy(update={"physical_filter": "r\nz"})
    (point,) = build_points([bad])
    with pytest.raises(ValueError, match="not allowed"):
        point.to_line()
