"""Synthetic amplifier data with known truth, shared by the science tests.

Everything is numpy, seeded by the caller's ``np.random.default_rng``; no files.

Physics simulated per pixel (electrons, then adu):
- photon arrival: Poisson(μₑ × PRNU map);
- brighter-fatter: a charge-conserving 5-point smoothing q' = (1−4ε)q + ε·Σ(4 neighbours)
  with ε chosen so the per-pixel variance is exactly Astier et al. 2019 eq. 16,
  Var = μₑ·(e^{2a₀₀μₑ} − 1)/(2a₀₀μₑ) electron², for the injected a₀₀ (the smoothing moves
  variance into nearest-neighbour covariances, as brighter-fatter does);
- full well: electrons clipped at ``full_well_e``;
- nonlinearity: s = x + k₂x² with x = e/g in adu;
- read noise: Gaussian, σ = read_noise_e / g adu; a constant bias level in adu.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest


def bf_epsilon(a00_per_e: float, mu_e: float) -> float:
    """ε of the 5-point smoothing giving the Astier eq. 16 variance deficit at μₑ.

    The smoothed white noise has variance σ²((1−4ε)² + 4ε²) = σ²(1 − 8ε + 20ε²); setting
    it to σ²·f with f = expm1(x)/x, x = 2a₀₀μₑ, gives 20ε² − 8ε + (1 − f) = 0.
    """
    x = 2.0 * a00_per_e * mu_e
    if x == 0.0:
        return 0.0
    f = math.expm1(x) / x
    return (8.0 - math.sqrt(64.0 - 80.0 * (1.0 - f))) / 40.0


def bf_smooth(e: np.ndarray, eps: float) -> np.ndarray:
    """Charge-conserving 5-point smoothing (periodic edges), float64 in and out."""
    if eps == 0.0:
        return e
    nb = np.roll(e, 1, 0) + np.roll(e, -1, 0) + np.roll(e, 1, 1) + np.roll(e, -1, 1)
    return (1.0 - 4.0 * eps) * e + eps * nb


def flat_frame(
    rng: np.random.Generator,
    shape: tuple[int, int],
    mu_e: float,
    *,
    gain: float = 1.5,
    read_noise_e: float = 6.0,
    prnu: np.ndarray | None = None,
    a00: float = 0.0,
    full_well_e: float | None = None,
    k2_per_adu: float = 0.0,
    bias_adu: float = 0.0,
) -> np.ndarray:
    """One overscan-corrected flat (float32, adu) with the physics of the module docstring."""
    lam = mu_e if prnu is None else mu_e * prnu
    e = rng.poisson(lam, size=shape).astype(np.float64)
    if a00:
        e = bf_smooth(e, bf_epsilon(a00, mu_e))
    if full_well_e is not None:
        np.minimum(e, full_well_e, out=e)
    x = e / gain
    if k2_per_adu:
        x = x + k2_per_adu * x * x
    x += rng.normal(0.0, read_noise_e / gain, size=shape)
    x += bias_adu
    return x.astype(np.float32)


def bias_frame(
    rng: np.random.Generator, shape: tuple[int, int], *, read_noise_adu: float = 4.0
) -> np.ndarray:
    """Overscan-corrected bias: white read noise around 0 adu (float32)."""
    return rng.normal(0.0, read_noise_adu, size=shape).astype(np.float32)


@pytest.fixture
def synth() -> SimpleNamespace:
    """The helpers above, for tests (conftest modules are not imported directly)."""
    return SimpleNamespace(
        bf_epsilon=bf_epsilon,
        bf_smooth=bf_smooth,
        flat_frame=flat_frame,
        bias_frame=bias_frame,
    )
