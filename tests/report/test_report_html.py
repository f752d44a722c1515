"""The HTML report: self-contained, complete for a reader, right for 1, a few or 205 CCDs."""

from __future__ import annotations

import io
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from nightdata import (
    DAYS,
    REPORT_METRICS,
    assert_self_contained,
    fill_amp_images,
    fire_alert,
    images_of,
    night_records,
    populate,
    write_night,
)
from PIL import Image

from calibmon.catalogue import DEFAULT_DIR, load_catalogue
from calibmon.config import load_settings
from calibmon.io.detectors import lsstcam_detectors
from calibmon.report import mosaic
from calibmon.report.focal_plane import ALERT_COLOUR, metric_map_figure
from calibmon.report.html import build_report, write_report
from calibmon.store.sqlite import Store


def test_report_is_complete_and_self_contained(two_detector_report: Path) -> None:
    text = two_detector_report.read_text(encoding="utf-8")
    assert_self_contained(text)
    cat = load_catalogue()
    imgs = images_of(text)
    # one map, one histogram and one trend per metric; 3 combined images; 2 PTC figures
    assert len(imgs) == 3 * len(REPORT_METRICS) + 3 + 2
    for needle in (
        "LSSTCam",
        "2025-11-21",
        "run-20251121",
        "0.1.0",
        "c0ffee123456",
        'alt="combined bias mosaic"',
        'alt="combined dark mosaic"',
        'alt="combined flat mosaic"',
        "How to read this report",
        "PTC of R22_S11",
        "σ_MAD",
    ):
        assert needle in text, needle
    for m in (cat[name] for name in REPORT_METRICS):
        assert f"id='m-{m.name}'" in text, m.name
        assert m.description.split(",")[0][:40] in text.replace("&#x27;", "'"), m.name
    # thresholds are the catalogue's, not retyped: the glance table shows them
    assert "spec ≤ 9" in text and "spec ≥ 1.2 and ≤ 2" in text and "spec ≥ 90000" in text
    # the firing alert is listed with its rule, amp and value, and its cell is marked
    row = re.search(r"<tr class=firing>.*?</tr>", text, re.S).group(0)
    for needle in ("read_noise_high", "R22_S11", "C10", "11.5", "Read noise above"):
        assert needle in row
    assert "<td class='bad alert'>11.5</td>" in text
    # the per-amp table holds every amp of both detectors
    table = text[text.index('id="lsstcam-amps"') :]
    assert len(re.findall(r"<td class=l>R22_S11</td><td class=l>C\d\d</td>", table)) >= 16
    assert len(re.findall(r"<td class=l>R01_S01</td><td class=l>C\d\d</td>", table)) >= 16


def test_map_draws_values_and_outlines_firing_amps() -> None:
    amps_of = {"R22_S11": [f"C1{i}" for i in range(8)] + [f"C0{i}" for i in range(8)]}
    values = {("R22_S11", a): float(i) for i, a in enumerate(amps_of["R22_S11"]) if a != "C03"}
    fig = metric_map_figure(
        "LSSTCam",
        values,
        amps_of,
        title="t",
        unit="electron",
        firing={("R22_S11", "C10")},
        thresholds=[("high 9", 9.0)],
    )
    ax = fig.axes[0]
    by_gid = {c.get_gid(): c for c in ax.collections if c.get_gid()}
    assert len(by_gid["amps"].get_paths()) == 15
    assert len(by_gid["unmeasured"].get_paths()) == 1
    (alert,) = by_gid["alerts"].get_paths()
    assert tuple(by_gid["alerts"].get_edgecolor()[0]) == to_rgba(ALERT_COLOUR)
    x0, y0, w, h = mosaic.amp_box("LSSTCam", "R22_S11", "C10")
    np.testing.assert_allclose(
        alert.vertices[:4], [[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]]
    )
    assert x0 == mosaic.ccd_box("LSSTCam", "R22_S11")[0]  # C10 is the bottom-left amp


def test_write_report_writes_a_readable_file(tmp_path) -> None:
    """``calibmon demo`` and ``calibmon report`` call ``write_report(settings, store, day_obs,
    path)``."""
    from calibmon.report import write_report

    settings = load_settings(None, store=tmp_path / "s.sqlite")
    with Store(tmp_path / "s.sqlite") as store:
        write_night(store, night_records("20251121", ["R22_S11"], metrics=["gain"]), "20251121")
        out = write_report(settings, store, "20251121", tmp_path / "demo.html")
    assert out == tmp_path / "demo.html" and "R22_S11" in out.read_text(encoding="utf-8")
    assert out.stat().st_mode & 0o044  # readable like any report, not mkstemp's 0600


def test_report_rewrite_is_atomic(two_detector_store, tmp_path, monkeypatch) -> None:
    path, _ = two_detector_store
    out = tmp_path / "r.html"
    out.write_text("old report")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    import calibmon.report.html as html

    monkeypatch.setattr(html, "build_report", boom)
    with Store(path) as store, pytest.raises(RuntimeError):
        write_report(None, store, DAYS[-1], out)
    assert out.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_thresholds_follow_the_catalogue(two_detector_store, tmp_path) -> None:
    """Edit the catalogue's read-noise limit: the report follows (nothing is retyped)."""
    cat_dir = tmp_path / "metrics"
    shutil.copytree(DEFAULT_DIR, cat_dir)
    y = cat_dir / "bias.yaml"
    y.write_text(y.read_text().replace("high: 9.0", "high: 6.0"))
    settings = load_settings(None, store=two_detector_store[0], catalogue_dir=cat_dir)
    with Store(two_detector_store[0]) as store:
        write_report(settings, store, DAYS[-1], tmp_path / "r.html", metrics=["read_noise"])
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "spec ≤ 6" in text and "spec ≤ 9" not in text
    n_bad = int(
        re.search(
            r'href="#m-read_noise">read_noise</a>.*?<td class=bad>(\d+)</td>', text, re.S
        ).group(1)
    )
    assert n_bad > 1


def test_latiss_single_ccd(tmp_path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        populate(
            store,
            ["RXX_S00"],
            ["20240310", "20240311"],
            instrument="LATISS",
            metrics=["bias_level", "read_noise", "gain"],
            ptc=False,
        )
        text = build_report(store, "20240311", nights=5)
    assert_self_contained(text)
    assert "LATISS" in text and "2024-03-11" in text
    assert len(images_of(text)) == 3 * 3 + 3
    assert "No PTC ramp was taken this day." in text


def test_a_few_detectors_without_pictures(tmp_path) -> None:
    names = ["R22_S00", "R22_S01", "R22_S10", "R00_SW0", "R44_SW1"]
    with Store(tmp_path / "s.sqlite") as store:
        recs = night_records(
            "20251121", names, metrics=["read_noise", "dark_current"], summaries=False
        )
        write_night(store, recs, "20251121")
        text = build_report(store)  # latest day by default; trends fall back to amp medians
    assert "2025-11-21" in text and "No binned images stored for this day." in text
    assert '<span class="pill ok">no firing alerts</span>' in text
    assert len(images_of(text)) == 3 * 2
    assert text.count("<td class=l>R00_SW0</td>") == 8  # wavefront sensors have 8 amps


def test_whole_camera(tmp_path) -> None:
    """All 205 detectors (3,264 amps with the 8-amp wavefront sensors): a map, a combined
    bias mosaic and the tables, in reasonable time."""
    names = [n for n in lsstcam_detectors() if not n.endswith(("SG0", "SG1"))]
    with Store(tmp_path / "s.sqlite") as store:
        recs = night_records("20251121", names, metrics=["read_noise"])
        write_night(store, recs, "20251121")
        fill_amp_images(store, "LSSTCam", "20251121", names, kinds=("bias",), binning=8)
        fire_alert(
            store,
            "LSSTCam",
            "R43_S22",
            "C17",
            "read_noise_high",
            metric="read_noise",
            value=9.5,
            threshold=9.0,
        )
        t0 = time.perf_counter()
        text = build_report(store, "20251121", metrics=["read_noise"])
        seconds = time.perf_counter() - t0
    assert_self_contained(text)
    imgs = images_of(text)
    assert len(imgs) == 4
    n_amps = 189 * 16 + 8 * 8
    assert f"<tr><th>Detectors</th><td>197 ({n_amps} amps)</td></tr>" in text
    assert f"<details><summary>All {n_amps} amps</summary>" in text
    assert seconds < 30
    mosaic_png = Image.open(io.BytesIO(imgs[1]))
    a = np.asarray(mosaic_png.convert("L"))
    assert a.std() > 5  # not blank


def test_empty_store_and_unknown_day(tmp_path, registered_cli, capsys) -> None:
    store = tmp_path / "s.sqlite"
    Store(store).close()
    rc = registered_cli(["report", "--store", str(store), "-o", str(tmp_path / "r.html")])
    assert rc == 2 and "holds no records" in capsys.readouterr().err
    with Store(store) as s:
        text = build_report(s, "20250101")
    assert "The store holds no records for this day." in text
