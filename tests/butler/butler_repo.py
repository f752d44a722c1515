"""A real daf_butler repository for the Butler tests (SQLite registry, file datastore).

What the Rubin stack would have done with obs_lsst is done here with daf_butler alone:
dimension records of the instrument, its detectors, day_obs and exposures (taken from the
simulated raws' headers), the ``raw`` dataset type ingested in place (``direct``), and the
calibration dataset types (``bias``/``dark`` per detector, ``flat`` per detector and
physical_filter, ``defects``) ingested by copy into a RUN and certified into a
CALIBRATION collection. Files are ingested with a formatter daf_butler ships
(``MultipleExtensionsFormatter`` of ``lsst.daf.butler.tests``, which accepts ``.fits``,
``.fits.fz``): calibmon reads URIs and timespans only, never through a formatter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astropy.io import fits
from astropy.time import Time, TimeDelta
from lsst.daf.butler import (
    Butler,
    CollectionType,
    DatasetRef,
    DatasetType,
    FileDataset,
    Timespan,
)

from calibmon.io import detectors as dets

# The tests' nights (conftest.py builds them once per session)
DETECTORS = ["R22_S11", "R01_S01"]
NIGHT1, NIGHT2 = "20251121", "20251122"
SIM = {"small": True, "camera_seed": 5, "n_bias": 5, "n_dark": 5, "n_flat": 6}


@dataclass
class Repo:
    root: Path
    raw: Path  # simulated raws, NIGHT1/ and NIGHT2/ below


CALIB_RUN = "LSSTCam/calib/DM-00001/20251121"
LATER_RUN = "LSSTCam/calib/DM-00002/20251124"
CERT_BEGIN = "2025-11-22T00:00:00"  # TAI midnight: day_obs 20251122 on (calibmon.butler.dayobs)
LATER_BEGIN = "2025-11-25T00:00:00"


@dataclass
class Calibs:
    repo: Repo
    uuids: dict[tuple[str, str], str]  # (calib_type, detector_name) -> Butler dataset id
    later_bias: str  # R22_S11's second bias, certified from LATER_BEGIN on
    products: dict[tuple[str, str], Path]  # the calibmon products they were made from
    stack_files: dict[tuple[str, str], Path]


INSTRUMENT = "LSSTCam"
FORMATTER = "lsst.daf.butler.tests.testFormatters.MultipleExtensionsFormatter"
RAW_RUN = f"{INSTRUMENT}/raw/all"
CALIB_COLLECTION = f"{INSTRUMENT}/calib"
# dataset type → (dimensions, storage class), as obs_lsst/cp_pipe register them
CALIB_DATASET_TYPES: dict[str, tuple[tuple[str, ...], str]] = {
    "bias": (("instrument", "detector"), "ExposureF"),
    "dark": (("instrument", "detector"), "ExposureF"),
    "flat": (("instrument", "detector", "physical_filter"), "ExposureF"),
    "defects": (("instrument", "detector"), "Defects"),
}


def make_repo(root: Path, detector_names: Sequence[str]) -> Butler:
    """A new repository with the instrument and these detectors registered."""
    Butler.makeRepo(str(root))
    butler = Butler.from_config(str(root), writeable=True)
    reg = butler.registry
    reg.insertDimensionData("instrument", {
        "name": INSTRUMENT, "visit_max": 2**31 - 1, "visit_system": 0,
        "exposure_max": 2**62, "detector_max": 1000, "class_name": "calibmon.tests.LSSTCam",
    })  # fmt: skip
    for name in detector_names:
        raft, slot = name.split("_")
        reg.insertDimensionData("detector", {
            "instrument": INSTRUMENT, "id": dets.detector_number(INSTRUMENT, name),
            "full_name": name, "name_in_raft": slot, "raft": raft, "purpose": "SCIENCE",
        })  # fmt: skip
    reg.registerDatasetType(
        DatasetType("raw", ("instrument", "detector", "exposure"), "Exposure",
                    universe=reg.dimensions)
    )  # fmt: skip
    for name, (dims, sc) in CALIB_DATASET_TYPES.items():
        reg.registerDatasetType(
            DatasetType(name, dims, sc, universe=reg.dimensions, isCalibration=True)
        )
    reg.registerRun(RAW_RUN)
    reg.registerCollection(CALIB_COLLECTION, CollectionType.CALIBRATION)
    return butler


def _utc(text: str) -> Time:
    return Time(text, scale="utc")


def ingest_raws(
    butler: Butler, files: Iterable[Path], run: str = RAW_RUN, uris: Sequence[str] | None = None
) -> int:
    """Exposure records from the raws' headers, then the raws themselves (in place);
    ``uris`` (one per file, same order) are where the datasets are said to be instead
    (e.g. http:// URIs of a server holding the same files)."""
    reg = butler.registry
    raw_type = reg.getDatasetType("raw")
    datasets = []
    files = list(files)
    for i, path in enumerate(files):
        h = fits.getheader(path, 0)
        day = int(h["DAYOBS"])
        exposure = day * 100000 + int(h["SEQNUM"])
        obstype = str(h.get("OBSTYPE") or h["IMGTYPE"]).strip().lower()
        phys = str(h.get("FILTER", "") or "").strip() or "empty"
        reg.syncDimensionData("day_obs", {"instrument": INSTRUMENT, "id": day})
        reg.syncDimensionData("physical_filter",
                              {"instrument": INSTRUMENT, "name": phys, "band": phys})  # fmt: skip
        reg.syncDimensionData("group", {"instrument": INSTRUMENT, "name": str(exposure)})
        t0 = _utc(h["DATE-BEG"]).tai
        t1 = max(_utc(h["DATE-END"]).tai, t0 + TimeDelta(1e-3, format="sec"))
        reg.syncDimensionData("exposure", {
            "instrument": INSTRUMENT, "id": exposure, "physical_filter": phys,
            "obs_id": str(h["OBSID"]), "exposure_time": float(h["EXPTIME"]),
            "dark_time": float(h.get("DARKTIME", h["EXPTIME"])), "observation_type": obstype,
            "observation_reason": str(h.get("REASON", "") or "").strip(), "day_obs": day,
            "seq_num": int(h["SEQNUM"]), "group": str(exposure), "timespan": Timespan(t0, t1),
            "has_simulated": True, "can_see_sky": False,
        })  # fmt: skip
        det = dets.detector_number(INSTRUMENT, f"{h['RAFTBAY'].strip()}_{h['CCDSLOT'].strip()}")
        ref = DatasetRef(raw_type, {"instrument": INSTRUMENT, "detector": det,
                                    "exposure": exposure}, run=run)  # fmt: skip
        where = uris[i] if uris is not None else str(path)
        datasets.append(FileDataset(path=where, refs=[ref], formatter=FORMATTER))
    butler.ingest(*datasets, transfer="direct")
    return len(datasets)


def ingest_calib(
    butler: Butler, path: Path, calib_type: str, detector_name: str, run: str,
    physical_filter: str = "",
) -> DatasetRef:  # fmt: skip
    """Ingest one calibration file (by copy) into ``run``; returns its ref (with its UUID)."""
    reg = butler.registry
    reg.registerRun(run)
    data_id: dict[str, Any] = {
        "instrument": INSTRUMENT, "detector": dets.detector_number(INSTRUMENT, detector_name),
    }  # fmt: skip
    if calib_type == "flat":
        data_id["physical_filter"] = physical_filter
    ref = DatasetRef(reg.getDatasetType(calib_type), data_id, run=run)
    butler.ingest(FileDataset(path=str(path), refs=[ref], formatter=FORMATTER), transfer="copy")
    return ref


def certify(
    butler: Butler, refs: Sequence[DatasetRef], begin: str | None, end: str | None = None,
    collection: str = CALIB_COLLECTION,
) -> None:  # fmt: skip
    """Certify ``refs`` for ``[begin, end)``, ISO TAI instants (None: unbounded), as
    ``butler certify-calibrations --begin-date`` does."""
    ts = Timespan(Time(begin, scale="tai") if begin else None,
                  Time(end, scale="tai") if end else None)  # fmt: skip
    butler.registry.certify(collection, list(refs), ts)
