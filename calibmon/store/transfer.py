"""Records in and out of the store, streaming (DESIGN.md §3 ``export``/``import``, §4).

Exports walk the store one day at a time (:meth:`Store.iter_records`), so memory is one
chunk of records whatever the history: JSONL row by row, CSV and Parquet in chunks of
:data:`CHUNK_RECORDS` (Parquet: one row group per chunk through ``pyarrow.parquet.
ParquetWriter``). Imports read the JSONL export form line by line and write batches of
:data:`IMPORT_BATCH` records, one transaction each; a record with an identity already
stored replaces it, exactly as a re-run does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import ValidationError

from calibmon.errors import StoreError
from calibmon.records import MetricRecord
from calibmon.store.sqlite import Store, utc_now_iso

CHUNK_RECORDS = 20_000
"""Records per CSV chunk / Parquet row group: ~40 % of a full-camera night; the chunk's
dicts, frame and Arrow table together stay near 100 MB."""

IMPORT_BATCH = 10_000
"""Records per import transaction: large enough that the per-commit cost (one WAL sync)
is negligible, small enough that a batch is a few MB of memory."""


def _filters(day_obs: str | None, metric: str | None) -> dict[str, Any]:
    return {"day_obs": day_obs, "metric": metric}


class _JsonCache:
    """Parsed provenance/stats JSON, shared by the rows of one amp and kind; cleared when
    it grows past a day's worth so memory stays bounded on a full export."""

    def __init__(self, limit: int = 8192) -> None:  # a night has ~3k distinct
        self.limit = limit
        self._d: dict[str, Any] = {}

    def __call__(self, text: str) -> Any:
        v = self._d.get(text)
        if v is None:
            if len(self._d) >= self.limit:
                self._d.clear()
            v = self._d[text] = json.loads(text)
        return v


def _export_dict(row: tuple, cache: _JsonCache) -> dict[str, Any]:
    """A stored row as :meth:`MetricRecord.to_json_dict` gives it (same keys, order and
    values: the stored provenance and stats JSON were written by the same models), built
    without pydantic: a full export is ~10⁷ rows."""
    (metric, value, unit, ctype, level, inst, det, det_name, amp, day, filt, vendor, ts,
     prov, stats, error) = row  # fmt: skip
    d = {
        "metric": metric, "value": value, "unit": unit, "calib_type": ctype, "level": level,
        "instrument": inst, "detector": None if det == -1 else det, "detector_name": det_name,
        "amp": amp or None, "day_obs": day, "physical_filter": filt, "vendor": vendor,
        "timestamp": ts, "provenance": cache(prov),
    }  # fmt: skip
    if stats:
        d["stats"] = cache(stats)
    d["error"] = error
    return d


def export_jsonl(
    store: Store, fh: IO[str], *, day_obs: str | None = None, metric: str | None = None
) -> int:
    """Write records in the JSONL export form, one a line; returns how many."""
    n = 0
    cache = _JsonCache()
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    for row in store.iter_record_rows(**_filters(day_obs, metric)):
        fh.write(dumps(_export_dict(row, cache)) + "\n")
        n += 1
    return n


def _frame_row(row: tuple, cache: _JsonCache) -> dict[str, Any]:
    """A stored row flattened as :func:`calibmon.store.dataframes._row` flattens a record."""
    from calibmon.store.dataframes import _PROVENANCE_KNOWN, COLUMNS

    d = _export_dict(row, cache)
    p = d.pop("provenance")
    s = d.pop("stats", None)
    d.update(
        run=p.get("run"), exposures=",".join(str(e) for e in p.get("exposures", [])),
        n_exposures=p.get("n_exposures"), software_version=p.get("software_version"),
        config_hash=p.get("config_hash"), processed_at=p.get("processed_at"),
        input_calibs=json.dumps(p.get("input_calibs", {}), sort_keys=True, default=str),
    )  # fmt: skip
    if s is not None:
        d.update(
            stats_median=s["median"], stats_sigma_mad=s["sigma_mad"],
            stats_n_points=s["n_points"], stats_min=s["min"], stats_max=s["max"],
        )  # fmt: skip
    for k, v in p.items():
        if k in _PROVENANCE_KNOWN:
            continue
        key = k if k not in d and k not in COLUMNS else f"provenance_{k}"
        d[key] = v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)
    return d


def _chunks(records: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for r in records:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _extra_columns(store: Store, day_obs: str | None, metric: str | None) -> dict[str, str]:
    """Flattened extra provenance columns of the selection and their JSON types, read in
    SQL (``json_each``) day by day before the export writes anything, so every chunk
    of a streamed table has the same columns."""
    from calibmon.store.dataframes import _PROVENANCE_KNOWN, COLUMNS

    days = [day_obs] if day_obs else store.days(metric=metric)
    sql = (
        "SELECT DISTINCT j.key, j.type FROM records INDEXED BY records_day,"
        " json_each(records.provenance) AS j WHERE records.day_obs=?"
    )
    args: list[Any] = []
    if metric:
        sql += " AND records.metric=?"
        args.append(metric)
    types: dict[str, set[str]] = {}
    for day in days:
        for key, typ in store.query(sql, [day, *args]):
            if key in _PROVENANCE_KNOWN:
                continue
            types.setdefault(key, set()).add(typ)
    base = set(COLUMNS) | {
        "metric", "value", "error", "run", "exposures", "n_exposures", "software_version",
        "config_hash", "processed_at", "input_calibs",
    }  # fmt: skip
    out: dict[str, str] = {}
    for key, ts in types.items():
        name = key if key not in base else f"provenance_{key}"
        ts = ts - {"null"}
        if ts and ts <= {"integer"}:
            out[name] = "int"
        elif ts and ts <= {"integer", "real"}:
            out[name] = "float"
        elif ts and ts <= {"true", "false"}:
            out[name] = "bool"
        else:
            out[name] = "str"
    return out


def _frame_chunk(chunk: list[tuple], columns: list[str], extras: dict[str, str]):
    import pandas as pd

    from calibmon.store.dataframes import rows_frame

    cache = _JsonCache()
    df = rows_frame([_frame_row(r, cache) for r in chunk]).reindex(columns=columns)
    for name, kind in extras.items():
        col = df[name]
        if kind == "int":
            df[name] = pd.to_numeric(col, errors="coerce").astype("Int64")
        elif kind == "float":
            df[name] = pd.to_numeric(col, errors="coerce").astype(float)
        elif kind == "bool":
            df[name] = col.astype("boolean")
        else:
            df[name] = col.map(lambda v: None if v is None or v is pd.NA else str(v))
    return df


def _columns(extras: dict[str, str]) -> list[str]:
    from calibmon.store.dataframes import COLUMNS

    return list(COLUMNS) + list(extras)


def export_csv(
    store: Store, fh: IO[str], *, day_obs: str | None = None, metric: str | None = None
) -> int:
    """Write records as CSV (the :func:`~calibmon.store.dataframes.records_frame` columns),
    chunk by chunk; returns how many."""
    extras = _extra_columns(store, day_obs, metric)
    columns = _columns(extras)
    n = 0
    for chunk in _chunks(store.iter_record_rows(**_filters(day_obs, metric)), CHUNK_RECORDS):
        _frame_chunk(chunk, columns, extras).to_csv(fh, index=False, header=n == 0)
        n += len(chunk)
    if n == 0:
        _frame_chunk([], columns, extras).to_csv(fh, index=False)
    return n


def _arrow_schema(extras: dict[str, str]):
    import pyarrow as pa

    s, f, i = pa.string(), pa.float64(), pa.int64()
    fields = [
        ("metric", s), ("value", f), ("error", f), ("unit", s), ("calib_type", s),
        ("level", s), ("instrument", s), ("detector", i), ("detector_name", s), ("amp", s),
        ("day_obs", s), ("physical_filter", s), ("vendor", s),
        ("timestamp", pa.timestamp("ns", tz="UTC")),
        ("stats_median", f), ("stats_sigma_mad", f), ("stats_n_points", i), ("stats_min", f),
        ("stats_max", f), ("run", s), ("exposures", s), ("n_exposures", i),
        ("software_version", s), ("config_hash", s), ("processed_at", s), ("input_calibs", s),
    ]  # fmt: skip
    kinds = {"int": i, "float": f, "bool": pa.bool_(), "str": s}
    fields += [(name, kinds[kind]) for name, kind in extras.items()]
    return pa.schema(fields)


def export_parquet(
    store: Store, fh: IO[bytes], *, day_obs: str | None = None, metric: str | None = None
) -> int:
    """Write records as Parquet, one row group per chunk of :data:`CHUNK_RECORDS`
    (constant memory); pandas reads it back with the dtypes of ``records_frame``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    extras = _extra_columns(store, day_obs, metric)
    columns = _columns(extras)
    schema = _arrow_schema(extras)
    writer = None
    n = 0
    try:
        chunks = _chunks(store.iter_record_rows(**_filters(day_obs, metric)), CHUNK_RECORDS)
        for chunk in _first_or_empty(chunks):
            df = _frame_chunk(chunk, columns, extras)
            table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(fh, table.schema)
            writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
            n += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    return n


def _first_or_empty(chunks: Iterator[list[tuple]]) -> Iterator[list[tuple]]:
    """The chunks, or one empty chunk when there are none (an empty table still has its
    schema)."""
    any_ = False
    for c in chunks:
        any_ = True
        yield c
    if not any_:
        yield []


# --------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------
@dataclass
class ImportReport:
    """What an import did: lines read, records written, one message per bad line."""

    source: str
    run_id: str
    n_lines: int = 0
    n_records: int = 0
    bad: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad


def _reason(exc: Exception) -> str:
    """One line for a bad record: the first validation error with its field."""
    if isinstance(exc, ValidationError):
        errs = exc.errors()
        e = errs[0]
        loc = ".".join(str(x) for x in e.get("loc", ())) or "record"
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        return f"{loc}: {e.get('msg', 'invalid')}{more}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} at column {exc.colno}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def parse_line(line: str) -> MetricRecord:
    """One JSONL line of the export form as a validated record (raises on a bad line)."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object but {type(obj).__name__}")
    return MetricRecord.model_validate(obj)


def import_jsonl(
    store: Store, lines: Iterable[str], source: str, *, batch: int = IMPORT_BATCH
) -> ImportReport:
    """Stream records of the JSONL export form into ``store``.

    Each record keeps its ``provenance.run`` as its run; the import itself is a run
    (command ``import``) with the counts. Blank lines are skipped; a line that is not a
    valid record is reported as ``SOURCE:LINE: reason`` and the rest is imported.
    Importing the same file again changes nothing but the records' ``seq`` (so remote
    sinks receive them again, and overwrite the same points)."""
    run_id = f"import-{utc_now_iso()}"
    rep = ImportReport(source=source, run_id=run_id)
    store.begin_run(run_id, "import", input_dir=source)
    pending: list[MetricRecord] = []
    status = "failed"
    try:
        for lineno, line in enumerate(lines, start=1):
            rep.n_lines = lineno
            if not line.strip():
                continue
            try:
                pending.append(parse_line(line))
            except (ValueError, TypeError) as exc:  # ValidationError, JSONDecodeError
                rep.bad.append(f"{source}:{lineno}: {_reason(exc)}")
                continue
            if len(pending) >= batch:
                rep.n_records += store.write_records(pending, None)
                pending = []
        rep.n_records += store.write_records(pending, None)
        status = "ok" if rep.ok else "partial"
    finally:
        try:
            store.finish_run(
                run_id, status, n_records=rep.n_records, n_rejected=len(rep.bad),
                notes={"source": source},
            )  # fmt: skip
        except StoreError:
            if status != "failed":
                raise  # else the write's own error (e.g. disk full) is the one to show
    return rep
