"""Calibration files in the layout the Rubin stack writes, made with astropy for the tests.

Facts from the stack's code (no code carried over): afw's ExposureFitsWriter writes an
empty primary HDU holding the metadata (``INHERIT`` on the extensions), then ``IMAGE``,
``MASK`` (int32, ``MP_<PLANE>`` cards naming the bits) and ``VARIANCE`` HDUs; current
Rubin masters are tile-compressed (GZIP_2, lossless for floats here: quantize_level 0).
cp_pipe's CalibCombineTask sets ``OBSTYPE`` to the lower-case calibration type and
``CPP_INPUT_<i>``, ``CPP_INPUT_EXPT_<i>``, ``CPP_INPUT_SCALE_<i>``; the merged input
metadata carries ``LSST ISR UNITS`` and ``LSST ISR GAIN/READNOISE <amp>``. ip_isr's
Defects.writeFits writes an empty primary HDU and a table ``x0, y0, width, height``
(0-based detector pixels) whose header holds the metadata. Processed exposures carry
ISR's ``LSST CALIB RUN/UUID/DATE <TYPE>`` cards.

The test-side assembly places each amp's readout-order image at its DETSEC, flipped along
each axis whose DETSEC range runs backwards (the raws' convention, DESIGN §2).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning


def detsecs(raw_path: Path) -> dict[str, str]:
    """Each amp's DETSEC in a raw file (``Segment10`` → ``C10``)."""
    out = {}
    with fits.open(raw_path) as hdul:
        for hdu in hdul[1:]:
            name = hdu.header.get("EXTNAME", "")
            if str(name).startswith("Segment"):
                out["C" + name[7:]] = hdu.header["DETSEC"]
    return out


def assemble(amps: Mapping[str, np.ndarray], secs: Mapping[str, str]) -> np.ndarray:
    """Amp images (readout order) → the assembled detector image."""
    boxes = {}
    for amp, sec in secs.items():
        x1, x2, y1, y2 = (int(v) for v in re.findall(r"\d+", sec))
        boxes[amp] = (x1, x2, y1, y2)
    n_cols = max(max(b[0], b[1]) for b in boxes.values())
    n_rows = max(max(b[2], b[3]) for b in boxes.values())
    first = next(iter(amps.values()))
    out = np.zeros((n_rows, n_cols), dtype=first.dtype)
    for amp, (x1, x2, y1, y2) in boxes.items():
        a = amps[amp]
        if x1 > x2:
            a = a[:, ::-1]
        if y1 > y2:
            a = a[::-1, :]
        out[min(y1, y2) - 1 : max(y1, y2), min(x1, x2) - 1 : max(x1, x2)] = a
    return out


def _primary(cards: Mapping[str, Any]) -> fits.PrimaryHDU:
    hdu = fits.PrimaryHDU()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # HIERARCH cards are announced
        for k, v in cards.items():
            hdu.header[k if len(k) <= 8 and " " not in k else f"HIERARCH {k}"] = v
    return hdu


def write_exposuref(
    path: Path, image: np.ndarray, cards: Mapping[str, Any], *, compress: bool = True
) -> None:
    """An afw ExposureF file: metadata, IMAGE (GZIP_2 when ``compress``), MASK, VARIANCE."""
    image = np.asarray(image, dtype=np.float32)
    ext = {"INHERIT": True}
    if compress:
        img = fits.CompImageHDU(image, name="IMAGE", compression_type="GZIP_2",
                                quantize_level=0.0)  # fmt: skip
    else:
        img = fits.ImageHDU(image, name="IMAGE")
    img.header.update(ext)
    mask = fits.ImageHDU(np.zeros(image.shape, dtype=np.int32), name="MASK")
    mask.header.update({**ext, "MP_BAD": 0, "MP_SAT": 1, "MP_INTRP": 2, "MP_EDGE": 4})
    var = fits.ImageHDU(np.abs(image).astype(np.float32) + 1.0, name="VARIANCE")
    var.header.update(ext)
    fits.HDUList([_primary(cards), img, mask, var]).writeto(path, overwrite=True)


def write_defects(path: Path, mask: np.ndarray, cards: Mapping[str, Any]) -> int:
    """An ip_isr Defects file: one box per run of bad pixels along a column; returns the
    number of boxes."""
    x0, y0, w, h = [], [], [], []
    rows, cols = mask.shape
    for x in range(cols):
        col = mask[:, x]
        y = 0
        while y < rows:
            if col[y]:
                start = y
                while y < rows and col[y]:
                    y += 1
                x0.append(x)
                y0.append(start)
                w.append(1)
                h.append(y - start)
            else:
                y += 1
    table = fits.BinTableHDU.from_columns([
        fits.Column("x0", "J", array=np.array(x0, dtype=np.int32)),
        fits.Column("y0", "J", array=np.array(y0, dtype=np.int32)),
        fits.Column("width", "J", array=np.array(w, dtype=np.int32)),
        fits.Column("height", "J", array=np.array(h, dtype=np.int32)),
    ])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        for k, v in cards.items():
            table.header[k if len(k) <= 8 else f"HIERARCH {k}"] = v
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)
    return len(x0)


def write_processed(path: Path, day_obs: str, detector: int,
                    calibs: Mapping[str, tuple[str, str, str]]) -> None:  # fmt: skip
    """A processed exposure (post-ISR) carrying ISR's calibration cards:
    ``calibs[type] = (run, uuid, date)``."""
    cards: dict[str, Any] = {"DAYOBS": day_obs, "DETECTOR": detector, "OBSTYPE": "bias"}
    for ctype, (run, uid, date) in calibs.items():
        cards[f"LSST CALIB RUN {ctype.upper()}"] = run
        cards[f"LSST CALIB UUID {ctype.upper()}"] = uid
        cards[f"LSST CALIB DATE {ctype.upper()}"] = date
    write_exposuref(path, np.zeros((8, 8), dtype=np.float32), cards, compress=False)
