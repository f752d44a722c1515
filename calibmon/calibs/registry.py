"""Certification registry: which master calibration is valid for which day_obs.

Modelled on the Butler's CALIBRATION collections: a product (a dataset) is *certified*
for a validity range, and a lookup for a day_obs returns the product whose range
contains it.

- Ranges are day_obs dates, ``[begin, end)``: ``begin`` inclusive, ``end`` exclusive,
  like a Butler ``Timespan``; no ``end`` means open-ended (∞). Certifying
  ``--begin 2025-11-01 --end 2025-11-05`` covers day_obs 20251101 … 20251104.
- Ranges may overlap. The most recent certification wins, as in a chain whose newest
  collection is prepended (``butler collection-chain --mode prepend``): certify a new
  bias from 2025-11-20 on without ending the old one, and 20251120 onwards resolves to
  the new one while earlier days keep the old.
- Products are per detector (and per physical_filter for flats).

Verification (``calibmon run``) asks :func:`certified_for_detector_day` in the main
process and hands the result to the worker tasks. When a type has no certified product
for a day, :func:`missing_certified` (from the store alone) and the run's notes
(``notes["missing_certified"]``: one dict per instrument, detector, calib_type, day_obs)
say so, so that the alert layer's staleness rule can raise it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from calibmon.calibs.products import CALIB_TYPES, CertifiedCalib
from calibmon.dayobs import day_obs_iso
from calibmon.errors import CalibError, ConfigError
from calibmon.store import calibs as db
from calibmon.store.sqlite import Store

# Types verified against a certified product, and the metric whose value says whether a
# day passed (DESIGN §4). Defects are verified through the dark's new-defect count.
VERIFIED_KINDS: tuple[str, ...] = ("bias", "dark", "flat")
PASS_METRIC: dict[str, str] = {
    "bias": "verify_bias_pass",
    "dark": "verify_dark_pass",
    "flat": "verify_flat_pass",
    "defects": "verify_new_defects",
}
MIN_PREFIX = 6  # shortest abbreviated id accepted on the command line


# --------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------
def to_iso_date(text: str) -> str:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` → ``YYYY-MM-DD``; :class:`ConfigError` otherwise."""
    t = text.strip()
    m = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})", t)
    if not m:
        raise ConfigError(f"{text!r} is not a date YYYY-MM-DD")
    try:
        d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise ConfigError(f"{text!r} is not a valid date") from None
    return d.isoformat()


day_obs_to_iso = day_obs_iso  # ``20251121`` → ``2025-11-21`` (owned by calibmon.dayobs)


def format_range(begin: str, end: str | None) -> str:
    """``[2025-11-01, ∞)`` or ``[2025-11-01, 2025-11-05)``."""
    return f"[{begin}, {end or '∞'})"


# --------------------------------------------------------------------------------------
# Products and certifications
# --------------------------------------------------------------------------------------
def resolve_product(store: Store, product_id: str) -> db.ProductRow:
    """The product with this id, or a unique abbreviation of it (≥ 6 characters).

    Raises :class:`CalibError` for an unknown or ambiguous id.
    """
    pid = product_id.strip()
    row = db.get_product(store, pid)
    if row is not None:
        return row
    if len(pid) >= MIN_PREFIX:
        found = db.products_with_prefix(store, pid)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CalibError(f"calibration id {pid!r} is ambiguous ({len(found)}+ products)")
    raise CalibError(f"no calibration product with id {pid!r} in the store")


def certify(
    store: Store, product_id: str, begin: str, end: str | None = None
) -> db.CertificationRow:
    """Certify a product for ``[begin, end)`` (dates ``YYYY-MM-DD``; ``end`` None = ∞).

    Raises :class:`CalibError` for an unknown id, :class:`ConfigError` for bad dates.
    """
    product = resolve_product(store, product_id)
    b = to_iso_date(begin)
    e = to_iso_date(end) if end else None
    if e is not None and e <= b:
        raise ConfigError(f"--end {e} must be after --begin {b} (the end is exclusive)")
    return db.add_certification(store, product.id, b, e)


def lookup(
    store: Store,
    calib_type: str,
    instrument: str,
    detector: int,
    day_obs: str,
    physical_filter: str = "",
) -> db.CertificationRow | None:
    """The certification valid for ``day_obs`` (``YYYYMMDD``), or None."""
    if calib_type not in CALIB_TYPES:
        raise ValueError(f"unknown calib_type {calib_type!r}")
    return db.find_certified(
        store, calib_type, instrument, detector, day_obs_to_iso(day_obs),
        physical_filter if calib_type == "flat" else "",
    )  # fmt: skip


def as_certified_calib(row: db.CertificationRow) -> CertifiedCalib:
    p = row.product
    return CertifiedCalib(
        product_id=p.id,
        calib_type=p.calib_type,
        path=p.path,
        day_obs=p.day_obs,
        physical_filter=p.physical_filter,
        n_exposures=int(p.meta.get("n_exposures", 0) or 0),
        begin=row.begin_date,
        end=row.end_date,
    )


def has_certifications(store: Store, instrument: str | None = None) -> bool:
    return db.count_certifications(store, instrument) > 0


@dataclass(frozen=True)
class MissingCertified:
    """A detector-day with exposures of a type but no certified product of that type."""

    instrument: str
    detector: int
    detector_name: str
    calib_type: str
    day_obs: str
    physical_filter: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument, "detector": self.detector,
            "detector_name": self.detector_name, "calib_type": self.calib_type,
            "day_obs": self.day_obs, "physical_filter": self.physical_filter,
        }  # fmt: skip

    def message(self) -> str:
        filt = f" ({self.physical_filter})" if self.physical_filter else ""
        return (
            f"no certified {self.calib_type}{filt} for {self.instrument} {self.detector_name} "
            f"valid on {self.day_obs}: {self.calib_type} verification not measured"
        )


def certified_for_detector_day(
    store: Store,
    instrument: str,
    detector: int,
    detector_name: str,
    day_obs: str,
    kinds: Iterable[str],
    flat_filter: str = "",
) -> tuple[dict[str, CertifiedCalib], list[MissingCertified]]:
    """Certified products for the verified kinds present on a detector-day.

    ``kinds`` are the day's exposure kinds (bias, dark, flat, ptc). Returns
    ``({calib_type: CertifiedCalib}, [missing])``; the defects product is looked up
    whenever darks are present and is never reported missing (the dark verification then
    compares with the hot pixels of the certified dark).
    """
    present = [k for k in VERIFIED_KINDS if k in set(kinds)]
    found: dict[str, CertifiedCalib] = {}
    missing: list[MissingCertified] = []
    wanted = [*present, "defects"] if "dark" in present else present
    for kind in wanted:
        filt = flat_filter if kind == "flat" else ""
        row = lookup(store, kind, instrument, detector, day_obs, filt)
        if row is not None:
            found[kind] = as_certified_calib(row)
        elif kind != "defects":
            missing.append(
                MissingCertified(instrument, detector, detector_name, kind, day_obs, filt)
            )
    return found, missing


def missing_certified(
    store: Store, day_obs: str, instrument: str | None = None
) -> list[MissingCertified]:
    """Detector-days of ``day_obs`` measured for bias/dark/flat without a certified product.

    Derived from the stored records alone (not from a run), so the alert layer can call it
    for any day: a type counts as measured when the day has amp records of that calib_type.
    An instrument without any certification in the store does not use verification and
    is never reported (as ``calibmon run`` stays quiet about it).
    """
    out = []
    using: dict[str, bool] = {}
    for inst, det, name, kind, filt in db.measured_types(store, day_obs):
        if instrument is not None and inst != instrument:
            continue
        if inst not in using:
            using[inst] = has_certifications(store, inst)
        if not using[inst]:
            continue
        if lookup(store, kind, inst, det, day_obs, filt) is None:
            out.append(
                MissingCertified(inst, det, name, kind, day_obs, filt if kind == "flat" else "")
            )
    return out


def format_association(row: db.CertificationRow) -> str:
    """``[2025-11-01, ∞) <id> <source run> bias LSSTCam R22_S11 [filter]``."""
    p = row.product
    filt = f" {p.physical_filter}" if p.physical_filter else ""
    return (
        f"{format_range(row.begin_date, row.end_date)} {p.id} {p.source_run or '-'} "
        f"{p.calib_type} {p.instrument} {p.detector_name}{filt}"
    )


# --------------------------------------------------------------------------------------
# Validity advice
# --------------------------------------------------------------------------------------
@dataclass
class AmpValidity:
    amp: str
    days: list[tuple[str, float, bool, str]] = field(default_factory=list)  # day, value, ok, why

    @property
    def first_failure(self) -> str | None:
        return next((d for d, _, ok, _ in self.days if not ok), None)

    def passed_range(self) -> tuple[str, str] | None:
        """First and last verified day before the first failure."""
        ok_days = []
        for d, _, ok, _ in self.days:
            if not ok:
                break
            ok_days.append(d)
        return (ok_days[0], ok_days[-1]) if ok_days else None


@dataclass
class Validity:
    """Verification history of one product, per amp (from the stored records)."""

    product: db.ProductRow
    certifications: list[db.CertificationRow]
    metric: str
    amps: dict[str, AmpValidity]

    @property
    def days(self) -> list[str]:
        return sorted({d for a in self.amps.values() for d, *_ in a.days})

    @property
    def first_failure(self) -> str | None:
        fails = [a.first_failure for a in self.amps.values() if a.first_failure]
        return min(fails) if fails else None

    def failing_amps(self) -> list[AmpValidity]:
        first = self.first_failure
        return [a for a in self.amps.values() if first and a.first_failure == first]

    def lines(self) -> list[str]:
        """The report ``calibmon calibs validity`` prints."""
        p = self.product
        certs = ", ".join(format_range(c.begin_date, c.end_date) for c in self.certifications)
        out = [
            f"{p.calib_type} {p.id} ({p.instrument} {p.detector_name}"
            f"{' ' + p.physical_filter if p.physical_filter else ''}, built from {p.day_obs}); "
            f"certified {certs or 'never'}"
        ]
        days = self.days
        if not days:
            out.append(f"{p.detector_name}: no verification against this product in the store")
            return out
        first = self.first_failure
        before = [d for d in days if first is None or d < first]
        passed = (
            f"passed {before[0]}..{before[-1]} ({len(before)} days)" if before else "never passed"
        )
        if first is None:
            out.append(f"{p.detector_name}: {passed}, no failure")
            return out
        amps = self.failing_amps()
        out.append(
            f"{p.detector_name}: {passed}, first failure {first} ({', '.join(a.amp for a in amps)})"
        )
        for a in sorted(self.amps.values(), key=lambda a: (a.first_failure or "9", a.amp)):
            if a.first_failure is None:
                continue
            rng = a.passed_range()
            passed_a = f"passed {rng[0]}..{rng[1]}" if rng else "never passed"
            _, value, _, why = next(x for x in a.days if x[0] == a.first_failure)
            detail = f"{self.metric} {value:.3g}" + (f": {why}" if why else "")
            out.append(f"  {a.amp}: {passed_a}, first failure {a.first_failure} ({detail})")
        out.append(
            f"suggested end of validity: {day_obs_to_iso(first)} (build a new {p.calib_type} "
            f"and certify it from then on; the later certification wins: calibmon calibs "
            f"certify NEW_ID --begin {day_obs_to_iso(first)})"
        )
        return out


def validity(
    store: Store,
    product_id: str,
    pass_fraction: float = 0.5,
    max_new_defects: float = math.inf,
) -> Validity:
    """Per-amp verification history against a product, from the stored amp records.

    A day passes for an amp when ``verify_<type>_pass`` ≥ ``pass_fraction`` (defects:
    ``verify_new_defects`` ≤ ``max_new_defects``). Only records whose provenance names
    this product in ``input_calibs`` count.
    """
    product = resolve_product(store, product_id)
    metric = PASS_METRIC[product.calib_type]
    amps: dict[str, AmpValidity] = {}
    for r in store.iter_records(
        metric=metric, instrument=product.instrument, detector_name=product.detector_name,
        level="amp",
    ):  # fmt: skip
        ref = (r.provenance.input_calibs or {}).get(product.calib_type) or {}
        if ref.get("id") != product.id:
            continue
        if product.calib_type == "defects":
            ok = r.value <= max_new_defects
        else:
            ok = r.value >= pass_fraction
        extra = r.provenance.model_extra or {}
        why = "" if ok else str(extra.get("failed_tests", "") or "")
        amps.setdefault(r.amp or "", AmpValidity(r.amp or "")).days.append(
            (r.day_obs, float(r.value), ok, why)
        )
    for a in amps.values():
        a.days.sort()
    certs = db.list_certifications(store, product_id=product.id)
    return Validity(product, certs, metric, dict(sorted(amps.items())))


def known_shapes(store: Store, instrument: str, detector_name: str) -> list[tuple[int, int]]:
    """Distinct trimmed amp shapes of the products registered for a detector."""
    shapes = set()
    for p in db.list_products(store, instrument=instrument, detector_name=detector_name):
        s = p.meta.get("amp_shape")
        if isinstance(s, Sequence) and len(s) == 2:
            shapes.add((int(s[0]), int(s[1])))
    return sorted(shapes)
