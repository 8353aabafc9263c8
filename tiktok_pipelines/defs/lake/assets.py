"""Care of the lake's Delta tables: compaction, vacuum and a size/freshness report, daily.

The logic is in ``tiktok_pipelines.tables`` (``compact``, ``vacuum``, ``table_report``); these
assets run it over every lake table and show the result. Why the defaults are safe for readers:
``CarePolicy``'s docstring and docs/operations.md.
"""

import dagster as dg

from tiktok_pipelines.defs.ingest.assets import INGEST_LOG_KEY, QUARANTINE_KEY, raw_key
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.ingest.engine import lake_tables
from tiktok_pipelines.training.joiner import EXAMPLES_META_TABLE, EXAMPLES_TABLE
from tiktok_pipelines.defs.tagging.assets import LAKE_TABLE as TAGS_LAKE_TABLE
from tiktok_pipelines.dims import dim_table
from tiktok_pipelines.features.daily import ENTITIES, feature_table
from tiktok_pipelines.features.online import COUNTERS_TABLE
from tiktok_pipelines.training.stream_join import COMMITS_TABLE as STREAM_COMMITS_TABLE
from tiktok_pipelines.training.stream_join import EXAMPLES_TABLE as STREAM_EXAMPLES_TABLE
from tiktok_pipelines.schemas import CATALOG, STREAMS
from tiktok_pipelines.tables import CarePolicy, compact, table_report, vacuum

GROUP = "lake_care"


def cared_tables() -> list[str]:
    """The ingest's tables and the derived ones: the training examples, the features, the dims,
    the content tags and the online path's tables (each rebuild replaces files, which vacuum
    removes after the retention)."""
    return (lake_tables() + [EXAMPLES_TABLE, EXAMPLES_META_TABLE]
            + [feature_table(e) for e in ENTITIES] + [dim_table(n) for n in sorted(CATALOG)] + [TAGS_LAKE_TABLE]
            # the online path's: a file per step (examples), one replaced per step (counters, commits)
            + [STREAM_EXAMPLES_TABLE, STREAM_COMMITS_TABLE, COUNTERS_TABLE])
CARE_CRON = "15 4 * * *"  # after the 02:00 features and 03:00 retrain, before the working day


class LakeCareConfig(dg.Config):
    compact_min_age_hours: float = CarePolicy.compact_min_age_hours
    target_file_mb: int = CarePolicy.target_file_mb
    vacuum_retention_hours: int = CarePolicy.vacuum_retention_hours

    def policy(self) -> CarePolicy:
        return CarePolicy(self.compact_min_age_hours, self.target_file_mb, self.vacuum_retention_hours)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".")
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _md(rows: list[dict], columns: list[str], changed: str | None = None) -> dg.MetadataValue:
    """An md table of ``rows``; with ``changed``, only the rows where that count is not 0 (a table
    of 25 zeros tells a person nothing), and a line saying so when there are none."""
    shown = [r for r in rows if r.get(changed)] if changed else rows
    if not shown:
        return dg.MetadataValue.md(f"Nothing to do in the {len(rows)} tables looked at.")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in shown]
    if changed and len(shown) < len(rows):
        lines.append(f"\n{len(rows) - len(shown)} other tables: nothing to do.")
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(group_name=GROUP, kinds={"deltalake"},
          deps=[raw_key(s) for s in STREAMS] + [QUARANTINE_KEY, INGEST_LOG_KEY],
          description="Compacts the small files of every lake table's settled partitions (Delta optimize).")
def lake_compaction(config: LakeCareConfig, storage: PlatformStorage) -> dg.MaterializeResult:
    store = storage.lake_store
    results = [compact(store, name, config.policy()) for name in cared_tables()]
    return dg.MaterializeResult(metadata={
        "files_removed": sum(r["files_removed"] for r in results),
        "files_added": sum(r["files_added"] for r in results),
        "tables_compacted": sum(1 for r in results if r["files_removed"]),
        "tables": _md(results, ["table", "partitions", "files_removed", "files_added"], changed="files_removed"),
    })


@dg.asset(group_name=GROUP, kinds={"deltalake"}, deps=[lake_compaction],
          description="Deletes files no version within the retention needs (replaced by compaction, "
          "or left by a dead writer); a reader pinned to a version within the retention keeps working.")
def lake_vacuum(config: LakeCareConfig, storage: PlatformStorage) -> dg.MaterializeResult:
    store = storage.lake_store
    results = [vacuum(store, name, config.policy()) for name in cared_tables()]
    return dg.MaterializeResult(metadata={
        "files_deleted": sum(r["files_deleted"] for r in results),
        "retention_hours": config.vacuum_retention_hours,
        "tables_vacuumed": sum(1 for r in results if r["files_deleted"]),
        "tables": _md(results, ["table", "files_deleted"], changed="files_deleted"),
    })


@dg.asset(group_name=GROUP, kinds={"deltalake"}, deps=[lake_vacuum],
          description="Each lake table's version, files, rows, size and minutes since its last commit.")
def lake_report(storage: PlatformStorage) -> dg.MaterializeResult:
    store = storage.lake_store
    rows = [r for r in (table_report(store, name) for name in cared_tables()) if r["exists"]]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(r["rows"] for r in rows),
        "tables": len(rows),
        "files": sum(r["files"] for r in rows),
        "small_files": sum(r["small_files"] for r in rows),
        "mb": dg.MetadataValue.float(round(sum(r["mb"] for r in rows), 2)),
        "stalest_minutes": dg.MetadataValue.float(round(max((r["minutes_since_commit"] for r in rows), default=0.0), 1)),
        "report": _md(rows, ["table", "version", "files", "small_files", "rows", "mb", "partitions",
                             "minutes_since_commit", "last_operation"]),
    })


lake_care_job = dg.define_asset_job(
    "lake_care_job", selection=dg.AssetSelection.groups(GROUP),
    description="Compact, vacuum and report on every lake table.")

lake_care_schedule = dg.ScheduleDefinition(
    name="lake_care_schedule", job=lake_care_job, cron_schedule=CARE_CRON, execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily at 04:15 UTC: compaction of settled partitions, vacuum, the size/freshness report.")
