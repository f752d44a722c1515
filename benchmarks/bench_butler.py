"""What reading through a Butler costs: ``run --butler`` against ``run --input`` on the
same files, and the query + URI step alone, as ratios measured in the same run.

    python benchmarks/bench_butler.py [--detectors R22_S11,R01_S01] [--full-size] [--repeat 3]

Simulates one night (small amps by default: the pipeline is cheap, so the Butler's share
shows), builds a daf_butler repository (SQLite registry, file datastore) holding it as
raws, then times, best of ``--repeat``: (a) ``calibmon run --input`` over the night,
(b) ``calibmon run --butler`` over the repository (same records), (c) the Butler query of
the day's raws with their URIs alone. Needs calibmon[butler].
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "butler"))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", default="R22_S11,R01_S01")
    ap.add_argument("--full-size", action="store_true", help="real amp sizes (slow)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from butler_repo import ingest_raws, make_repo

    from calibmon.butler.repo import open_butler, query_raws
    from calibmon.cli import main as cli
    from calibmon.io import detectors as dets
    from calibmon.simulate import simulate_night

    names = args.detectors.split(",")
    day = "20251121"
    with tempfile.TemporaryDirectory(prefix="bench-butler-") as tmp:
        root = Path(tmp)
        simulate_night(root / "raw", day, names, small=not args.full_size, seed=1)
        files = sorted((root / "raw" / day).glob("*.fits"))
        ingest_raws(make_repo(root / "repo", names), files)
        common = ["--day-obs", day, "--workers", "1", "-q"]
        n = iter(range(1_000_000))

        def run_input() -> None:
            assert cli(["run", "--input", str(root / "raw" / day), "--store",
                        str(root / f"i{next(n)}.sqlite"), *common]) == 0  # fmt: skip

        def run_butler() -> None:
            assert cli(["run", "--butler", str(root / "repo"), "--store",
                        str(root / f"b{next(n)}.sqlite"), *common]) == 0  # fmt: skip

        numbers = [dets.detector_number("LSSTCam", x) for x in names]

        def query() -> None:
            b = open_butler(str(root / "repo"))
            assert len(query_raws(b, "repo", "LSSTCam", day, ["LSSTCam/raw/all"], numbers))

        t_in, t_b, t_q = (best(f, args.repeat) for f in (run_input, run_butler, query))
    print(f"{len(files)} raw files ({len(names)} detectors, "
          f"{'full-size' if args.full_size else 'small'} amps), best of {args.repeat}")  # fmt: skip
    print(f"run --input   {t_in:7.2f} s")
    print(f"run --butler  {t_b:7.2f} s   ratio {t_b / t_in:5.2f}")
    print(f"query + URIs  {t_q:7.2f} s   share of run --butler {t_q / t_b:5.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
