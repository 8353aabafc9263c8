"""The warehouse (DuckDB) and the analysts' database, both behind one writer pool."""


import dagster as dg

from tiktok_pipelines.defs.catalog.assets import catalog_assets
from tiktok_pipelines.defs.ingest.assets import INGEST_LOG_KEY, QUARANTINE_KEY, raw_key
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.warehouse import connect_warehouse, publish_analytics, refresh_lake_views

GROUP = "warehouse"
# Every asset that opens warehouse.duckdb for writing runs in this pool; the instance gives it one
# slot (dagster.yaml: concurrency.pools), so two writers never meet.
WAREHOUSE_POOL = "duckdb_warehouse"


@dg.asset(
    group_name=GROUP,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    deps=[raw_key(s) for s in STREAMS] + [QUARANTINE_KEY, INGEST_LOG_KEY] + [a.key for a in catalog_assets],
    description="raw.* views over the Parquet lake and dims.* tables in warehouse.duckdb.",
)
def warehouse_lake_tables(storage: PlatformStorage) -> dg.MaterializeResult:
    con = connect_warehouse(storage.warehouse)
    try:
        counts = refresh_lake_views(con, storage.lake)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    table = "| relation | rows |\n|---|---|\n" + "\n".join(f"| {k} | {v:,} |" for k, v in counts.items())
    return dg.MaterializeResult(
        metadata={
            "relations": dg.MetadataValue.md(table),
            "dagster/row_count": sum(v for k, v in counts.items() if k.startswith("raw.")),
            "path": dg.MetadataValue.path(str(storage.warehouse)),
        }
    )


@dg.asset(
    group_name=GROUP,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    deps=[warehouse_lake_tables],
    description="analytics.duckdb: the read-only copy analysts query, swapped in atomically.",
)
def analytics_db(storage: PlatformStorage) -> dg.MaterializeResult:
    size = publish_analytics(storage.warehouse, storage.analytics)
    return dg.MaterializeResult(
        metadata={"bytes": size, "path": dg.MetadataValue.path(str(storage.analytics))}
    )
