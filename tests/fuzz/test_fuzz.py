"""Hostile input: a deterministic corpus of mutated raws through the reader, discovery and
one ``calibmon run`` (issue 16 item 2).

The property: every file gives a result or exactly one ``rejected PATH: REASON`` line —
never another exception, never a traceback — files the corpus knows are bad are
rejected, and the records of the good files are the same as from a run over the good
files alone. ``FUZZ_N`` sets the corpus size (default 2,400, in chunks that pytest-xdist
spreads over workers); ``make fuzz N=100000`` runs a long one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibmon.errors import InputError
from calibmon.io.discover import discover
from calibmon.io.fits import RawFile, read_primary_header
from calibmon.simulate import simulate_night

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import CARD, Mutant, card, corpus, find_card, hdu_spans

GOOD_DAY, MUTANT_DAY = "20251121", "20251122"
N_MUTANTS = int(os.environ.get("FUZZ_N", "2400"))
N_CHUNKS = max(8, N_MUTANTS // 1000)
CHUNK = -(-N_MUTANTS // N_CHUNKS)
SEED = int(os.environ.get("FUZZ_SEED", "0"))
# Files in the one `calibmon run` over a hostile directory (plus the good night).
N_RUN_MUTANTS = 300


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Raws the corpus mutates: an ITL detector's night (3 bias, 2 dark, 4 flat)."""
    out = tmp_path_factory.mktemp("seeds")
    simulate_night(out, MUTANT_DAY, ["R01_S01"], small=True, seed=7, n_bias=3, n_dark=2,
                   n_flat=4, write_truth=False)  # fmt: skip
    return [p.read_bytes() for p in sorted(out.rglob("*.fits"))]


def read_like_pipeline(path: Path) -> None:
    """Everything the pipeline asks of a raw file: header, HDU list, every amp."""
    h = read_primary_header(path)
    with RawFile(path) as raw:
        raw.check_segments(h.detector_name)
        for amp in raw.amps:
            raw.read_amp(amp)
            raw.amp_header(amp)


def check_one(path: Path, m: Mutant) -> str | None:
    """None when ``m`` behaved; otherwise what went wrong (one line)."""
    try:
        read_like_pipeline(path)
    except InputError as err:
        text = str(err)
        if not text.startswith(f"rejected {path}: ") or "\n" in text:
            return f"{m.name} ({m.note}): malformed rejection {text!r}"
        return None
    except Exception as exc:  # the property: nothing but InputError escapes
        return f"{m.name} ({m.note}): {type(exc).__name__}: {exc}"
    if m.must_reject and m.category != "duplicate":  # a lone duplicate is a good file
        return f"{m.name} ({m.note}): accepted, must be rejected"
    return None


@pytest.mark.parametrize("chunk", range(N_CHUNKS))
def test_corpus_in_process(seed_files: list[bytes], tmp_path: Path, chunk: int) -> None:
    """Each mutant of this chunk read in-process, as the pipeline reads it."""
    failures: list[str] = []
    cats: Counter[str] = Counter()
    start = chunk * CHUNK
    n = max(0, min(CHUNK, N_MUTANTS - start))
    for m in corpus(seed_files, n, SEED, start):
        path = tmp_path / f"{m.name}.fits"
        path.write_bytes(m.data)
        cats[m.category] += 1
        if (why := check_one(path, m)) is not None:
            failures.append(why)
        path.unlink()
    assert not failures, f"{len(failures)} of {n} mutants misbehaved:\n" + "\n".join(failures[:20])
    assert sum(cats.values()) == n


# A FITS literal for any card: integers of any size, floats, strings with any printable
# characters (quotes doubled), logicals, and raw text that is no literal at all.
FITS_VALUES = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.10G}"),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
        lambda t: "'" + t.replace("'", "''") + "'"
    ),
    st.sampled_from(["T", "F", "NaN", "'NaN'", "inf", "", "()", "1E999"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
PRIMARY_KEYS = ("INSTRUME", "DAYOBS", "SEQNUM", "IMGTYPE", "OBSTYPE", "EXPTIME", "DARKTIME",
                "DATE-BEG", "DATE-OBS", "MJD-BEG", "MJD-OBS", "TIMESYS", "RAFTBAY", "CCDSLOT",
                "CCD_MANU", "FILTER", "TESTTYPE", "REASON", "BITPIX", "NAXIS")  # fmt: skip
IMAGE_KEYS = ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS",
              "TFORM1", "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZTILE1", "ZTILE2",
              "ZCMPTYPE", "ZNAME1", "ZVAL1", "ZNAME2", "ZVAL2", "EXTNAME", "DATASEC")  # fmt: skip


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_any_value_in_any_card(seed_files: list[bytes], tmp_path: Path, data) -> None:
    """hypothesis: one card of the primary or of one image HDU gets any FITS value; the
    file is read or rejected with one line naming it, nothing else."""
    blob = seed_files[data.draw(st.integers(0, len(seed_files) - 1))]
    spans = hdu_spans(blob)
    k = data.draw(st.integers(0, len(spans) - 1))
    key = data.draw(st.sampled_from(PRIMARY_KEYS if k == 0 else IMAGE_KEYS))
    pos = find_card(blob, key, spans[k].header_start, spans[k].header_end)
    value = data.draw(FITS_VALUES)
    b = bytearray(blob)
    if pos is not None:
        b[pos : pos + CARD] = card(key, value)
    path = tmp_path / "card.fits"
    path.write_bytes(bytes(b))
    m = Mutant("hypothesis", "hypothesis", bytes(b), 0, False, f"HDU {k} {key}={value}")
    assert check_one(path, m) is None


@pytest.mark.parametrize("value", ["0", "0     160", "-1"])
def test_zero_compressed_axis_is_refused_before_cfitsio(seed_files, tmp_path, value) -> None:
    """CFITSIO divides by ZNAXIS2 while listing a compressed HDU: ``0`` there (a bit flip
    of one space turns ``160`` into ``0     160``) killed the process with SIGFPE. The
    file's structure is walked first; the rejection names the key."""
    blob = seed_files[0]
    s = hdu_spans(blob)[3]
    pos = find_card(blob, "ZNAXIS2", s.header_start, s.header_end)
    assert pos is not None
    path = tmp_path / "zero.fits"
    path.write_bytes(blob[:pos] + card("ZNAXIS2", value) + blob[pos + CARD :])
    with pytest.raises(InputError, match=r"HDU 4 \(at byte \d+\): ZNAXIS2=.* is not an integer"):
        RawFile(path)


def test_a_rewritten_file_is_read_afresh(seed_files, tmp_path) -> None:
    """A non-ASCII byte in an image header is refused before fitsio decodes it (fitsio's
    UnicodeDecodeError while listing HDUs left CFITSIO's cache of the file behind, and a
    good file later copied to the same path still read as the broken one)."""
    blob = seed_files[0]
    s = hdu_spans(blob)[5]
    bad = bytearray(blob)
    bad[s.header_start + 110] = 0xC7
    path = tmp_path / "again.fits"
    path.write_bytes(bytes(bad))
    with pytest.raises(InputError, match=r"HDU 6 \(at byte \d+\): card 2 .* non-ASCII byte 0xc7"):
        read_like_pipeline(path)
    path.write_bytes(blob)
    read_like_pipeline(path)


def test_corpus_covers_every_category(seed_files: list[bytes]) -> None:
    """The default corpus has ≥ 2,000 mutants and every category in it (so a change to the
    weights cannot silently drop one)."""
    from corpus import CATEGORIES

    cats = Counter(m.category for m in corpus(seed_files, 2000, SEED))
    assert set(cats) == {c for c, _ in CATEGORIES}
    assert N_MUTANTS >= 2000 or "FUZZ_N" in os.environ


def test_duplicate_exposure_one_used_other_named(seed_files: list[bytes], tmp_path) -> None:
    """Same instrument, detector and exposure in two files: the first in path order is
    grouped, the other rejected with a line naming both."""
    for i, blob in enumerate(seed_files):
        (tmp_path / f"a{i:02d}.fits").write_bytes(blob)
    (tmp_path / "z_copy.fits").write_bytes(seed_files[0])
    disc = discover(tmp_path)
    used = {e.path for g in disc.groups for e in g.exposures}
    assert str(tmp_path / "a00.fits") in used and str(tmp_path / "z_copy.fits") not in used
    assert [str(e) for e in disc.rejected] == [
        f"rejected {tmp_path / 'z_copy.fits'}: duplicate of exposure "
        f"{read_primary_header(tmp_path / 'a00.fits').exposure_id} in {tmp_path / 'a00.fits'}"
    ]


# --------------------------------------------------------------------------------------
# One `calibmon run` over a hostile directory
# --------------------------------------------------------------------------------------
def _calibmon(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALIBMON_")}
    return subprocess.run(
        [sys.executable, "-m", "calibmon.cli", *args], capture_output=True, text=True,
        env=env, timeout=600, check=False,
    )  # fmt: skip


def _records(store: Path, day_obs: str) -> list[str]:
    """Exported records of ``day_obs`` without what differs between runs (run id, time)."""
    out = _calibmon("export", "--format", "jsonl", "--store", str(store), "--day-obs", day_obs)
    assert out.returncode == 0, out.stderr
    recs = []
    for line in out.stdout.splitlines():
        r = json.loads(line)
        for key in ("run", "processed_at"):
            r["provenance"].pop(key, None)
        recs.append(json.dumps(r, sort_keys=True))
    return sorted(recs)


def test_run_over_hostile_directory(seed_files: list[bytes], tmp_path: Path) -> None:
    """``calibmon run`` over a good night plus 300 mutants: exit 0/1, no traceback, each bad
    file one line in the summary (and at most one in the log), good records unchanged."""
    good = tmp_path / "good"
    simulate_night(good, GOOD_DAY, ["R22_S11"], small=True, seed=5, n_bias=3, n_dark=2,
                   n_flat=4, write_truth=False)  # fmt: skip
    mixed = tmp_path / "mixed"
    shutil.copytree(good, mixed / "good")
    mutants: dict[Path, Mutant] = {}
    for m in corpus(seed_files, N_RUN_MUTANTS, SEED + 1, start=1):
        path = mixed / f"{m.name.split('-')[1]:>05}-{m.category}.fits"
        path.write_bytes(m.data)
        mutants[path] = m
    # which files must be rejected as duplicates: a file whose identity an earlier
    # (path order) header-valid file already has
    must: set[Path] = {p for p, m in mutants.items() if m.must_reject and m.category != "duplicate"}
    seen: set[tuple[str, int, str]] = set()
    for p in sorted(mutants):
        try:
            h = read_primary_header(p)
        except InputError:
            continue
        ident = (h.instrument, h.exposure_id, h.detector_name)
        if ident in seen:
            must.add(p)
        seen.add(ident)

    run = _calibmon("run", "--input", str(mixed), "--store", str(tmp_path / "mixed.sqlite"),
                    "--workers", "2")  # fmt: skip
    assert run.returncode in (0, 1), run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr, run.stderr[-4000:]
    rejected_lines = Counter(
        m.group(1) for m in re.finditer(r"^rejected (\S+): ", run.stdout, flags=re.M)
    )
    assert all(n == 1 for n in rejected_lines.values()), [
        p for p, n in rejected_lines.items() if n > 1
    ]
    missing = sorted(p.name for p in must if str(p) not in rejected_lines)
    assert not missing, f"{len(missing)} bad files without a line: {missing[:10]}"
    assert not [p for p in rejected_lines if "/good/" in p]
    logged = Counter(m.group(1) for m in re.finditer(r" rejected (\S+): ", run.stderr))
    assert all(n == 1 for n in logged.values())
    assert run.returncode == 1

    base = _calibmon("run", "--input", str(good), "--store", str(tmp_path / "good.sqlite"),
                     "--workers", "2")  # fmt: skip
    assert base.returncode == 0, base.stdout + base.stderr
    good_records = _records(tmp_path / "good.sqlite", GOOD_DAY)
    assert good_records
    assert _records(tmp_path / "mixed.sqlite", GOOD_DAY) == good_records
