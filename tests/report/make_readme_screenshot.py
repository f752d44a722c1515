"""Regenerate ``docs/report.png`` (the README's picture of the HTML report).

    .venv/bin/python tests/report/make_readme_screenshot.py [--detectors all|demo]

Builds a store with four synthetic nights of every catalogue metric for the whole LSSTCam
focal plane (``nightdata``; pictures, PTC curves and a firing alert on the last night),
writes the report with ``calibmon report`` and photographs its top 1400×3000 pixels with
headless Chromium (as ``test_report_screenshot`` does); kept under 1 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from nightdata import DAYS, DETECTORS, cli_with_report, populate  # noqa: E402
from PIL import Image  # noqa: E402
from test_report_screenshot import screenshot  # noqa: E402

from calibmon.cli import main  # noqa: E402
from calibmon.io.detectors import lsstcam_detectors  # noqa: E402
from calibmon.store.sqlite import Store  # noqa: E402

OUT = HERE.parents[1] / "docs" / "report.png"


def run(detectors: str = "all") -> Path:
    names = (
        [n for n in lsstcam_detectors() if not n.endswith(("SG0", "SG1"))]
        if detectors == "all"
        else list(DETECTORS)
    )
    work = Path(tempfile.mkdtemp(prefix="calibmon-shot-"))
    with Store(work / "s.sqlite") as store:
        populate(store, names, DAYS, binning=8 if detectors == "all" else 2)
    html = work / "report.html"
    with cli_with_report():
        rc = main(["report", "--store", str(work / "s.sqlite"), "--nights", "4", "-o", str(html)])
    assert rc == 0
    png = work / "shot.png"
    screenshot(html, png, work / "profile")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    img = Image.open(png).convert("RGB")
    img.save(OUT, optimize=True)
    if OUT.stat().st_size > 900_000:  # keep the README light: a palette PNG is ~3x smaller
        img.quantize(256, dither=Image.Dither.NONE).save(OUT, optimize=True)
    print(f"{OUT} ({OUT.stat().st_size / 1e6:.2f} MB) from {html}")
    return OUT


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detectors", choices=["all", "demo"], default="all")
    run(p.parse_args().detectors)
