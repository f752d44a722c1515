"""Butler access: open a repository, query raws and certified calibrations, and turn URIs
into local files.

Everything here is daf_butler's public API (``Butler.from_config``, ``query_datasets``,
``registry.queryDatasetAssociations``, ``find_dataset``, ``getURI``) and lsst.resources'
``ResourcePath``: no formatter is ever called, so repositories written with obs_lsst/afw
formatters are read without them (calibmon opens the files itself).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibmon.butler import require_butler
from calibmon.errors import ConfigError

log = logging.getLogger(__name__)

# observation_type values of calibration exposures (the exposure dimension record);
# a PTC ramp is flats whose observation_reason names it (DESIGN §2), the discovery
# step recognises it from the files' own headers.
RAW_OBSERVATION_TYPES: tuple[str, ...] = ("bias", "dark", "flat")


def default_raw_collections(instrument: str) -> list[str]:
    """``<instrument>/raw/all``, the collection raws are ingested into at Rubin."""
    return [f"{instrument}/raw/all"]


def split_collections(text: str | Sequence[str] | None) -> list[str]:
    """``"A,B"`` or ``["A", "B"]`` → ``["A", "B"]`` (order kept: a search path)."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else list(text)
    return [p.strip() for p in parts if p and p.strip()]


def open_butler(repo: str, collections: Sequence[str] = (), writeable: bool = False) -> Any:
    """A Butler for ``repo`` (path, URI or repository label); one-line error otherwise."""
    dafButler = require_butler()
    try:
        return dafButler.Butler.from_config(
            repo, collections=list(collections) or None, writeable=writeable
        )
    except Exception as exc:  # daf_butler raises many types for an unusable repo
        raise ConfigError(
            f"--butler {repo}: not a usable Butler repository ({_short(exc)})"
        ) from exc


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def _check_collections(butler: Any, collections: Sequence[str], repo: str) -> None:
    missing = []
    for c in collections:
        try:
            butler.registry.getCollectionType(c)
        except Exception:  # MissingCollectionError
            missing.append(c)
    if missing:
        raise ConfigError(f"--butler {repo}: no collection {', '.join(missing)}")


# --------------------------------------------------------------------------------------
# Raws
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RawDataset:
    """One ``raw`` dataset: its id, data id values and where its file is."""

    uuid: str
    exposure: int
    detector: int
    observation_type: str
    observation_reason: str
    uri: str


def query_raws(
    butler: Any,
    repo: str,
    instrument: str,
    day_obs: str,
    collections: Sequence[str],
    detectors: Sequence[int] | None = None,
) -> list[RawDataset]:
    """The ``raw`` datasets of ``day_obs`` with observation_type bias, dark or flat."""
    _check_collections(butler, collections, repo)
    types = ", ".join(f"'{t}'" for t in RAW_OBSERVATION_TYPES)
    where = (
        f"instrument = inst AND exposure.day_obs = day AND exposure.observation_type IN ({types})"
    )
    bind: dict[str, Any] = {"inst": instrument, "day": int(day_obs)}
    if detectors:
        where += " AND detector IN (dets)"
        bind["dets"] = list(detectors)
    refs = butler.query_datasets(
        "raw", collections=list(collections), where=where, bind=bind,
        with_dimension_records=True, limit=None, explain=False,
    )  # fmt: skip
    out = []
    for ref in refs:
        rec = ref.dataId.records["exposure"]
        out.append(
            RawDataset(
                uuid=str(ref.id), exposure=int(ref.dataId["exposure"]),
                detector=int(ref.dataId["detector"]),
                observation_type=str(rec.observation_type or ""),
                observation_reason=str(rec.observation_reason or ""),
                uri=str(butler.getURI(ref)),
            )
        )  # fmt: skip
    return sorted(out, key=lambda r: (r.exposure, r.detector))


def one_raw_uri(
    butler: Any, instrument: str, detector: int, collections: Sequence[str]
) -> str | None:
    """The URI of any raw of this detector (for its amplifier geometry), or None."""
    try:
        refs = butler.query_datasets(
            "raw", collections=list(collections), where="instrument = inst AND detector = det",
            bind={"inst": instrument, "det": int(detector)}, limit=1, explain=False,
        )  # fmt: skip
    except Exception as exc:  # no raw dataset type or collection: geometry from elsewhere
        log.debug("no raw of %s %d: %s", instrument, detector, exc)
        return None
    return str(butler.getURI(refs[0])) if refs else None


# --------------------------------------------------------------------------------------
# Certified calibrations
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertifiedDataset:
    """One certification of a calibration dataset in a CALIBRATION collection."""

    uuid: str
    calib_type: str  # the dataset type name: bias, dark, flat, defects
    instrument: str
    detector: int
    physical_filter: str
    run: str
    uri: str
    begin: Any  # astropy Time (TAI) or None = unbounded
    end: Any
    collection: str = ""
    data_id: dict[str, Any] = field(default_factory=dict)


def _bound(t: Any) -> Any:
    """A Timespan end as astropy Time, None when unbounded."""
    return None if t is None else t


def certified(
    butler: Any,
    repo: str,
    collection: str,
    calib_types: Sequence[str],
    instrument: str | None = None,
    detectors: Sequence[int] | None = None,
) -> list[CertifiedDataset]:
    """Every certification of these dataset types in CALIBRATION ``collection`` (or in the
    CALIBRATION collections a CHAINED ``collection`` leads to)."""
    dafButler = require_butler()
    _check_collections(butler, [collection], repo)
    registry = butler.registry
    ctype = registry.getCollectionType(collection)
    if ctype not in (dafButler.CollectionType.CALIBRATION, dafButler.CollectionType.CHAINED):
        raise ConfigError(
            f"--collections {collection}: a {ctype.name} collection; certified calibrations "
            "are in a CALIBRATION collection (or a chain of them), e.g. LSSTCam/calib"
        )
    out: list[CertifiedDataset] = []
    for calib_type in calib_types:
        try:
            registry.getDatasetType(calib_type)
        except Exception:  # MissingDatasetTypeError: nothing of this type in the repo
            log.info("%s: no dataset type %s", repo, calib_type)
            continue
        assocs = registry.queryDatasetAssociations(
            calib_type, collections=[collection],
            collectionTypes={dafButler.CollectionType.CALIBRATION}, flattenChains=True,
        )  # fmt: skip
        for a in assocs:
            data_id = {k: a.ref.dataId[k] for k in a.ref.dataId.required}
            inst = str(data_id.get("instrument", ""))
            det = int(data_id.get("detector", -1))
            if instrument and inst != instrument:
                continue
            if detectors and det not in set(detectors):
                continue
            ts = a.timespan
            out.append(
                CertifiedDataset(
                    uuid=str(a.ref.id), calib_type=calib_type, instrument=inst, detector=det,
                    physical_filter=str(data_id.get("physical_filter", "") or ""),
                    run=a.ref.run, uri=str(butler.getURI(a.ref)),
                    begin=_bound(ts.begin), end=_bound(ts.end), collection=a.collection,
                    data_id=data_id,
                )
            )  # fmt: skip
    # A CHAINED collection searches its children in order: the first that certifies a data
    # id at an instant wins. Later children come first here, so that, registered in this
    # order, the chain's winner is calibmon's most recent certification (which wins too).
    chain = list(registry.queryCollections(collection, flattenChains=True))
    rank = {name: i for i, name in enumerate(chain)}
    return sorted(out, key=lambda c: (-rank.get(c.collection, 0), c.calib_type, c.detector,
                                      c.physical_filter,
                                      c.begin.mjd if c.begin is not None else -1e9))  # fmt: skip


def find_certified(
    butler: Any, collection: str, calib_type: str, data_id: dict[str, Any], instant: Any
) -> Any:
    """The dataset ref ``collection`` hands out for ``data_id`` at ``instant`` (TAI), or
    None: the same lookup the pipelines make for an exposure at that time."""
    dafButler = require_butler()
    ts = dafButler.Timespan(instant, instant + _one_second())
    try:
        return butler.find_dataset(calib_type, data_id, collections=[collection], timespan=ts)
    except Exception as exc:  # unknown dataset type / data id in this repo
        log.debug("find_dataset %s %s: %s", calib_type, data_id, exc)
        return None


def _one_second() -> Any:
    from astropy.time import TimeDelta

    return TimeDelta(1.0, format="sec")


# --------------------------------------------------------------------------------------
# URIs → local files
# --------------------------------------------------------------------------------------
class LocalFiles(contextlib.ExitStack):
    """URIs as local paths: ``file://`` ones directly, anything else lsst.resources can
    open (s3://, https://, ...) through a temporary local copy removed on exit.

    >>> with LocalFiles() as files:  # doctest: +SKIP
    ...     path = files.path(uri)
    """

    def __init__(self) -> None:
        super().__init__()
        self.n_copied = 0

    def path(self, uri: str) -> Path:
        from lsst.resources import ResourcePath

        rp = ResourcePath(uri)
        if rp.isLocal:
            return Path(rp.ospath)
        try:
            local = self.enter_context(rp.as_local())
        except Exception as exc:  # network/permission errors of any backend
            raise ConfigError(f"{uri}: cannot fetch a local copy ({_short(exc)})") from exc
        self.n_copied += 1
        return Path(local.ospath)
