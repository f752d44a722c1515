"""Pixel physics of one raw amplifier frame: charge, CTI, nonlinearity, gain, bias, noise.

Pure numpy, vectorised, no I/O. One frame of one amp is built in this order (units in
brackets):

1. Expected charge per data pixel [e-]:
   ``μ = flux_e_per_s·t_exp·R + dark_e_per_s·t_dark`` with ``R`` the fixed response map
   ``(1 + prnu·z)`` (``z`` mean 0, std 1) times the response of cold pixels/columns;
   hot pixels/columns add ``rate·t_dark``. Dead amps collect no charge at all.
2. Collected charge [e-] (:func:`draw_charge`): for ``μ ≥ 100 e-`` a Gaussian with the
   brighter-fatter variance of Astier et al. 2019 (eq. 16, C00 with gain 1)
   ``Var_e(μ) = (exp(2·a00·μ) − 1)/(2·a00)``; below, Poisson(μ) (there a00·μ < 3e-4,
   so the shaping is negligible and skipped). Frames without light use an exact
   Poisson draw (:func:`poisson_uniform`). Charge is clipped to ``[0, full_well_e]``.
3. Serial CTI (:func:`apply_serial_cti`), first-order deferred charge along each row.
4. Nonlinearity of the output chain (:func:`nonlinear_response`): ``s + k2·s²``.
5. ADU: divide by the gain.
6. Bias (:func:`bias_frame`), in ADU: level + per-frame offset + per-frame smooth row
   drift (all columns, prescan and overscan included) + a fixed 2-D pattern (data area
   only) + Gaussian read noise ``read_noise_e/gain`` in every pixel; round to the nearest
   integer and clip to the 18-bit ADC range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibmon.simulate.camera import AmpLayout, AmpParams

# Below this expected charge a pixel is drawn from a Poisson law, above from a Gaussian
# with the brighter-fatter variance: at 100 e- the Poisson skewness is 0.1 and the
# variance (what every calibmon measurement uses) is exact either way.
POISSON_BELOW_E = 100.0
# Poisson draws for one constant mean below this use the inverse-CDF comparison loop
# (:func:`poisson_uniform`), ~6x faster than Generator.poisson for λ ≲ 1.
_INVERSE_CDF_MAX_LAMBDA = 8.0
ADC_MAX_ADU = 2**18 - 1  # LSSTCam REBs digitise to 18 bits

# Per-frame bias behaviour.
FRAME_OFFSET_SIGMA_ADU = 1.0  # Gaussian jitter of the whole amp's level, per frame
ROW_DRIFT_AMPLITUDE_ADU = (0.5, 2.5)  # uniform amplitude of the row drift, per frame
ROW_DRIFT_PERIOD_ROWS_FRAC = (0.3, 1.5)  # period of the sinusoid, in units of n_rows
# Fixed 2-D bias pattern: A·exp(-c/τc) + 0.5·A·exp(-r/τr) on the data area.
PATTERN_TAU_COLS_FRAC = 0.02  # τc = 2 % of the data columns (~10 columns full size)
PATTERN_TAU_ROWS_FRAC = 0.01  # τr = 1 % of the data rows (~20 rows full size)
PATTERN_ROW_WEIGHT = 0.5


def bf_variance_e(mu_e: np.ndarray | float, a00_per_e: float) -> np.ndarray | float:
    """Brighter-fatter pixel variance [e-²] at mean ``mu_e`` [e-] (Astier et al. 2019 eq. 16).

    ``Var_e(μ) = (exp(2·a00·μ) − 1)/(2·a00)``; ``μ`` when ``a00 = 0``. With a00 ≈ −2e-6
    the variance is 2.9 % below Poisson at 15 ke-, 18 % at 100 ke-. In ADU, with gain g,
    this is Astier's ``C00 = (exp(2·a00·μ_adu·g) − 1)/(2·a00·g²)`` (plus the read noise).
    """
    if a00_per_e == 0.0:
        return mu_e
    two_a = 2.0 * a00_per_e
    if isinstance(mu_e, np.ndarray):
        return np.expm1(mu_e * mu_e.dtype.type(two_a)) / mu_e.dtype.type(two_a)
    return math.expm1(two_a * mu_e) / two_a


def poisson_uniform(rng: np.random.Generator, lam: float, shape: tuple[int, ...]) -> np.ndarray:
    """Poisson(λ) counts for every pixel of ``shape`` with one mean λ, float32.

    For small λ by inverse CDF (k = number of CDF steps a uniform deviate exceeds),
    otherwise ``Generator.poisson``; above :data:`POISSON_BELOW_E` the Gaussian
    approximation N(λ, λ).
    """
    if lam <= 0.0:
        return np.zeros(shape, dtype=np.float32)
    if lam < _INVERSE_CDF_MAX_LAMBDA:
        u = rng.random(shape, dtype=np.float32)
        out = np.zeros(shape, dtype=np.float32)
        pmf = math.exp(-lam)
        cdf = pmf
        k = 0
        while cdf < 1.0 - 1e-7 and k < 200:
            out += u >= np.float32(cdf)
            k += 1
            pmf *= lam / k
            cdf += pmf
        return out
    if lam < POISSON_BELOW_E:
        return rng.poisson(lam, shape).astype(np.float32)
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= np.float32(math.sqrt(lam))
    out += np.float32(lam)
    return out


def draw_charge(rng: np.random.Generator, mu_e: np.ndarray, a00_per_e: float) -> np.ndarray:
    """Collected charge [e-] for expected charge ``mu_e`` (float32 array), float32.

    ``x = μ + z·sqrt(Var_e(μ))`` with z standard normal and Var_e from
    :func:`bf_variance_e` — i.e. each pixel's deviation from its expected value is
    scaled so the temporal variance follows Astier's C00 model; pixels with
    ``μ < POISSON_BELOW_E`` get an exact Poisson(μ) draw instead.
    """
    mu = np.asarray(mu_e, dtype=np.float32)
    out = rng.standard_normal(mu.shape, dtype=np.float32)
    var = bf_variance_e(mu, a00_per_e)
    sigma = np.sqrt(np.maximum(var, np.float32(0.0)))
    out *= sigma
    out += mu
    low = mu < np.float32(POISSON_BELOW_E)
    if low.any():
        idx = np.flatnonzero(low)
        np.put(out, idx, rng.poisson(mu.ravel()[idx].astype(np.float64)).astype(np.float32))
    return out


def apply_serial_cti(charge_e: np.ndarray, serial_cti: float, n_prescan: int) -> np.ndarray:
    """First-order serial deferred charge along each row; modifies ``charge_e`` in place.

    ``charge_e`` is the data area ``(n_data_rows, n_data_cols)`` in readout order. The
    pixel in raw column ``j`` (0-based, prescan included) undergoes ``n_j = j + 1``
    serial transfers and leaves ``n_j·cti`` of its charge behind, which is read out
    with the next pixel (column ``j + 1``). The charge left by the last data column
    forms the EPER trail in the first serial-overscan column:
    ``trail = cti · N · S_last`` with ``N = n_prescan + n_data_cols`` (= DATASEC x2,
    512 for ITL, 522 for e2v), so ``trail / (N · S_last) = cti`` exactly at first
    order. With the default cti (3e-6 … 1.5e-5) a 15 ke- flat gives a 23–115 e- trail
    (ITL full size), ≫ the 0.03 e- noise of its mean over 2000 rows × 16 flats.

    Returns
    -------
    trail : (n_data_rows,) float32, e-: the charge in the first serial-overscan column.
    """
    n_cols = charge_e.shape[1]
    frac = (np.arange(n_cols, dtype=np.float32) + np.float32(n_prescan + 1)) * np.float32(
        serial_cti
    )
    lost = charge_e * frac
    charge_e -= lost
    charge_e[:, 1:] += lost[:, :-1]
    return lost[:, -1].copy()


def nonlinear_response(signal_e: np.ndarray, k2_per_e: float) -> np.ndarray:
    """Output-chain nonlinearity in place: ``s_meas = s + k2·s²`` (k2 < 0: a deficit).

    ``s`` is the charge after CTI [e-]; the fractional deficit is ``k2·s``
    (e.g. k2 = −7.5e-8 ⇒ −0.75 % at 100 ke-, −0.11 % at 15 ke-).
    """
    if k2_per_e != 0.0:
        factor = signal_e * np.float32(k2_per_e)
        factor += np.float32(1.0)
        signal_e *= factor
    return signal_e


def bias_pattern_vectors(
    n_data_rows: int, n_data_cols: int, amplitude_adu: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed 2-D bias structure of the data area as ``row_vec[:, None] + col_vec[None, :]``.

    ``pattern(r, c) = A·exp(−c/τc) + 0.5·A·exp(−r/τr)`` [ADU] with ``r, c`` 0-based
    data-area row/column in readout order, ``τc = 0.02·n_data_cols``,
    ``τr = 0.01·n_data_rows`` (at least one pixel each): a few-ADU ramp in the first
    columns and rows, identical in every frame of a night, absent from the overscan.
    """
    tau_c = max(1.0, PATTERN_TAU_COLS_FRAC * n_data_cols)
    tau_r = max(1.0, PATTERN_TAU_ROWS_FRAC * n_data_rows)
    col_vec = amplitude_adu * np.exp(-np.arange(n_data_cols) / tau_c)
    row_vec = PATTERN_ROW_WEIGHT * amplitude_adu * np.exp(-np.arange(n_data_rows) / tau_r)
    return row_vec.astype(np.float32), col_vec.astype(np.float32)


def bias_pattern_mean(n_data_rows: int, n_data_cols: int, amplitude_adu: float) -> float:
    """Mean of :func:`bias_pattern_vectors`' pattern over the data area [ADU]."""
    row_vec, col_vec = bias_pattern_vectors(n_data_rows, n_data_cols, amplitude_adu)
    return float(row_vec.astype(np.float64).mean() + col_vec.astype(np.float64).mean())


def row_drift(rng: np.random.Generator, n_rows: int, n_data_rows: int) -> np.ndarray:
    """Smooth per-frame bias drift along the rows [ADU], float32 ``(n_rows,)``.

    ``B·sin(2π·r/P + φ)`` with B, P and φ drawn per frame, minus its mean over the
    data rows (so the mean serial-overscan level of the data rows is exactly
    ``bias_level + frame offset`` up to read noise); the same value is added to every
    column of row ``r`` (prescan, data, overscan), so a per-row overscan correction
    removes it.
    """
    amp = rng.uniform(*ROW_DRIFT_AMPLITUDE_ADU)
    period = rng.uniform(*ROW_DRIFT_PERIOD_ROWS_FRAC) * n_rows
    phase = rng.uniform(0.0, 2.0 * math.pi)
    d = amp * np.sin(2.0 * math.pi * np.arange(n_rows) / period + phase)
    d -= d[:n_data_rows].mean()
    return d.astype(np.float32)


@dataclass
class AmpMaps:
    """Fixed per-amp pixel maps for one night (built once per detector)."""

    response: np.ndarray  # (n_data_rows, n_data_cols) float32: (1 + prnu·z) × cold factors
    hot_rows: np.ndarray  # hot pixels, data-area rows (int)
    hot_cols: np.ndarray  # hot pixels, data-area columns (int)
    hot_rates_e_per_s: np.ndarray
    hot_columns: np.ndarray
    hot_column_rates_e_per_s: np.ndarray
    pattern_rows: np.ndarray  # (n_data_rows,) float32 ADU
    pattern_cols: np.ndarray  # (n_data_cols,) float32 ADU


def build_amp_maps(params: AmpParams, layout: AmpLayout, prnu_unit: np.ndarray) -> AmpMaps:
    """Response map, hot-defect lists and bias pattern of one amp.

    ``prnu_unit`` is the camera's fixed unit map (mean 0, std 1, see
    ``camera.prnu_unit_map``); it is scaled in place into the response map.
    """
    response = prnu_unit
    response *= np.float32(params.prnu)
    response += np.float32(1.0)
    for (r, c), f in zip(params.cold_pixels, params.cold_pixel_response, strict=True):
        response[r, c] *= np.float32(f)
    for c, f in zip(params.cold_columns, params.cold_column_response, strict=True):
        response[:, c] *= np.float32(f)
    hot = np.array(params.hot_pixels, dtype=np.int64).reshape(-1, 2)
    pattern_rows, pattern_cols = bias_pattern_vectors(
        layout.n_data_rows, layout.n_data_cols, params.bias_pattern_adu
    )
    return AmpMaps(
        response=response,
        hot_rows=hot[:, 0],
        hot_cols=hot[:, 1],
        hot_rates_e_per_s=np.asarray(params.hot_pixel_rates_e_per_s, dtype=np.float64),
        hot_columns=np.asarray(params.hot_columns, dtype=np.int64),
        hot_column_rates_e_per_s=np.asarray(params.hot_column_rates_e_per_s, dtype=np.float64),
        pattern_rows=pattern_rows,
        pattern_cols=pattern_cols,
    )


def collect_charge(
    rng: np.random.Generator,
    params: AmpParams,
    maps: AmpMaps,
    layout: AmpLayout,
    signal_e: float,
    darktime_s: float,
    extra_mu_e: np.ndarray | None = None,
) -> np.ndarray | None:
    """Collected charge of the data area [e-], float32, or None when there is none.

    ``signal_e`` is the amp's mean illumination in this exposure (flux × exptime, 0 for
    biases and darks); dark current and hot defects accumulate over ``darktime_s``;
    ``extra_mu_e`` (data-area shape) adds expected charge such as stars.
    Charge is clipped to ``[0, full_well_e]``.
    """
    if params.dead:
        return None
    shape = (layout.n_data_rows, layout.n_data_cols)
    dark_e = params.dark_current_e_per_s * darktime_s
    hot_e = maps.hot_rates_e_per_s * darktime_s
    col_e = maps.hot_column_rates_e_per_s * darktime_s
    if signal_e <= 0.0 and dark_e <= 0.0 and not (hot_e.any() or col_e.any()):
        return None
    if signal_e > 0.0 or extra_mu_e is not None:
        mu = maps.response * np.float32(signal_e)
        mu += np.float32(dark_e)
        if extra_mu_e is not None:
            mu += extra_mu_e
        if hot_e.size:
            np.add.at(mu, (maps.hot_rows, maps.hot_cols), hot_e.astype(np.float32))
        for c, e in zip(maps.hot_columns, col_e, strict=True):
            mu[:, c] += np.float32(e)
        charge = draw_charge(rng, mu, params.a00_per_e)
    else:
        # Dark or bias with dark time: one mean everywhere, then the hot defects.
        charge = poisson_uniform(rng, dark_e, shape)
        if hot_e.size:
            charge[maps.hot_rows, maps.hot_cols] = rng.poisson(dark_e + hot_e)
        for c, e in zip(maps.hot_columns, col_e, strict=True):
            charge[:, c] = rng.poisson(dark_e + e, layout.n_data_rows)
    np.clip(charge, np.float32(0.0), np.float32(params.full_well_e), out=charge)
    return charge


def bias_frame(
    rng: np.random.Generator, params: AmpParams, maps: AmpMaps, layout: AmpLayout
) -> tuple[np.ndarray, float]:
    """Bias + read noise of the whole raw array [ADU], float32, and the frame offset [ADU].

    ``level + offset + drift(row) + pattern (data area) + N(0, read_noise_e/gain)``.
    """
    raw = rng.standard_normal((layout.n_rows, layout.n_cols), dtype=np.float32)
    raw *= np.float32(params.read_noise_adu)
    offset = float(rng.normal(0.0, FRAME_OFFSET_SIGMA_ADU))
    raw += np.float32(params.bias_level_adu + offset)
    raw += row_drift(rng, layout.n_rows, layout.n_data_rows)[:, None]
    data = raw[layout.data_rows, layout.data_cols]
    data += maps.pattern_rows[:, None]
    data += maps.pattern_cols[None, :]
    return raw, offset


def simulate_amp_frame(
    rng: np.random.Generator,
    params: AmpParams,
    maps: AmpMaps,
    layout: AmpLayout,
    signal_e: float,
    darktime_s: float,
    extra_mu_e: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """One raw amplifier frame: int32 ``(n_rows, n_cols)`` in ADU and its bias offset [ADU].

    ``signal_e``: mean illumination of the amp in electrons (0 for bias and dark frames);
    ``darktime_s``: time over which dark current accumulates; ``extra_mu_e``: optional
    extra expected charge of the data area (stars). See the module docstring for the
    order of the effects.
    """
    charge = collect_charge(rng, params, maps, layout, signal_e, darktime_s, extra_mu_e)
    raw, offset = bias_frame(rng, params, maps, layout)
    if charge is not None:
        trail = apply_serial_cti(charge, params.serial_cti, layout.n_prescan)
        nonlinear_response(charge, params.nonlinearity_k2_per_e)
        nonlinear_response(trail, params.nonlinearity_k2_per_e)
        inv_gain = np.float32(1.0 / params.gain_e_per_adu)
        charge *= inv_gain
        trail *= inv_gain
        raw[layout.data_rows, layout.data_cols] += charge
        raw[layout.data_rows, layout.first_overscan_col] += trail
    np.rint(raw, out=raw)
    np.clip(raw, np.float32(0.0), np.float32(ADC_MAX_ADU), out=raw)
    return raw.astype(np.int32), offset
