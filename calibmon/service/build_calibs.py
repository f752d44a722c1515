"""``calibmon calibs build``: discover one day's exposures, build each detector's
products (:class:`calibmon.pipeline.masters.DetectorBuild`), register them and the run in the
store. The orchestration lives in the service layer because it needs the store's gain
hints (:func:`calibmon.service.run.gain_hint_factory`); ``calibs`` itself never imports
``service``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from calibmon.config import Settings
from calibmon.errors import CalibError, InputError
from calibmon.io.discover import discover
from calibmon.pipeline import new_run_context
from calibmon.pipeline.masters import KINDS_NEEDED, DetectorBuild, default_calib_dir
from calibmon.service.run import gain_hint_factory
from calibmon.store import calibs as db
from calibmon.store.sqlite import Store

log = logging.getLogger(__name__)


@dataclass
class BuildSummary:
    """What ``calibmon calibs build`` did."""

    run_id: str
    calib_type: str
    products: list[db.ProductRow] = field(default_factory=list)
    rejected: list[InputError] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per detector not built
    n_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.problems and bool(self.products)


def build_calibs(
    input_dir: str | Path,
    calib_type: str,
    day_obs: str,
    settings: Settings,
    store: Store,
    *,
    detectors: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
) -> BuildSummary:
    """Build ``calib_type`` products of ``day_obs`` for every detector found under ``input_dir``.

    A detector that cannot be built (too few frames, no bias, no gain) is reported in
    ``summary.problems`` and the others go on; unreadable files are in
    ``summary.rejected``.
    """
    if calib_type not in KINDS_NEEDED:
        raise ValueError(f"unknown calib_type {calib_type!r}")
    rc = new_run_context(settings.science_hash())
    summary = BuildSummary(run_id=rc.run_id, calib_type=calib_type)
    store.begin_run(
        rc.run_id, f"calibs build {calib_type}", input_dir=str(input_dir), day_obs=day_obs,
        software_version=rc.software_version, config_hash=rc.config_hash,
    )  # fmt: skip
    disc = discover(
        input_dir, day_obs=day_obs, instrument=settings.instrument, detectors=detectors,
        kinds=KINDS_NEEDED[calib_type], instruments_extra=settings.instruments_extra,
    )  # fmt: skip
    summary.n_files = disc.n_files
    rejected: dict[str, InputError] = {e.path: e for e in disc.rejected}
    out_root = Path(output_dir) if output_dir else default_calib_dir(store)
    hints = gain_hint_factory(store, settings)
    by_det = disc.by_detector()
    if not by_det:
        summary.problems.append(
            f"no {'/'.join(KINDS_NEEDED[calib_type])} exposures of {day_obs} under {input_dir}"
        )
    for (inst, day, name), groups in by_det.items():
        builder = DetectorBuild(inst, day, name, groups, store, hints, rc, out_root, rejected)
        try:
            summary.products += builder.build(calib_type)
        except CalibError as err:
            summary.problems.append(str(err))
            log.error("%s", err)
    summary.rejected = sorted(rejected.values(), key=lambda e: e.path)
    for err in summary.rejected:
        store.add_rejection(rc.run_id, err.path, err.reason)
    store.finish_run(
        rc.run_id, "ok" if summary.ok else "partial", n_files=summary.n_files,
        n_rejected=len(summary.rejected), n_records=0,
        notes={"products": [p.id for p in summary.products], "problems": summary.problems},
    )  # fmt: skip
    return summary
