"""The pipeline's per-kind steps on stacks built in memory (no files).

Raw amp images (prescan, data, serial overscan; integer adu) are simulated with numpy's
RNG from a known truth — bias offset, read noise, gain, dark current, flat level — then
overscan corrected and trimmed with the pipeline's own per-frame code
(:func:`calibmon.pipeline.reading.corrected_stack`) and handed to the ``measure_*``
steps. Each measured value must lie within 4σ of the truth, σ being the error the
step reports, and that error must agree with the one counting statistics give
(within a factor 2), so a test cannot pass on an inflated error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from calibmon.io.geometry import AmpGeometry, amp_geometry
from calibmon.pipeline import (
    AmpContext,
    AmpHints,
    AmpResult,
    AmpTask,
    Frame,
    Hint,
    corrected_stack,
)
from calibmon.pipeline.steps import (
    EperSums,
    _frame_means_hook,
    _overscan_noise_hook,
    measure_bias,
    measure_dark,
    measure_flat,
    step_gain,
    step_read_noise_e,
)
from calibmon.science import bias as bias_sci

N_ROWS, N_DATA, PRESCAN, N_OVERSCAN = 200, 160, 3, 32
SHAPE = (N_ROWS, PRESCAN + N_DATA + N_OVERSCAN)
DATASEC = f"[{PRESCAN + 1}:{PRESCAN + N_DATA},1:{N_ROWS}]"

BIAS_ADU = 1000.0  # offset of every pixel, adu
READ_NOISE_ADU = 5.0  # per pixel, adu
GAIN = 1.5  # e-/adu
DARK_E_PER_S = 2.0
DARKTIME_S = 30.0
FLAT_E = 20_000.0  # electrons per pixel per flat


@dataclass
class Truth:
    geom: AmpGeometry
    rng: np.random.Generator

    def raw(self, signal_e: float) -> np.ndarray:
        """One raw amp frame (integer adu, int32): offset, read noise everywhere, Poisson
        signal of ``signal_e`` electrons in the data pixels, and a per-frame row pattern
        common to data and overscan (the overscan correction removes it)."""
        img = BIAS_ADU + self.rng.normal(0.0, READ_NOISE_ADU, SHAPE)
        img += self.rng.normal(0.0, 3.0, (N_ROWS, 1))  # row-wise offset drift
        if signal_e > 0:
            g = self.geom
            img[g.data_rows, g.data_cols] += (
                self.rng.poisson(signal_e, (g.n_data_rows, g.n_data_cols)) / GAIN
            )
        return np.rint(img).astype(np.int32)


def _frames(kind: int, n: int, exptime: float = 0.0, darktime: float = 0.0) -> list[Frame]:
    return [Frame(f"mem://{kind}/{k}", kind * 100 + k, exptime, darktime) for k in range(n)]


def _task(hints: AmpHints | None = None) -> AmpTask:
    return AmpTask("LSSTCam", "20251121", "R22_S11", "ITL", "C10", {}, hints or AmpHints())


@pytest.fixture
def truth() -> Truth:
    return Truth(amp_geometry(DATASEC, SHAPE), np.random.default_rng(20251121))


def _bias(truth: Truth, task: AmpTask, res: AmpResult, ctx: AmpContext, n: int = 8) -> None:
    noises: list[bias_sci.FrameNoise] = []
    images = [truth.raw(0.0) for _ in range(n)]
    stack = corrected_stack(images, truth.geom, _overscan_noise_hook(noises))
    measure_bias(stack, _frames(1, n), truth.geom, noises, task, res, ctx)


def _pull(res: AmpResult, metric: str, true_value: float) -> float:
    value, err = res.values[metric], res.errors[metric]
    assert math.isfinite(value) and err > 0, (metric, value, err)
    return (value - true_value) / err


def test_bias_step_recovers_level_and_read_noise(truth: Truth) -> None:
    task, res, ctx = _task(), AmpResult("C10"), AmpContext()
    n = 8
    _bias(truth, task, res, ctx, n)
    # level: the raw overscan mean (offset + zero-mean row drift, which the error covers
    # as the frames' level scatter)
    assert abs(_pull(res, "bias_level", BIAS_ADU)) < 4
    # read noise of the integer adu: the analogue noise (quantisation is removed)
    assert abs(_pull(res, "read_noise_adu", READ_NOISE_ADU)) < 4
    n_px = n * N_ROWS * (N_OVERSCAN - 4)  # overscan pixels used for the noise
    expected_err = READ_NOISE_ADU / math.sqrt(2 * n_px)
    assert 0.5 < res.errors["read_noise_adu"] / expected_err < 2
    # the master bias has no structure: mean 0 after overscan correction
    assert abs(_pull(res, "bias_mean", 0.0)) < 4
    assert ctx.master_bias is not None and ctx.master_bias.shape == (N_ROWS, N_DATA)
    assert res.used["bias"] == [100 + k for k in range(n)]
    assert res.images["bias"].shape == (N_ROWS // 16, N_DATA // 16)


def test_dark_step_recovers_dark_current(truth: Truth) -> None:
    hints = AmpHints(gain=Hint(GAIN, math.nan, "truth", "20251120"))
    task, res, ctx = _task(hints), AmpResult("C10"), AmpContext()
    _bias(truth, task, res, ctx)
    n = 6
    images = [truth.raw(DARK_E_PER_S * DARKTIME_S) for _ in range(n)]
    stack = corrected_stack(images, truth.geom)
    measure_dark(stack, _frames(2, n, DARKTIME_S, DARKTIME_S), task, res, ctx)
    assert abs(_pull(res, "dark_current", DARK_E_PER_S)) < 4
    # the master's per-pixel noise (Poisson + read noise of n frames, e-/s) over the
    # pixels: an upper bound on the median's error (a median's is 1.25× a mean's)
    var_e = DARK_E_PER_S * DARKTIME_S + (READ_NOISE_ADU * GAIN) ** 2
    mean_err = math.sqrt(var_e / n / (N_ROWS * N_DATA)) / DARKTIME_S
    assert 0.5 < res.errors["dark_current"] / mean_err < 4
    assert res.values["bright_pixels"] == 0


def test_flat_and_gain_steps_recover_level_and_gain(truth: Truth) -> None:
    # no brighter-fatter, no nonlinearity in the simulation: a00 = k2 = 0 from "the store"
    hints = AmpHints(
        gain=Hint(GAIN, math.nan, "truth", "20251120"),
        a00=Hint(0.0, 0.0, "truth", "20251120"),
        k2=Hint(0.0, 0.0, "truth", "20251120"),
    )
    task, res, ctx = _task(hints), AmpResult("C10"), AmpContext()
    _bias(truth, task, res, ctx)
    n = 6
    means: list[float] = []
    eper = EperSums()
    level_hook = _frame_means_hook(means)

    def hook(image: np.ndarray, geom: AmpGeometry, levels: np.ndarray) -> None:
        level_hook(image, geom, levels)
        eper.add(image, geom, levels)

    # the lamp flickers by 0.2 % frame to frame: the level's error is the frames' scatter
    levels_e = FLAT_E * (1 + 0.002 * truth.rng.standard_normal(n))
    images = [truth.raw(float(e)) for e in levels_e]
    stack = corrected_stack(images, truth.geom, hook)
    measure_flat(stack, _frames(3, n, 15.0), means, eper, task, res, ctx)
    true_level = float(np.mean(levels_e)) / GAIN
    assert abs(_pull(res, "flat_level", true_level)) < 4
    assert res.values["dark_pixels"] == 0
    assert len(ctx.pairs) == n // 2
    step_gain(task, res, ctx)
    assert abs(_pull(res, "gain", GAIN)) < 4
    # variance of a variance of N Gaussian pixels: σ(g)/g ≈ √(2/N) per pair, 3 pairs
    n_px = N_ROWS * N_DATA
    expected_err = GAIN * math.sqrt(2 / n_px) / math.sqrt(n // 2)
    assert 0.5 < res.errors["gain"] / expected_err < 2
    # read noise in electrons with today's gain
    step_read_noise_e(task, res, ctx)
    assert abs(_pull(res, "read_noise", READ_NOISE_ADU * GAIN)) < 4
