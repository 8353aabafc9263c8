"""Ingestion: landing NDJSON -> the lake's Delta tables (one per stream), quarantine, ingest log.

One multi-asset, because a landing batch is validated and committed as a unit: one Delta
transaction per table (the stream tables, the quarantine, the ingest log last), each carrying the
batch's transaction id; a batch cut short is finished by the next run (``ingest_files``).
"""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from tiktok_pipelines.defs.ops.policies import TRANSIENT_RETRY, retry_only_transient
from tiktok_pipelines.defs.resources import IngestPolicy, PlatformStorage
from tiktok_pipelines.ingest.engine import (
    INGEST_LOG_DIR,
    INGEST_LOG_SCHEMA,
    QUARANTINE_DIR,
    QUARANTINE_SCHEMA,
    IngestReport,
    audit_batch,
    duplicate_event_ids,
    events_schema,
    events_table,
    ingest_files,
    lake_partitions,
    lake_row_count,
    table_row_count,
)
from tiktok_pipelines.ingest.landing import list_landing_files, stat_landing_file
from tiktok_pipelines.schemas import JSON_OBJECT, STREAMS

GROUP = "ingest"
QUARANTINE_KEY = dg.AssetKey("quarantine")
INGEST_LOG_KEY = dg.AssetKey("ingest_log")


def raw_key(stream: str) -> dg.AssetKey:
    return dg.AssetKey(f"raw_{stream}")


# Column docs of what the lake adds to the stream's fields, and of the quarantine and the ingest log.
_LAKE_COLUMN_DOCS = {
    "event_date": "Partition: UTC date of the event's time.",
    "_src_file": "Landing file the row came from (relative to the landing root).",
    "_src_line": "1-based line in that file.",
    "_batch_id": "Ingest batch that committed the row.",
    "_payload_hash": "Hash of the typed values: equal hashes mean an exact duplicate (dedupe).",
}
QUARANTINE_COLUMN_DOCS = {
    "stream": "Stream the landing file belongs to.",
    "src_file": "Landing file the line came from (relative to the landing root).",
    "src_line": "1-based line in that file.",
    "reason": "Why the line was refused: a validation rule (e.g. malformed_json, missing:<field>), "
              "conflicting_duplicate, or the file's reason when the whole file was quarantined.",
    "event_id": "The line's event_id when it could be read, else NULL.",
    "raw_line": "The line as it arrived (without its newline).",
    "batch_id": "Ingest batch that committed the row.",
    "ingested_at_ms": "When that batch ran, epoch ms UTC.",
}
INGEST_LOG_COLUMN_DOCS = {
    "batch_id": "Ingest batch that committed the file.",
    "file_key": "The file's identity: a hash of (path, size, mtime); a file is ingested once per identity.",
    "stream": "Stream the landing file belongs to.",
    "rel_path": "Landing path relative to the landing root (bytes that are not UTF-8 as \\xNN).",
    "size_bytes": "File size when ingested.",
    "mtime_ns": "File modification time when ingested, epoch ns.",
    "flushed_at_ms": "Flush time from the file's name (else its mtime), epoch ms UTC; NULL when it lay "
                     "beyond the ingest's clock.",
    "rows_read": "Lines read from the file.",
    "rows_lake": "Of those, rows committed to the stream's table.",
    "rows_quarantine": "Of those, rows committed to the quarantine.",
    "rows_duplicate": "Of those, exact copies of an event already in the lake (dropped).",
    "ingested_at_ms": "When the batch ran, epoch ms UTC.",
    "file_reason": "NULL: validated line by line; else why the whole file was quarantined "
                   "(future_flush_time, invalid_flush_time, unsafe_name, undecodable_name).",
}

_SQL_NAMES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
              pa.date32(): "DATE"}


def _sql_name(t: pa.DataType) -> str:
    return _SQL_NAMES.get(t, str(t).upper())


def table_schema(schema: pa.Schema, docs: dict[str, str], stream: str | None = None) -> dg.TableSchema:
    """A lake table's columns as the UI shows them: names and types from the Arrow schema the table
    is written with (so they cannot drift from the table), docs from the stream's schema or
    ``docs``, and a stream field's rules (required, allowed values, minimum) as constraints."""
    fields = {f.name: f for f in STREAMS[stream].fields} if stream else {}
    cols = []
    for col in schema:
        f = fields.get(col.name)
        if f is None:
            cols.append(dg.TableColumn(col.name, _sql_name(col.type), description=docs.get(col.name)))
            continue
        other = []
        if f.enum:
            other.append("one of " + ", ".join(f.enum))
        if f.min_value is not None:
            other.append(f">= {f.min_value:g}")
        doc = f.doc + (" A JSON object, as text." if f.type == JSON_OBJECT else "")
        cols.append(dg.TableColumn(col.name, _sql_name(col.type), description=doc or None,
                                   constraints=dg.TableColumnConstraints(nullable=not f.required, other=other)))
    return dg.TableSchema(columns=cols)


def _column_schema(stream: str) -> dg.TableSchema:
    return table_schema(events_schema(stream), _LAKE_COLUMN_DOCS, stream)


def _specs() -> list[dg.AssetSpec]:
    # Built in a function: the defs loader collects module-level AssetSpecs as assets of their own.
    return [
        dg.AssetSpec(
            raw_key(stream),
            group_name=GROUP,
            description=schema.doc,
            kinds={"deltalake"},
            metadata={"dagster/column_schema": _column_schema(stream)},
        )
        for stream, schema in STREAMS.items()
    ] + [
        dg.AssetSpec(
            QUARANTINE_KEY,
            group_name=GROUP,
            description="Every landing line that failed validation, with its reason, file and line; "
            "every line of a file quarantined whole carries the file's reason (see ingest_log.file_reason).",
            kinds={"deltalake"},
            metadata={"dagster/column_schema": table_schema(QUARANTINE_SCHEMA, QUARANTINE_COLUMN_DOCS)},
        ),
        dg.AssetSpec(
            INGEST_LOG_KEY,
            group_name=GROUP,
            description="One row per ingested landing file: identity and the read/lake/quarantine/"
            "duplicate counts, and file_reason when the whole file was quarantined (future_flush_time, "
            "invalid_flush_time, unsafe_name, undecodable_name). Its files are the commit records of "
            "ingest batches.",
            kinds={"deltalake"},
            metadata={"dagster/column_schema": table_schema(INGEST_LOG_SCHEMA, INGEST_LOG_COLUMN_DOCS)},
        ),
    ]


def lake_table_schemas() -> dict[dg.AssetKey, tuple[str, pa.Schema]]:
    """Each lake table asset's Delta table and the Arrow schema it is written with."""
    out = {raw_key(s): (events_table(s), events_schema(s)) for s in STREAMS}
    out[QUARANTINE_KEY] = (QUARANTINE_DIR, QUARANTINE_SCHEMA)
    out[INGEST_LOG_KEY] = (INGEST_LOG_DIR, INGEST_LOG_SCHEMA)
    return out


def _checks() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "accounting_balanced",
            asset=INGEST_LOG_KEY,
            description="Recounted from disk: lines read = rows in lake + quarantine + duplicates, per file.",
        ),
        dg.AssetCheckSpec(
            "file_key_unique",
            asset=INGEST_LOG_KEY,
            description="No landing file identity (file_key) is logged twice: a file logged twice was "
            "ingested twice, and its rows counted (or stored) twice.",
        ),
        dg.AssetCheckSpec(
            "rows_explained",
            asset=QUARANTINE_KEY,
            description="Every row this run quarantined names its stream, its landing file and line, and a reason.",
        ),
    ] + [
        dg.AssetCheckSpec(
            "event_id_unique",
            asset=raw_key(stream),
            description="No row of a partition this run touched shares its event_id with another "
            "row dated within max_lateness_days of it, in any partition of that window (the window "
            "the ingest's dedupe covers), not only in the touched partitions.",
        )
        for stream in STREAMS
    ] + [
        dg.AssetCheckSpec(
            "schema_matches",
            asset=key,
            description="The committed Delta table has exactly the columns and types of its column "
            "schema (the one readers and the warehouse views are built for).",
        )
        for key in lake_table_schemas()
    ]


class IngestConfig(dg.Config):
    files: list[str] = []
    """Landing paths relative to the landing root. Empty: every file not ingested yet."""


def _md_table(columns: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        text = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


def _quarantined_files_md(report: IngestReport) -> str:
    rows = report.quarantined_files()
    if not rows:
        return "No file was quarantined whole."
    return _md_table(["file", "reason", "lines"], [[f"`{f.file.shown_path}`", reason, f.rows_read] for f, reason in rows])


def _reason_table(report: IngestReport) -> str:
    if not report.reasons:
        return "No quarantined rows in this run."
    return _md_table(["reason", "rows"], [[r, n] for r, n in report.reasons.most_common()])


_COUNT_COLUMNS = ["files", "rows_read", "rows_lake", "rows_quarantine", "rows_duplicate"]


def _streams_table(report: IngestReport) -> dg.MetadataValue:
    """The run's counts per stream, as a table (the totals row last)."""
    schema = dg.TableSchema(columns=[dg.TableColumn("stream", "string")]
                            + [dg.TableColumn(c, "int") for c in _COUNT_COLUMNS])
    rows = [("all", report.totals())] + [(s, report.totals(s)) for s in STREAMS]
    records = [dg.TableRecord({"stream": name, **{c: int(t[c]) for c in _COUNT_COLUMNS}})
               for name, t in rows[1:] + rows[:1]]
    return dg.MetadataValue.table(records=records, schema=schema)


def _dates(dates: list[str]) -> str:
    if not dates:
        return "none"
    return dates[0] if len(dates) == 1 else f"{dates[0]} .. {dates[-1]} ({len(dates)} dates)"


def schema_problems(store, table: str, expected: pa.Schema) -> list[str] | None:
    """How a committed table's columns differ from ``expected`` ([] = none); None when the table
    does not exist yet (a stream that never had a valid row)."""
    t = store.table(table)
    if t is None:
        return None
    got = pa.schema(t.schema())
    problems = [f"missing column {f.name} ({_sql_name(f.type)})" for f in expected if f.name not in got.names]
    problems += [f"unexpected column {f.name} ({_sql_name(f.type)})" for f in got if f.name not in expected.names]
    problems += [f"column {f.name} is {_sql_name(got.field(f.name).type)}, expected {_sql_name(f.type)}"
                 for f in expected if f.name in got.names and got.field(f.name).type != f.type]
    return problems


def quarantine_problems(store, batch_id: str) -> tuple[int, list[str]]:
    """(rows the batch quarantined, what is missing in them): a stream, a source file, a line >= 1, a reason."""
    ds = store.dataset(QUARANTINE_DIR)
    if ds is None:
        return 0, []
    rows = ds.to_table(columns=["stream", "src_file", "src_line", "reason"], filter=pc.field("batch_id") == batch_id)
    stream, src_file, src_line, reason = (rows.column(c) for c in ("stream", "src_file", "src_line", "reason"))
    counts = {
        "without a known stream": pc.sum(pc.invert(pc.fill_null(pc.is_in(stream, pa.array(list(STREAMS))), False))),
        "without a source file": pc.sum(pc.fill_null(pc.equal(src_file, ""), True)),
        "without a line number >= 1": pc.sum(pc.fill_null(pc.less(src_line, 1), True)),
        "without a reason": pc.sum(pc.fill_null(pc.equal(reason, ""), True)),
    }
    return rows.num_rows, [f"{int(n.as_py() or 0):,} rows {what}" for what, n in counts.items() if (n.as_py() or 0)]


def logged_twice(store) -> list[tuple[str, str, int]]:
    """(file_key, a rel_path, times) for every landing file identity the ingest log holds more than once."""
    ds = store.dataset(INGEST_LOG_DIR)
    if ds is None:
        return []
    log = ds.to_table(columns=["file_key", "rel_path"])
    counts = log.group_by("file_key").aggregate([("file_key", "count"), ("rel_path", "min")])
    twice = counts.filter(pc.greater(counts.column("file_key_count"), 1)).to_pylist()
    return [(r["file_key"], r["rel_path_min"], r["file_key_count"]) for r in twice]


def _schema_check(store, key: dg.AssetKey) -> dg.AssetCheckResult:
    table, expected = lake_table_schemas()[key]
    problems = schema_problems(store, table, expected)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="schema_matches",
        passed=not problems,
        metadata={
            "columns_expected": len(expected),
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) if problems else
                                            "none" if problems is not None else "none (table not created yet)"),
        },
    )


# Retries: a file system hiccup (EIO/ESTALE/EAGAIN) is retried with backoff, safely: an ingest finishes
# a batch left in flight and skips committed files. A bad path or a corrupt lake fails at once.
@dg.multi_asset(specs=_specs(), check_specs=_checks(), name="ingest_landing", can_subset=False,
                retry_policy=TRANSIENT_RETRY)
@retry_only_transient
def ingest_landing(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    storage: PlatformStorage,
    ingest_policy: IngestPolicy,
):
    """Validate, deduplicate and commit landing files into the lake (``ingest/engine.py``); this
    function only reports the batch: per table its metadata and checks."""
    if config.files:
        files = [stat_landing_file(storage.landing, rel) for rel in config.files]
    else:
        files = list_landing_files(storage.landing)
    store = storage.lake_store  # one store for the batch and its checks
    report = ingest_files(
        files,
        landing_root=storage.landing,
        lake_root=storage.lake_location,
        store=store,
        settings=ingest_policy.settings(),
    )
    if report.resumed_batches:
        context.log.warning(f"finished batches a writer left in flight: {report.resumed_batches}")
    context.log.info(
        f"batch {report.batch_id}: {report.totals()} in {report.seconds:.1f}s; "
        f"{len(report.skipped_files)} files already ingested; {report.compiled_lines} lines typed by the "
        f"compiled path"
    )
    if report.quarantined_files():
        context.log.warning(f"landing files quarantined whole (lines in quarantine, reason in "
                            f"ingest_log.file_reason):\n{_quarantined_files_md(report)}")
    for stream in STREAMS:
        yield from _stream_events(storage, store, report, stream, ingest_policy.max_lateness_days)
    yield from _quarantine_events(storage, store, report)
    yield from _ingest_log_events(storage, store, report)


def _stream_events(storage: PlatformStorage, store, report: IngestReport, stream: str, lateness: int):
    """raw_<stream>: what the batch added, and its event_id_unique and schema_matches checks."""
    t = report.totals(stream)
    dates = sorted(report.dates_by_stream.get(stream, ()))
    yield dg.MaterializeResult(
        asset_key=raw_key(stream),
        metadata={
            "dagster/row_count": dg.MetadataValue.int(lake_row_count(storage.lake_location, stream, store)),
            "delta_version": dg.MetadataValue.int(store.version(events_table(stream)) or 0),
            "rows_added": int(t["rows_lake"]),
            "files_ingested": int(t["files"]),
            "partitions_touched": len(dates),
            "dates_touched": _dates(dates),
            "path": dg.MetadataValue.path(store.uri(events_table(stream))),
        },
    )
    dups = duplicate_event_ids(storage.lake_location, stream, dates, lateness_days=lateness, store=store)
    window = lake_partitions(storage.lake_location, stream, dt.date.fromisoformat(dates[0]),
                             dt.date.fromisoformat(dates[-1]), lateness, store) if dates else []
    yield dg.AssetCheckResult(
        asset_key=raw_key(stream),
        check_name="event_id_unique",
        passed=dups == 0,
        metadata={"duplicate_event_ids": int(dups), "partitions_touched": len(dates),
                  "partitions_checked": len(window),
                  "window": f"{dates[0]} .. {dates[-1]} +/- {lateness} days" if dates else "none"},
    )
    yield _schema_check(store, raw_key(stream))


def _quarantine_events(storage: PlatformStorage, store, report: IngestReport):
    """quarantine: the rows the batch added by reason, and its rows_explained and schema checks."""
    totals = report.totals()
    yield dg.MaterializeResult(
        asset_key=QUARANTINE_KEY,
        metadata={
            "dagster/row_count": int(table_row_count(storage.lake_location, QUARANTINE_DIR, store)),
            "delta_version": dg.MetadataValue.int(store.version(QUARANTINE_DIR) or 0),
            "rows_added": int(totals["rows_quarantine"]),
            "reasons": dg.MetadataValue.md(_reason_table(report)),
            "path": dg.MetadataValue.path(store.uri(QUARANTINE_DIR)),
        },
    )
    q_rows, q_problems = quarantine_problems(store, report.batch_id) if report.batch_id else (0, [])
    yield dg.AssetCheckResult(
        asset_key=QUARANTINE_KEY,
        check_name="rows_explained",
        passed=not q_problems,
        metadata={"rows_checked": q_rows,
                  "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in q_problems) or "none")},
    )
    yield _schema_check(store, QUARANTINE_KEY)


def _ingest_log_events(storage: PlatformStorage, store, report: IngestReport):
    """ingest_log: the batch's books, and its accounting_balanced, file_key_unique and schema checks."""
    totals = report.totals()
    yield dg.MaterializeResult(
        asset_key=INGEST_LOG_KEY,
        metadata={
            "dagster/row_count": int(table_row_count(storage.lake_location, INGEST_LOG_DIR, store)),
            "delta_version": dg.MetadataValue.int(store.version(INGEST_LOG_DIR) or 0),
            "batch_id": report.batch_id or "none (nothing new)",
            "files_ingested": int(totals["files"]),
            "files_skipped_already_ingested": len(report.skipped_files),
            "files_quarantined": len(report.quarantined_files()),
            "quarantined_files": dg.MetadataValue.md(_quarantined_files_md(report)),
            "by_stream": _streams_table(report),
            "rows_read": int(totals["rows_read"]),
            "rows_lake": int(totals["rows_lake"]),
            "rows_quarantine": int(totals["rows_quarantine"]),
            "rows_duplicate": int(totals["rows_duplicate"]),
            "seconds": dg.MetadataValue.float(round(report.seconds, 2)),
            "rows_per_second": int(round(totals["rows_read"] / report.seconds)) if report.seconds else 0,
        },
    )
    problems = audit_batch(storage.lake_location, storage.landing, report.batch_id, store) if report.batch_id else []
    yield dg.AssetCheckResult(
        asset_key=INGEST_LOG_KEY,
        check_name="accounting_balanced",
        passed=not problems,
        metadata={
            "files_audited": int(totals["files"]),
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        },
    )
    twice = logged_twice(store)
    yield dg.AssetCheckResult(
        asset_key=INGEST_LOG_KEY,
        check_name="file_key_unique",
        passed=not twice,
        metadata={
            "files_logged": int(table_row_count(storage.lake_location, INGEST_LOG_DIR, store)),
            "files_logged_twice": len(twice),
            "logged_twice": dg.MetadataValue.md(
                _md_table(["file_key", "rel_path", "times"], [[k, f"`{p}`", n] for k, p, n in twice[:50]])
                if twice else "none"),
        },
    )
    yield _schema_check(store, INGEST_LOG_KEY)


ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(ingest_landing),
    description="Ingest landing files (all pending ones, or those given in config).",
    # One step: the default multiprocess executor would start a second process (and import the
    # code location again) inside every run worker, seconds of latency per sensor run for nothing.
    executor_def=dg.in_process_executor,
)
