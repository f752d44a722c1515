"""``calibmon run --butler`` (service layer): the day's calibration raws of a Butler repository, measured by
the same discovery and pipeline as ``calibmon run --input``.

The Butler only selects the files (``raw`` datasets of the day_obs whose exposure has
observation_type bias, dark or flat) and says where they are; the files' own headers
then go through :func:`calibmon.io.discover.discover_files` and
:func:`calibmon.service.run.run_directory`, so the records equal those of ``--input`` over
the same files. Each record's provenance adds ``butler: {repo, collections}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from calibmon.butler.repo import LocalFiles, default_raw_collections, open_butler, query_raws
from calibmon.config import Settings
from calibmon.errors import ConfigError
from calibmon.io import detectors as dets
from calibmon.io.discover import discover_files
from calibmon.records import MetricRecord, Provenance
from calibmon.service.run import RunSummary, run_directory
from calibmon.store.sqlite import Store

log = logging.getLogger(__name__)

DEFAULT_INSTRUMENT = "LSSTCam"  # the Butler's name (headers say lsstCam)


class ProvenanceStore:
    """A :class:`Store` whose written records carry extra provenance keys (everything
    else is the wrapped store's)."""

    def __init__(self, store: Store, **extra: Any) -> None:
        self._store = store
        self._extra = extra

    def write_records(self, records: Sequence[MetricRecord], run_id: str) -> int:
        tagged = [
            r.model_copy(
                update={"provenance": Provenance(**{**r.provenance.model_dump(), **self._extra})}
            )
            for r in records
        ]
        return self._store.write_records(tagged, run_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class ButlerInput:
    """What a Butler query selected."""

    repo: str
    collections: list[str]
    instrument: str
    day_obs: str
    n_datasets: int = 0
    n_copied: int = 0  # remote files fetched to a temporary local copy

    @property
    def label(self) -> str:
        """The run's input as stored in the run table."""
        return f"butler:{self.repo} collections={','.join(self.collections)} day_obs={self.day_obs}"

    def provenance(self) -> dict[str, Any]:
        return {"repo": self.repo, "collections": list(self.collections)}


def run_butler(
    repo: str,
    settings: Settings,
    store: Store,
    *,
    day_obs: str,
    collections: Sequence[str] = (),
    instrument: str | None = None,
    detectors: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    command: str = "run",
) -> tuple[RunSummary, ButlerInput]:
    """Query the day's calibration raws in ``repo`` and process them into ``store``."""
    instrument = instrument or settings.instrument or DEFAULT_INSTRUMENT
    colls = list(collections) or default_raw_collections(instrument)
    info = ButlerInput(repo=repo, collections=colls, instrument=instrument, day_obs=day_obs)
    try:
        numbers = [dets.detector_number(instrument, n) for n in detectors] if detectors else None
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"--detectors: {exc}") from None
    butler = open_butler(repo)
    raws = query_raws(butler, repo, instrument, day_obs, colls, numbers)
    info.n_datasets = len(raws)
    log.info("%s: %d raw datasets of %s day_obs %s in %s", repo, len(raws), instrument,
             day_obs, ",".join(colls))  # fmt: skip
    with LocalFiles() as files:
        paths = [files.path(r.uri) for r in raws]
        info.n_copied = files.n_copied
        # the files' instrument is checked only when the configuration names one (as
        # ``run --input`` does), so the records equal those of --input
        disc = discover_files(paths, day_obs=day_obs, instrument=settings.instrument,
                              detectors=detectors, kinds=kinds,
                              instruments_extra=settings.instruments_extra)  # fmt: skip
        summary = run_directory(
            info.label, settings, ProvenanceStore(store, butler=info.provenance()),  # type: ignore[arg-type]
            day_obs=day_obs, discovery=disc, progress=progress, command=command,
        )  # fmt: skip
    return summary, info
