"""Short histories at the cadences cameras really take (DESIGN §6), for verification.

Night 1 is processed, masters of every type are built from it and certified; the later
nights are processed against them. Every amp is stable (the simulator's natural
night-to-night drift only), so every verification must pass.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

from calibmon.cli import main
from calibmon.config import load_settings
from calibmon.service.run import run_directory
from calibmon.simulate import simulate_night
from calibmon.store.sqlite import Store


def verify_records(
    root: Path,
    nights: list[str],
    detectors: list[str] | None,
    sim: dict,
    defects_sim: dict | None = None,
    *,
    calib_types: tuple[str, ...] = ("bias", "dark", "flat", "defects"),
    later: dict | None = None,
) -> list:
    """Simulate ``nights`` with ``sim`` (simulate_night keywords), certify masters of the
    first night, process the others; the verify_* amp records of the later nights.

    ``defects_sim``: build the defects product from a night of these exposures instead
    (same camera) — as a defects product is built from long darks, not from three 1-s
    darks (on full-size amps the census of those marks every column hot).
    ``calib_types``: the products certified; ``later``: simulate_night keywords added
    for the nights after the first (injected changes).
    """
    raw, store = root / "raw", root / "calibmon.sqlite"
    kw = dict(sim)
    if detectors is not None:
        kw["detectors"] = detectors
    for i, day in enumerate(nights):
        simulate_night(raw, day, seed=300 + i, **kw, **((later or {}) if i else {}))
    assert main(["run", "--input", str(raw / nights[0]), "--store", str(store), "-q"]) == 0
    source = {t: raw / nights[0] for t in calib_types}
    if defects_sim is not None and "defects" in source:
        kw_def = {**kw, **defects_sim}
        simulate_night(root / "raw_defects", nights[0], seed=299, **kw_def)
        source["defects"] = root / "raw_defects" / nights[0]
    for calib_type, src in source.items():
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = main(["calibs", "build", "--calib-type", calib_type, "--input",
                       str(src), "--day-obs", nights[0], "--store", str(store),
                       "-q"])  # fmt: skip
        assert rc == 0, buf.getvalue()
        for pid in buf.getvalue().split():
            with redirect_stdout(io.StringIO()):
                assert main(["calibs", "certify", pid, "--begin", "2025-01-01",
                             "--store", str(store), "-q"]) == 0  # fmt: skip
    settings = load_settings(None, store=store, executor="serial")
    with Store(store) as st:
        for day in nights[1:]:
            summary = run_directory(raw / day, settings, st)
            assert summary.ok, summary.rejected
            missing = {m["calib_type"] for m in summary.missing_certified}
            assert missing == {"bias", "dark", "flat"} - set(calib_types), missing
        return [
            r
            for r in st.iter_records(level="amp")
            if r.metric.startswith("verify_") and r.day_obs != nights[0]
        ]
