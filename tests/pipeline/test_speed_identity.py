"""The per-core speed-ups change no bit: each fast path against the computation it
replaced, on random data (integer ADC images, NaN-holed images, real FITS files)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from calibmon.io.fits import RawFile
from calibmon.io.geometry import amp_geometry
from calibmon.science.defects import _column_nanmedians
from calibmon.science.isr import overscan_correct_into, overscan_row_levels

SHAPE = (300, 3 + 200 + 40)
GEOM = amp_geometry("[4:203,1:300]", SHAPE)


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int16, np.float32, np.float64])
def test_overscan_subtraction_matches_the_float64_loop(dtype: type) -> None:
    rng = np.random.default_rng(3)
    top = 2**18 if dtype == np.int32 else 30_000
    img = rng.integers(0, top, SHAPE).astype(dtype)
    if np.dtype(dtype).kind == "f":
        img = (img + rng.random(SHAPE)).astype(dtype)
    out = np.empty((GEOM.n_data_rows, GEOM.n_data_cols), np.float32)
    levels = overscan_correct_into(
        img, GEOM.data_rows, GEOM.data_cols, GEOM.overscan_level_cols, out
    )
    # the replaced computation: numpy's mixed-type loop, cast to float32
    ref = np.empty_like(out)
    lv = overscan_row_levels(img[GEOM.data_rows, GEOM.overscan_level_cols])
    np.subtract(
        img[GEOM.data_rows, GEOM.data_cols], lv.astype(np.float32)[:, None], out=ref,
        casting="unsafe",
    )  # fmt: skip
    assert np.array_equal(levels, lv)
    assert np.array_equal(out.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("rows", [5, 599, 601, 2000])
@pytest.mark.parametrize("holes", [0.0, 0.01, 0.6])
def test_column_nanmedians_match_numpy(rows: int, holes: float) -> None:
    rng = np.random.default_rng(rows)
    img = rng.normal(100.0, 5.0, (rows, 37)).astype(np.float32)
    img[rng.random(img.shape) < holes] = np.nan
    img[:, 3] = np.nan  # an all-NaN column
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmedian(img, axis=0)
    got = _column_nanmedians(img)
    assert got.dtype == ref.dtype
    assert np.array_equal(got, ref, equal_nan=True)


def test_read_amp_into_reused_buffers_matches_a_fresh_read(tmp_path: Path) -> None:
    from calibmon.simulate import simulate_night

    simulate_night(tmp_path, "20251121", ["R22_S11"], small=True, seed=4, n_bias=2,
                   n_dark=0, n_flat=0)  # fmt: skip
    files = sorted(tmp_path.rglob("*.fits"))
    assert len(files) == 2
    buffers: dict = {}
    for path in files:
        with RawFile(path) as raw:
            for amp in raw.amps:
                fresh, g1 = raw.read_amp(amp)
                reused, g2 = raw.read_amp(amp, buffers)
                assert g1 == g2 and reused.dtype == fresh.dtype
                assert np.array_equal(reused, fresh)
    assert len(buffers) == 1  # one array for every amp of every file


@pytest.mark.parametrize("holes", [0.0, 0.05])
def test_bin_image_matches_nanmean(holes: float) -> None:
    from calibmon.pipeline.steps import bin_image

    rng = np.random.default_rng(5)
    img = rng.normal(1000.0, 5.0, (250, 109)).astype(np.float32)
    img[rng.random(img.shape) < holes] = np.nan
    blocks = img[:240, :96].reshape(15, 16, 6, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmean(blocks, axis=(1, 3)).astype(np.float32)
    assert np.array_equal(bin_image(img), ref, equal_nan=True)
