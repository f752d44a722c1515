"""``calibmon calibs import FILE...`` walks each file's FITS structure
(``io.validate.check_file_structure``) before fitsio opens it: a bad product file is one
line naming the file and the reason, and the rest of the batch is imported (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fitsio
import pytest

from calibmon.cli import main
from calibmon.store import calibs as db
from calibmon.store.sqlite import Store

CARD = 80


def _calibmon(*args: str) -> subprocess.CompletedProcess[str]:
    """In a child process: the unchecked failure mode is CFITSIO's SIGFPE, which would take
    the test process with it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALIBMON_")}
    return subprocess.run([sys.executable, "-m", "calibmon.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)  # fmt: skip


def _compressed_copy(src: Path, dest: Path) -> None:
    """The product with every amp image GZIP_2 tile-compressed (as Rubin writes calibs)."""
    with fitsio.FITS(str(src)) as f, fitsio.FITS(str(dest), "rw", clobber=True) as out:
        h0 = f[0].read_header()
        out.write(None, header=[{"name": k, "value": h0[k]} for k in h0
                                if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND")])  # fmt: skip
        for hdu in f[1:]:
            hh, data = hdu.read_header(), hdu.read()
            keep = [{"name": k, "value": hh[k]} for k in hh
                    if k not in ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT",
                                 "GCOUNT", "TFIELDS", "EXTNAME")
                    and not k.startswith(("TTYPE", "TFORM", "TUNIT"))]  # fmt: skip
            if data.dtype.names is None:
                out.write(data, header=keep, extname=hdu.get_extname(), compress="GZIP_2",
                          qlevel=None)  # fmt: skip
            else:
                out.write(data, header=keep, extname=hdu.get_extname())


def _set_card(blob: bytes, key: str, value: str, occurrence: int) -> bytes:
    """``blob`` with the ``occurrence``-th (1-based) ``key`` card set to ``value``."""
    pos = -1
    for _ in range(occurrence):
        pos = blob.index(f"{key:8s}= ".encode(), pos + 1)
    card = f"{key:8s}= {value:>20s}".ljust(CARD).encode()
    return blob[:pos] + card + blob[pos + CARD :]


@pytest.fixture(scope="module")
def product(small_night: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compressed master bias of R22_S11 built by ``calibs build``."""
    tmp = tmp_path_factory.mktemp("built")
    store = tmp / "built.sqlite"
    rc = main(["calibs", "build", "--calib-type", "bias", "--input", str(small_night),
               "--day-obs", "20251121", "--detectors", "R22_S11", "--store", str(store), "-q"])  # fmt: skip
    assert rc == 0
    with Store(store) as st:
        (p,) = db.list_products(st, calib_type="bias")
    out = tmp / "bias_R22_S11.fits"
    _compressed_copy(Path(p.path), out)
    return out


def test_bad_product_files_are_one_line_each_and_the_batch_goes_on(
    product: Path, tmp_path: Path
) -> None:
    blob = product.read_bytes()
    zero = tmp_path / "zero_axis.fits"  # CFITSIO divides by ZNAXIS2 while listing HDUs
    zero.write_bytes(_set_card(blob, "ZNAXIS2", "0", occurrence=2))
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(blob[: len(blob) // 2])
    not_fits = tmp_path / "notes.fits"
    not_fits.write_text("not a FITS file\n" * 300)
    missing = tmp_path / "missing.fits"
    store = tmp_path / "import.sqlite"

    p = _calibmon("calibs", "import", str(zero), str(truncated), str(product), str(not_fits),
                  str(missing), "--store", str(store))  # fmt: skip
    assert p.returncode == 1, p.stderr
    lines = p.stderr.splitlines()
    assert "Traceback" not in p.stderr and len(lines) == 4, p.stderr
    assert lines[0].startswith(f"calibmon: {zero}: HDU 3 (at byte ")
    assert lines[0].endswith("ZNAXIS2='0' is not an integer ≥ 1")
    assert lines[1].startswith(f"calibmon: {truncated}: HDU ")
    assert "header promises data to byte" in lines[1] or "no END card" in lines[1]
    assert lines[2].startswith(f"calibmon: {not_fits}: HDU 1 (at byte 0)")
    assert lines[3] == f"calibmon: {missing}: no such file"
    # the good file of the batch is registered and its id printed
    (pid,) = p.stdout.split()
    with Store(store) as st:
        row = db.get_product(st, pid)
        assert row is not None and row.calib_type == "bias" and row.detector_name == "R22_S11"
        assert Path(row.path).exists()


def test_a_good_product_alone_still_imports(product: Path, tmp_path: Path) -> None:
    p = _calibmon("calibs", "import", str(product), "--store", str(tmp_path / "s.sqlite"))
    assert p.returncode == 0 and p.stderr == "" and len(p.stdout.split()) == 1
