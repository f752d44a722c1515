"""Dark current (median, 95th percentile) from simulated combined darks and biases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtri

from calibmon.science.combine import median_noise_factor, median_stack
from calibmon.science.dark import dark_current_image, dark_metrics

pytestmark = pytest.mark.filterwarnings("error")

GAIN = 1.5  # e-/adu
RN_E = 6.0  # e- per read
DARK_TIME_S = 30.0
N_FRAMES = 15
ITL_SHAPE = (2000, 509)  # ITL amp data section
HOT_FRACTION = 1e-3
HOT_RATE = 5.0  # e-/s


def _masters(rng, dc_e_per_s, shape):
    """Median-combined darks and biases with a fixed bias pattern and 0.1 % hot pixels."""
    pattern = rng.normal(0.0, 3.0, size=shape).astype(np.float32)  # fixed bias structure, adu
    rate = np.full(shape, dc_e_per_s)
    hot = rng.random(shape) < HOT_FRACTION
    rate[hot] = HOT_RATE
    darks = np.empty((N_FRAMES, *shape), dtype=np.float32)
    biases = np.empty_like(darks)
    for i in range(N_FRAMES):
        e = rng.poisson(rate * DARK_TIME_S).astype(np.float32)
        darks[i] = pattern + (e + rng.normal(0, RN_E, shape).astype(np.float32)) / GAIN
        biases[i] = pattern + rng.normal(0, RN_E, shape).astype(np.float32) / GAIN
    return median_stack(darks), median_stack(biases)


@pytest.mark.parametrize("dc", [0.002, 0.02, 0.2])
def test_dark_current_median_and_p95(dc):
    """Median and p95 of the master-dark rate against the injected dark current.

    Per pixel, the master rate has noise σ_r = f₁₅·√((σ² + dc·t) + σ²)/(√15·t) e-/s
    (dark and bias masters; f₁₅ = median_noise_factor(15) = 1.21), σ = 6 e, t = 30 s:
    σ_r ≈ 0.089 e-/s. The median over N = 1 018 000 pixels (ITL amp) has error
    1.25·σ_r/√N ≈ 1.1·10⁻⁴ e-/s; the Poisson skew moves a median by −κ₃/(6σ²) per frame
    (< 10⁻⁵ e-/s at 0.002 e-/s, 8·10⁻⁴ e-/s at 0.2 e-/s). The 0.1 % hot pixels, all above
    the median, move it up by σ_r·Φ⁻¹(0.5/0.999) = 0.00125σ_r = 1.1·10⁻⁴ e-/s — a real
    property of the image (a 12-seed Monte Carlo at dc = 0 shows +1.4 ± 0.4·10⁻⁴).
    Asserted: the requirement against the injected dc, |Δ| ≤ max(10 %, 5·10⁻⁴ e-/s), and
    against the expected median dc + 0.00125σ_r within 4.5σ = 5·10⁻⁴ + the skew term.

    p95: the rate is dc + Gaussian(σ_r) for 99.9 % of pixels and 5 e-/s for the hot
    ones, so p95 = dc + σ_r·Φ⁻¹((0.95 − 0.001)/0.999). Its sampling error is
    √(p(1−p)/N)/pdf ≈ 0.002σ_r; the Gaussian approximation of the median of 15
    (Poisson + Gaussian) frames is good to ~1 % of σ_r. Asserted: 3 % of σ_r + 10 % of dc.
    """
    rng = np.random.default_rng(int(dc * 1e4))
    dark, bias = _masters(rng, dc, ITL_SHAPE)
    rate = dark_current_image(dark, bias, DARK_TIME_S, GAIN)
    assert rate.dtype == np.float32 and rate.shape == ITL_SHAPE
    m = dark_metrics(rate)
    assert m.reason == "" and m.n_pixels == rate.size
    assert abs(m.dark_current - dc) <= max(0.1 * dc, 5e-4)

    f = median_noise_factor(N_FRAMES)
    sigma_r = (
        f * math.sqrt((RN_E**2 + dc * DARK_TIME_S) + RN_E**2) / (math.sqrt(N_FRAMES) * DARK_TIME_S)
    )
    median = dc + sigma_r * float(ndtri(0.5 / (1 - HOT_FRACTION)))
    skew = dc * DARK_TIME_S / (6 * RN_E**2) / DARK_TIME_S
    assert abs(m.dark_current - median) < 5e-4 + skew
    p95 = dc + sigma_r * float(ndtri((0.95 - HOT_FRACTION) / (1 - HOT_FRACTION)))
    assert abs(m.dark_current_p95 - p95) < 0.03 * sigma_r + 0.1 * dc


def test_quantiles_match_numpy_percentile():
    """On continuous data the interpolated median/p95 agree with np.percentile to within
    one rank: they differ only in how ranks map to probabilities (mid-distribution CDF)."""
    rng = np.random.default_rng(50)
    for n in (1, 2, 3, 20, 1001, 100_000):
        x = rng.standard_exponential(n).astype(np.float32)
        m = dark_metrics(x.reshape(1, -1))
        s = np.sort(x)
        for got, q in ((m.dark_current, 0.5), (m.dark_current_p95, 0.95)):
            k = q * (n - 1)
            lo, hi = s[max(0, int(np.floor(k)) - 1)], s[min(n - 1, int(np.ceil(k)) + 1)]
            assert lo - 1e-6 <= got <= hi + 1e-6, (n, q)


def test_bad_mask_and_unmeasurable():
    """bad_mask excludes pixels; all masked / all NaN / bad dark time give NaN + reason."""
    img = np.full((100, 100), 0.01, dtype=np.float32)
    img[:, :10] = 100.0
    mask = np.zeros(img.shape, bool)
    mask[:, :10] = True
    m = dark_metrics(img, mask)
    assert m.dark_current == pytest.approx(0.01) and m.dark_current_p95 == pytest.approx(0.01)
    assert m.n_pixels == 9000
    m = dark_metrics(img, np.ones(img.shape, bool))
    assert math.isnan(m.dark_current) and math.isnan(m.dark_current_p95) and m.reason
    m = dark_metrics(np.full((10, 10), np.nan))
    assert math.isnan(m.dark_current) and m.reason
    bias = np.zeros((10, 10), np.float32)
    for t, g in [(0.0, 1.5), (-1.0, 1.5), (math.nan, 1.5), (30.0, math.nan), (30.0, 0.0)]:
        r = dark_current_image(bias + 1, bias, t, g)
        assert np.isnan(r).all()
        assert math.isnan(dark_metrics(r).dark_current)
    r = dark_current_image(bias + 3, bias, 30.0, 1.5)
    assert np.allclose(r, 3 * 1.5 / 30.0)
    with pytest.raises(ValueError):
        dark_current_image(np.zeros((3, 3)), np.zeros((3, 4)), 30.0, 1.5)
    with pytest.raises(ValueError):
        dark_metrics(img, np.zeros((3, 3), bool))
