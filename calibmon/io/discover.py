"""Discovery and grouping: walk an input directory, read only primary headers, and group
exposures by (instrument, day_obs, detector, kind).

Kinds: ``bias``, ``dark``, ``flat`` (daily flats at one level) and ``ptc`` (a ramp of flat
pairs). A PTC ramp is recognised by ``TESTTYPE=PTC`` or a ``REASON`` containing ``PTC``
where present, otherwise as flats of one detector and day_obs (and filter) that come in
pairs at several distinct exposure times (DESIGN.md §2).
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from calibmon.errors import InputError
from calibmon.io import detectors as dets
from calibmon.io.fits import RawHeader, read_primary_header

log = logging.getLogger(__name__)

RAW_SUFFIXES = (".fits", ".fits.fz", ".fit", ".fz")

# An unlabelled set of flats is a PTC ramp when it has pairs at this many distinct
# exposure times or more (a daily flat set is one level; cp_pipe's PTC needs many).
MIN_PTC_LEVELS = 3
# A bias is a zero-second exposure; anything longer is rejected as a mislabelled frame.
MAX_BIAS_EXPTIME_S = 0.0


@dataclass(frozen=True, order=True)
class GroupKey:
    """What makes a calibration set (banzai's CALIBRATION_SET_CRITERIA as data)."""

    instrument: str
    day_obs: str
    detector_name: str
    kind: str  # bias | dark | flat | ptc
    physical_filter: str = ""


@dataclass
class Group:
    key: GroupKey
    exposures: list[RawHeader]

    @property
    def detector(self) -> int:
        return self.exposures[0].detector

    @property
    def vendor(self) -> str:
        return self.exposures[0].vendor

    @property
    def timestamp(self) -> str:
        """Start of the earliest exposure (record identity, DESIGN.md §4)."""
        return min(e.date_beg for e in self.exposures)

    @property
    def exposure_ids(self) -> list[int]:
        return sorted(e.exposure_id for e in self.exposures)


@dataclass
class Discovery:
    """Result of scanning a directory."""

    groups: list[Group] = field(default_factory=list)
    rejected: list[InputError] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    n_files: int = 0

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def restricted(self, detectors: Sequence[str]) -> Discovery:
        """The groups of these detectors only; header rejections and skips are not repeated
        (they were reported with the whole scan)."""
        keep = set(detectors)
        groups = [g for g in self.groups if g.key.detector_name in keep]
        return Discovery(groups=groups, n_files=sum(len(g.exposures) for g in groups))

    def by_detector(self) -> dict[tuple[str, str, str], list[Group]]:
        """Groups keyed by (instrument, day_obs, detector_name): one unit of parallel work."""
        out: dict[tuple[str, str, str], list[Group]] = defaultdict(list)
        for g in self.groups:
            out[(g.key.instrument, g.key.day_obs, g.key.detector_name)].append(g)
        return dict(sorted(out.items()))


def find_raw_files(root: str | Path) -> list[Path]:
    """All raw-looking files under ``root`` (sorted, symlinks followed, hidden dirs skipped)."""
    root = Path(root)
    if root.is_file():
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.lower().endswith(RAW_SUFFIXES) and not fn.startswith("."):
                found.append(Path(dirpath) / fn)
    return found


def classify(
    headers: Iterable[RawHeader], *, instrument: str | None = None
) -> tuple[list[Group], list[InputError], Counter[str]]:
    """Group parsed headers into calibration sets.

    Returns (groups, rejected, skipped-counts). Non-calibration frames and guider files are
    counted, not reported one by one; inconsistent frames are rejected with a reason.
    """
    rejected: list[InputError] = []
    skipped: Counter[str] = Counter()
    seen: dict[tuple[str, int, str], RawHeader] = {}
    buckets: dict[tuple[str, str, str, str], list[RawHeader]] = defaultdict(list)
    flats: dict[tuple[str, str, str, str], list[RawHeader]] = defaultdict(list)
    for h in headers:
        if dets.is_guider(h.detector_name):
            skipped["guider"] += 1
            continue
        if h.kind is None:
            skipped[f"imgtype {h.imgtype}"] += 1
            continue
        if instrument and h.instrument != instrument:
            rejected.append(
                InputError(h.path, f"instrument {h.instrument}, this run expects {instrument}")
            )
            continue
        if h.kind == "bias" and h.exptime_s > MAX_BIAS_EXPTIME_S:
            rejected.append(InputError(h.path, f"BIAS with non-zero EXPTIME={h.exptime_s:g} s"))
            continue
        if h.kind == "dark" and h.darktime_s <= 0:
            rejected.append(InputError(h.path, f"DARK with DARKTIME={h.darktime_s:g} s"))
            continue
        if h.kind == "flat" and h.exptime_s <= 0:
            rejected.append(InputError(h.path, f"FLAT with EXPTIME={h.exptime_s:g} s"))
            continue
        ident = (h.instrument, h.exposure_id, h.detector_name)
        if ident in seen:
            rejected.append(
                InputError(h.path, f"duplicate of exposure {h.exposure_id} in {seen[ident].path}")
            )
            continue
        seen[ident] = h
        if h.kind == "flat":
            flats[(h.instrument, h.day_obs, h.detector_name, h.physical_filter)].append(h)
        else:
            buckets[(h.instrument, h.day_obs, h.detector_name, h.kind)].append(h)

    groups: list[Group] = []
    for (inst, day, det, kind), hs in buckets.items():
        groups.append(Group(GroupKey(inst, day, det, kind), sorted(hs, key=lambda e: e.seqnum)))
    for (inst, day, det, filt), hs in flats.items():
        ptc, daily = split_ptc_ramp(hs)
        if ptc:
            groups.append(Group(GroupKey(inst, day, det, "ptc", filt), ptc))
        if daily:
            groups.append(Group(GroupKey(inst, day, det, "flat", filt), daily))
    groups.sort(key=lambda g: g.key)
    return groups, rejected, skipped


def split_ptc_ramp(flats: Sequence[RawHeader]) -> tuple[list[RawHeader], list[RawHeader]]:
    """Split one detector-day's flats into (PTC ramp, daily flats), each sorted by seqnum.

    Labelled frames (TESTTYPE/REASON) decide when any flat is labelled. Otherwise the
    exposure times that occur exactly twice (pairs) form a ramp when there are at least
    ``MIN_PTC_LEVELS`` of them; the rest are daily flats.
    """
    flats = sorted(flats, key=lambda e: e.seqnum)
    if any(f.is_ptc_labelled for f in flats):
        ptc = [f for f in flats if f.is_ptc_labelled]
        return ptc, [f for f in flats if not f.is_ptc_labelled]
    counts = Counter(round(f.exptime_s, 4) for f in flats)
    pair_levels = {t for t, n in counts.items() if n == 2}
    if len(pair_levels) >= MIN_PTC_LEVELS:
        ptc = [f for f in flats if round(f.exptime_s, 4) in pair_levels]
        return ptc, [f for f in flats if round(f.exptime_s, 4) not in pair_levels]
    return [], flats


def discover(
    root: str | Path,
    *,
    day_obs: str | None = None,
    instrument: str | None = None,
    detectors: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    instruments_extra: Sequence[str] = (),
) -> Discovery:
    """Scan ``root``: read every raw file's primary header, reject bad ones, group the rest.

    ``day_obs``, ``detectors`` and ``kinds`` restrict what is grouped; files outside the
    selection are counted as skipped. ``instruments_extra`` adds instruments to the known
    set (config ``instruments_extra``). Two files of one exposure and detector: the first
    in path order is used, the other rejected naming it.
    """
    return discover_files(
        find_raw_files(root), day_obs=day_obs, instrument=instrument, detectors=detectors,
        kinds=kinds, instruments_extra=instruments_extra,
    )  # fmt: skip


def discover_files(
    paths: Iterable[str | Path],
    *,
    day_obs: str | None = None,
    instrument: str | None = None,
    detectors: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    instruments_extra: Sequence[str] = (),
) -> Discovery:
    """:func:`discover` over a given list of files (e.g. the local paths of a Butler
    query's URIs) instead of a directory walk; the same selection and grouping."""
    result = Discovery()
    headers: list[RawHeader] = []
    wanted = set(detectors) if detectors else None
    for path in paths:
        result.n_files += 1
        try:
            h = read_primary_header(path, instruments_extra=instruments_extra)
        except InputError as err:
            result.rejected.append(err)
            continue
        if day_obs is not None and h.day_obs != day_obs:
            result.skipped["other day_obs"] += 1
            continue
        if wanted is not None and h.detector_name not in wanted:
            result.skipped["other detector"] += 1
            continue
        headers.append(h)
    groups, rejected, skipped = classify(headers, instrument=instrument)
    if kinds:
        keep = set(kinds)
        for g in groups:
            if g.key.kind not in keep:
                skipped[f"kind {g.key.kind} not scheduled"] += len(g.exposures)
        groups = [g for g in groups if g.key.kind in keep]
    result.groups = groups
    result.rejected.extend(rejected)
    result.skipped.update(skipped)
    return result
