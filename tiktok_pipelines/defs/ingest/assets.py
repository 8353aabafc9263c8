"""Ingestion: landing NDJSON -> the lake's Delta tables (one per stream), quarantine, ingest log.

One multi-asset, because a landing batch is validated and committed as a unit: one Delta
transaction per table (the stream tables, the quarantine, the ingest log last), each carrying the
batch's transaction id; a batch cut short is finished by the next run (``ingest_files``).
"""

import datetime as dt

import dagster as dg

from tiktok_pipelines.defs.ops.policies import TRANSIENT_RETRY, retry_only_transient
from tiktok_pipelines.defs.resources import IngestPolicy, PlatformStorage
from tiktok_pipelines.ingest.engine import (
    INGEST_LOG_DIR,
    QUARANTINE_DIR,
    IngestReport,
    audit_batch,
    duplicate_event_ids,
    events_table,
    ingest_files,
    lake_partitions,
    lake_row_count,
    table_row_count,
)
from tiktok_pipelines.ingest.landing import list_landing_files, stat_landing_file
from tiktok_pipelines.ingest.validate import sql_type
from tiktok_pipelines.schemas import STREAMS

GROUP = "ingest"
QUARANTINE_KEY = dg.AssetKey("quarantine")
INGEST_LOG_KEY = dg.AssetKey("ingest_log")


def raw_key(stream: str) -> dg.AssetKey:
    return dg.AssetKey(f"raw_{stream}")


def _column_schema(stream: str) -> dg.TableSchema:
    schema = STREAMS[stream]
    cols = [dg.TableColumn(f.name, sql_type(f), description=f.doc or None) for f in schema.fields]
    cols += [
        dg.TableColumn("event_date", "DATE", description="Partition: UTC date of ts_ms."),
        dg.TableColumn("_src_file", "VARCHAR", description="Landing file the row came from."),
        dg.TableColumn("_src_line", "BIGINT", description="1-based line in that file."),
        dg.TableColumn("_batch_id", "VARCHAR", description="Ingest batch that committed the row."),
        dg.TableColumn("_payload_hash", "BIGINT", description="Hash of the typed values (dedupe)."),
    ]
    return dg.TableSchema(columns=cols)


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
        ),
        dg.AssetSpec(
            INGEST_LOG_KEY,
            group_name=GROUP,
            description="One row per ingested landing file: identity and the read/lake/quarantine/"
            "duplicate counts, and file_reason when the whole file was quarantined (future_flush_time, "
            "invalid_flush_time, unsafe_name, undecodable_name). Its files are the commit records of "
            "ingest batches.",
            kinds={"deltalake"},
        ),
    ]


def _checks() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "accounting_balanced",
            asset=INGEST_LOG_KEY,
            description="Recounted from disk: lines read = rows in lake + quarantine + duplicates, per file.",
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
    ]


class IngestConfig(dg.Config):
    files: list[str] = []
    """Landing paths relative to the landing root. Empty: every file not ingested yet."""


def _quarantined_files_md(report: IngestReport) -> str:
    rows = report.quarantined_files()
    if not rows:
        return "none"
    return "\n".join(f"- `{f.file.shown_path}`: {reason} ({f.rows_read} lines)" for f, reason in rows)


def _reason_table(report: IngestReport) -> str:
    if not report.reasons:
        return "No quarantined rows in this run."
    rows = "\n".join(f"| {r} | {n:,} |" for r, n in report.reasons.most_common())
    return "| reason | rows |\n|---|---|\n" + rows


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
    """Validate, deduplicate and commit landing files into the lake."""
    if config.files:
        files = [stat_landing_file(storage.landing, rel) for rel in config.files]
    else:
        files = list_landing_files(storage.landing)
    store = storage.lake_store
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
        f"{len(report.skipped_files)} files already ingested"
    )
    if report.quarantined_files():
        context.log.warning(f"landing files quarantined whole (lines in quarantine, reason in "
                            f"ingest_log.file_reason):\n{_quarantined_files_md(report)}")

    for stream in STREAMS:
        t = report.totals(stream)
        dates = sorted(report.dates_by_stream.get(stream, ()))
        yield dg.MaterializeResult(
            asset_key=raw_key(stream),
            metadata={
                "dagster/row_count": dg.MetadataValue.int(lake_row_count(storage.lake_location, stream, store)),
                "delta_version": dg.MetadataValue.int(store.version(events_table(stream)) or 0),
                "rows_added": t["rows_lake"],
                "files_ingested": t["files"],
                "partitions_touched": ", ".join(dates) or "none",
                "path": dg.MetadataValue.path(store.uri(events_table(stream))),
            },
        )
        lateness = ingest_policy.max_lateness_days
        dups = duplicate_event_ids(storage.lake_location, stream, dates, lateness_days=lateness, store=store)
        window = lake_partitions(storage.lake_location, stream, dt.date.fromisoformat(dates[0]),
                                 dt.date.fromisoformat(dates[-1]), lateness, store) if dates else []
        yield dg.AssetCheckResult(
            asset_key=raw_key(stream),
            check_name="event_id_unique",
            passed=dups == 0,
            metadata={"duplicate_event_ids": dups, "partitions_touched": len(dates),
                      "partitions_checked": len(window),
                      "window": f"{dates[0]} .. {dates[-1]} +/- {lateness} days" if dates else "none"},
        )

    totals = report.totals()
    yield dg.MaterializeResult(
        asset_key=QUARANTINE_KEY,
        metadata={
            "dagster/row_count": table_row_count(storage.lake_location, QUARANTINE_DIR, store),
            "delta_version": dg.MetadataValue.int(store.version(QUARANTINE_DIR) or 0),
            "rows_added": totals["rows_quarantine"],
            "reasons": dg.MetadataValue.md(_reason_table(report)),
            "path": dg.MetadataValue.path(store.uri(QUARANTINE_DIR)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=INGEST_LOG_KEY,
        metadata={
            "dagster/row_count": table_row_count(storage.lake_location, INGEST_LOG_DIR, store),
            "delta_version": dg.MetadataValue.int(store.version(INGEST_LOG_DIR) or 0),
            "batch_id": report.batch_id or "none (nothing new)",
            "files_ingested": totals["files"],
            "files_skipped_already_ingested": len(report.skipped_files),
            "files_quarantined": len(report.quarantined_files()),
            "quarantined_files": dg.MetadataValue.md(_quarantined_files_md(report)),
            "rows_read": totals["rows_read"],
            "rows_lake": totals["rows_lake"],
            "rows_quarantine": totals["rows_quarantine"],
            "rows_duplicate": totals["rows_duplicate"],
            "seconds": round(report.seconds, 2),
            "rows_per_second": round(totals["rows_read"] / report.seconds) if report.seconds else 0,
        },
    )
    problems = audit_batch(storage.lake_location, storage.landing, report.batch_id, store) if report.batch_id else []
    yield dg.AssetCheckResult(
        asset_key=INGEST_LOG_KEY,
        check_name="accounting_balanced",
        passed=not problems,
        metadata={
            "files_audited": totals["files"],
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        },
    )


ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(ingest_landing),
    description="Ingest landing files (all pending ones, or those given in config).",
    # One step: the default multiprocess executor would start a second process (and import the
    # code location again) inside every run worker, seconds of latency per sensor run for nothing.
    executor_def=dg.in_process_executor,
)
