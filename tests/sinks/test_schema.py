"""Record → point mapping (DESIGN §5): names, tags, fields, time, merging, escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from sink_factory import night_records

from calibmon.records import MetricRecord, Provenance, Stats, iso_utc_ms
from calibmon.sinks.schema import (
    PROVENANCE_FIELDS,
    TAG_KEYS,
    build_points,
    measurement_name,
    metric_fields,
    provenance_fields,
    record_tags,
    timestamp_ms,
    to_line_protocol,
)

PROV = Provenance(
    run="run-1",
    exposures=[2025112100001, 2025112100002],
    n_exposures=2,
    software_version="0.1.0",
    config_hash="abc123",
    processed_at="2025-11-22T00:00:00.000Z",
)


def rec(**kw: object) -> MetricRecord:
    base: dict[str, object] = dict(
        metric="read_noise", value=5.43, unit="electron", calib_type="bias", level="amp",
        instrument="LSSTCam", detector=94, detector_name="R22_S11", amp="C10",
        day_obs="20251121", physical_filter="", vendor="E2V",
        timestamp="2025-11-21T18:00:00.123Z", provenance=PROV,
    )  # fmt: skip
    base.update(kw)
    return MetricRecord.model_validate(base)


STATS = Stats(median=5.4, sigma_mad=0.17, n_points=16, min=4.9, max=6.1)


def test_measurement_names() -> None:
    assert measurement_name(rec()) == "lsst.cp.bias"
    assert measurement_name(rec(level="detector", amp=None, stats=STATS)) == "lsst.cp.bias_summary"
    camera = rec(level="camera", amp=None, detector=None, detector_name=None, stats=STATS)
    assert measurement_name(camera, "lsst.test") == "lsst.test.bias_summary"
    assert measurement_name(rec(calib_type="ptc", metric="ptc_gain")) == "lsst.cp.ptc"


def test_tags_of_each_level() -> None:
    assert record_tags(rec()) == {
        "instrument": "LSSTCam", "detector": "94", "detector_name": "R22_S11", "amp": "C10",
        "level": "amp", "physical_filter": "", "vendor": "E2V",
    }  # fmt: skip
    det = record_tags(rec(level="detector", amp=None, stats=STATS))
    assert det["amp"] == "" and det["detector"] == "94" and det["level"] == "detector"
    cam = record_tags(
        rec(level="camera", amp=None, detector=None, detector_name=None, vendor="", stats=STATS)
    )
    assert (cam["detector"], cam["detector_name"], cam["amp"], cam["level"]) == (
        "",
        "",
        "",
        "camera",
    )
    assert tuple(record_tags(rec())) == TAG_KEYS


def test_detector_zero_is_a_number_not_empty() -> None:
    assert record_tags(rec(detector=0, detector_name="R01_S00"))["detector"] == "0"


def test_fields_of_amp_and_summary_records() -> None:
    assert metric_fields(rec()) == {"read_noise": 5.43}
    fields = metric_fields(rec(level="detector", amp=None, value=5.4, stats=STATS))
    assert fields == {
        "read_noise": 5.4, "read_noise_median": 5.4, "read_noise_sigma_mad": 0.17,
        "read_noise_n": 16, "read_noise_min": 4.9, "read_noise_max": 6.1,
    }  # fmt: skip
    assert isinstance(fields["read_noise_n"], int)
    assert provenance_fields(rec()) == {
        "run": "run-1", "day_obs": "20251121", "exposures": "2025112100001,2025112100002",
        "n_exposures": 2, "software_version": "0.1.0", "config_hash": "abc123",
    }  # fmt: skip
    assert tuple(provenance_fields(rec())) == PROVENANCE_FIELDS


def test_count_metric_is_written_as_float() -> None:
    (line,) = to_line_protocol([rec(metric="bright_pixels", value=3, calib_type="dark")])
    assert " bright_pixels=3," in line  # a float in line protocol (no 'i' suffix)
    assert "n_exposures=2i" in line


def test_line_of_one_amp_record() -> None:
    (line,) = to_line_protocol([rec()])
    assert line == (
        "lsst.cp.bias,amp=C10,detector=94,detector_name=R22_S11,instrument=LSSTCam,level=amp,"
        'vendor=E2V config_hash="abc123",day_obs="20251121",exposures="2025112100001,2025112100002",'
        'n_exposures=2i,read_noise=5.43,run="run-1",software_version="0.1.0" 1763748000123'
    )


def test_empty_tags_are_omitted_from_the_line() -> None:
    cam = rec(level="camera", amp=None, detector=None, detector_name=None, vendor="", stats=STATS)
    (line,) = to_line_protocol([cam])
    head = line.split(" ")[0]
    assert head == "lsst.cp.bias_summary,instrument=LSSTCam,level=camera"


def test_metrics_of_one_amp_merge_into_one_point() -> None:
    records = [
        rec(metric="read_noise", value=5.4),
        rec(metric="bias_level", value=15000.5, unit="adu"),
        rec(metric="read_noise", amp="C11", value=5.6),
        rec(metric="read_noise", timestamp="2025-11-22T18:00:00.000Z", value=5.5),
    ]
    points = build_points(records)
    assert len(points) == 3
    first = points[0]
    assert first.n_records == 2
    assert first.fields["read_noise"] == 5.4 and first.fields["bias_level"] == 15000.5
    assert len(to_line_protocol(records)) == 3


def test_provenance_of_a_merged_point_is_the_last_records() -> None:
    newer = PROV.model_copy(update={"run": "run-2"})
    points = build_points([rec(), rec(metric="bias_level", value=1.0, provenance=newer)])
    assert points[0].fields["run"] == "run-2"


def test_night_records_merge_per_amp_and_level() -> None:
    records = night_records(calib_types=["bias", "dark"], detectors=["R22_S11", "R22_S12"])
    points = build_points(records)
    # per calib type: 2 detectors × 16 amps + 2 detector summaries + 1 camera summary
    assert len(points) == 2 * (32 + 2 + 1)
    assert sum(p.n_records for p in points) == len(records)


def test_reserved_metric_name_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="reserved"):
        build_points([rec(metric="run")])


def test_precision_scales_the_time() -> None:
    (p,) = build_points([rec()])
    assert p.to_line("ms").endswith(" 1763748000123")
    assert p.to_line("us").endswith(" 1763748000123000")
    assert p.to_line("ns").endswith(" 1763748000123000000")


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_timestamp_ms_is_exact(dt: datetime) -> None:
    dt = dt.replace(tzinfo=UTC)
    expected = (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert timestamp_ms(iso_utc_ms(dt)) == expected
    assert timestamp_ms(iso_utc_ms(dt).replace("Z", "+00:00")) == expected


_TAG_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\"),
    min_size=1,
    max_size=20,
)


@given(physical_filter=_TAG_TEXT, instrument=_TAG_TEXT)
def test_odd_tag_values_are_escaped(physical_filter: str, instrument: str) -> None:
    (line,) = to_line_protocol([rec(physical_filter=physical_filter, instrument=instrument)])
    # The tag section ends at the first unescaped space: spaces, commas and '=' in values
    # are escaped, so a line-protocol parser sees exactly our keys and values.
    tag_section = _split_unescaped(line, " ")[0]
    measurement, *pairs = _split_unescaped(tag_section, ",")
    assert measurement == "lsst.cp.bias"
    tags = dict(_split_unescaped(kv, "=", maxsplit=1) for kv in pairs)
    assert set(tags) == {
        "amp",
        "detector",
        "detector_name",
        "instrument",
        "level",
        "vendor",
        "physical_filter",
    }
    assert _unescape(tags["physical_filter"]) == physical_filter
    assert _unescape(tags["instrument"]) == instrument


def _split_unescaped(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split at ``sep`` not preceded by a backslash (line-protocol tag section rules)."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c == sep and maxsplit != len(parts):
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    for ch in (",", "=", " "):
        value = value.replace("\\" + ch, ch)
    return value


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["read_noise", "bias_level", "bias_noise"]),
            st.sampled_from(["C10", "C11", "C00"]),
            st.sampled_from([94, 95]),
            st.sampled_from(["2025-11-21T18:00:00.000Z", "2025-11-22T18:00:00.000Z"]),
        ),
        unique=True,
        max_size=40,
    )
)
def test_one_point_per_amp_and_time(keys: list[tuple[str, str, int, str]]) -> None:
    records = [rec(metric=m, amp=a, detector=d, timestamp=t) for m, a, d, t in keys]
    points = build_points(records)
    assert len(points) == len({(a, d, t) for _, a, d, t in keys})
    assert sum(p.n_records for p in points) == len(records)
    by_key = {(p.tags["amp"], p.tags["detector"], p.time_ms): p for p in points}
    for r in records:
        p = by_key[(r.amp, str(r.detector), timestamp_ms(r.timestamp))]
        assert p.fields[r.metric] == r.value
