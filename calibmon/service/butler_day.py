"""A scheduled job whose input is a Butler query (``butler: {repo, collections}`` in
``schedules/*.yaml``): each day_obs of the job's window is selected as ``calibmon run
--butler`` selects it, then processed detector by detector like a directory, with the
records' provenance naming the repository."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from calibmon.butler.repo import LocalFiles, default_raw_collections, open_butler, query_raws
from calibmon.io import detectors as dets
from calibmon.io.discover import discover_files
from calibmon.service.run_butler import DEFAULT_INSTRUMENT, ButlerInput, ProvenanceStore

if TYPE_CHECKING:  # pragma: no cover
    from calibmon.config import Settings
    from calibmon.service.scheduler import Firing, Service
    from calibmon.service.schedules import JobSpec

log = logging.getLogger(__name__)


def process_butler_day(
    service: Service, spec: JobSpec, settings: Settings, day: str, instrument: str | None,
    f: Firing,
) -> None:  # fmt: skip
    """Query ``day``'s raws in the job's repository and process them (local copies of
    remote files live until the day is done)."""
    src: Any = spec.butler
    inst = instrument or spec.instrument or DEFAULT_INSTRUMENT
    colls = list(src.collections) or default_raw_collections(inst)
    info = ButlerInput(repo=src.repo, collections=colls, instrument=inst, day_obs=day)
    names = spec.detector_list
    numbers = [dets.detector_number(inst, n) for n in names] if names else None
    raws = query_raws(open_butler(src.repo), src.repo, inst, day, colls, numbers)
    info.n_datasets = len(raws)
    log.info("job %s %s: %d raw datasets in %s (%s)", spec.name, day, len(raws), src.repo,
             ",".join(colls))  # fmt: skip
    if not raws:
        return
    with LocalFiles() as files:
        paths = [files.path(r.uri) for r in raws]
        disc = discover_files(paths, day_obs=day, instrument=instrument, detectors=names,
                              kinds=spec.discover_kinds,
                              instruments_extra=settings.instruments_extra)  # fmt: skip
        service._process_day(
            spec, settings, info.label, day, instrument, f, disc=disc,  # type: ignore[arg-type]
            store=ProvenanceStore(service.store, butler=info.provenance()),
        )  # fmt: skip
