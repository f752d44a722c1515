"""A deterministic hostile corpus: mutations of small simulated raws, made in memory.

``corpus(seeds, n, seed)`` yields ``n`` :class:`Mutant` s, each a name (category and
index, enough to regenerate it), the bytes, and whether calibmon *must* reject it
(``must_reject``: a hostile header value the reader has to refuse, a truncation, an
empty file, a duplicate of an earlier file) or may accept it (a bit flip that lands in a
comment or in pixel data still decodes). Same ``seeds`` and ``seed`` → same corpus.

Categories (weights in :data:`CATEGORIES`): truncations (anywhere, and on a 2880-byte
block boundary), bit flips anywhere and inside header blocks, hostile header values in
the primary header and in image HDUs (NaN, 999999999-pixel axes, garbage DATASEC,
impossible dates, unknown raft/slot, huge/negative EXPTIME, INSTRUME numbers, wrong
ZBITPIX/ZCMPTYPE), junk after the last HDU, empty and non-FITS files, exact duplicates,
and combinations of a hostile value with bit flips.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

BLOCK = 2880
CARD = 80


@dataclass(frozen=True)
class Mutant:
    name: str  # "<category>-<index>", unique in a corpus
    category: str
    data: bytes
    source: int  # index of the seed file it came from
    must_reject: bool
    note: str = ""  # what was changed (for a failing test's message)


@dataclass(frozen=True)
class HduSpan:
    header_start: int
    header_end: int  # first byte after the header's END block
    data_end: int  # first byte after the padded data


def hdu_spans(blob: bytes) -> list[HduSpan]:
    """Header and data extents of every HDU of a well-formed FITS file."""
    spans: list[HduSpan] = []
    pos = 0
    while pos + BLOCK <= len(blob):
        cards: dict[str, str] = {}
        p = pos
        while True:
            card = blob[p : p + CARD].decode("ascii", "replace")
            p += CARD
            key = card[:8].strip()
            if card[8:10] == "= ":
                cards[key] = card[10:].split("/")[0].strip()
            if key == "END":
                break
        header_end = -(-p // BLOCK) * BLOCK
        naxis = int(cards.get("NAXIS", "0"))
        size = 0
        if naxis:
            size = abs(int(cards["BITPIX"])) // 8
            for i in range(1, naxis + 1):
                size *= int(cards[f"NAXIS{i}"])
        size += int(cards.get("PCOUNT", "0"))
        data_end = header_end + -(-size // BLOCK) * BLOCK
        spans.append(HduSpan(pos, header_end, data_end))
        pos = data_end
    return spans


def find_card(blob: bytes, key: str, start: int, end: int) -> int | None:
    """Offset of the card ``key`` inside [start, end), or None."""
    k = key.ljust(8).encode()
    for p in range(start, end, CARD):
        if blob[p : p + 8] == k:
            return p
    return None


def card(key: str, value: str) -> bytes:
    """An 80-byte card ``KEY     = value`` (value already in FITS syntax)."""
    text = f"{key:<8}= {value:>20}"
    return text[:CARD].ljust(CARD).encode("ascii", "replace")


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# (key, FITS literal) hostile values for the primary header; every one must be rejected
PRIMARY_HOSTILE: tuple[tuple[str, str], ...] = (
    ("INSTRUME", "2147483647"), ("INSTRUME", _q("FOOCAM")), ("INSTRUME", "T"),
    ("INSTRUME", _q("lsstCam\x07")), ("INSTRUME", "1.5E300"),
    ("DAYOBS", _q("20251399")), ("DAYOBS", _q("99999999")), ("DAYOBS", _q("2025112")),
    ("DAYOBS", _q("20250230")), ("DAYOBS", _q("19251121")), ("DAYOBS", _q("20261121")),
    ("DAYOBS", _q("20251125")), ("DAYOBS", "-20251121"), ("DAYOBS", _q("NaN")),
    ("DATE-BEG", _q("1900-01-01T00:00:00")), ("DATE-BEG", _q("garbage")),
    ("DATE-BEG", _q("2025-13-45T99:99:99")), ("DATE-BEG", _q("2031-11-22T01:00:00")),
    ("DATE-OBS", _q("2025-11-29T01:00:00")), ("DATE-OBS", "12"),
    ("MJD-OBS", _q("NaN")), ("MJD-OBS", "1.0E300"), ("MJD-OBS", "-5.0"), ("MJD-BEG", "70000.5"),
    ("EXPTIME", _q("NaN")), ("EXPTIME", "-1.0"), ("EXPTIME", "1.0E300"), ("EXPTIME", "9.9E9"),
    ("EXPTIME", _q("inf")), ("EXPTIME", "T"), ("EXPTIME", _q("")),
    ("DARKTIME", _q("NaN")), ("DARKTIME", "-30.0"), ("DARKTIME", "1.0E12"),
    ("SEQNUM", "-5"), ("SEQNUM", "99999999"), ("SEQNUM", "1.5"), ("SEQNUM", _q("abc")),
    ("SEQNUM", "T"),
    ("RAFTBAY", _q("R99")), ("RAFTBAY", _q("R2")), ("RAFTBAY", _q("R00")), ("RAFTBAY", "42"),
    ("RAFTBAY", _q("")), ("CCDSLOT", _q("S33")), ("CCDSLOT", _q("XYZ")),
    ("CCDSLOT", _q("SW9")), ("CCDSLOT", _q("")),
    ("CCD_MANU", _q("ACME")), ("FILTER", _q("r\x01")),
)  # fmt: skip

# (key, FITS literal) hostile values for one image HDU's header; every one must be rejected
IMAGE_HOSTILE: tuple[tuple[str, str], ...] = (
    ("ZNAXIS1", "999999999"), ("ZNAXIS2", "999999999"), ("ZNAXIS1", "0"), ("ZNAXIS1", "-7"),
    ("ZNAXIS1", "100"), ("ZNAXIS2", "3"), ("ZNAXIS", "3"), ("ZNAXIS", "1"),
    ("ZNAXIS2", "0"), ("ZNAXIS2", "0     160"), ("ZTILE2", "0"),  # CFITSIO SIGFPE
    ("ZBITPIX", "1"), ("ZBITPIX", "12"), ("ZBITPIX", "-32"), ("ZBITPIX", "16"),
    ("ZBITPIX", "64"), ("ZBITPIX", _q("NaN")),
    ("ZCMPTYPE", _q("FOO_1")), ("ZCMPTYPE", "7"), ("ZTILE1", "0"), ("ZTILE1", "999999"),
    ("ZTILE2", "999999999"), ("NAXIS2", "999999999"), ("NAXIS2", "5"), ("NAXIS1", "0"),
    ("PCOUNT", "999999999"), ("ZVAL2", "8"),
    ("DATASEC", _q("[garbage]")), ("DATASEC", _q("[1:999999,1:5]")),
    ("DATASEC", _q("[0:0,0:0]")), ("DATASEC", _q("[5:1,1:2]")), ("DATASEC", "12"),
    ("DATASEC", _q("")), ("DATASEC", _q("[1:999999999999999999999,1:2]")),
)  # fmt: skip

CATEGORIES: tuple[tuple[str, int], ...] = (
    ("truncate", 10),
    ("truncate_block", 6),
    ("bitflip_any", 16),
    ("bitflip_header", 16),
    ("hostile_primary", 20),
    ("hostile_image", 16),
    ("hostile_flip", 6),
    ("junk_after", 5),
    ("empty", 1),
    ("not_fits", 1),
    ("duplicate", 3),
)


def _mutate(cat: str, blob: bytes, rng: random.Random) -> tuple[bytes, bool, str]:
    """One mutation of ``blob``: (bytes, must_reject, note)."""
    spans = hdu_spans(blob)
    if cat == "truncate":
        cut = rng.randrange(0, len(blob))
        return blob[:cut], True, f"cut at {cut}"
    if cat == "truncate_block":
        # a cut on a block boundary passes the size check; the HDU table must notice
        cut = BLOCK * rng.randrange(1, len(blob) // BLOCK)
        return blob[:cut], True, f"cut at block {cut // BLOCK}"
    if cat in ("bitflip_any", "bitflip_header"):
        b = bytearray(blob)
        flips = []
        for _ in range(rng.randint(1, 8)):
            if cat == "bitflip_any":
                pos = rng.randrange(len(b))
            else:
                s = rng.choice(spans)
                pos = rng.randrange(s.header_start, s.header_end)
            bit = rng.randrange(8)
            b[pos] ^= 1 << bit
            flips.append(f"{pos}.{bit}")
        return bytes(b), False, "flip " + ",".join(flips)
    if cat in ("hostile_primary", "hostile_flip"):
        key, value = rng.choice(PRIMARY_HOSTILE)
        b = bytearray(blob)
        pos = find_card(blob, key, 0, spans[0].header_end)
        if pos is None:  # key absent (e.g. DARKTIME): overwrite a harmless card
            pos = find_card(blob, "ORIGIN", 0, spans[0].header_end)
            assert pos is not None
        b[pos : pos + CARD] = card(key, value)
        note = f"{key}={value}"
        if cat == "hostile_flip":
            for _ in range(rng.randint(1, 4)):
                p = rng.randrange(len(b))
                b[p] ^= 1 << rng.randrange(8)
            return bytes(b), False, note + " + flips"
        return bytes(b), True, note
    if cat == "hostile_image":
        key, value = rng.choice(IMAGE_HOSTILE)
        s = rng.choice(spans[1:])
        b = bytearray(blob)
        pos = find_card(blob, key, s.header_start, s.header_end)
        if pos is None:
            return bytes(b), False, f"{key} absent"
        b[pos : pos + CARD] = card(key, value)
        return bytes(b), True, f"HDU@{s.header_start} {key}={value}"
    if cat == "junk_after":
        n = rng.choice([1, 79, 80, BLOCK, 2 * BLOCK, rng.randrange(1, 3 * BLOCK)])
        if rng.random() < 0.5:
            junk = bytes(rng.randrange(256) for _ in range(n))
        else:  # something that looks like the start of another HDU
            junk = (card("XTENSION", _q("IMAGE")) + card("BITPIX", "1")) * (n // 160 + 1)
            junk = junk[:n]
        return blob + junk, False, f"{n} junk bytes"
    if cat == "empty":
        return b"", True, "empty"
    if cat == "not_fits":
        return b"this is not a FITS file\n" * rng.randint(1, 200), True, "text"
    raise ValueError(cat)


def corpus(seeds: Sequence[bytes], n: int, seed: int = 0, start: int = 0) -> Iterator[Mutant]:
    """Mutants ``start`` … ``start + n − 1`` of the corpus defined by ``seeds``, ``seed``.

    Each mutant's random stream depends only on (seed, index), so any slice of the corpus
    is the same whatever slices come before it (chunks can run in parallel)."""
    names = [c for c, _ in CATEGORIES]
    weights = [w for _, w in CATEGORIES]
    for i in range(start, start + n):
        rng = random.Random(f"{seed}:{i}")
        cat = rng.choices(names, weights)[0]
        src = rng.randrange(len(seeds))
        if cat == "duplicate":
            yield Mutant(f"{cat}-{i}", cat, seeds[src], src, True, "exact copy")
            continue
        data, must, note = _mutate(cat, seeds[src], rng)
        yield Mutant(f"{cat}-{i}", cat, data, src, must, note)
