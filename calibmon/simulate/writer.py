"""Write simulated raw exposures in the real LSSTCam/LATISS file layout (DESIGN.md §2).

One file per detector per exposure, ``out_dir/<day_obs>/{instrument}_O_{day_obs}_
{seqnum:06d}_{detector}.fits``: a primary HDU without data and 16 image HDUs
(8 for wavefront sensors) ``Segment10``…``Segment17``, ``Segment07``…``Segment00``,
int32, RICE_1 tile-compressed (lossless for integers) by cfitsio through fitsio.

A night (:func:`simulate_night`) is, in seqnum order: ``n_bias`` biases, ``n_dark``
darks, ``n_flat`` daily flats (consecutive pairs at one exposure time) and, with
``ptc=True``, ``n_ptc_pairs`` flat pairs of a PTC ramp (:func:`ptc_signal_ladder`).
Every amp of every frame draws its noise from its own seed stream, so the files do not
depend on the order (or the number of processes) they are written in.
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fitsio
import numpy as np

from calibmon.dayobs import check_day_obs, parse_day_obs
from calibmon.io.detectors import detector_number, is_guider, is_valid_name, is_wavefront
from calibmon.simulate import physics
from calibmon.simulate import truth as truth_mod
from calibmon.simulate.camera import (
    CCD_TYPE,
    LATISS_DETECTOR,
    LAYOUTS,
    AmpLayout,
    AmpParams,
    amp_names,
    apply_drift,
    apply_extra_defects,
    apply_overrides,
    camera_amp_params,
    canonical_sim_instrument,
    ccd_serial,
    check_detector,
    detector_vendor,
    exposure_rng,
    frame_rng,
    night_drift,
    prnu_unit_map,
    segment_geometry,
)

# Nominal flat-field lamp rate at an amp of illumination 1 [e-/s/pixel]; daily flats of
# 15 ke- take 7.5 s, the top of a PTC ramp ~90 s.
LAMP_FLUX_E_PER_S = 2000.0
# Night timeline: the first exposure starts at 22:00 UTC on day_obs (19:00 at Cerro
# Pachón, UTC−3; Rubin's day_obs rolls over at 12:00 UTC), later batches
# (start_seqnum > 1) 30 s per skipped seqnum later; exposures follow each other with
# 3 s of readout and overhead.
NIGHT_START_UTC_HOUR = 22
SECONDS_PER_SKIPPED_SEQNUM = 30.0
OVERHEAD_S = 3.0
EXPTIME_RESOLUTION_S = 0.001
CCDTEMP_SETPOINT_C = -100.0
CCDTEMP_SIGMA_C = 0.05

# PTC ramp (ptc_signal_ladder): lowest nominal signal and the dense turnoff region.
PTC_MIN_SIGNAL_E = 300.0
PTC_DENSE_FROM_FULL_WELL = 0.85
PTC_DENSE_TO_FULL_WELL = 1.25
PTC_DENSE_MAX_STEP = 0.03
PTC_LOW_PAIRS_WANTED = 12
# Turnoff used to place the ramp when every amp is dead (nothing to sample).
FALLBACK_TURNOFF_E = 130000.0

# Parallel writing (one process per core, at most _MAX_WORKERS): only above this many
# pixels in the night (a small 2-detector daily night holds 3.2e7, a full-size one
# 1.7e9), on Linux, with the fork start method and only from a single-threaded process
# (forking a threaded process is unsafe); otherwise serial. Output is identical.
_PARALLEL_MIN_PIXELS = 1e7
_MAX_WORKERS = 4

_TELESCOPE = {"LSSTCam": "Simonyi Survey Telescope", "LATISS": "LSST AuxTelescope"}
_HEADER_INSTRUME = {"LSSTCam": "lsstCam", "LATISS": "LATISS"}
_OBSID_PREFIX = {"LSSTCam": "MC", "LATISS": "AT"}
_KIND_HEADER = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT"}
_DEFAULT_DETECTORS = ("R22_S11", "R01_S01")


@dataclass(frozen=True)
class Exposure:
    """One exposure of the night (shared by all detectors)."""

    seqnum: int
    kind: str  # "bias" | "dark" | "flat"
    exptime_s: float
    darktime_s: float
    ptc: bool
    pair_index: int | None  # flats: index of the pair within the daily set or the ramp
    date_beg: dt.datetime
    date_end: dt.datetime

    @property
    def nominal_signal_e(self) -> float:
        """Lamp signal at illumination 1 (flats), electrons."""
        return LAMP_FLUX_E_PER_S * self.exptime_s if self.kind == "flat" else 0.0


def raw_filename(instrument: str, day_obs: str, seqnum: int, detector: str) -> str:
    """``LSSTCam_O_20251121_000012_R22_S11.fits``."""
    return f"{instrument}_O_{day_obs}_{seqnum:06d}_{detector}.fits"


def exposure_id(day_obs: str, seqnum: int) -> int:
    """Rubin exposure id: ``day_obs·100000 + seqnum``."""
    return int(day_obs) * 100000 + seqnum


def obs_id(instrument: str, day_obs: str, seqnum: int) -> str:
    """``MC_C_20251121_000012`` (LATISS ``AT_C_…``)."""
    return f"{_OBSID_PREFIX[instrument]}_C_{day_obs}_{seqnum:06d}"


def _check_day_obs(day_obs: str) -> dt.date:
    return parse_day_obs(check_day_obs(day_obs))


def _night_start(day_obs: str) -> dt.datetime:
    """22:00 UTC on day_obs: the evening at Cerro Pachón."""
    date = _check_day_obs(day_obs)
    return dt.datetime(date.year, date.month, date.day, NIGHT_START_UTC_HOUR, tzinfo=dt.UTC)


def _mjd(t: dt.datetime) -> float:
    return (t - dt.datetime(1858, 11, 17, tzinfo=dt.UTC)).total_seconds() / 86400.0


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def ptc_signal_ladder(
    n_pairs: int, turnoff_min_e: float, turnoff_max_e: float
) -> tuple[list[float], dict[str, float]]:
    """Nominal signals [e-] of a PTC ramp's pairs, increasing.

    ``turnoff_min_e``/``turnoff_max_e`` are the smallest and largest full well of the
    night's live amps in nominal-signal units (``full_well_e / (illumination ·
    flux_scale)``). The ramp is log-spaced with ratio ≤ 1.03 (``PTC_DENSE_MAX_STEP``)
    from 0.85 × the smallest to 1.25 × the largest, so every amp's turnoff falls in a
    region sampled in ≤ 3 % steps; the remaining pairs (at least
    ``min(4, n_pairs // 4)``) are log-spaced from 300 e- up to that region. When
    ``n_pairs`` is too small for 3 % steps the dense region gets all but those pairs
    and coarser steps; with more pairs than 3 % steps need, the low part keeps
    ``PTC_LOW_PAIRS_WANTED`` and the dense region gets finer steps;
    ``info["max_dense_step_frac"]`` says what was achieved.
    """
    if n_pairs <= 0:
        return [], {}
    lo = PTC_DENSE_FROM_FULL_WELL * turnoff_min_e
    hi = PTC_DENSE_TO_FULL_WELL * turnoff_max_e
    n_low_min = max(1, min(4, n_pairs // 4)) if n_pairs > 1 else 0
    needed = math.ceil(math.log(hi / lo) / math.log(1.0 + PTC_DENSE_MAX_STEP) - 1e-9) + 1
    # Pairs beyond what 3 % steps need go to the turnoff region (finer steps) once the low
    # part has PTC_LOW_PAIRS_WANTED pairs to pin the fit's gain and noise.
    n_dense = max(1, min(max(needed, n_pairs - PTC_LOW_PAIRS_WANTED), n_pairs - n_low_min))
    n_low = n_pairs - n_dense
    dense = list(np.geomspace(lo, hi, n_dense)) if n_dense > 1 else [hi]
    low = list(np.geomspace(PTC_MIN_SIGNAL_E, lo, n_low + 1)[:-1]) if n_low > 0 else []
    step = (hi / lo) ** (1.0 / (n_dense - 1)) - 1.0 if n_dense > 1 else math.inf
    info = {
        "dense_from_e": lo,
        "dense_to_e": hi,
        "n_dense_pairs": n_dense,
        "n_low_pairs": n_low,
        "max_dense_step_frac": step,
    }
    return [float(x) for x in low + dense], info


def _plan_night(
    day_obs: str,
    n_bias: int,
    n_dark: int,
    n_flat: int,
    dark_time_s: float,
    flat_level_e: float,
    ptc_levels_e: Sequence[float],
    start_seqnum: int,
) -> list[Exposure]:
    t = _night_start(day_obs)
    t += dt.timedelta(seconds=SECONDS_PER_SKIPPED_SEQNUM * (start_seqnum - 1))
    plan: list[tuple[str, float, float, bool, int | None]] = []
    plan += [("bias", 0.0, 0.0, False, None)] * n_bias
    plan += [("dark", dark_time_s, dark_time_s, False, None)] * n_dark
    t_flat = _round_exptime(flat_level_e / LAMP_FLUX_E_PER_S)
    plan += [("flat", t_flat, t_flat, False, i // 2) for i in range(n_flat)]
    for i, level in enumerate(ptc_levels_e):
        t_exp = _round_exptime(level / LAMP_FLUX_E_PER_S)
        plan += [("flat", t_exp, t_exp, True, i)] * 2
    out = []
    for k, (kind, exptime, darktime, ptc, pair) in enumerate(plan):
        end = t + dt.timedelta(seconds=max(exptime, darktime))
        out.append(Exposure(start_seqnum + k, kind, exptime, darktime, ptc, pair, t, end))
        t = end + dt.timedelta(seconds=OVERHEAD_S)
    return out


def _round_exptime(t: float) -> float:
    return max(EXPTIME_RESOLUTION_S, round(t / EXPTIME_RESOLUTION_S) * EXPTIME_RESOLUTION_S)


def _primary_cards(
    instrument: str,
    day_obs: str,
    exp: Exposure,
    detector: str,
    lsst_num: str,
    ccdtemp_c: float,
    physical_filter: str,
    ptc_labels: bool,
    imgtype: str | None = None,
) -> list[dict[str, Any]]:
    """Primary header of one raw file (real LSSTCam/LATISS keys only)."""
    raft, slot = detector.split("_")
    vendor = detector_vendor(instrument, detector)
    img = imgtype or _KIND_HEADER[exp.kind]
    cards: list[tuple[str, Any, str]] = [
        ("ORIGIN", "calibmon.simulate", "simulated raw (calibmon)"),
        ("DATE", _iso(exp.date_end + dt.timedelta(seconds=2.0)), "file creation time"),
        ("TIMESYS", "UTC", "time scale of the DATE keywords"),
        ("INSTRUME", _HEADER_INSTRUME[instrument], "instrument"),
        ("TELESCOP", _TELESCOPE[instrument], "telescope"),
        ("DAYOBS", day_obs, "observation day (UTC-12h)"),
        ("SEQNUM", exp.seqnum, "sequence number"),
        ("OBSID", obs_id(instrument, day_obs, exp.seqnum), "observation id"),
        ("IMGTYPE", img, "image type"),
        ("OBSTYPE", img, "observation type"),
    ]
    if imgtype is None:
        if exp.ptc:
            if ptc_labels:
                reason = "daily_PTC" if instrument == "LATISS" else "ptc"
                cards += [("TESTTYPE", "PTC", "test type"), ("REASON", reason, "reason")]
        else:
            cards += [
                ("TESTTYPE", _KIND_HEADER[exp.kind], "test type"),
                ("REASON", exp.kind, "reason"),
            ]
    cards += [
        ("EXPTIME", float(exp.exptime_s), "[s] exposure time"),
        ("DARKTIME", float(exp.darktime_s), "[s] dark time"),
        ("DATE-OBS", _iso(exp.date_beg), "start of the exposure"),
        ("DATE-BEG", _iso(exp.date_beg), "start of the exposure"),
        ("DATE-END", _iso(exp.date_end), "end of the exposure"),
        ("MJD-OBS", _mjd(exp.date_beg), "MJD of DATE-OBS"),
        ("MJD-BEG", _mjd(exp.date_beg), "MJD of DATE-BEG"),
        ("MJD-END", _mjd(exp.date_end), "MJD of DATE-END"),
        ("FILTER", physical_filter, "filter in the beam"),
    ]
    if instrument == "LATISS":
        cards.append(("GRATING", "empty", "disperser in the beam"))
    cards += [
        ("RAFTBAY", raft, "raft bay"),
        ("CCDSLOT", slot, "CCD slot in the raft"),
        ("CCD_MANU", vendor, "CCD manufacturer"),
        ("CCD_TYPE", CCD_TYPE[vendor], "CCD model"),
        ("LSST_NUM", lsst_num, "LSST assigned CCD number"),
        ("TEMP_SET", CCDTEMP_SETPOINT_C, "[C] CCD temperature set point"),
        ("CCDTEMP", ccdtemp_c, "[C] measured CCD temperature"),
        ("CCDGAIN", 1.0, "[e/DN] placeholder, not a measurement"),
        ("CCDNOISE", 10.0, "[e] placeholder, not a measurement"),
    ]
    return [{"name": k, "value": v, "comment": c} for k, v, c in cards]


def _segment_cards(layout: AmpLayout, amp: str, channel: int, wavefront: bool) -> list[dict]:
    geo = segment_geometry(layout, amp, wavefront)
    cards: list[tuple[str, Any, str]] = [
        ("INHERIT", True, "extension inherits the primary header"),
        ("CHANNEL", channel, "readout channel"),
        ("CCDSUM", "1 1", "binning"),
        ("DATASEC", geo["DATASEC"], "data section"),
        ("DETSEC", geo["DETSEC"], "detector section"),
        ("DETSIZE", geo["DETSIZE"], "detector size"),
        ("DTV1", geo["DTV1"], "detector transformation vector"),
        ("DTV2", geo["DTV2"], "detector transformation vector"),
        ("DTM1_1", geo["DTM1_1"], "detector transformation matrix"),
        ("DTM2_2", geo["DTM2_2"], "detector transformation matrix"),
        ("DTM1_2", geo["DTM1_2"], "detector transformation matrix"),
        ("DTM2_1", geo["DTM2_1"], "detector transformation matrix"),
    ]
    return [{"name": k, "value": v, "comment": c} for k, v, c in cards]


def write_raw_file(
    path: Path,
    primary: list[dict[str, Any]],
    segments: Sequence[tuple[str, list[dict[str, Any]], np.ndarray]],
    compress: bool = True,
) -> None:
    """Write primary (no data) + image HDUs ``(extname, header cards, int32 array)``.

    RICE_1 tile compression (one tile per row, cfitsio's default) when ``compress``.
    Written beside the target and renamed, so a crash never leaves half a file.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with fitsio.FITS(str(tmp), "rw", clobber=True) as f:
        f.write(None, header=primary)
        for extname, cards, data in segments:
            f.write(data, header=cards, extname=extname, compress="RICE" if compress else None)
    os.replace(tmp, path)


@dataclass
class _DetectorJob:
    """Everything a (possibly separate) process needs to write some exposures of a detector."""

    instrument: str
    detector: str
    det_num: int
    layout: AmpLayout
    amps: tuple[str, ...]
    params: list[AmpParams]  # night values, same order as amps
    lamp_flux_e_per_s: float
    camera_seed: int
    seed: int
    day_obs: str
    day_dir: str
    compress: bool
    physical_filter: str
    ptc_labels: bool
    lsst_num: str
    exposures: list[Exposure]


def _build_maps(job: _DetectorJob) -> list[physics.AmpMaps]:
    return [
        physics.build_amp_maps(
            p,
            job.layout,
            prnu_unit_map(job.instrument, job.det_num, i, job.camera_seed, job.layout),
        )
        for i, p in enumerate(job.params)
    ]


def _run_detector_job(job: _DetectorJob) -> dict[int, dict[str, float]]:
    """Write the job's files; returns ``{seqnum: {amp: frame bias offset [ADU]}}``."""
    maps = _build_maps(job)
    wavefront = is_wavefront(job.detector)
    seg_cards = [
        _segment_cards(job.layout, amp, ch + 1, wavefront) for ch, amp in enumerate(job.amps)
    ]
    offsets: dict[int, dict[str, float]] = {}
    for exp in job.exposures:
        ccdtemp = CCDTEMP_SETPOINT_C + CCDTEMP_SIGMA_C * float(
            exposure_rng(job.instrument, job.det_num, job.seed, job.day_obs, exp.seqnum).normal()
        )
        primary = _primary_cards(
            job.instrument,
            job.day_obs,
            exp,
            job.detector,
            job.lsst_num,
            round(ccdtemp, 3),
            job.physical_filter,
            job.ptc_labels,
        )
        segments = []
        offsets[exp.seqnum] = {}
        for i, (amp, p) in enumerate(zip(job.amps, job.params, strict=True)):
            rng = frame_rng(job.instrument, job.det_num, i, job.seed, job.day_obs, exp.seqnum)
            signal_e = (
                p.flux_e_per_s(job.lamp_flux_e_per_s) * exp.exptime_s if exp.kind == "flat" else 0.0
            )
            data, offset = physics.simulate_amp_frame(
                rng, p, maps[i], job.layout, signal_e, exp.darktime_s
            )
            segments.append((f"Segment{amp[1:]}", seg_cards[i], data))
            offsets[exp.seqnum][amp] = offset
        path = Path(job.day_dir) / raw_filename(
            job.instrument, job.day_obs, exp.seqnum, job.detector
        )
        write_raw_file(path, primary, segments, job.compress)
    return offsets


def _auto_workers(n_pixels: float, n_jobs_max: int) -> int:
    if n_pixels < _PARALLEL_MIN_PIXELS or not sys.platform.startswith("linux"):
        return 1
    if threading.active_count() > 1:
        return 1
    return max(1, min(os.cpu_count() or 1, _MAX_WORKERS, n_jobs_max))


def _run_jobs(jobs: list[_DetectorJob], workers: int) -> list[dict[int, dict[str, float]]]:
    if workers <= 1 or len(jobs) <= 1:
        return [_run_detector_job(j) for j in jobs]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(pool.map(_run_detector_job, jobs))


def _night_amps(
    instrument: str,
    detector: str,
    layout: AmpLayout,
    camera_seed: int,
    seed: int,
    day_obs: str,
    overrides: Mapping[str, Mapping[str, Any]],
    extra_defects: Mapping[str, Mapping[str, list]],
) -> tuple[list[AmpParams], list[dict[str, Any]]]:
    """The night's params of each amp plus the truth-only extras (camera values, drift)."""
    det = check_detector(instrument, detector)
    amps = amp_names(detector)
    unknown = (set(overrides) | set(extra_defects)) - set(amps)
    if unknown:
        raise ValueError(f"{detector} has no amp(s) {sorted(unknown)}; amps are {list(amps)}")
    params, extras = [], []
    for i, amp in enumerate(amps):
        camera = camera_amp_params(instrument, detector, i, camera_seed, layout)
        drift = night_drift(instrument, det, i, seed, day_obs)
        night = apply_drift(camera, drift)
        overridden = apply_overrides(night, overrides.get(amp, {}))
        if amp in extra_defects:
            apply_extra_defects(night, dict(extra_defects[amp]), layout)
        params.append(night)
        extras.append(
            {
                "camera": {
                    "gain_e_per_adu": camera.gain_e_per_adu,
                    "read_noise_e": camera.read_noise_e,
                    "bias_level_adu": camera.bias_level_adu,
                },
                "gain_drift_frac": drift.gain_drift_frac,
                "bias_level_drift_adu": drift.bias_level_drift_adu,
                "read_noise_drift_frac": drift.read_noise_drift_frac,
                "overridden": overridden,
            }
        )
    return params, extras


def simulate_night(
    out_dir: Path,
    day_obs: str,
    detectors: Sequence[str] = _DEFAULT_DETECTORS,
    *,
    instrument: str = "LSSTCam",
    small: bool = False,
    seed: int = 0,
    camera_seed: int = 1,
    n_bias: int = 15,
    n_dark: int = 15,
    n_flat: int = 16,
    dark_time_s: float = 30.0,
    flat_level_e: float = 15000.0,
    ptc: bool = False,
    n_ptc_pairs: int = 30,
    ptc_labels: bool = True,
    ptc_levels_e: Sequence[float] | None = None,
    physical_filter: str = "empty",
    overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    extra_defects: Mapping[str, Mapping[str, Mapping[str, list]]] | None = None,
    start_seqnum: int = 1,
    compress: bool = True,
    write_truth: bool = True,
) -> dict:
    """Simulate one night of calibration exposures and return its truth dict.

    Writes ``out_dir/<day_obs>/{instrument}_O_{day_obs}_{seqnum:06d}_{detector}.fits``
    for every exposure and detector, and ``out_dir/<day_obs>/truth.json`` when
    ``write_truth`` (definitions of every truth key: ``truth["definitions"]``).

    Parameters
    ----------
    out_dir : root directory; the night goes in its ``day_obs`` subdirectory.
    day_obs : ``YYYYMMDD``.
    detectors : LSSTCam detector names (science or wavefront, not guiders). For
        ``instrument="LATISS"`` the default becomes ``("RXX_S00",)``, the only detector.
    small : tiny amps with the real structure (``camera.LAYOUTS``), for fast tests.
    seed : the night's noise and natural drift (with ``day_obs``).
    camera_seed : the camera's amps (gain, noise, bias, full well, nonlinearity, CTI,
        response, defects); the same for every night.
    n_bias, n_dark, n_flat : frames of each kind; flats are consecutive pairs at the
        exposure time giving ``flat_level_e`` at illumination 1.
    dark_time_s : EXPTIME = DARKTIME of the darks [s].
    ptc, n_ptc_pairs, ptc_labels : add a PTC ramp after the daily flats; labelled
        ``TESTTYPE='PTC'``, ``REASON='ptc'`` (LATISS ``'daily_PTC'``) unless
        ``ptc_labels`` is False (then both keys are absent from the ramp's frames).
    ptc_levels_e : the ramp's nominal signals [e-], one pair each, instead of the ladder
        up to saturation (``n_ptc_pairs`` is then ignored): e.g. LATISS's daily_PTC, a few
        pairs at increasing exposure times that never reach saturation.
    overrides : ``{detector: {amp: {param: value}}}`` replaces the night's parameters
        (names as in the truth, or aliases ``gain``, ``read_noise``, ``bias_level``,
        ``full_well``, ``cti``…; ``dead: True`` removes all charge).
    extra_defects : ``{detector: {amp: {"hot_pixels": [(row, col)], "hot_columns": [c],
        "cold_pixels": [...], "cold_columns": [...]}}}`` adds the night's defects
        (data-area 0-based coordinates).
    start_seqnum : seqnum of the first exposure.
    compress : RICE_1 tile compression of the image HDUs.
    write_truth : write ``truth.json``.
    """
    return _simulate_night(
        Path(out_dir),
        day_obs,
        detectors,
        instrument=instrument,
        small=small,
        seed=seed,
        camera_seed=camera_seed,
        n_bias=n_bias,
        n_dark=n_dark,
        n_flat=n_flat,
        dark_time_s=dark_time_s,
        flat_level_e=flat_level_e,
        ptc=ptc,
        n_ptc_pairs=n_ptc_pairs,
        ptc_labels=ptc_labels,
        ptc_levels_e=ptc_levels_e,
        physical_filter=physical_filter,
        overrides=overrides,
        extra_defects=extra_defects,
        start_seqnum=start_seqnum,
        compress=compress,
        write_truth=write_truth,
        workers=None,
    )


def _simulate_night(
    out_dir: Path,
    day_obs: str,
    detectors: Sequence[str],
    *,
    instrument: str,
    small: bool,
    seed: int,
    camera_seed: int,
    n_bias: int,
    n_dark: int,
    n_flat: int,
    dark_time_s: float,
    flat_level_e: float,
    ptc: bool,
    n_ptc_pairs: int,
    ptc_labels: bool,
    physical_filter: str,
    overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None,
    ptc_levels_e: Sequence[float] | None = None,
    extra_defects: Mapping[str, Mapping[str, Mapping[str, list]]] | None,
    start_seqnum: int,
    compress: bool,
    write_truth: bool,
    workers: int | None,
) -> dict:
    """:func:`simulate_night` with the number of writer processes exposed (None: auto)."""
    instrument = canonical_sim_instrument(instrument)
    _check_day_obs(day_obs)
    if isinstance(detectors, str):
        detectors = (detectors,)
    detectors = tuple(detectors)
    if instrument == "LATISS" and detectors == _DEFAULT_DETECTORS:
        detectors = (LATISS_DETECTOR,)
    if not detectors:
        raise ValueError("no detectors to simulate")
    if len(set(detectors)) != len(detectors):
        raise ValueError(f"detectors listed twice: {detectors}")
    for name, n in (("n_bias", n_bias), ("n_dark", n_dark), ("n_flat", n_flat)):
        if n < 0:
            raise ValueError(f"{name} must be ≥ 0, got {n}")
    if ptc and n_ptc_pairs < 1:
        raise ValueError(f"n_ptc_pairs must be ≥ 1 with ptc=True, got {n_ptc_pairs}")
    if dark_time_s < 0 or flat_level_e <= 0:
        raise ValueError("dark_time_s must be ≥ 0 and flat_level_e > 0")
    if start_seqnum < 1:
        raise ValueError(f"start_seqnum must be ≥ 1, got {start_seqnum}")
    overrides = overrides or {}
    extra_defects = extra_defects or {}
    unknown = (set(overrides) | set(extra_defects)) - set(detectors)
    if unknown:
        raise ValueError(f"overrides/extra_defects name detectors not simulated: {sorted(unknown)}")

    per_det: dict[str, dict[str, Any]] = {}
    for det in detectors:
        det_num = check_detector(instrument, det)
        layout = LAYOUTS[(detector_vendor(instrument, det), bool(small))]
        params, extras = _night_amps(
            instrument,
            det,
            layout,
            camera_seed,
            seed,
            day_obs,
            overrides.get(det, {}),
            extra_defects.get(det, {}),
        )
        per_det[det] = {
            "det_num": det_num,
            "layout": layout,
            "amps": amp_names(det),
            "params": params,
            "extras": extras,
            "lsst_num": ccd_serial(instrument, det, camera_seed),
        }

    ptc_levels: list[float] = []
    ptc_info: dict[str, float] = {}
    if ptc and ptc_levels_e is not None:
        ptc_levels = sorted(float(x) for x in ptc_levels_e)
        if not ptc_levels or ptc_levels[0] <= 0:
            raise ValueError("ptc_levels_e must be positive signals")
        ptc_info = {"explicit_levels": 1.0, "n_pairs": float(len(ptc_levels))}
    elif ptc:
        turnoffs = [
            p.full_well_e / (p.illumination * p.flux_scale)
            for d in per_det.values()
            for p in d["params"]
            if not p.dead and p.flux_scale > 0 and p.illumination > 0
        ] or [FALLBACK_TURNOFF_E]
        ptc_levels, ptc_info = ptc_signal_ladder(n_ptc_pairs, min(turnoffs), max(turnoffs))
    exposures = _plan_night(
        day_obs, n_bias, n_dark, n_flat, dark_time_s, flat_level_e, ptc_levels, start_seqnum
    )

    day_dir = out_dir / day_obs
    day_dir.mkdir(parents=True, exist_ok=True)
    n_pixels = sum(
        len(d["amps"]) * d["layout"].n_rows * d["layout"].n_cols * len(exposures)
        for d in per_det.values()
    )
    if workers is None:
        workers = _auto_workers(n_pixels, len(detectors) * max(1, len(exposures)))
    chunks = max(1, math.ceil(workers / len(detectors))) if workers > 1 else 1
    jobs = []
    for det, d in per_det.items():
        for k in range(chunks):
            part = exposures[k::chunks]
            if not part:
                continue
            jobs.append(
                _DetectorJob(
                    instrument=instrument,
                    detector=det,
                    det_num=d["det_num"],
                    layout=d["layout"],
                    amps=d["amps"],
                    params=d["params"],
                    lamp_flux_e_per_s=LAMP_FLUX_E_PER_S,
                    camera_seed=camera_seed,
                    seed=seed,
                    day_obs=day_obs,
                    day_dir=str(day_dir),
                    compress=compress,
                    physical_filter=physical_filter,
                    ptc_labels=ptc_labels,
                    lsst_num=d["lsst_num"],
                    exposures=part,
                )
            )
    results = _run_jobs(jobs, workers)
    offsets: dict[str, dict[int, dict[str, float]]] = {det: {} for det in per_det}
    for job, res in zip(jobs, results, strict=True):
        offsets[job.detector].update(res)

    truth = truth_mod.build_truth(
        instrument=instrument,
        day_obs=day_obs,
        seed=seed,
        camera_seed=camera_seed,
        small=bool(small),
        physical_filter=physical_filter,
        lamp_flux_e_per_s=LAMP_FLUX_E_PER_S,
        per_detector=per_det,
        exposures=exposures,
        offsets=offsets,
        filename=lambda seqnum, det: raw_filename(instrument, day_obs, seqnum, det),
        exposure_id=lambda seqnum: exposure_id(day_obs, seqnum),
        obs_id=lambda seqnum: obs_id(instrument, day_obs, seqnum),
        iso=_iso,
        ptc_info=ptc_info,
        settings={
            "n_bias": n_bias,
            "n_dark": n_dark,
            "n_flat": n_flat,
            "dark_time_s": dark_time_s,
            "flat_level_e": flat_level_e,
            "ptc": bool(ptc),
            "n_ptc_pairs": len(ptc_levels) if ptc else 0,
            "ptc_labels": bool(ptc_labels),
            "start_seqnum": start_seqnum,
            "compress": bool(compress),
        },
        overrides=overrides,
        extra_defects=extra_defects,
    )
    if write_truth:
        truth_mod.write_truth(day_dir / "truth.json", truth)
    return truth


def _single_frame(
    instrument: str,
    detector: str,
    *,
    small: bool,
    seed: int,
    camera_seed: int,
    day_obs: str,
) -> tuple[int, AmpLayout, tuple[str, ...], list[AmpParams], list[physics.AmpMaps]]:
    det_num = check_detector(instrument, detector)
    layout = LAYOUTS[(detector_vendor(instrument, detector), bool(small))]
    params, _ = _night_amps(instrument, detector, layout, camera_seed, seed, day_obs, {}, {})
    maps = [
        physics.build_amp_maps(
            p, layout, prnu_unit_map(instrument, det_num, i, camera_seed, layout)
        )
        for i, p in enumerate(params)
    ]
    return det_num, layout, amp_names(detector), params, maps


def write_science_exposure(
    out_dir: Path,
    day_obs: str,
    detector: str,
    seqnum: int,
    imgtype: str = "OBJECT",
    *,
    instrument: str = "LSSTCam",
    exptime_s: float = 30.0,
    sky_e_per_s: float = 50.0,
    n_stars_per_amp: int = 5,
    physical_filter: str = "r_57",
    small: bool = False,
    seed: int = 0,
    camera_seed: int = 1,
    compress: bool = True,
) -> Path:
    """Write a non-calibration raw (``OBJECT``, ``SKYEXP``, ``UNKNOWN``…) in the raw layout.

    Same camera and physics as :func:`simulate_night`: sky at ``sky_e_per_s`` [e-/s/pixel]
    times each amp's response, plus ``n_stars_per_amp`` Gaussian stars (σ = 2 pixels,
    1e4–5e5 e-) per amp. No ``TESTTYPE``/``REASON``. Returns the file's path.
    """
    instrument = canonical_sim_instrument(instrument)
    det_num, layout, amps, params, maps = _single_frame(
        instrument,
        detector,
        small=small,
        seed=seed,
        camera_seed=camera_seed,
        day_obs=day_obs,
    )
    t0 = _night_start(day_obs) + dt.timedelta(hours=2, seconds=40.0 * seqnum)
    exposure = Exposure(
        seqnum, "flat", exptime_s, exptime_s, False, None, t0, t0 + dt.timedelta(seconds=exptime_s)
    )
    ccdtemp = CCDTEMP_SETPOINT_C + CCDTEMP_SIGMA_C * float(
        exposure_rng(instrument, det_num, seed, day_obs, seqnum).normal()
    )
    primary = _primary_cards(
        instrument,
        day_obs,
        exposure,
        detector,
        ccd_serial(instrument, detector, camera_seed),
        round(ccdtemp, 3),
        physical_filter,
        True,
        imgtype=imgtype.upper(),
    )
    wavefront = is_wavefront(detector)
    segments = []
    for i, (amp, p) in enumerate(zip(amps, params, strict=True)):
        rng = frame_rng(instrument, det_num, i, seed, day_obs, seqnum)
        stars = _star_field(rng, layout, n_stars_per_amp)
        sky_e = sky_e_per_s * exptime_s * p.illumination
        data, _ = physics.simulate_amp_frame(rng, p, maps[i], layout, sky_e, exptime_s, stars)
        segments.append((f"Segment{amp[1:]}", _segment_cards(layout, amp, i + 1, wavefront), data))
    day_dir = Path(out_dir) / day_obs
    day_dir.mkdir(parents=True, exist_ok=True)
    path = day_dir / raw_filename(instrument, day_obs, seqnum, detector)
    write_raw_file(path, primary, segments, compress)
    return path


def _star_field(rng: np.random.Generator, layout: AmpLayout, n_stars: int) -> np.ndarray | None:
    """Expected charge of ``n_stars`` Gaussian stars (σ = 2 px) on the data area [e-]."""
    if n_stars <= 0:
        return None
    img = np.zeros((layout.n_data_rows, layout.n_data_cols), dtype=np.float32)
    half, sigma = 7, 2.0
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    for _ in range(n_stars):
        r0 = int(rng.integers(half, layout.n_data_rows - half))
        c0 = int(rng.integers(half, layout.n_data_cols - half))
        flux = float(np.exp(rng.uniform(np.log(1e4), np.log(5e5))))
        dy, dx = rng.uniform(-0.5, 0.5, 2)
        psf = np.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / (2 * sigma**2))
        img[r0 - half : r0 + half + 1, c0 - half : c0 + half + 1] += (
            flux * psf / psf.sum()
        ).astype(np.float32)
    return img


def write_guider_file(
    out_dir: Path,
    day_obs: str,
    detector: str = "R00_SG0",
    seqnum: int = 1,
    *,
    imgtype: str = "OBJECT",
    n_stamps: int = 50,
    stamp_shape: tuple[int, int] = (50, 50),
    bias_level_adu: float = 15000.0,
    seed: int = 0,
    camera_seed: int = 1,
    compress: bool = True,
) -> Path:
    """Write an LSSTCam guider file: primary + ``n_stamps`` small stamp HDUs.

    Stamps are int32 ``stamp_shape`` arrays (bias + noise + one star) named
    ``{detector}_stamp{k:04d}`` — not amplifier segments, so a calibration reader must
    skip the file. Named ``LSSTCam_O_{day_obs}_{seqnum:06d}_{detector}_guider.fits``.
    """
    if not (is_valid_name(detector) and is_guider(detector)):
        raise ValueError(f"guider files belong to SG0/SG1 detectors, not {detector!r}")
    det_num = detector_number("LSSTCam", detector)
    t0 = _night_start(day_obs) + dt.timedelta(hours=2, seconds=40.0 * seqnum)
    exposure = Exposure(
        seqnum, "flat", 30.0, 30.0, False, None, t0, t0 + dt.timedelta(seconds=30.0)
    )
    primary = _primary_cards(
        "LSSTCam",
        day_obs,
        exposure,
        detector,
        ccd_serial("LSSTCam", detector, camera_seed),
        CCDTEMP_SETPOINT_C,
        "r_57",
        True,
        imgtype=imgtype.upper(),
    )
    primary += [
        {"name": "N_STAMPS", "value": n_stamps, "comment": "guider stamps in this file"},
        {"name": "ROIROWS", "value": stamp_shape[0], "comment": "stamp rows"},
        {"name": "ROICOLS", "value": stamp_shape[1], "comment": "stamp columns"},
    ]
    rng = exposure_rng("LSSTCam", det_num, seed, day_obs, seqnum)
    yy, xx = np.mgrid[: stamp_shape[0], : stamp_shape[1]]
    cy, cx = (stamp_shape[0] - 1) / 2.0, (stamp_shape[1] - 1) / 2.0
    star = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0**2))
    segments = []
    for k in range(n_stamps):
        img = bias_level_adu + 4.0 * rng.standard_normal(stamp_shape) + 3000.0 * star
        cards = [{"name": "STAMP", "value": k, "comment": "stamp index"}]
        segments.append((f"{detector}_stamp{k:04d}", cards, np.rint(img).astype(np.int32)))
    day_dir = Path(out_dir) / day_obs
    day_dir.mkdir(parents=True, exist_ok=True)
    path = day_dir / f"LSSTCam_O_{day_obs}_{seqnum:06d}_{detector}_guider.fits"
    write_raw_file(path, primary, segments, compress)
    return path
