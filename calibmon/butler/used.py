"""``calibmon calibs used``: which calibrations ISR applied to processed exposures.

IsrTask(LSST) with ``doHeaderProvenance`` writes, for every calibration input (``bias``,
``dark``, ``flat``, ``defects``, ``ptc``, ``crosstalk``, ...), three cards into the
processed exposure's metadata (the primary header of the file afw writes):
``LSST CALIB RUN <TYPE>`` (the RUN collection), ``LSST CALIB UUID <TYPE>`` (the dataset
id) and ``LSST CALIB DATE <TYPE>`` (the calibration's CALIBDATE and time). This module reads
them and ties each UUID to what calibmon knows: the product registered under it
(``calibs import --butler``), its certifications, and how that day's verification
against it came out. Reading the headers needs no Butler; ``--butler`` adds the dataset's
type, run and data id from the repository.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fitsio

from calibmon.calibs import registry
from calibmon.errors import InputError
from calibmon.store import calibs as db
from calibmon.store.sqlite import Store

_CARD_RE = re.compile(r"^(?:HIERARCH\s+)?LSST CALIB (RUN|UUID|DATE) (\S+)$")
NEW_DEFECTS_ALLOWED_DEFAULT = 0.0  # overridden by the caller with the verify constant


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def read_calib_cards(path: str | Path) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """``{type: {"run", "uuid", "date"}}`` (types lower-case) and the header keys that
    place the exposure (``day_obs``, ``detector``), from the primary header (and the first
    extension's, where a compressed image keeps the metadata).

    Raises :class:`InputError` naming the file when it is not readable FITS.
    """
    path = str(path)
    calibs: dict[str, dict[str, str]] = {}
    where: dict[str, Any] = {}
    try:
        with fitsio.FITS(path, "r") as f:
            headers = [f[0].read_header()] + ([f[1].read_header()] if len(f) > 1 else [])
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable FITS file ({_short(exc)})") from exc
    for h in headers:
        for rec in h.records():
            name = str(rec.get("name", "") or "").strip()
            m = _CARD_RE.match(name)
            if m:
                field_, ctype = m.group(1).lower(), m.group(2).lower()
                value = rec.get("value")
                calibs.setdefault(ctype, {})[field_] = (
                    str(value).strip() if value is not None else ""
                )
            elif name in ("DAYOBS", "DAY_OBS") and "day_obs" not in where:
                where["day_obs"] = str(rec.get("value")).strip().replace("-", "")
            elif name == "DETECTOR" and "detector" not in where:
                with contextlib.suppress(TypeError, ValueError):
                    where["detector"] = int(rec.get("value"))
    for c in calibs.values():
        for k in ("run", "uuid", "date"):
            c.setdefault(k, "")
    return dict(sorted(calibs.items())), where


def knowledge(
    store: Store, uuid: str, calib_type: str, day_obs: str | None, pass_fraction: float,
    max_new_defects: float,
) -> dict[str, Any]:  # fmt: skip
    """What calibmon knows of a calibration UUID: product, certifications and, for the
    exposure's day_obs, the verification records that named this product."""
    product = db.get_product(store, uuid) if uuid else None
    if product is None:
        return {"known": False}
    certs = db.list_certifications(store, product_id=uuid)
    out: dict[str, Any] = {
        "known": True,
        "product": {
            "calib_type": product.calib_type, "instrument": product.instrument,
            "detector_name": product.detector_name, "physical_filter": product.physical_filter,
            "built_from_day_obs": product.day_obs, "source_run": product.source_run,
            "path": product.path,
        },
        "certifications": [[c.begin_date, c.end_date] for c in certs],
    }  # fmt: skip
    if day_obs:
        out["certified_on_day"] = any(
            c.begin_date <= registry.day_obs_to_iso(day_obs)
            and (c.end_date is None or registry.day_obs_to_iso(day_obs) < c.end_date)
            for c in certs
        )
        out["verification"] = _verification(store, product, day_obs, pass_fraction,
                                             max_new_defects)  # fmt: skip
    return out


def _verification(
    store: Store, product: db.ProductRow, day_obs: str, pass_fraction: float,
    max_new_defects: float,
) -> dict[str, Any]:  # fmt: skip
    metric = registry.PASS_METRIC[product.calib_type]
    values = []
    for r in store.iter_records(metric=metric, instrument=product.instrument,
                                detector_name=product.detector_name, day_obs=day_obs,
                                level="amp"):  # fmt: skip
        ref = (r.provenance.input_calibs or {}).get(product.calib_type) or {}
        if ref.get("id") == product.id and math.isfinite(r.value):
            values.append((r.amp, float(r.value)))
    if not values:
        return {"day_obs": day_obs, "metric": metric, "n_amps": 0,
                "status": "not verified against it that day"}  # fmt: skip
    if product.calib_type == "defects":
        failing = [a for a, v in values if v > max_new_defects]
    else:
        failing = [a for a, v in values if v < pass_fraction]
    return {
        "day_obs": day_obs, "metric": metric, "n_amps": len(values),
        "n_failing": len(failing), "failing_amps": sorted(a or "" for a in failing),
        "status": "passed" if not failing else "failed",
    }  # fmt: skip


def butler_facts(butler: Any, uuid: str) -> dict[str, Any] | None:
    """The dataset's type, run and data id in the repository (None if it is not there)."""
    try:
        ref = butler.get_dataset(uuid)
    except Exception:  # malformed UUID
        return None
    if ref is None:
        return None
    return {
        "dataset_type": ref.datasetType.name, "run": ref.run,
        "data_id": {k: str(ref.dataId[k]) for k in ref.dataId.required},
    }  # fmt: skip


def describe(
    paths: Sequence[str | Path], store: Store, *, butler: Any = None,
    pass_fraction: float = 0.5, max_new_defects: float = NEW_DEFECTS_ALLOWED_DEFAULT,
) -> tuple[list[dict[str, Any]], list[InputError]]:  # fmt: skip
    """One dict per readable file (``{"file", "day_obs", "calibs": {type: {...}}}``) and
    the files that could not be read."""
    out, bad = [], []
    for p in paths:
        try:
            cards, where = read_calib_cards(p)
        except InputError as err:
            bad.append(err)
            continue
        day = where.get("day_obs")
        for ctype, c in cards.items():
            c.update(knowledge(store, c["uuid"], ctype, day, pass_fraction, max_new_defects))
            if butler is not None:
                c["butler"] = butler_facts(butler, c["uuid"])
        out.append({"file": str(p), "day_obs": day, "calibs": cards})
    return out, bad
