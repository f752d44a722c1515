"""Mutated FITS bytes give a result or an InputError naming the file, never anything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibmon.errors import InputError
from calibmon.io.fits import RawFile, read_primary_header
from calibmon.simulate import simulate_night


@pytest.fixture(scope="module")
def raw_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("fuzz")
    simulate_night(out, "20251121", ["R22_S11"], small=True, n_bias=1, n_dark=0, n_flat=0,
                   write_truth=False)  # fmt: skip
    return next(out.rglob("*.fits")).read_bytes()


def _read_everything(path: Path) -> None:
    h = read_primary_header(path)
    with RawFile(path) as raw:
        raw.check_segments(h.detector_name)
        for amp in raw.amps:
            raw.read_amp(amp)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_bytes_give_result_or_input_error(raw_bytes, tmp_path, data) -> None:
    blob = bytearray(raw_bytes)
    n_mut = data.draw(st.integers(1, 8))
    for _ in range(n_mut):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    path = tmp_path / "mutated.fits"
    path.write_bytes(bytes(blob))
    try:
        _read_everything(path)
    except InputError as err:
        assert str(err).startswith(f"rejected {path}: ")
        assert "\n" not in str(err)
