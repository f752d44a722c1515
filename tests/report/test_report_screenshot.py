"""The report as a person sees it: headless Chromium renders it to a non-blank PNG.

Skips only when no Chromium is installed (Debian package ``chromium``; the Makefile's
``system-deps`` installs it).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nightdata import images_of
from PIL import Image

WINDOW = (1400, 3000)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (Debian package: chromium, see the Makefile)")


def screenshot(html: Path, png: Path, profile: Path, window=WINDOW, timeout_s=90) -> None:
    """Render ``html`` in headless Chromium into ``png`` (offline: no network services)."""
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
        f"--screenshot={png}", f"--window-size={window[0]},{window[1]}",
        html.resolve().as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert png.exists(), f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr}"


def test_screenshot_is_not_blank(two_detector_report: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    screenshot(two_detector_report, png, tmp_path / "profile")
    img = Image.open(png)
    assert img.format == "PNG" and img.size == WINDOW
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    grey = rgb.mean(axis=2)
    background = np.median(grey)
    assert grey.std() > 20  # header, tables, pictures: far from one flat colour
    assert (np.abs(grey - background) > 30).mean() > 0.05
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 200  # the pictures are drawn
    # the dark header band is at the top, the page below it is light
    assert grey[:40].mean() < 100 < grey[200:].mean()


def test_every_image_is_an_embedded_png(two_detector_report: Path) -> None:
    text = two_detector_report.read_text(encoding="utf-8")
    pngs = images_of(text)
    assert pngs and all(Image.open(io.BytesIO(p)).format == "PNG" for p in pngs)
