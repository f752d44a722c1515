"""Decompression floor: fitsio vs astropy.io.fits on full-size RICE LSSTCam-layout raws,
and the per-CCD time of calibmon's bias metrics against that floor.

    python benchmarks/bench_read.py [--input DIR] [--n-files N]

Without --input it simulates one full-size detector's biases (ITL R01_S01) into a temp dir.
Prints per-CCD seconds for each reader (single process, all 16 HDUs decoded) and the
ratios; then the bias-metrics pipeline per CCD (same files, one worker) vs fitsio's floor.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import fitsio
import numpy as np
from astropy.io import fits


def read_fitsio(path: Path) -> int:
    n = 0
    with fitsio.FITS(str(path)) as f:
        for hdu in f[1:]:
            a = hdu.read()
            if a is not None:
                n += a.size
    return n


def read_astropy(path: Path) -> int:
    n = 0
    with fits.open(path, memmap=False, disable_image_compression=False) as hl:
        for hdu in hl[1:]:
            a = hdu.data
            if a is not None:
                n += a.size
    return n


def time_reader(fn, files: list[Path], repeat: int = 2) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in files:
            fn(p)
        best = min(best, (time.perf_counter() - t0) / len(files))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--input", type=Path)
    ap.add_argument("--n-files", type=int, default=5)
    args = ap.parse_args()
    tmp = None
    if args.input is None:
        from calibmon.simulate import simulate_night

        tmp = tempfile.TemporaryDirectory(prefix="calibmon-bench-")
        args.input = Path(tmp.name)
        simulate_night(args.input, "20251121", ["R01_S01"], small=False, seed=1,
                       n_bias=args.n_files, n_dark=0, n_flat=0, ptc=False)  # fmt: skip
    files = sorted(args.input.rglob("*.fits"))[: args.n_files]
    mpix = read_fitsio(files[0]) / 1e6
    t_fitsio = time_reader(read_fitsio, files)
    t_astropy = time_reader(read_astropy, files)
    print(f"files: {len(files)} full-size CCDs ({mpix:.1f} Mpix each), single process")
    print(f"fitsio  : {t_fitsio:6.3f} s/CCD  ({mpix / t_fitsio:5.1f} Mpix/s)   [floor]")
    print(f"astropy : {t_astropy:6.3f} s/CCD  ({mpix / t_astropy:5.1f} Mpix/s)   "
          f"ratio astropy/fitsio = {t_astropy / t_fitsio:.2f}")  # fmt: skip

    from calibmon.config import load_settings
    from calibmon.service.run import run_directory
    from calibmon.store.sqlite import Store

    with tempfile.TemporaryDirectory() as d:
        settings = load_settings(None, store=Path(d) / "s.sqlite", executor="serial")
        with Store(settings.store_path()) as store:
            t0 = time.perf_counter()
            run_directory(args.input, settings, store, kinds=["bias"])
            n_bias = int(
                store.query(
                    "SELECT MAX(json_extract(provenance, '$.n_exposures'))"
                    " FROM records WHERE metric='read_noise_adu'"
                )[0][0]
            )
            t_bias = (time.perf_counter() - t0) / max(n_bias, 1)
    print(f"bias metrics (1 worker, {n_bias} biases incl. discovery and store): {t_bias:6.3f} "
          "s/CCD   ratio to fitsio floor = "
          f"{t_bias / t_fitsio:.2f}")  # fmt: skip
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
