"""Focal-plane geometry for pictures: where each CCD and amp is drawn, and assembly of
binned amp images into CCDs and CCDs into the focal plane. Pure numpy, no drawing.

Coordinates are in *CCD units*: a science CCD is a 1×1 square. LSSTCam's 3×3 slots of a
raft sit on a pitch of ``1 + SLOT_GAP``, its 5×5 rafts on ``3·(1 + SLOT_GAP) + RAFT_GAP``,
from ``focal_plane_position`` (``R{y}{x}_S{y}{x}``: x grows to the right, y upwards; the
corner sensors are placed as that function approximates them). Wavefront sensors (8
amps) are half-height. LATISS (one CCD) is the unit square. Nothing here is to scale
with the real camera beyond that layout; it is for pictures only.

Inside a CCD the 16 amps form 2 rows × 8 columns, as their ``DETSEC`` says (DESIGN.md §2,
obs_lsst): ``C10``…``C17`` the bottom row from left to right, ``C00``…``C07`` the top row
from left to right. An amp image stored in readout order is flipped along each axis whose
``DETSEC`` range runs backwards (``[x_hi:x_lo, …]``) before it is placed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from calibmon.io.detectors import focal_plane_position, is_wavefront

SLOT_GAP = 0.06
RAFT_GAP = 0.30
SLOT_PITCH = 1.0 + SLOT_GAP
RAFT_PITCH = 3 * SLOT_PITCH + RAFT_GAP

_DETSEC_RE = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")

Box = tuple[float, float, float, float]  # x0, y0, width, height (CCD units)


def single_ccd(instrument: str) -> bool:
    """True for one-CCD instruments (LATISS): no raft/slot layout."""
    return instrument.upper() in ("LATISS", "LSST_ATISS")


def raft_box(raft_x: int, raft_y: int) -> Box:
    """Outline of a raft (its 3×3 slots) in CCD units."""
    w = 3 * SLOT_PITCH - SLOT_GAP
    return raft_x * RAFT_PITCH, raft_y * RAFT_PITCH, w, w


def ccd_box(instrument: str, detector_name: str) -> Box:
    """Where a CCD is drawn, in CCD units (wavefront sensors are half height)."""
    if single_ccd(instrument):
        return 0.0, 0.0, 1.0, 1.0
    rx, ry, sx, sy = focal_plane_position(detector_name)
    x0 = rx * RAFT_PITCH + sx * SLOT_PITCH
    y0 = ry * RAFT_PITCH + sy * SLOT_PITCH
    return x0, y0, 1.0, 0.5 if is_wavefront(detector_name) else 1.0


def parse_detsec(text: str) -> tuple[int, int, int, int]:
    """``[x1:x2,y1:y2]`` (1-based; a range may run backwards) → ``(x1, x2, y1, y2)``."""
    m = _DETSEC_RE.match(text or "")
    if not m:
        raise ValueError(f"not a DETSEC: {text!r}")
    return tuple(int(g) for g in m.groups())  # type: ignore[return-value]


@dataclass(frozen=True)
class AmpCell:
    """An amp's cell in its CCD's 8×2 grid and how its readout-order image is flipped."""

    col: int  # 0..7, left to right
    row: int  # 0 bottom, 1 top
    flip_x: bool
    flip_y: bool


def amp_cell(amp: str, detsec: str | None = None, vendor: str = "") -> AmpCell:
    """The amp's cell from its ``DETSEC`` (or, without one, from its name and the usual
    LSSTCam convention: C1x bottom row flipped in x; C0x top row flipped in y, and also in x
    for ITL)."""
    if detsec:
        x1, x2, y1, y2 = parse_detsec(detsec)
        nx, ny = abs(x2 - x1) + 1, abs(y2 - y1) + 1
        col = (min(x1, x2) - 1) // nx
        row = (min(y1, y2) - 1) // ny
        return AmpCell(int(col), int(row), x1 > x2, y1 > y2)
    if not re.fullmatch(r"C[01][0-7]", amp):
        raise ValueError(f"not an amp name: {amp!r}")
    i = int(amp[2])
    if amp[1] == "1":
        return AmpCell(i, 0, True, False)
    return AmpCell(i, 1, vendor.upper() != "E2V", True)


@functools.cache  # ~3k amps × every map of a report
def amp_box(instrument: str, detector_name: str, amp: str) -> Box:
    """Where an amp is drawn, in CCD units (1/8 of the CCD wide, 1/2 high)."""
    x0, y0, w, h = ccd_box(instrument, detector_name)
    cell = amp_cell(amp)
    n_rows = 1 if is_wavefront(detector_name) else 2
    aw, ah = w / 8, h / n_rows
    return x0 + cell.col * aw, y0 + min(cell.row, n_rows - 1) * ah, aw, ah


def extent_of(instrument: str, detector_names: Iterable[str]) -> Box:
    """Area to draw: the union of the rafts holding the detectors (LSSTCam), so that the
    CCDs that are present keep their true positions with their neighbours' outlines."""
    names = list(detector_names)
    if single_ccd(instrument) or not names:
        return 0.0, 0.0, 1.0, 1.0
    boxes = [raft_box(*focal_plane_position(n)[:2]) for n in names]
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


def rafts_in(extent: Box) -> list[tuple[int, int]]:
    """(raft_x, raft_y) of every LSSTCam raft inside ``extent`` (corner rafts included)."""
    x0, y0, w, h = extent
    out = []
    for ry in range(5):
        for rx in range(5):
            bx, by, bw, bh = raft_box(rx, ry)
            if (
                bx >= x0 - 1e-9
                and by >= y0 - 1e-9
                and bx + bw <= x0 + w + 1e-9
                and (by + bh <= y0 + h + 1e-9)
            ):
                out.append((rx, ry))
    return out


# -- images ------------------------------------------------------------------------------


def resample(image: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Resize a 2-D image to ``(n_rows, n_cols)``: block means (NaN-aware) when shrinking an
    axis, nearest neighbour when growing it."""
    a = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(a)
    sums = np.where(finite, a, 0.0)
    counts = finite.astype(np.float64)
    for axis, n_out in ((0, n_rows), (1, n_cols)):
        n_in = a.shape[axis]
        if n_in == n_out:
            continue
        if n_in > n_out:
            edges = np.floor(np.arange(n_out) * n_in / n_out).astype(int)
            sums = np.add.reduceat(sums, edges, axis=axis)
            counts = np.add.reduceat(counts, edges, axis=axis)
        else:
            idx = np.minimum((np.arange(n_out) * n_in / n_out).astype(int), n_in - 1)
            sums = np.take(sums, idx, axis=axis)
            counts = np.take(counts, idx, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)


def orient(image: np.ndarray, cell: AmpCell) -> np.ndarray:
    """A readout-order amp image turned into detector orientation (row 0 at the bottom)."""
    a = image
    if cell.flip_x:
        a = a[:, ::-1]
    if cell.flip_y:
        a = a[::-1, :]
    return a


def assemble_ccd(
    amps: Mapping[str, tuple[np.ndarray, str | None]],
    amp_shape: tuple[int, int],
    *,
    wavefront: bool = False,
    vendor: str = "",
) -> np.ndarray:
    """One CCD picture from its amp images: ``amps`` maps amp name → (readout-order image,
    DETSEC). Each amp is resampled to ``amp_shape`` (rows, cols), oriented by its DETSEC
    and put in its cell; missing amps are NaN. Row 0 of the result is the CCD's bottom."""
    h, w = amp_shape
    n_rows = 1 if wavefront else 2
    out = np.full((n_rows * h, 8 * w), np.nan)
    for amp, (image, detsec) in amps.items():
        cell = amp_cell(amp, detsec, vendor)
        row = min(cell.row, n_rows - 1)
        if not 0 <= cell.col < 8:
            continue
        out[row * h : (row + 1) * h, cell.col * w : (cell.col + 1) * w] = orient(
            resample(image, h, w), cell
        )
    return out


def focal_plane_canvas(
    instrument: str,
    ccds: Mapping[str, np.ndarray],
    extent: Box,
    px_per_ccd: int,
) -> np.ndarray:
    """Paste CCD pictures (each ``(px, px)`` or ``(px/2, px)`` for wavefront sensors, row 0
    at the bottom) into one canvas covering ``extent`` at ``px_per_ccd`` pixels per CCD
    unit; NaN elsewhere. Draw with ``origin="lower"`` and ``extent`` (x0, x0+w, y0, y0+h)."""
    x0, y0, w, h = extent
    n_cols = round(w * px_per_ccd)
    n_rows = round(h * px_per_ccd)
    canvas = np.full((n_rows, n_cols), np.nan, dtype=np.float32)
    for name, img in ccds.items():
        bx, by, bw, bh = ccd_box(instrument, name)
        c0 = round((bx - x0) * px_per_ccd)
        r0 = round((by - y0) * px_per_ccd)
        tgt_h, tgt_w = round(bh * px_per_ccd), round(bw * px_per_ccd)
        piece = resample(img, tgt_h, tgt_w) if img.shape != (tgt_h, tgt_w) else img
        r1, c1 = min(r0 + tgt_h, n_rows), min(c0 + tgt_w, n_cols)
        canvas[r0:r1, c0:c1] = piece[: r1 - r0, : c1 - c0]
    return canvas


def pixels_per_ccd(extent: Box, native_px: int, target_width_px: int = 1400) -> int:
    """Pixels per CCD unit for a canvas about ``target_width_px`` wide, never finer than the
    stored images (``native_px``, the binned CCD width) and at least 16; a multiple of 16
    so that amps (1/8 × 1/2 of a CCD) get whole pixels."""
    px = int(target_width_px / max(extent[2], 1e-9))
    px = max(16, min(px, max(16, native_px)))
    return px - px % 16 or 16
