"""The report renders for any store content (issue 12, item 5).

Stores are built with the store's own API (``Store.write_records``, ``write_ptc_curves``,
``write_amp_images``) from hypothesis-drawn plans: missing metrics, a single amp, one
night, no PTC, PTC curves with no positive point, summaries without amp records, a metric
the catalogue does not know, and values from the whole float range. The property: the
report is written, is well-formed self-contained HTML, and rendering never raises. On
data within ±1e100 (tiny, negative and zero values too) with well-formed PTC curves, no
figure may fall back to a placeholder. Example counts are bounded so the file runs in well under a minute.
"""

from __future__ import annotations

import logging
import math
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nightdata import amps_of, assert_self_contained, images_of, number_of, ptc_curve, vendor_of

from calibmon.catalogue import load_catalogue
from calibmon.records import MetricRecord, Provenance, Stats
from calibmon.report import html as report_html
from calibmon.report.html import build_report, write_report
from calibmon.report.text import fmt_pm
from calibmon.store.images import IMAGE_KINDS
from calibmon.store.sqlite import Store

DETECTOR_POOL = {"LSSTCam": ("R22_S11", "R01_S01", "R00_SW0"), "LATISS": ("RXX_S00",)}
DAY_POOL = ("20251119", "20251120", "20251121")
UNKNOWN_METRIC = "mystery_metric"  # not in the catalogue: its own unit and calib type
METRIC_POOL = ("read_noise", "dark_current", "gain", "ptc_gain", "bright_columns", UNKNOWN_METRIC)
PROPERTY_SETTINGS = settings(
    max_examples=10,
    deadline=None,  # one example draws a dozen figures (~1 s)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run and machine
)

# -- well-formed HTML ---------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}  # fmt: skip


class _Balance(HTMLParser):
    """Every element the report opens is closed, in order (the report never relies on
    implied end tags)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def assert_well_formed(text: str) -> None:
    assert text.startswith("<!DOCTYPE html><html lang=en>") and text.endswith("</html>")
    assert "\x00" not in text  # every figure marker was replaced
    parser = _Balance()
    parser.feed(text)
    parser.close()
    assert not parser.problems, parser.problems[:5]
    assert not parser.stack, parser.stack
    assert_self_contained(text)
    images_of(text)  # every <img> a decodable PNG data URI


# -- plans of store content -----------------------------------------------------------------

ANY_FLOAT = st.floats(allow_nan=False, allow_infinity=False)  # huge, tiny, negative, ±0
# Values a broken measurement could still store: up to 1e100 in size, down to 1e-100, negative,
# zero. Every figure must draw them; beyond (up to the float64 limit, ~1.8e308) matplotlib
# overflows in its tick and text layout, and a placeholder names the reason.
ORDINARY_FLOAT = st.one_of(
    st.just(0.0),
    st.floats(-1e100, 1e100, allow_nan=False),
    st.floats(-1e-100, 1e-100, allow_nan=False),
    st.floats(1e-9, 1e-3),
)
ERROR = st.one_of(st.none(), st.floats())  # NaN, inf, negative: the record keeps None


def _floats_list(elements: st.SearchStrategy, max_size: int = 6) -> st.SearchStrategy:
    return st.lists(elements, max_size=max_size)


@st.composite
def odd_ptc(draw: st.DrawFn) -> dict[str, Any]:
    """A PTC curve as a broken pipeline might store it: lists of any floats (NaN too) of
    unequal lengths, values <= 0, missing keys."""
    every = st.floats(allow_infinity=False)
    data: dict[str, Any] = {}
    for key in ("mu_adu", "var_adu2", "model_var_adu2", "residual_frac", "exptime_s"):
        if draw(st.booleans()) or key == "mu_adu":
            data[key] = draw(_floats_list(every))
    if draw(st.booleans()):
        data["used"] = draw(st.lists(st.booleans(), max_size=6))
    return data


@st.composite
def ordinary_ptc(draw: st.DrawFn) -> dict[str, Any]:
    """A PTC curve of the Astier et al. (2019) model with a turnoff (as measured)."""
    return ptc_curve(
        gain=draw(st.floats(0.5, 5.0)),
        noise_e=draw(st.floats(1.0, 20.0)),
        a00=draw(st.floats(-5e-6, -1e-7)),
        turnoff_adu=draw(st.floats(20000.0, 120000.0)),
        n=draw(st.integers(2, 24)),
        seed=draw(st.integers(0, 100)),
    )


@st.composite
def store_plan(draw: st.DrawFn, ordinary: bool = False) -> dict[str, Any]:
    instrument = draw(st.sampled_from(sorted(DETECTOR_POOL)))
    values = ORDINARY_FLOAT if ordinary else ANY_FLOAT
    dets = draw(st.lists(st.sampled_from(DETECTOR_POOL[instrument]), min_size=1, max_size=2,
                         unique=True))  # fmt: skip
    amps = {
        d: draw(st.lists(st.sampled_from(amps_of(d)), min_size=1, max_size=4, unique=True))
        for d in dets
    }
    days = sorted(draw(st.lists(st.sampled_from(DAY_POOL), min_size=1, max_size=3, unique=True)))
    amp_metrics = draw(st.lists(st.sampled_from(METRIC_POOL), max_size=3, unique=True))
    summary_only = draw(
        st.lists(st.sampled_from([m for m in METRIC_POOL if m not in amp_metrics]), max_size=1)
    )
    records = []
    for day in days:
        present = [m for m in amp_metrics if draw(st.booleans()) or day == days[-1]]
        for m in present:
            for d in dets:
                for a in amps[d]:
                    records.append(("amp", m, day, d, a, draw(values), draw(ERROR)))
        for m in summary_only + present:
            if draw(st.booleans()):
                for d in dets:
                    records.append(("detector", m, day, d, None, draw(values), None))
                records.append(("camera", m, day, None, None, draw(values), None))
    ptc_kind = draw(st.sampled_from(["none", "ordinary"] if ordinary else ["none", "odd"]))
    ptc = {}
    if ptc_kind != "none":
        strategy = ordinary_ptc() if ordinary else odd_ptc()
        ptc = {(d, a): draw(strategy) for d in dets for a in amps[d]}
    images = {}
    if draw(st.booleans()):
        pixel = st.floats(-1e6, 1e6) if ordinary else st.floats(width=32, allow_infinity=False)
        for kind in draw(st.lists(st.sampled_from(IMAGE_KINDS), max_size=2, unique=True)):
            for d in dets:
                for a in amps[d]:
                    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
                    flat = draw(st.lists(pixel, min_size=shape[0] * shape[1],
                                         max_size=shape[0] * shape[1]))  # fmt: skip
                    images[(d, a, kind)] = np.asarray(flat, np.float32).reshape(shape)
    report_day = draw(st.sampled_from([None, *days]))
    return {"instrument": instrument, "records": records, "ptc": ptc, "images": images,
            "day": report_day, "last": days[-1]}  # fmt: skip


def _record(instrument: str, spec: tuple) -> MetricRecord:
    level, metric, day, det, amp, value, error = spec
    cat = load_catalogue()
    unit, ct = (cat.unit(metric), cat.calib_type(metric)) if metric in cat else ("1", "mystery")
    ts = f"{day[:4]}-{day[4:6]}-{day[6:]}T18:00:00.000Z"
    prov = Provenance(run=f"run-{day}", software_version="0.1.0", config_hash="c0ffee",
                      processed_at=ts)  # fmt: skip
    stats = None
    if level != "amp":
        spread = abs(value) if math.isfinite(abs(value)) else 0.0
        stats = Stats(median=value, sigma_mad=spread, n_points=3, min=value, max=value)
    return MetricRecord(
        metric=metric, value=value, unit=unit, calib_type=ct, level=level,
        instrument=instrument, detector=None if det is None else number_of(instrument, det),
        detector_name=det, amp=amp, day_obs=day, vendor=vendor_of(instrument, det) if det else "",
        timestamp=ts, provenance=prov, stats=stats, error=error,
    )  # fmt: skip


def build_store(path: Path, plan: dict[str, Any]) -> None:
    inst = plan["instrument"]
    with Store(path) as store:
        store.write_records([_record(inst, r) for r in plan["records"]], "run-plan")
        store.write_ptc_curves(
            [(inst, plan["last"], number_of(inst, d), a, data) for (d, a), data in plan["ptc"].items()],
            "run-plan",
        )  # fmt: skip
        if plan["images"]:
            store.write_amp_images(
                [(inst, plan["last"], number_of(inst, d), a, kind, img, None)
                 for (d, a, kind), img in plan["images"].items()],
                "run-plan", 2,
            )  # fmt: skip


def _render(plan: dict[str, Any]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        build_store(Path(tmp) / "s.sqlite", plan)
        out = Path(tmp) / "out" / "report.html"
        with Store(Path(tmp) / "s.sqlite") as store:
            written = write_report(None, store, plan["day"], out, nights=3)
        assert written == out and out.is_file()
        return out.read_text(encoding="utf-8")


# -- properties -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # matplotlib's overflows near 1e308
@PROPERTY_SETTINGS
@given(plan=store_plan())
def test_report_renders_for_any_store_content(plan: dict[str, Any]) -> None:
    text = _render(plan)
    assert_well_formed(text)
    days = {r[2] for r in plan["records"]}
    if plan["day"] in days or (plan["day"] is None and days):
        assert f"{plan['instrument']} — summary" in text
    else:
        assert "The store holds no records for this day." in text


@PROPERTY_SETTINGS
@given(plan=store_plan(ordinary=True))
def test_ordinary_data_draws_every_figure(plan: dict[str, Any]) -> None:
    text = _render(plan)
    assert_well_formed(text)
    assert 'class="placeholder"' not in text


# -- the cases of the issue, one by one -------------------------------------------------------


def _night(store: Store, metrics=("read_noise", "ptc_gain"), error: float | None = None) -> None:
    recs = [
        _record("LSSTCam", ("amp", m, "20251121", "R22_S11", a, 1.0 + i / 10, error))
        for m in metrics
        for i, a in enumerate(amps_of("R22_S11"))
    ]
    store.write_records(recs, "run-1")


def test_ptc_without_positive_points_is_a_placeholder(tmp_path, caplog) -> None:
    """The crash of issue 12: PTC curves whose points are all <= 0 (NaN-free)."""
    with Store(tmp_path / "s.sqlite") as store:
        _night(store)
        store.write_ptc_curves(
            [("LSSTCam", "20251121", 94, a, {"mu_adu": [0.0, -5.0, -1e3], "var_adu2": [-1.0, 0.0,
              2.0], "model_var_adu2": [0.0, 0.0, 0.0], "used": [True] * 3,
              "residual_frac": [0.0] * 3}) for a in ("C10", "C11")],
            "run-1",
        )  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="calibmon.report.html"):
            text = build_report(store, "20251121")
    assert_well_formed(text)
    reason = "no PTC point with a positive mean signal and variance (2 amp(s), 6 point(s))"
    assert reason in text and "could not be drawn" in text
    assert any(reason in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    # the rest renders: map, histogram and trend of both metrics
    assert len(images_of(text)) == 3 * 2


def test_cli_report_of_a_night_with_broken_or_no_ptc(tmp_path, registered_cli, capsys) -> None:
    """``calibmon report`` exits 0 and writes the file: PTC points all <= 0 on one night,
    no PTC at all on the next."""
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        _night(store)
        store.write_records(
            [_record("LSSTCam", ("amp", "read_noise", "20251122", "R22_S11", "C10", 6.0, 0.1))],
            "run-2",
        )
        store.write_ptc_curves(
            [("LSSTCam", "20251121", 94, "C10", {"mu_adu": [-1.0, 0.0], "var_adu2": [0.0, -3.0]})],
            "run-1",
        )
    for day in ("20251121", "20251122"):
        out = tmp_path / f"r-{day}.html"
        argv = ["report", "--store", str(path), "--day-obs", day, "-o", str(out), "-q"]
        assert registered_cli(argv) == 0
        text = out.read_text(encoding="utf-8")
        assert_well_formed(text)
        assert ("could not be drawn" in text) == (day == "20251121")
    assert "No PTC ramp was taken this day." in text


def test_ptc_points_below_zero_are_left_out_of_the_log_axes(tmp_path) -> None:
    good = ptc_curve(gain=1.5, noise_e=6.0, a00=-2e-6, turnoff_adu=90000.0, n=10)
    good["mu_adu"][:3] = [0.0, -10.0, math.nan]
    good["var_adu2"][3] = -4.0
    with Store(tmp_path / "s.sqlite") as store:
        _night(store)
        store.write_ptc_curves([("LSSTCam", "20251121", 94, "C10", good)], "run-1")
        text = build_report(store, "20251121")
    assert_well_formed(text)
    assert 'class="placeholder"' not in text and 'alt="PTC of R22_S11"' in text


def test_a_failing_figure_does_not_take_the_report_down(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(report_html.FIGURE_FUNCTIONS, "hist", f"{__name__}:_broken_figure")
    with Store(tmp_path / "s.sqlite") as store:
        _night(store)
        with caplog.at_level(logging.WARNING, logger="calibmon.report.html"):
            text = build_report(store, "20251121")
    assert_well_formed(text)
    assert text.count("RuntimeError: no histogram today") == 2  # one per metric
    assert len(images_of(text)) == 2 * 2  # maps and trends
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("report LSSTCam 20251121: figure histogram of" in m for m in lines) == 2


def test_a_failing_section_does_not_take_the_report_down(tmp_path, monkeypatch) -> None:
    def broken(*args: Any) -> str:
        raise KeyError("vendor")

    monkeypatch.setattr(report_html, "section_amp_table", broken)
    with Store(tmp_path / "s.sqlite") as store:
        _night(store)
        text = build_report(store, "20251121")
    assert_well_formed(text)
    assert "This section could not be drawn:</b> KeyError: &#x27;vendor&#x27;" in text
    assert len(images_of(text)) == 3 * 2 and "How to read this report" in text


def _broken_figure(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("no histogram today")


def test_errors_shown_as_value_plus_minus_error(tmp_path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        _night(store, metrics=("read_noise",), error=0.0123)
        _night(store, metrics=("gain",), error=None)
        text = build_report(store, "20251121")
    table = text[text.index("All amps (16)") :]
    assert "<td>1.000 ± 0.012</td>" in table  # error to 2 digits, value to the same place
    assert "<td>1.5</td>" in table  # gain has no error: the value alone


@pytest.mark.parametrize(
    ("value", "error", "shown"),
    [(6.51234, 0.0312, "6.512 ± 0.031"), (1234.5, 25.0, "1234 ± 25"),
     (1.0e-6, 3.0e-8, "1e-06 ± 3e-08"), (5.0, 0.0, "5"), (5.0, None, "5"),
     (2.5e12, 1.0e9, "2.5e+12 ± 1e+09")],
)  # fmt: skip
def test_value_error_format(value: float, error: float | None, shown: str) -> None:
    assert fmt_pm(value, error) == shown


def test_summaries_without_amp_records(tmp_path) -> None:
    """Detector and camera records only: the report says there are no amp measurements."""
    with Store(tmp_path / "s.sqlite") as store:
        store.write_records(
            [_record("LSSTCam", ("detector", "gain", "20251121", "R22_S11", None, 1.5, None)),
             _record("LSSTCam", ("camera", "gain", "20251121", None, None, 1.5, None))],
            "run-1",
        )  # fmt: skip
        text = build_report(store)
    assert_well_formed(text)
    assert "No amp measurements for this day." in text
