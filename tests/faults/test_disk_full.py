"""The store on a full filesystem (issue 16): one clear line, no corruption, and the next
run, with space again, completes. The filesystem is a small tmpfs mounted by the test
(needs root or CAP_SYS_ADMIN; skipped with the reason otherwise); "full" is made by a
filler file taking all but a few KiB, so the store's own pages decide where it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from store.helpers import days, night_records  # tests/store: synthetic records

from calibmon.store.sqlite import Store

from .conftest import DAY_OBS
from .helpers import integrity, state


@pytest.fixture
def small_fs(tmp_path: Path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave_bytes: int) -> Path:
    """A filler file taking all of ``mnt``'s free space but ``leave_bytes``."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))
    return filler


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "calibmon.cli", *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_run_on_a_full_disk_fails_cleanly_and_recovers(
    small_fs: Path, tiny_night: Path, tmp_path: Path
) -> None:
    store = small_fs / "calibmon.sqlite"
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text(f"store: {store}\nexecutor: serial\n")
    Store(store).close()  # schema in place: the night's writes are what does not fit
    filler = _fill(small_fs, 64 * 1024)
    proc = _cli("run", "--input", str(tiny_night), "--day-obs", DAY_OBS, "--config", str(cfg))
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if "full" in ln.lower()]
    assert errors, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert str(store) in errors[-1] or "store" in errors[-1]
    assert integrity(store) == "ok"
    before = state(store)
    assert not before["duplicates"]

    filler.unlink()  # space again
    proc = _cli("run", "--input", str(tiny_night), "--day-obs", DAY_OBS, "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert integrity(store) == "ok"
    after = state(store)
    assert after["values"] and after["images"] and not after["duplicates"]


def test_import_on_a_full_disk_fails_with_one_line_and_recovers(
    small_fs: Path, tmp_path: Path
) -> None:
    src = tmp_path / "year.jsonl"
    with open(src, "w") as fh:
        for d in days(400):
            for r in night_records(d):
                fh.write(json.dumps(r.to_json_dict()) + "\n")
    store = small_fs / "calibmon.sqlite"
    Store(store).close()
    filler = _fill(small_fs, 1024 * 1024)  # room for some batches, not for 7,200 records
    proc = _cli("import", str(src), "--store", str(store))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calibmon: store ") and "full" in lines[0]
    assert integrity(store) == "ok"
    n_partial = state(store)["values"]
    filler.unlink()
    proc = _cli("import", str(src), "--store", str(store))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert integrity(store) == "ok"
    with Store(store) as s:
        assert s.count_records() == 400 * 18 > len(n_partial)
