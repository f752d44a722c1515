"""Detector numbers and names (LSSTCam/obs_lsst convention), instrument names, vendors.

LSSTCam: the 189 science CCDs are numbered 0–188 in raft order
R01, R02, R03, R10 … R14, R20 … R24, R30 … R34, R41, R42, R43, with slots
S00 … S22 inside each raft (``R22_S11`` is 94). The 16 corner sensors follow
(189–204): for each corner raft R00, R04, R40, R44 the guiders SG0, SG1 then the
wavefront sensors SW0, SW1 (``R00_SW0`` is 191, ``R44_SW1`` is 204), as in
obs_lsst's LSSTCam camera description. LATISS has one detector, 0 (``RXX_S00``).
LSSTComCam has one raft, R22, numbered by slot (``R22_S00`` … ``R22_S22`` = 0 … 8).
"""

from __future__ import annotations

import re
from functools import cache

SCIENCE_RAFTS: tuple[str, ...] = (
    "R01", "R02", "R03",
    "R10", "R11", "R12", "R13", "R14",
    "R20", "R21", "R22", "R23", "R24",
    "R30", "R31", "R32", "R33", "R34",
    "R41", "R42", "R43",
)  # fmt: skip
SCIENCE_SLOTS: tuple[str, ...] = ("S00", "S01", "S02", "S10", "S11", "S12", "S20", "S21", "S22")
CORNER_RAFTS: tuple[str, ...] = ("R00", "R04", "R40", "R44")
CORNER_SLOTS: tuple[str, ...] = ("SG0", "SG1", "SW0", "SW1")

# Rafts built with e2v sensors in LSSTCam; the other science rafts and all corner
# rafts carry ITL sensors. Used only when a header lacks CCD_MANU (and by the simulator).
E2V_RAFTS: frozenset[str] = frozenset(
    {"R11", "R12", "R13", "R14", "R21", "R22", "R23", "R24", "R30", "R31", "R32", "R33", "R34"}
)

_NAME_RE = re.compile(r"^R(\d\d|XX)_S(\d\d|G[01]|W[01])$")

# Canonical instrument names, keyed by the upper-cased header value.
_INSTRUMENT_ALIASES: dict[str, str] = {
    "LSSTCAM": "LSSTCam",
    "LSST_CAM": "LSSTCam",
    "LATISS": "LATISS",
    "LSST_ATISS": "LATISS",
    "AUXTEL": "LATISS",
    "LSSTCOMCAM": "LSSTComCam",
    "COMCAM": "LSSTComCam",
    "LSSTCOMCAMSIM": "LSSTComCamSim",
    "TS8": "LSST-TS8",
    "LSST-TS8": "LSST-TS8",
}


def canonical_instrument(header_value: str) -> str:
    """Map an ``INSTRUME`` header value to one canonical name (case-insensitive).

    ``lsstCam`` → ``LSSTCam``, ``LSST_ATISS`` → ``LATISS``. Unknown names are kept as given
    (stripped), so a test stand of another observatory still works.
    """
    v = header_value.strip()
    return _INSTRUMENT_ALIASES.get(v.upper(), v)


@cache
def lsstcam_detectors() -> tuple[str, ...]:
    """All 205 LSSTCam detector names, index = detector number."""
    names = [f"{r}_{s}" for r in SCIENCE_RAFTS for s in SCIENCE_SLOTS]
    names += [f"{r}_{s}" for r in CORNER_RAFTS for s in CORNER_SLOTS]
    return tuple(names)


@cache
def _lsstcam_numbers() -> dict[str, int]:
    return {name: i for i, name in enumerate(lsstcam_detectors())}


def is_valid_name(name: str) -> bool:
    """True for ``R22_S11``-shaped names (including ``RXX_S00`` and corner slots)."""
    return bool(_NAME_RE.match(name))


def detector_number(instrument: str, name: str) -> int:
    """Detector number of ``name`` for ``instrument`` (canonical name).

    Raises ``KeyError`` for a name the instrument does not have.
    """
    if instrument == "LATISS":
        return 0
    if instrument in ("LSSTComCam", "LSSTComCamSim"):
        return SCIENCE_SLOTS.index(name.split("_")[1])
    return _lsstcam_numbers()[name]


def detector_name(instrument: str, number: int) -> str:
    """Inverse of :func:`detector_number`."""
    if instrument == "LATISS":
        return "RXX_S00"
    if instrument in ("LSSTComCam", "LSSTComCamSim"):
        return f"R22_{SCIENCE_SLOTS[number]}"
    return lsstcam_detectors()[number]


def is_wavefront(name: str) -> bool:
    """Wavefront sensors (SW0/SW1) read out 8 amplifiers, not 16."""
    return name.endswith(("_SW0", "_SW1"))


def is_guider(name: str) -> bool:
    """Guider sensors (SG0/SG1) write stamp data, not calibration frames."""
    return name.endswith(("_SG0", "_SG1"))


def default_vendor(name: str) -> str:
    """Vendor by LSSTCam raft when the header has no ``CCD_MANU``: ``E2V`` or ``ITL``."""
    return "E2V" if name[:3] in E2V_RAFTS else "ITL"


def segment_to_amp(extname: str) -> str | None:
    """``Segment10`` → ``C10``; None when the EXTNAME is not an amplifier segment."""
    m = re.fullmatch(r"\s*Segment(\d\d)\s*", extname, flags=re.IGNORECASE)
    return f"C{m.group(1)}" if m else None


# Readout order of the 16 segments in a raw file (DESIGN.md §2).
AMP_ORDER_16: tuple[str, ...] = tuple(f"C1{i}" for i in range(8)) + tuple(
    f"C0{i}" for i in range(7, -1, -1)
)
AMP_ORDER_8: tuple[str, ...] = tuple(f"C1{i}" for i in range(8))


def focal_plane_position(name: str) -> tuple[int, int, int, int]:
    """(raft_x, raft_y, slot_x, slot_y) of an LSSTCam detector; ``R{y}{x}_S{y}{x}``.

    Corner sensors map SG0/SG1/SW0/SW1 into the 3×3 slot grid of their raft
    (SG0 → (2,0)/(0,2)… approximated as slots 0,1 of the middle row/column); used for pictures only.
    """
    raft, slot = name.split("_")
    if raft == "RXX":
        return (0, 0, 0, 0)
    rx, ry = int(raft[2]), int(raft[1])
    if slot[1].isdigit():
        return (rx, ry, int(slot[2]), int(slot[1]))
    corner_slots = {"SG0": (0, 1), "SG1": (1, 0), "SW0": (1, 1), "SW1": (2, 2)}
    sx, sy = corner_slots[slot]
    return (rx, ry, sx, sy)
