"""Store access for master calibration products and their certifications.

Tables (defined in :mod:`calibmon.store.sqlite`, unchanged):

calib_products
    one row per product file: ``id`` (UUID, the FITS ``CALIB_ID``), ``calib_type``
    (bias|dark|flat|defects), instrument, detector number and name, ``physical_filter``
    ('' except flats), the ``day_obs`` its inputs were taken on, the file ``path``,
    ``source_run`` (the ``calibmon calibs build`` run, or ``import``), ``created_at`` and
    ``meta`` (JSON: vendor, trimmed amp shape, exposures, software version, config hash).
certifications
    one row per association of a product with a validity range of day_obs dates,
    ``begin_date`` inclusive, ``end_date`` exclusive (NULL = open-ended), as
    ``YYYY-MM-DD`` text so that string order is date order. ``id`` increases with each
    certification: where ranges overlap, the highest ``id`` (the most recent
    certification) wins, as the first collection of a prepended Butler chain does.

Plain functions taking a :class:`~calibmon.store.sqlite.Store`; nothing here decides
policy (that is :mod:`calibmon.calibs.registry`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from calibmon.store.sqlite import Store, utc_now_iso


@dataclass(frozen=True)
class ProductRow:
    """One ``calib_products`` row."""

    id: str
    calib_type: str
    instrument: str
    detector: int
    detector_name: str
    physical_filter: str
    day_obs: str | None
    path: str
    source_run: str | None
    created_at: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class CertificationRow:
    """One certification joined with its product."""

    cert_id: int
    begin_date: str  # YYYY-MM-DD, inclusive
    end_date: str | None  # YYYY-MM-DD, exclusive; None = open-ended
    certified_at: str
    product: ProductRow


_PRODUCT_COLS = (
    "p.id, p.calib_type, p.instrument, p.detector, p.detector_name, p.physical_filter,"
    " p.day_obs, p.path, p.source_run, p.created_at, p.meta"
)


def _product(row: Any) -> ProductRow:
    return ProductRow(
        id=row["id"],
        calib_type=row["calib_type"],
        instrument=row["instrument"],
        detector=int(row["detector"]),
        detector_name=row["detector_name"],
        physical_filter=row["physical_filter"] or "",
        day_obs=row["day_obs"],
        path=row["path"],
        source_run=row["source_run"],
        created_at=row["created_at"],
        meta=json.loads(row["meta"] or "{}"),
    )


def _certification(row: Any) -> CertificationRow:
    return CertificationRow(
        cert_id=int(row["cert_id"]),
        begin_date=row["begin_date"],
        end_date=row["end_date"],
        certified_at=row["certified_at"],
        product=_product(row),
    )


def insert_product(store: Store, product: ProductRow) -> None:
    """Register a product (its id must be new)."""
    with store.transaction() as c:
        c.execute(
            "INSERT INTO calib_products(id, calib_type, instrument, detector, detector_name,"
            " physical_filter, day_obs, path, source_run, created_at, meta)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                product.id, product.calib_type, product.instrument, product.detector,
                product.detector_name, product.physical_filter, product.day_obs, product.path,
                product.source_run, product.created_at or utc_now_iso(),
                json.dumps(product.meta, sort_keys=True, default=str),
            ),
        )  # fmt: skip


def get_product(store: Store, product_id: str) -> ProductRow | None:
    rows = store.query(f"SELECT {_PRODUCT_COLS} FROM calib_products p WHERE p.id=?", (product_id,))
    return _product(rows[0]) if rows else None


def products_with_prefix(store: Store, prefix: str, limit: int = 3) -> list[ProductRow]:
    """Products whose id starts with ``prefix`` (for abbreviated ids)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = store.query(
        f"SELECT {_PRODUCT_COLS} FROM calib_products p WHERE p.id LIKE ? ESCAPE '\\'"
        " ORDER BY p.id LIMIT ?",
        (escaped + "%", limit),
    )
    return [_product(r) for r in rows]


def list_products(
    store: Store,
    *,
    calib_type: str | None = None,
    instrument: str | None = None,
    detector_name: str | None = None,
) -> list[ProductRow]:
    where, params = _filters(calib_type, instrument, detector_name)
    rows = store.query(
        f"SELECT {_PRODUCT_COLS} FROM calib_products p{where}"
        " ORDER BY p.calib_type, p.instrument, p.detector, p.day_obs, p.created_at",
        params,
    )
    return [_product(r) for r in rows]


def add_certification(
    store: Store, product_id: str, begin_date: str, end_date: str | None
) -> CertificationRow:
    """Associate a product with ``[begin_date, end_date)``; returns the new association."""
    with store.transaction() as c:
        cur = c.execute(
            "INSERT INTO certifications(product_id, begin_date, end_date, certified_at)"
            " VALUES (?,?,?,?)",
            (product_id, begin_date, end_date, utc_now_iso()),
        )
        cert_id = int(cur.lastrowid or 0)
    rows = store.query(
        f"SELECT c.id AS cert_id, c.begin_date, c.end_date, c.certified_at, {_PRODUCT_COLS}"
        " FROM certifications c JOIN calib_products p ON p.id=c.product_id WHERE c.id=?",
        (cert_id,),
    )
    return _certification(rows[0])


def list_certifications(
    store: Store,
    *,
    calib_type: str | None = None,
    instrument: str | None = None,
    detector_name: str | None = None,
    product_id: str | None = None,
) -> list[CertificationRow]:
    """Associations in display order: type, instrument, detector, filter, begin, cert id."""
    where, params = _filters(calib_type, instrument, detector_name)
    if product_id is not None:
        where += (" AND" if where else " WHERE") + " p.id=?"
        params.append(product_id)
    rows = store.query(
        f"SELECT c.id AS cert_id, c.begin_date, c.end_date, c.certified_at, {_PRODUCT_COLS}"
        f" FROM certifications c JOIN calib_products p ON p.id=c.product_id{where}"
        " ORDER BY p.calib_type, p.instrument, p.detector, p.physical_filter, c.begin_date,"
        " c.id",
        params,
    )
    return [_certification(r) for r in rows]


def find_certified(
    store: Store,
    calib_type: str,
    instrument: str,
    detector: int,
    date: str,
    physical_filter: str = "",
) -> CertificationRow | None:
    """The association valid on ``date`` (``YYYY-MM-DD``): ``begin <= date < end``; among
    overlapping ones the most recent certification (highest id)."""
    rows = store.query(
        f"SELECT c.id AS cert_id, c.begin_date, c.end_date, c.certified_at, {_PRODUCT_COLS}"
        " FROM certifications c JOIN calib_products p ON p.id=c.product_id"
        " WHERE p.calib_type=? AND p.instrument=? AND p.detector=? AND p.physical_filter=?"
        " AND c.begin_date<=? AND (c.end_date IS NULL OR c.end_date>?)"
        " ORDER BY c.id DESC LIMIT 1",
        (calib_type, instrument, detector, physical_filter, date, date),
    )
    return _certification(rows[0]) if rows else None


def count_certifications(store: Store, instrument: str | None = None) -> int:
    sql = "SELECT COUNT(*) FROM certifications c JOIN calib_products p ON p.id=c.product_id"
    params: list[Any] = []
    if instrument is not None:
        sql += " WHERE p.instrument=?"
        params.append(instrument)
    return int(store.query(sql, params)[0][0])


def measured_types(store: Store, day_obs: str) -> list[tuple[str, int, str, str, str]]:
    """(instrument, detector, detector_name, calib_type, physical_filter) with amp records of
    calib_type bias, dark or flat on ``day_obs`` (what the day's verification needs)."""
    rows = store.query(
        "SELECT DISTINCT instrument, detector, COALESCE(detector_name, ''), calib_type,"
        " physical_filter FROM records WHERE day_obs=? AND level='amp'"
        " AND calib_type IN ('bias', 'dark', 'flat') ORDER BY instrument, detector, calib_type",
        (day_obs,),
    )
    return [(r[0], int(r[1]), r[2], r[3], r[4] or "") for r in rows]


def _filters(
    calib_type: str | None, instrument: str | None, detector_name: str | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for col, val in (
        ("p.calib_type", calib_type),
        ("p.instrument", instrument),
        ("p.detector_name", detector_name),
    ):
        if val is not None:
            clauses.append(f"{col}=?")
            params.append(val)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def products_by_ids(store: Store, ids: Sequence[str]) -> dict[str, ProductRow]:
    if not ids:
        return {}
    rows = store.query(
        f"SELECT {_PRODUCT_COLS} FROM calib_products p WHERE p.id IN ({','.join('?' * len(ids))})",
        list(ids),
    )
    return {r["id"]: _product(r) for r in rows}
