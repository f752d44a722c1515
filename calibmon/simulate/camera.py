"""The simulated camera: amplifier layouts, header geometry and per-amp parameters.

Everything here is fixed by ``camera_seed`` (the *camera*) or by ``seed`` + ``day_obs``
(the *night*), never by the order in which things are generated: each (detector, amp)
draws from its own :class:`numpy.random.SeedSequence` keyed by the seeds, an instrument
code, the detector number and the amp's position in the readout order, so that adding a
detector or simulating the nights in another order gives the same amps.

Layouts
-------
Raw amplifier arrays are in readout order, shape ``(n_rows, n_cols)``: ``n_prescan``
columns, the data columns, then the serial overscan; the data rows, then the parallel
overscan. Real sizes (DESIGN.md §2; obs_lsst ``AMP_E2V``/``AMP_ITL``)::

    ITL  2048 rows × 576 cols, DATASEC [4:512,1:2000]   3 + 509 + 64 cols, 2000 + 48 rows
    E2V  2048 rows × 576 cols, DATASEC [11:522,1:2002]  10 + 512 + 54 cols, 2002 + 46 rows

``small=True`` keeps the structure at ~1/300 of the pixels, for fast tests::

    ITL  160 rows × 135 cols, DATASEC [4:103,1:150]     3 + 100 + 32 cols, 150 + 10 rows
    E2V  160 rows × 137 cols, DATASEC [11:110,1:152]    10 + 100 + 27 cols, 152 + 8 rows

DETSEC convention
-----------------
As in real LSSTCam/LATISS raws and lsst-camera-dh/eotest ``AmplifierGeometry._detsec``
(imSim's ``set_noao_keywords`` writes the same DTV/DTM values): with ``nx``, ``ny`` the
data size of one amp and ``i`` the second digit of the segment,

- ``Segment1i`` (C10…C17, HDUs 1–8) cover x ``i·nx+1 … (i+1)·nx``, y ``1 … ny`` of the
  CCD, read out from the right: ``DETSEC=[(i+1)·nx:i·nx+1,1:ny]`` (x flipped) for
  both vendors.
- ``Segment0i`` (C07…C00, HDUs 9–16) cover the same x range in the top half,
  y ``ny+1 … 2·ny``, flipped in y: ITL also flipped in x,
  ``DETSEC=[(i+1)·nx:i·nx+1,2·ny:ny+1]``; e2v not, ``[i·nx+1:(i+1)·nx,2·ny:ny+1]``
  (obs_lsst ``flipXY``: ITL C0x ``[True, True]``, e2v C0x ``[False, True]``).

``DTM1_1``/``DTM2_2`` are −1 on a flipped axis, +1 otherwise, and ``DTV`` maps 1-based
raw-array pixel coordinates to detector coordinates, ``det = DTM·pix + DTV``: ITL
``Segment10`` has ``DTV1=513, DTV2=0``, e2v ``Segment07`` ``DTV1=3574, DTV2=4005``.
Wavefront sensors (half ITL CCDs) have only ``Segment10``…``Segment17`` with the
bottom-half geometry and ``DETSIZE=[1:8·nx,1:ny]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from calibmon.io.detectors import (
    AMP_ORDER_8,
    AMP_ORDER_16,
    default_vendor,
    detector_number,
    is_guider,
    is_valid_name,
    is_wavefront,
    lsstcam_detectors,
)

INSTRUMENTS: tuple[str, ...] = ("LSSTCam", "LATISS")
LATISS_DETECTOR = "RXX_S00"
# Mixed into every seed so that LATISS detector 0 and LSSTCam detector 0 differ.
_INSTRUMENT_CODE = {"LSSTCam": 1, "LATISS": 2}

# Seed-stream purposes (last-but-one element of each SeedSequence entropy list).
_STREAM_PARAMS = 10  # scalar camera parameters of one amp
_STREAM_DEFECTS = 11  # defect positions and strengths (depend on the layout)
_STREAM_PRNU = 12  # pixel response map (depends on the layout)
_STREAM_NIGHT = 20  # night-to-night drift of one amp
_STREAM_FRAME = 30  # noise of one amp in one exposure
_STREAM_EXPOSURE = 31  # per-exposure, per-detector header values (CCDTEMP)
_STREAM_SERIALS = 40  # LSST_NUM assignment

# Camera parameter ranges, drawn uniformly per amp from camera_seed. Sources: obs_lsst
# policy/lsstCam/R22.yaml (e2v gains 1.38–1.53 e-/ADU, read noise 5.1–6.5 e-,
# saturation 128–140 ke-), DESIGN/brief for ITL. Full wells are kept in a narrower band
# than the 100–170 ke- seen across the real camera so that a 30-pair PTC ramp can
# sample every amp's turnoff in ≤ 3 % steps (see writer.ptc_signal_ladder).
GAIN_RANGE_E_PER_ADU = {"ITL": (1.60, 1.80), "E2V": (1.40, 1.60)}
READ_NOISE_RANGE_E = {"ITL": (5.5, 8.0), "E2V": (5.0, 7.0)}
BIAS_LEVEL_RANGE_ADU = {"ITL": (14000.0, 16000.0), "E2V": (24000.0, 26000.0)}
FULL_WELL_RANGE_E = {"ITL": (115000.0, 130000.0), "E2V": (125000.0, 140000.0)}
DARK_CURRENT_RANGE_E_PER_S = (0.002, 0.02)  # log-uniform
K2_RANGE_PER_E = (-1.0e-7, -5.0e-8)  # 0.5–1 % deficit at 100 ke-
A00_RANGE_PER_E = (-2.5e-6, -1.5e-6)  # Astier et al. 2019 Fig. 11: a00 ≈ −2e-6
# log-uniform; see physics.apply_serial_cti. Within the camera spec (<= 5e-6, LSSTCam
# sensors measure ~1e-6-4e-6) so a stable simulated camera pages nobody; large enough
# for EPER to measure it within ~5 % on small amps (trail ~2 adu at 9000 adu of signal).
SERIAL_CTI_RANGE = (2.0e-6, 4.5e-6)
PRNU_RANGE = (0.005, 0.015)  # σ of the pixel response map
ILLUMINATION_RANGE = (0.97, 1.03)  # relative flat illumination × QE of an amp
BIAS_PATTERN_RANGE_ADU = (2.0, 6.0)  # amplitude of the fixed 2-D bias structure

# Defects per amp (camera): counts scale with the data area of the layout.
HOT_PIXELS_PER_MPIX = 15.0
COLD_PIXELS_PER_MPIX = 10.0
P_HOT_COLUMN = 0.15  # probability that an amp has one hot column
P_COLD_COLUMN = 0.10
FULL_SIZE_DATA_COLS = 509  # ITL; column-defect probabilities are per amp of this width
HOT_PIXEL_RATE_RANGE_E_PER_S = (5.0, 50.0)  # log-uniform
HOT_COLUMN_RATE_RANGE_E_PER_S = (3.0, 15.0)
COLD_RESPONSE_RANGE = (0.0, 0.5)  # response of a cold pixel/column in flats
DEFECT_EDGE_COLS = 5  # defects stay this far from the data-area edges (CTI, pattern)

# Defaults for defects added with ``extra_defects`` (per night).
EXTRA_HOT_PIXEL_E_PER_S = 25.0
EXTRA_HOT_COLUMN_E_PER_S = 10.0
EXTRA_COLD_RESPONSE = 0.3

# Night-to-night drift, drawn per amp from (seed, day_obs).
GAIN_DRIFT_FRAC_SIGMA = 0.001
BIAS_DRIFT_ADU_SIGMA = 2.0
READ_NOISE_DRIFT_FRAC_SIGMA = 0.005

CCD_TYPE = {"ITL": "3800C", "E2V": "CCD250"}
CCD_SERIAL_PREFIX = {"ITL": "ITL-3800C", "E2V": "E2V-CCD250"}


@dataclass(frozen=True)
class AmpLayout:
    """Shape of one raw amplifier array, in readout order."""

    vendor: str
    small: bool
    n_rows: int
    n_cols: int
    n_prescan: int
    n_data_cols: int
    n_data_rows: int

    @property
    def n_serial_overscan(self) -> int:
        return self.n_cols - self.n_prescan - self.n_data_cols

    @property
    def n_parallel_overscan(self) -> int:
        return self.n_rows - self.n_data_rows

    @property
    def datasec(self) -> str:
        """FITS DATASEC (1-based, inclusive)."""
        return f"[{self.n_prescan + 1}:{self.n_prescan + self.n_data_cols},1:{self.n_data_rows}]"

    @property
    def data_rows(self) -> slice:
        return slice(0, self.n_data_rows)

    @property
    def data_cols(self) -> slice:
        return slice(self.n_prescan, self.n_prescan + self.n_data_cols)

    @property
    def first_overscan_col(self) -> int:
        """0-based raw column of the first serial-overscan pixel (the EPER trail)."""
        return self.n_prescan + self.n_data_cols

    @property
    def eper_transfers(self) -> int:
        """Serial transfers of the last data column: prescan + data columns (DATASEC x2)."""
        return self.n_prescan + self.n_data_cols

    def as_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "small": self.small,
            "n_rows": self.n_rows,
            "n_cols": self.n_cols,
            "n_prescan": self.n_prescan,
            "n_data_cols": self.n_data_cols,
            "n_data_rows": self.n_data_rows,
            "n_serial_overscan": self.n_serial_overscan,
            "n_parallel_overscan": self.n_parallel_overscan,
            "datasec": self.datasec,
            "eper_transfers": self.eper_transfers,
        }


LAYOUTS: dict[tuple[str, bool], AmpLayout] = {
    ("ITL", False): AmpLayout("ITL", False, 2048, 576, 3, 509, 2000),
    ("E2V", False): AmpLayout("E2V", False, 2048, 576, 10, 512, 2002),
    ("ITL", True): AmpLayout("ITL", True, 160, 135, 3, 100, 150),
    ("E2V", True): AmpLayout("E2V", True, 160, 137, 10, 100, 152),
}


def canonical_sim_instrument(instrument: str) -> str:
    """``LSSTCam`` or ``LATISS`` (case-insensitive); ValueError for anything else."""
    for name in INSTRUMENTS:
        if instrument.strip().upper() == name.upper():
            return name
    raise ValueError(f"simulator supports {INSTRUMENTS}, not {instrument!r}")


def detector_vendor(instrument: str, detector: str) -> str:
    """``ITL`` or ``E2V``: LATISS and corner rafts are ITL; science rafts by obs_lsst."""
    if instrument == "LATISS":
        return "ITL"
    return default_vendor(detector)


def amp_names(detector: str) -> tuple[str, ...]:
    """Amps in file (readout) order: 16, or 8 (C10…C17) for wavefront sensors."""
    return AMP_ORDER_8 if is_wavefront(detector) else AMP_ORDER_16


def check_detector(instrument: str, detector: str) -> int:
    """Validate a detector name for the instrument and return its number."""
    if not is_valid_name(detector):
        raise ValueError(f"not a detector name: {detector!r}")
    if instrument == "LATISS":
        if detector != LATISS_DETECTOR:
            raise ValueError(f"LATISS has one detector, {LATISS_DETECTOR}, not {detector!r}")
        return 0
    if detector not in lsstcam_detectors():
        raise ValueError(f"LSSTCam has no detector {detector!r}")
    if is_guider(detector):
        raise ValueError(
            f"{detector} is a guider: it takes no calibration frames (use write_guider_file)"
        )
    return detector_number(instrument, detector)


def segment_geometry(layout: AmpLayout, amp: str, wavefront: bool = False) -> dict[str, Any]:
    """DATASEC, DETSEC, DETSIZE and the DTV/DTM keys of one segment (see module docstring)."""
    nx, ny = layout.n_data_cols, layout.n_data_rows
    i = int(amp[2])
    x_lo, x_hi = i * nx + 1, (i + 1) * nx
    if amp[1] == "1":
        y_lo, y_hi, flip_x, flip_y = 1, ny, True, False
    else:
        y_lo, y_hi, flip_x, flip_y = ny + 1, 2 * ny, layout.vendor == "ITL", True
    p0x, p0y = layout.n_prescan + 1, 1  # first data pixel, 1-based raw coordinates
    detsec_x = f"{x_hi}:{x_lo}" if flip_x else f"{x_lo}:{x_hi}"
    detsec_y = f"{y_hi}:{y_lo}" if flip_y else f"{y_lo}:{y_hi}"
    return {
        "DATASEC": layout.datasec,
        "DETSEC": f"[{detsec_x},{detsec_y}]",
        "DETSIZE": f"[1:{8 * nx},1:{ny if wavefront else 2 * ny}]",
        "DTV1": x_hi + p0x if flip_x else x_lo - p0x,
        "DTV2": y_hi + p0y if flip_y else y_lo - p0y,
        "DTM1_1": -1.0 if flip_x else 1.0,
        "DTM2_2": -1.0 if flip_y else 1.0,
        "DTM1_2": 0.0,
        "DTM2_1": 0.0,
    }


def _rng(*entropy: int) -> np.random.Generator:
    """A generator for one stream; SFC64 because it draws normals ~20 % faster than PCG64."""
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence([int(e) for e in entropy])))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def ccd_serial(instrument: str, detector: str, camera_seed: int) -> str:
    """``LSST_NUM`` such as ``ITL-3800C-229``: stable per detector, unique within a camera."""
    vendor = detector_vendor(instrument, detector)
    # One permutation of 1…999 per camera; LATISS takes the slot after the 205 LSSTCam ones.
    perm = _rng(camera_seed, _STREAM_SERIALS).permutation(np.arange(1, 1000))
    index = 205 if instrument == "LATISS" else detector_number(instrument, detector)
    return f"{CCD_SERIAL_PREFIX[vendor]}-{int(perm[index]):03d}"


@dataclass
class AmpParams:
    """All injected parameters of one amplifier for one night (units in the names).

    Defect coordinates are 0-based ``(row, col)`` in the trimmed data area (DATASEC), in
    readout order; columns are data-area column indices. ``illumination`` is the amp's
    relative flat-field illumination × QE (camera-fixed), ``flux_scale`` a night
    multiplier (overrides); the flat rate is ``lamp × illumination × flux_scale``.
    """

    vendor: str
    gain_e_per_adu: float
    read_noise_e: float
    bias_level_adu: float
    bias_pattern_adu: float
    dark_current_e_per_s: float
    full_well_e: float
    nonlinearity_k2_per_e: float
    a00_per_e: float
    serial_cti: float
    illumination: float
    prnu: float
    flux_scale: float = 1.0
    dead: bool = False
    hot_pixels: list[tuple[int, int]] = field(default_factory=list)
    hot_pixel_rates_e_per_s: list[float] = field(default_factory=list)
    hot_columns: list[int] = field(default_factory=list)
    hot_column_rates_e_per_s: list[float] = field(default_factory=list)
    cold_pixels: list[tuple[int, int]] = field(default_factory=list)
    cold_pixel_response: list[float] = field(default_factory=list)
    cold_columns: list[int] = field(default_factory=list)
    cold_column_response: list[float] = field(default_factory=list)

    @property
    def read_noise_adu(self) -> float:
        return self.read_noise_e / self.gain_e_per_adu

    def flux_e_per_s(self, lamp_flux_e_per_s: float) -> float:
        """Mean flat illumination rate of the amp's data area (0 for a dead amp)."""
        if self.dead:
            return 0.0
        return lamp_flux_e_per_s * self.illumination * self.flux_scale


# Names accepted in ``overrides[det][amp]``; aliases map onto AmpParams fields.
OVERRIDE_ALIASES: dict[str, str] = {
    "gain": "gain_e_per_adu",
    "read_noise": "read_noise_e",
    "bias_level": "bias_level_adu",
    "bias_pattern": "bias_pattern_adu",
    "dark_current": "dark_current_e_per_s",
    "full_well": "full_well_e",
    "k2": "nonlinearity_k2_per_e",
    "a00": "a00_per_e",
    "cti": "serial_cti",
}
_SCALAR_FIELDS = (
    "gain_e_per_adu",
    "read_noise_e",
    "bias_level_adu",
    "bias_pattern_adu",
    "dark_current_e_per_s",
    "full_well_e",
    "nonlinearity_k2_per_e",
    "a00_per_e",
    "serial_cti",
    "illumination",
    "prnu",
    "flux_scale",
)
OVERRIDABLE: frozenset[str] = frozenset((*_SCALAR_FIELDS, "dead", "read_noise_adu"))


def camera_amp_params(
    instrument: str, detector: str, amp_index: int, camera_seed: int, layout: AmpLayout
) -> AmpParams:
    """The camera's amp: parameters and defects fixed by ``camera_seed`` alone.

    Scalar parameters do not depend on the layout (``small`` gives the same gains);
    defect positions are drawn for the layout's data area.
    """
    code = _INSTRUMENT_CODE[instrument]
    det = check_detector(instrument, detector)
    vendor = layout.vendor
    r = _rng(camera_seed, code, det, amp_index, _STREAM_PARAMS)
    params = AmpParams(
        vendor=vendor,
        gain_e_per_adu=float(r.uniform(*GAIN_RANGE_E_PER_ADU[vendor])),
        read_noise_e=float(r.uniform(*READ_NOISE_RANGE_E[vendor])),
        bias_level_adu=float(round(r.uniform(*BIAS_LEVEL_RANGE_ADU[vendor]), 1)),
        bias_pattern_adu=float(r.uniform(*BIAS_PATTERN_RANGE_ADU)),
        dark_current_e_per_s=_log_uniform(r, *DARK_CURRENT_RANGE_E_PER_S),
        full_well_e=float(round(r.uniform(*FULL_WELL_RANGE_E[vendor]))),
        nonlinearity_k2_per_e=float(r.uniform(*K2_RANGE_PER_E)),
        a00_per_e=float(r.uniform(*A00_RANGE_PER_E)),
        serial_cti=_log_uniform(r, *SERIAL_CTI_RANGE),
        illumination=float(r.uniform(*ILLUMINATION_RANGE)),
        prnu=float(r.uniform(*PRNU_RANGE)),
    )
    _draw_defects(
        params, _rng(camera_seed, code, det, amp_index, _STREAM_DEFECTS, layout.small), layout
    )
    return params


def _draw_defects(p: AmpParams, r: np.random.Generator, layout: AmpLayout) -> None:
    n_rows, n_cols = layout.n_data_rows, layout.n_data_cols
    mpix = n_rows * n_cols / 1e6
    lo, hi = DEFECT_EDGE_COLS, n_cols - DEFECT_EDGE_COLS
    n_hot = 1 + int(r.poisson(HOT_PIXELS_PER_MPIX * mpix))
    n_cold = 1 + int(r.poisson(COLD_PIXELS_PER_MPIX * mpix))
    taken: set[tuple[int, int]] = set()

    def pixels(n: int) -> list[tuple[int, int]]:
        out = []
        while len(out) < n:
            rc = (int(r.integers(0, n_rows)), int(r.integers(lo, hi)))
            if rc not in taken:
                taken.add(rc)
                out.append(rc)
        return out

    p.hot_pixels = pixels(n_hot)
    p.hot_pixel_rates_e_per_s = [
        _log_uniform(r, *HOT_PIXEL_RATE_RANGE_E_PER_S) for _ in p.hot_pixels
    ]
    p.cold_pixels = pixels(n_cold)
    p.cold_pixel_response = [float(r.uniform(*COLD_RESPONSE_RANGE)) for _ in p.cold_pixels]
    cols = [int(c) for c in r.choice(np.arange(lo, hi), size=2, replace=False)]
    # Column defects per column, not per amp: a small test amp (100 columns) gets one with
    # 1/5 of a full amp's probability, so a column keeps the defect fraction of a real
    # amp (~0.2 %) in expectation and a stable small camera stays within spec (0.5 %).
    col_scale = min(1.0, n_cols / FULL_SIZE_DATA_COLS)
    if r.random() < P_HOT_COLUMN * col_scale:
        p.hot_columns = [cols[0]]
        p.hot_column_rates_e_per_s = [float(r.uniform(*HOT_COLUMN_RATE_RANGE_E_PER_S))]
    if r.random() < P_COLD_COLUMN * col_scale:
        p.cold_columns = [cols[1]]
        p.cold_column_response = [float(r.uniform(*COLD_RESPONSE_RANGE))]
    # Keep pixel defects off defect columns so each defect is counted once.
    p.hot_pixels, p.hot_pixel_rates_e_per_s = _off_columns(
        p.hot_pixels, p.hot_pixel_rates_e_per_s, p.hot_columns + p.cold_columns
    )
    p.cold_pixels, p.cold_pixel_response = _off_columns(
        p.cold_pixels, p.cold_pixel_response, p.hot_columns + p.cold_columns
    )


def _off_columns(
    pix: list[tuple[int, int]], values: list[float], cols: list[int]
) -> tuple[list[tuple[int, int]], list[float]]:
    keep = [i for i, (_, c) in enumerate(pix) if c not in cols]
    return [pix[i] for i in keep], [values[i] for i in keep]


@dataclass(frozen=True)
class NightDrift:
    """Natural night-to-night drift of one amp (seed + day_obs)."""

    gain_drift_frac: float
    bias_level_drift_adu: float
    read_noise_drift_frac: float


def night_drift(instrument: str, det: int, amp_index: int, seed: int, day_obs: str) -> NightDrift:
    r = _rng(seed, int(day_obs), _INSTRUMENT_CODE[instrument], det, amp_index, _STREAM_NIGHT)
    return NightDrift(
        gain_drift_frac=float(r.normal(0.0, GAIN_DRIFT_FRAC_SIGMA)),
        bias_level_drift_adu=float(r.normal(0.0, BIAS_DRIFT_ADU_SIGMA)),
        read_noise_drift_frac=float(r.normal(0.0, READ_NOISE_DRIFT_FRAC_SIGMA)),
    )


def apply_drift(camera: AmpParams, drift: NightDrift) -> AmpParams:
    """The night's amp: camera values with the drift applied (a new object)."""
    return replace(
        camera,
        gain_e_per_adu=camera.gain_e_per_adu * (1.0 + drift.gain_drift_frac),
        bias_level_adu=camera.bias_level_adu + drift.bias_level_drift_adu,
        read_noise_e=camera.read_noise_e * (1.0 + drift.read_noise_drift_frac),
        hot_pixels=list(camera.hot_pixels),
        hot_pixel_rates_e_per_s=list(camera.hot_pixel_rates_e_per_s),
        hot_columns=list(camera.hot_columns),
        hot_column_rates_e_per_s=list(camera.hot_column_rates_e_per_s),
        cold_pixels=list(camera.cold_pixels),
        cold_pixel_response=list(camera.cold_pixel_response),
        cold_columns=list(camera.cold_columns),
        cold_column_response=list(camera.cold_column_response),
    )


def apply_overrides(params: AmpParams, override: dict[str, Any]) -> list[str]:
    """Replace parameters in place; returns the canonical names that were overridden.

    Keys are AmpParams field names or the aliases in :data:`OVERRIDE_ALIASES`
    (``gain``, ``read_noise``, …); ``read_noise_adu`` sets the read noise in ADU at the
    (possibly overridden) gain. Unknown keys raise ``ValueError``.
    """
    done = []
    items = dict(override)
    rn_adu = items.pop("read_noise_adu", None)
    for key, value in items.items():
        name = OVERRIDE_ALIASES.get(key, key)
        if name not in OVERRIDABLE:
            raise ValueError(
                f"unknown override {key!r}; use one of {sorted(OVERRIDABLE | set(OVERRIDE_ALIASES))}"
            )
        setattr(params, name, bool(value) if name == "dead" else float(value))
        done.append(name)
    if rn_adu is not None:
        params.read_noise_e = float(rn_adu) * params.gain_e_per_adu
        done.append("read_noise_e")
    _check_params(params)
    return done


def _check_params(p: AmpParams) -> None:
    for name in ("gain_e_per_adu", "full_well_e"):
        if not getattr(p, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(p, name)}")
    for name in ("read_noise_e", "dark_current_e_per_s", "serial_cti", "prnu", "flux_scale"):
        if getattr(p, name) < 0:
            raise ValueError(f"{name} must be ≥ 0, got {getattr(p, name)}")


def apply_extra_defects(params: AmpParams, extra: dict[str, list], layout: AmpLayout) -> None:
    """Add a night's defects in place (data-area 0-based coordinates, validated).

    ``hot_pixels``/``cold_pixels`` are ``(row, col)`` pairs, ``hot_columns``/
    ``cold_columns`` column indices. Optional ``hot_pixel_rate_e_per_s``,
    ``hot_column_rate_e_per_s`` and ``cold_response`` set their strength (defaults
    :data:`EXTRA_HOT_PIXEL_E_PER_S`, :data:`EXTRA_HOT_COLUMN_E_PER_S`,
    :data:`EXTRA_COLD_RESPONSE`).
    """
    known = {
        "hot_pixels",
        "hot_columns",
        "cold_pixels",
        "cold_columns",
        "hot_pixel_rate_e_per_s",
        "hot_column_rate_e_per_s",
        "cold_response",
    }
    unknown = set(extra) - known
    if unknown:
        raise ValueError(f"unknown extra_defects keys {sorted(unknown)}; use {sorted(known)}")
    hot_rate = float(extra.get("hot_pixel_rate_e_per_s", EXTRA_HOT_PIXEL_E_PER_S))
    col_rate = float(extra.get("hot_column_rate_e_per_s", EXTRA_HOT_COLUMN_E_PER_S))
    cold = float(extra.get("cold_response", EXTRA_COLD_RESPONSE))
    n_rows, n_cols = layout.n_data_rows, layout.n_data_cols

    def pix(values: list) -> list[tuple[int, int]]:
        out = []
        for v in values:
            row, col = (int(x) for x in v)
            if not (0 <= row < n_rows and 0 <= col < n_cols):
                raise ValueError(
                    f"defect pixel {(row, col)} outside the {n_rows}×{n_cols} data area"
                )
            out.append((row, col))
        return out

    def cols(values: list) -> list[int]:
        out = [int(c) for c in values]
        for c in out:
            if not 0 <= c < n_cols:
                raise ValueError(f"defect column {c} outside the {n_cols} data columns")
        return out

    for rc in pix(extra.get("hot_pixels", [])):
        if rc not in params.hot_pixels:
            params.hot_pixels.append(rc)
            params.hot_pixel_rates_e_per_s.append(hot_rate)
    for c in cols(extra.get("hot_columns", [])):
        if c not in params.hot_columns:
            params.hot_columns.append(c)
            params.hot_column_rates_e_per_s.append(col_rate)
    for rc in pix(extra.get("cold_pixels", [])):
        if rc not in params.cold_pixels:
            params.cold_pixels.append(rc)
            params.cold_pixel_response.append(cold)
    for c in cols(extra.get("cold_columns", [])):
        if c not in params.cold_columns:
            params.cold_columns.append(c)
            params.cold_column_response.append(cold)


def params_as_dict(p: AmpParams) -> dict[str, Any]:
    """Plain JSON-ready dict of the dataclass fields (pixels as [row, col] lists)."""
    out: dict[str, Any] = {}
    for f in fields(p):
        v = getattr(p, f.name)
        if f.name in ("hot_pixels", "cold_pixels"):
            v = [[int(a), int(b)] for a, b in v]
        elif isinstance(v, list):
            v = list(v)
        out[f.name] = v
    return out


def frame_rng(
    instrument: str, det: int, amp_index: int, seed: int, day_obs: str, seqnum: int
) -> np.random.Generator:
    """Noise stream of one amp in one exposure (independent of generation order)."""
    return _rng(
        seed, int(day_obs), _INSTRUMENT_CODE[instrument], det, amp_index, _STREAM_FRAME, seqnum
    )


def exposure_rng(
    instrument: str, det: int, seed: int, day_obs: str, seqnum: int
) -> np.random.Generator:
    """Per-detector header values of one exposure (CCDTEMP)."""
    return _rng(seed, int(day_obs), _INSTRUMENT_CODE[instrument], det, _STREAM_EXPOSURE, seqnum)


def prnu_unit_map(
    instrument: str, det: int, amp_index: int, camera_seed: int, layout: AmpLayout
) -> np.ndarray:
    """Fixed pixel-response pattern of the amp: float32, exactly mean 0 and std 1."""
    r = _rng(camera_seed, _INSTRUMENT_CODE[instrument], det, amp_index, _STREAM_PRNU, layout.small)
    z = r.standard_normal((layout.n_data_rows, layout.n_data_cols), dtype=np.float32)
    z64 = z.astype(np.float64)
    mean, std = float(z64.mean()), float(z64.std())
    z -= np.float32(mean)
    z *= np.float32(1.0 / std)
    return z
