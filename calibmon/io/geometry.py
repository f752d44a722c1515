"""Amplifier geometry from ``DATASEC`` and the array shape (no BIASSEC in real raws).

Raw amplifier arrays are in readout order, shape ``(n_rows, n_cols)``. Columns after
DATASEC are the serial overscan, rows above it the parallel overscan, columns before
it the prescan. Real values: ITL amp 576×2048 with ``DATASEC=[4:512,1:2000]``
(3 prescan, 509 data, 64 serial-overscan columns; 48 parallel-overscan rows), e2v
576×2048 with ``[11:522,1:2002]`` (10 prescan, 512 data, 54 overscan columns).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEC_RE = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")

# Serial-overscan columns left out of the overscan level: the first ones carry the
# deferred charge of the last data column (serial CTI trail, EPER), the last one can be
# affected by the readout of the next row. cp_pipe's ISR likewise leaves a few leading
# columns out of the serial overscan (its default `leading` trim is of this size).
OVERSCAN_SKIP_LEADING = 3
OVERSCAN_SKIP_TRAILING = 1


@dataclass(frozen=True)
class AmpGeometry:
    """Slices into one raw amplifier array (0-based, numpy order)."""

    shape: tuple[int, int]
    data_rows: slice
    data_cols: slice
    serial_overscan_cols: slice  # all columns after DATASEC
    parallel_overscan_rows: slice  # all rows above DATASEC

    @property
    def n_data_rows(self) -> int:
        return self.data_rows.stop - self.data_rows.start

    @property
    def n_data_cols(self) -> int:
        return self.data_cols.stop - self.data_cols.start

    @property
    def n_serial_overscan(self) -> int:
        return self.serial_overscan_cols.stop - self.serial_overscan_cols.start

    @property
    def overscan_level_cols(self) -> slice:
        """Serial-overscan columns used for the per-row level (leading/trailing skipped)."""
        start = self.serial_overscan_cols.start
        stop = self.serial_overscan_cols.stop
        n = stop - start
        lead = (
            OVERSCAN_SKIP_LEADING if n > OVERSCAN_SKIP_LEADING + OVERSCAN_SKIP_TRAILING + 4 else 0
        )
        trail = OVERSCAN_SKIP_TRAILING if n > lead + OVERSCAN_SKIP_TRAILING + 4 else 0
        return slice(start + lead, stop - trail)


def parse_section(text: str) -> tuple[int, int, int, int]:
    """Parse a FITS section ``[x1:x2,y1:y2]`` (1-based, inclusive) into its four ints.

    Raises ``ValueError`` on anything else, including reversed ranges.
    """
    m = _SEC_RE.match(text or "")
    if not m:
        raise ValueError(f"not a FITS section: {text!r}")
    x1, x2, y1, y2 = (int(g) for g in m.groups())
    if x1 < 1 or y1 < 1 or x2 < x1 or y2 < y1:
        raise ValueError(f"section out of order: {text!r}")
    return x1, x2, y1, y2


def amp_geometry(datasec: str, shape: tuple[int, int]) -> AmpGeometry:
    """Geometry of one raw amplifier from its ``DATASEC`` and ``(n_rows, n_cols)`` shape.

    Raises ``ValueError`` if DATASEC does not fit in the array or leaves no serial overscan.
    """
    x1, x2, y1, y2 = parse_section(datasec)
    n_rows, n_cols = shape
    if x2 > n_cols or y2 > n_rows:
        raise ValueError(f"DATASEC {datasec} does not fit in a {n_cols}x{n_rows} amplifier")
    if x2 >= n_cols:
        raise ValueError(f"DATASEC {datasec} leaves no serial overscan in {n_cols} columns")
    return AmpGeometry(
        shape=(n_rows, n_cols),
        data_rows=slice(y1 - 1, y2),
        data_cols=slice(x1 - 1, x2),
        serial_overscan_cols=slice(x2, n_cols),
        parallel_overscan_rows=slice(y2, n_rows),
    )
