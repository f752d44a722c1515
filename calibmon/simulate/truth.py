"""The truth file of a simulated night: what was injected, with exact definitions.

``truth.json`` (written beside the raws, ``out_dir/<day_obs>/truth.json``) holds

- ``instrument``, ``day_obs``, ``seeds`` (``seed``, ``camera_seed``), ``small``,
  ``physical_filter``, ``lamp_flux_e_per_s``, ``settings`` (the simulate_night
  arguments), ``overrides`` and ``extra_defects`` as given;
- ``geometry``: per vendor (``ITL``, ``E2V``) the raw amp layout used;
- ``detectors``: per detector name ``{"detector": number, "vendor", "lsst_num",
  "wavefront", "n_amps", "amps": {amp: {...}}}`` with every injected per-amp
  parameter, units in the key names (:data:`DEFINITIONS` says what each means);
- ``exposures``: the night in seqnum order (seqnum, exposure_id, obs_id, type, ptc,
  pair_index, exptime_s, darktime_s, date_beg, date_end, filenames per detector,
  nominal_signal_e, frame_bias_offset_adu per detector and amp);
- ``daily_flat``: exposure time and per-amp expected signal of the daily flats;
- ``ptc``: the ramp's design and per pair the expected signal of every amp;
- ``definitions``: :data:`DEFINITIONS`, so the file explains itself.

All coordinates are 0-based ``[row, col]`` in the trimmed data area (DATASEC) in
readout order, i.e. ``raw[DATASEC][row, col]`` of the array as stored in the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from calibmon.io.detectors import is_wavefront
from calibmon.simulate import physics
from calibmon.simulate.camera import LAYOUTS, params_as_dict

TRUTH_FORMAT_VERSION = 1

DEFINITIONS: dict[str, str] = {
    "gain_e_per_adu": (
        "Conversion gain of the night [e-/ADU]: ADU = s_meas / gain, s_meas the charge after "
        "CTI and nonlinearity. Equals camera.gain_e_per_adu × (1 + gain_drift_frac) unless "
        "overridden."
    ),
    "read_noise_e": (
        "Read noise [e- rms]: σ of the Gaussian noise added to every pixel (prescan, data, "
        "overscan) in every frame, in ADU read_noise_e / gain_e_per_adu."
    ),
    "read_noise_adu": (
        "read_noise_e / gain_e_per_adu [ADU rms]: the std of a raw overscan pixel about its "
        "row level, before rounding to integers (which adds 1/12 ADU² of variance)."
    ),
    "bias_level_adu": (
        "Night bias level [ADU]: expectation of a raw overscan pixel. Each frame adds "
        "frame_bias_offset_adu (exposures[...], N(0, 1 ADU)) to the whole amp and a smooth "
        "row drift (0.5–2.5 ADU sinusoid along the rows, same in every column, zero mean "
        "over the data rows): the mean serial overscan of a frame's data rows is "
        "bias_level_adu + frame_bias_offset_adu."
    ),
    "bias_pattern_adu": (
        "Amplitude A [ADU] of the fixed 2-D bias structure of the data area, identical in "
        "every frame and absent from prescan/overscan: "
        "A·exp(-col/τc) + 0.5·A·exp(-row/τr), τc = max(1, 0.02·n_data_cols), "
        "τr = max(1, 0.01·n_data_rows)."
    ),
    "bias_pattern_mean_adu": (
        "Mean of that structure over the data area [ADU]: the expected mean of an "
        "overscan-corrected (per row) bias, i.e. cp_verify's bias MEAN."
    ),
    "dark_current_e_per_s": (
        "Uniform dark current [e-/s/pixel] of the data area, accumulated over DARKTIME "
        "(darks and flats; biases have DARKTIME 0) and drawn Poisson; hot pixels/columns "
        "add their own rate on top. The median of a bias-subtracted dark / DARKTIME."
    ),
    "full_well_e": (
        "Pixel charge capacity [e-]: collected charge (photons + dark) is clipped to it "
        "before CTI and nonlinearity. A PTC turnoff × gain measures "
        "full_well_e·(1 + k2·full_well_e) at most (nonlinearity deficit included)."
    ),
    "nonlinearity_k2_per_e": (
        "Quadratic nonlinearity [1/e-] of the output chain: s_meas = s + k2·s² with s the "
        "charge after CTI; fractional deficit k2·s (negative)."
    ),
    "a00_per_e": (
        "Brighter-fatter a00 [1/e-] (Astier et al. 2019 eq. 16): the temporal variance of a "
        "pixel with expected charge μ ≥ 100 e- is (exp(2·a00·μ) − 1)/(2·a00) [e-²] before "
        "full-well clipping, CTI and nonlinearity; below 100 e- it is Poisson. In ADU: "
        "C00 = (exp(2·a00·g·μ_adu) − 1)/(2·a00·g²) + read_noise_adu²."
    ),
    "serial_cti": (
        "Serial charge-transfer inefficiency per transfer, first-order deferred charge: "
        "the pixel in raw column j (0-based, prescan included) undergoes n_j = j + 1 "
        "transfers and leaves n_j·cti of its charge to the next pixel read. EPER: the first "
        "serial-overscan column holds cti·eper_transfers·S_last (S_last the last data "
        "column's charge), so (first overscan column − bias) / (last data column − bias) "
        "/ eper_transfers = cti (to first order)."
    ),
    "eper_transfers": "Serial transfers of the last data column = prescan + data columns = DATASEC x2 (512 ITL, 522 e2v full size).",
    "flux_e_per_s": (
        "Flat-field illumination rate [e-/s/pixel] of the amp's data area (mean of the "
        "response map excluding defects): lamp_flux_e_per_s × illumination × flux_scale; "
        "0 for a dead amp. A flat's expected charge per pixel is "
        "flux_e_per_s × response × EXPTIME + dark_current_e_per_s × DARKTIME."
    ),
    "illumination": "Relative illumination × QE of the amp (camera-fixed, 0.97–1.03).",
    "flux_scale": "Night multiplier of the amp's flat response (1 unless overridden).",
    "prnu": (
        "Pixel response non-uniformity: the response map is 1 + prnu·z with z white, fixed "
        "per amp by camera_seed, exactly mean 0 and std 1 over the data area (then cold "
        "defects multiply it). White, so it cancels in a flat-pair difference."
    ),
    "dead": (
        "True: the amp collects no charge at all (no photo response, dark current or hot "
        "defects); bias, bias pattern and read noise remain, so a flat ≈ a bias."
    ),
    "hot_pixels": "[[row, col], …] data-area 0-based pixels with extra dark current hot_pixel_rates_e_per_s [e-/s].",
    "hot_columns": "Data-area column indices whose every data pixel has extra dark current hot_column_rates_e_per_s [e-/s].",
    "cold_pixels": "[[row, col], …] pixels whose flat response is multiplied by cold_pixel_response (0–0.5).",
    "cold_columns": "Data-area columns whose flat response is multiplied by cold_column_response.",
    "vendor": "CCD vendor, ITL or E2V (header CCD_MANU).",
    "segment": "EXTNAME of the amp's HDU (Segment10 … Segment00).",
    "channel": "CHANNEL header value = 1-based HDU index of the amp (readout order).",
    "lsst_num": "LSST_NUM header value, stable per detector for a camera_seed.",
    "hot_pixel_rates_e_per_s": "Extra dark current of each hot pixel [e-/s], same order as hot_pixels.",
    "hot_column_rates_e_per_s": "Extra dark current of each hot column [e-/s/pixel], same order as hot_columns.",
    "cold_pixel_response": "Flat response multiplier of each cold pixel, same order as cold_pixels.",
    "cold_column_response": "Flat response multiplier of each cold column, same order as cold_columns.",
    "ptc": (
        "PTC ramp: pairs log-spaced in nominal signal from 300 e- up to dense_from_e, then "
        "in steps of at most 3 % (max_dense_step_frac says what was achieved) from "
        "dense_from_e = 0.85 × to dense_to_e = 1.25 × the extreme full wells of the night's "
        "live amps in nominal units (full_well_e / (illumination × flux_scale))."
    ),
    "camera": "The camera_seed values of gain, read noise and bias level before the night's drift.",
    "gain_drift_frac": "This night's relative gain change (seed + day_obs), N(0, 0.1 %).",
    "bias_level_drift_adu": "This night's bias-level change [ADU], N(0, 2 ADU).",
    "read_noise_drift_frac": "This night's relative read-noise change, N(0, 0.5 %).",
    "overridden": "Parameters replaced by simulate_night(overrides=…) for this night.",
    "expected_flat_signal_e": (
        "Daily flats: flux_e_per_s × EXPTIME + dark_current_e_per_s × DARKTIME [e-], the "
        "expected mean charge before CTI/nonlinearity; mean(flat) − bias ≈ this / gain."
    ),
    "frame_bias_offset_adu": "Per exposure, detector and amp: the offset [ADU] added to bias_level_adu in that frame.",
    "nominal_signal_e": "lamp_flux_e_per_s × EXPTIME [e-]: the signal of an amp with illumination 1 and flux_scale 1.",
    "expected_signal_e": (
        "PTC pairs: per amp flux_e_per_s × EXPTIME + dark_current_e_per_s × DARKTIME [e-], "
        "linear and unclipped (above full_well_e the measured mean saturates)."
    ),
    "exposure_id": "day_obs × 100000 + seqnum.",
    "date_beg": "DATE-BEG (UTC, ISO): exposures start at 22:00 UTC on day_obs, 3 s between exposures.",
    "lamp_flux_e_per_s": "Nominal lamp rate [e-/s/pixel] at illumination 1.",
    "geometry": "Raw amp layout per vendor: n_rows × n_cols array, prescan / data / serial-overscan columns, data / parallel-overscan rows.",
}


def _jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars → Python, tuples → lists, inf/nan → None."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str | bytes):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def build_truth(
    *,
    instrument: str,
    day_obs: str,
    seed: int,
    camera_seed: int,
    small: bool,
    physical_filter: str,
    lamp_flux_e_per_s: float,
    per_detector: Mapping[str, Mapping[str, Any]],
    exposures: Sequence[Any],
    offsets: Mapping[str, Mapping[int, Mapping[str, float]]],
    filename: Callable[[int, str], str],
    exposure_id: Callable[[int], int],
    obs_id: Callable[[int], str],
    iso: Callable[[Any], str],
    ptc_info: Mapping[str, float],
    settings: Mapping[str, Any],
    overrides: Mapping[str, Any],
    extra_defects: Mapping[str, Any],
) -> dict:
    """Assemble the truth dict of a night (see the module docstring for its layout)."""
    daily = [e for e in exposures if e.kind == "flat" and not e.ptc]
    t_flat = daily[0].exptime_s if daily else None
    detectors: dict[str, Any] = {}
    for det, d in per_detector.items():
        layout = d["layout"]
        amps: dict[str, Any] = {}
        for ch, (amp, p, extra) in enumerate(
            zip(d["amps"], d["params"], d["extras"], strict=True), start=1
        ):
            entry = params_as_dict(p)
            flux = p.flux_e_per_s(lamp_flux_e_per_s)
            dark = 0.0 if p.dead else p.dark_current_e_per_s
            entry.update(
                {
                    "segment": f"Segment{amp[1:]}",
                    "channel": ch,
                    "read_noise_adu": p.read_noise_adu,
                    "bias_pattern_mean_adu": physics.bias_pattern_mean(
                        layout.n_data_rows, layout.n_data_cols, p.bias_pattern_adu
                    ),
                    "flux_e_per_s": flux,
                    "eper_transfers": layout.eper_transfers,
                    "expected_flat_signal_e": (
                        flux * t_flat + dark * t_flat if t_flat is not None else None
                    ),
                }
            )
            entry.update(extra)
            amps[amp] = dict(sorted(entry.items()))
        detectors[det] = {
            "detector": d["det_num"],
            "vendor": layout.vendor,
            "lsst_num": d["lsst_num"],
            "wavefront": is_wavefront(det),
            "n_amps": len(d["amps"]),
            "amps": amps,
        }

    exp_list = []
    for e in exposures:
        exp_list.append(
            {
                "seqnum": e.seqnum,
                "exposure_id": exposure_id(e.seqnum),
                "obs_id": obs_id(e.seqnum),
                "type": e.kind,
                "ptc": e.ptc,
                "pair_index": e.pair_index,
                "exptime_s": e.exptime_s,
                "darktime_s": e.darktime_s,
                "date_beg": iso(e.date_beg),
                "date_end": iso(e.date_end),
                "nominal_signal_e": e.nominal_signal_e,
                "filenames": {det: filename(e.seqnum, det) for det in per_detector},
                "frame_bias_offset_adu": {
                    det: dict(offsets[det].get(e.seqnum, {})) for det in per_detector
                },
            }
        )

    def expected(t: float) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for det, d in per_detector.items():
            out[det] = {}
            for amp, p in zip(d["amps"], d["params"], strict=True):
                dark = 0.0 if p.dead else p.dark_current_e_per_s
                out[det][amp] = p.flux_e_per_s(lamp_flux_e_per_s) * t + dark * t
        return out

    pairs = []
    ramp = [e for e in exposures if e.ptc]
    for i in sorted({e.pair_index for e in ramp}):
        members = [e for e in ramp if e.pair_index == i]
        pairs.append(
            {
                "pair_index": i,
                "seqnums": [e.seqnum for e in members],
                "exptime_s": members[0].exptime_s,
                "nominal_signal_e": members[0].nominal_signal_e,
                "expected_signal_e": expected(members[0].exptime_s),
            }
        )

    truth = {
        "format_version": TRUTH_FORMAT_VERSION,
        "generator": "calibmon.simulate",
        "instrument": instrument,
        "day_obs": day_obs,
        "seeds": {"seed": seed, "camera_seed": camera_seed},
        "small": small,
        "physical_filter": physical_filter,
        "lamp_flux_e_per_s": lamp_flux_e_per_s,
        "settings": dict(settings),
        "geometry": {vendor: LAYOUTS[(vendor, small)].as_dict() for vendor in ("ITL", "E2V")},
        "detectors": detectors,
        "exposures": exp_list,
        "daily_flat": {
            "exptime_s": t_flat,
            "n_frames": len(daily),
            "seqnums": [e.seqnum for e in daily],
            "expected_signal_e": expected(t_flat) if t_flat is not None else {},
        },
        "ptc": {"n_pairs": len(pairs), **dict(ptc_info), "pairs": pairs},
        "overrides": overrides,
        "extra_defects": extra_defects,
        "definitions": DEFINITIONS,
    }
    return _jsonable(truth)


def write_truth(path: Path, truth: Mapping[str, Any]) -> Path:
    """Write ``truth`` as JSON beside ``path`` and rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(_jsonable(truth), fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def load_truth(path: str | Path) -> dict:
    """Read a truth file (or ``DIR/truth.json`` when given the night's directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / "truth.json"
    with open(p, encoding="utf-8") as fh:
        return json.load(fh)
