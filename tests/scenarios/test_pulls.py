"""Calibrated errors: over 20 simulated nights, (value − truth)/error of every amp-level
metric with a truth has median within ±0.3 and spread (1.4826·MAD) within 0.8–1.25
(DESIGN.md §4 ``error``; issue 12).

20 nights × 2 detectors × 16 amps = 640 pulls per metric: the median of 640 unit-normal
pulls scatters by 1.2533/√640 = 0.05, σ_MAD by ~0.04, so ±0.3 and 0.8–1.25 are > 5σ
from the ideal — a failure is a bias or a mis-sized error, not bad luck.

Cadence: LSSTCam DMTN-222 (15 bias, 15 darks of 30 s, 15 flats) plus a 12-pair PTC
ramp every night (PTC metrics need one a night to be tested over nights); small amps.

Truths (``truth.json`` of each night, per amp): read noise ``read_noise_e`` (adu:
÷ gain); gain ``gain_e_per_adu``; dark current and its 95th percentile
``dark_current_e_per_s`` (the simulator's dark current is uniform; hot pixels are far
fewer than 5 %); serial CTI ``serial_cti``; bias level ``bias_level_adu``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from calibmon.cli import main
from calibmon.simulate import simulate_night
from calibmon.store.sqlite import Store

from .cadence_history import day

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pulls")]

N_NIGHTS = 20
DETS = ("R22_S11", "R01_S01")


def _truth(metric: str, amp: dict) -> float | None:
    g = amp["gain_e_per_adu"]
    return {
        "read_noise_adu": amp["read_noise_e"] / g,
        "read_noise": amp["read_noise_e"],
        "gain": g,
        "ptc_gain": g,
        "dark_current": amp["dark_current_e_per_s"],
        "dark_current_p95": amp["dark_current_e_per_s"],
        "serial_cti": amp["serial_cti"],
        "bias_level": amp["bias_level_adu"],
    }.get(metric)


@pytest.fixture(scope="module")
def pulls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    root = tmp_path_factory.mktemp("pulls")
    store = root / "cm.sqlite"
    truths = {}
    for i in range(N_NIGHTS):
        truth = simulate_night(
            root / "raw", day(i), DETS, small=True, seed=900 + i, camera_seed=25, n_bias=15,
            n_dark=15, dark_time_s=30.0, n_flat=15, ptc=True, n_ptc_pairs=12, compress=False,
        )  # fmt: skip
        truths[day(i)] = truth
        raw = root / "raw" / day(i)
        assert main(["run", "--input", str(raw), "--store", str(store), "-q"]) == 0
        for f in raw.glob("*.fits"):
            f.unlink()
    out: dict[str, list[float]] = defaultdict(list)
    with Store(store) as s:
        for r in s.iter_records(level="amp"):
            amp = truths[r.day_obs]["detectors"][r.detector_name]["amps"][r.amp]
            if amp.get("dead"):
                continue
            t = _truth(r.metric, amp)
            if t is None:
                continue
            assert r.error is not None and r.error > 0, (r.metric, r.detector_name, r.amp)
            out[r.metric].append((r.value - t) / r.error)
    return {m: np.asarray(v) for m, v in out.items()}


METRICS = (
    "read_noise_adu", "read_noise", "gain", "ptc_gain", "dark_current", "dark_current_p95",
    "serial_cti", "bias_level",
)  # fmt: skip


@pytest.mark.parametrize("metric", METRICS)
def test_pulls_are_unit_normal(pulls, metric: str) -> None:
    x = pulls[metric]
    assert x.size >= N_NIGHTS * 16 * len(DETS) * 0.9
    med = float(np.median(x))
    spread = 1.482602218505602 * float(np.median(np.abs(x - med)))
    print(f"{metric}: n={x.size} median {med:+.2f} spread {spread:.2f}")
    assert abs(med) <= 0.3, (metric, med, spread)
    assert 0.8 <= spread <= 1.25, (metric, med, spread)
    assert math.isfinite(spread)


def test_every_amp_record_has_an_error(tmp_path: Path) -> None:
    """Every amp-level record of a small night has an ``error`` unless its metric is a
    count, a pass fraction or a limit (DESIGN.md §4: null where a metric has none)."""
    simulate_night(tmp_path / "raw", day(0), ("R22_S11",), small=True, seed=3, ptc=True,
                   n_ptc_pairs=12, compress=False)  # fmt: skip
    store = tmp_path / "cm.sqlite"
    assert main(["run", "--input", str(tmp_path / "raw"), "--store", str(store), "-q"]) == 0
    no_error = {"bright_pixels", "bright_columns", "dark_pixels", "dark_columns",
                "defect_fraction"}  # fmt: skip
    missing = set()
    with Store(store) as s:
        for r in s.iter_records(level="amp"):
            limit = r.provenance.model_dump().get("lower_limit")
            if r.metric in no_error or r.metric.endswith("_pass") or limit:
                continue
            if r.error is None:
                missing.add(r.metric)
    assert missing == set()
