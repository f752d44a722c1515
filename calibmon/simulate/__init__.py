"""Simulator of raw LSSTCam/LATISS calibration exposures with a truth file.

``simulate_night`` writes a night of biases, darks, flats (and optionally a PTC ramp)
in exactly the real raw layout (DESIGN.md §2) and returns, and writes as
``truth.json``, every injected parameter (``load_truth`` reads it back). Every later
test of calibmon's science is checked against this truth: the exact meaning of each
truth key is in ``calibmon.simulate.truth.DEFINITIONS`` (copied into the file).

- ``camera.py``: layouts, DETSEC/DTV conventions, per-amp camera parameters
  (``camera_seed``) and night drift (``seed`` + ``day_obs``).
- ``physics.py``: one amp frame — charge with brighter-fatter variance, full well,
  serial CTI, nonlinearity, gain, bias structure, read noise.
- ``writer.py``: headers, RICE-compressed files, the night's plan and PTC ramp,
  science and guider files for reader tests.
- ``truth.py``: the truth dict, its definitions, ``load_truth``.
"""

from __future__ import annotations

from calibmon.simulate.truth import DEFINITIONS, load_truth
from calibmon.simulate.writer import (
    simulate_night,
    write_guider_file,
    write_science_exposure,
)

__all__ = [
    "DEFINITIONS",
    "load_truth",
    "simulate_night",
    "write_guider_file",
    "write_science_exposure",
]
