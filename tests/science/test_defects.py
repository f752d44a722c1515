"""Defect census (cp_pipe FindDefects semantics) on ITL-size amps with injected defects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibmon.science.defects import (
    BAD_ON_AND_OFF_PIXEL_COLUMN_THRESHOLD,
    DARK_CURRENT_THRESHOLD_E_PER_S,
    FRAC_THRESHOLD_FLAT,
    GOOD_PIXEL_COLUMN_GAP_THRESHOLD,
    NSIGMA_BRIGHT,
    defect_fraction,
    find_bright_defects,
    find_dark_defects,
)

pytestmark = pytest.mark.filterwarnings("error")

ITL_SHAPE = (2000, 509)


def _layout(rng):
    """Injected defects, keeping isolated pixels away from the defect columns."""
    n_rows, n_cols = ITL_SHAPE
    full_cols = [17, 300]  # bad over all rows
    intermittent_full = 123  # every 5th row of rows 100-1899: 360 bad → filled to 1796 ≥ 1000
    partial = 411  # every 3rd row of rows 500-799: 100 bad → filled to 298 < 1000: pixels
    gappy = 222  # 60 bad pixels in 2 clusters 500 rows apart: ≥ 50, gap ≥ 30 not filled
    special = {*full_cols, intermittent_full, partial, gappy}
    free = np.array([c for c in range(n_cols) if c not in special])
    n_iso = 60
    cols = rng.choice(free, n_iso)
    rows = rng.choice(n_rows, n_iso, replace=False)
    return full_cols, intermittent_full, partial, gappy, rows, cols


def _inject(img, value, rng):
    full_cols, inter, partial, gappy, rows, cols = _layout(rng)
    img[:, full_cols] = value
    img[100:1900:5, inter] = value
    img[500:800:3, partial] = value
    img[200:230, gappy] = value
    img[760:790, gappy] = value
    img[rows, cols] = value
    expected_cols = sorted([*full_cols, inter])
    partial_px = len(range(500, 800, 3))
    expected_partial = (500 + 3 * (partial_px - 1)) - 500 + 1  # 298, filled between ends
    expected_pixels = len(rows) + expected_partial + 60
    return expected_cols, expected_pixels, (rows, cols)


def test_bright_defects_itl_amp():
    """All injected hot pixels and columns found, ≤ 1 false positive.

    Background: a master-dark rate of 0.005 e-/s with σ = 0.09 e-/s (15 × 30 s darks,
    6 e read noise) — the 3 e-/s threshold is 33σ above it, so the chance of a false
    positive among 10⁶ pixels is ~10⁻²³⁰; defects are injected at 2× the threshold.
    Expected census (cp_pipe rules): 2 full columns + 1 intermittent column filled to
    1796 ≥ 1000 rows → 3 columns; 60 isolated pixels + a 100-pixel every-3rd-row run
    filled to 298 pixels (< 1000: stays pixels) + 60 pixels in two clusters 530 rows
    apart (≥ 50 bad, but the 530-row gap ≥ 30 is not filled) → 418 pixels.
    """
    rng = np.random.default_rng(60)
    img = rng.normal(0.005, 0.09, ITL_SHAPE).astype(np.float32)
    exp_cols, exp_pix, (rows, cols) = _inject(img, 2 * DARK_CURRENT_THRESHOLD_E_PER_S, rng)
    c = find_bright_defects(img)
    assert list(c.column_indices) == exp_cols and c.n_columns == 3
    assert exp_pix <= c.n_pixels <= exp_pix + 1
    assert c.pixel_mask[rows, cols].all()
    assert c.pixel_mask[:, exp_cols].all()
    assert c.n_pixels == int(c.pixel_mask.sum()) - 3 * ITL_SHAPE[0]
    assert c.reason == "" and c.measured
    assert c.threshold == pytest.approx(0.005 + DARK_CURRENT_THRESHOLD_E_PER_S, abs=0.01)


def test_dark_defects_itl_amp():
    """All injected cold pixels and columns found in a normalised flat, ≤ 1 false positive.

    Flat: 1 % PRNU and shot noise of 45 000 e (0.47 %): σ ≈ 1.1 %, so the 0.9 threshold
    is 9σ below the mean (p ≈ 10⁻¹⁹ per pixel). Defects at 0.5 (dead) and 0.8 (cold).
    Same layout and expected census as the bright test.
    """
    rng = np.random.default_rng(61)
    flat = (1 + 0.011 * rng.standard_normal(ITL_SHAPE)).astype(np.float32)
    exp_cols, exp_pix, (rows, cols) = _inject(flat, 0.5, rng)
    flat[rows[:20], cols[:20]] = 0.8
    c = find_dark_defects(flat * 31_000.0)  # any positive scale: threshold is 0.9 × clipped mean
    assert list(c.column_indices) == exp_cols
    assert exp_pix <= c.n_pixels <= exp_pix + 1
    assert c.pixel_mask[rows, cols].all()
    assert c.threshold == pytest.approx(FRAC_THRESHOLD_FLAT * 31_000.0, rel=1e-3)
    # the fraction: union of bright and dark, columns counted by pixel
    bright = find_bright_defects(np.zeros(ITL_SHAPE, np.float32))
    assert bright.n_pixels == 0 and bright.n_columns == 0
    f = defect_fraction(bright, c, ITL_SHAPE)
    assert f == pytest.approx((3 * 2000 + exp_pix) / (2000 * 509), rel=1e-3)


def _reference_fill(bad: np.ndarray) -> np.ndarray:
    """cp_pipe's intermittent-column rule written as its loop (for fast == reference)."""
    out = bad.copy()
    for x in range(bad.shape[1]):
        ys = np.flatnonzero(bad[:, x])
        if ys.size < BAD_ON_AND_OFF_PIXEL_COLUMN_THRESHOLD:
            continue
        breaks = np.flatnonzero(np.diff(ys) >= GOOD_PIXEL_COLUMN_GAP_THRESHOLD)
        limits = [ys[0]]
        for b in breaks:
            limits += [ys[b], ys[b + 1]]
        limits.append(ys[-1])
        for lo, hi in zip(limits[::2], limits[1::2], strict=True):
            out[lo : hi + 1, x] = True
    return out


def test_column_rules_match_reference_loop():
    """The vectorised column rules equal cp_pipe's loop on random sparse columns."""
    rng = np.random.default_rng(62)
    bad = np.zeros((400, 60), dtype=bool)
    for x in range(60):
        p = rng.choice([0.0, 0.05, 0.15, 0.3, 0.6])
        bad[:, x] = rng.random(400) < p
    img = np.where(bad, 10.0, 0.0).astype(np.float32)
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    c = find_bright_defects(img, column_fraction=1.1)  # never a full column
    assert np.array_equal(c.pixel_mask, _reference_fill(bad))
    c2 = find_bright_defects(img, column_fraction=0.5)
    ref = _reference_fill(bad)
    full = ref.sum(axis=0) >= 200
    assert list(c2.column_indices) == list(np.flatnonzero(full))
    assert c2.n_pixels == int(ref[:, ~full].sum())


def test_stdev_mode_and_combined_threshold():
    """nsigma (cp_pipe STDEV mode, 4.8σ) and VALUE mode; with both, the larger applies."""
    rng = np.random.default_rng(63)
    img = rng.normal(1.0, 0.5, (300, 300)).astype(np.float32)
    img[10, 10] = 1.0 + 3.5  # 7σ above: above 4.8σ, above 3 e-/s
    img[20, 20] = 1.0 + 2.6  # 5.2σ: above 4.8σ (2.4 e-/s) but below 3 e-/s
    s = find_bright_defects(img, threshold_e_per_s=None, nsigma=NSIGMA_BRIGHT)
    assert s.pixel_mask[10, 10] and s.pixel_mask[20, 20]
    v = find_bright_defects(img)
    assert v.pixel_mask[10, 10] and not v.pixel_mask[20, 20]
    both = find_bright_defects(img, threshold_e_per_s=3.0, nsigma=NSIGMA_BRIGHT)
    assert both.threshold == pytest.approx(v.threshold)
    with pytest.raises(ValueError):
        find_bright_defects(img, threshold_e_per_s=None, nsigma=None)


def test_bad_mask_overlap_and_fraction_counts_union():
    """Excluded pixels are never defects; a pixel bad in both censuses counts once."""
    img = np.zeros((100, 100), np.float32)
    img[5, 5] = img[6, 6] = 10.0
    mask = np.zeros(img.shape, bool)
    mask[6, 6] = True
    b = find_bright_defects(img, bad_mask=mask)
    assert b.n_pixels == 1 and not b.pixel_mask[6, 6]
    flat = np.ones((100, 100), np.float32)
    flat[5, 5] = 0.1
    flat[:, 50] = 0.2
    d = find_dark_defects(flat)
    assert d.n_pixels == 1 and d.column_indices == (50,)
    assert defect_fraction(b, d, (100, 100)) == pytest.approx((100 + 1) / 10_000)
    with pytest.raises(ValueError):
        defect_fraction(b, d, (100, 99))


def test_dead_amp_and_unmeasurable():
    """Dead amp flat (bias + noise): every column dark, reason; all-NaN: not measured."""
    rng = np.random.default_rng(64)
    dead = rng.normal(0.0, 4.0, (200, 100)).astype(np.float32)
    c = find_dark_defects(dead)
    assert c.n_columns == 100 and c.n_pixels == 0 and "dead amp" in c.reason
    assert defect_fraction(find_bright_defects(np.zeros((200, 100))), c, (200, 100)) == 1.0
    nan = np.full((50, 50), np.nan)
    for census in (find_bright_defects(nan), find_dark_defects(nan)):
        assert not census.measured and census.reason and census.n_pixels == 0
    assert math.isnan(defect_fraction(find_bright_defects(nan), find_dark_defects(nan), (50, 50)))
    m = find_dark_defects(np.ones((50, 50)), bad_mask=np.ones((50, 50), bool))
    assert not m.measured
    with pytest.raises(ValueError):
        find_dark_defects(np.ones(10))
    with pytest.raises(ValueError):
        find_dark_defects(np.ones((5, 5)), bad_mask=np.ones((4, 4), bool))
