"""The warehouse (DuckDB) and the analysts' database, both behind one writer pool."""


import dagster as dg

from tiktok_pipelines.defs.catalog.assets import catalog_assets
from tiktok_pipelines.defs.ingest.assets import INGEST_LOG_KEY, QUARANTINE_KEY, raw_key
from tiktok_pipelines.defs.ops.policies import (
    ANALYTICS_FRESHNESS,
    TRANSIENT_RETRY,
    retry_only_transient,
)
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.warehouse import (
    connect_warehouse,
    publish_analytics,
    refresh_lake_views,
)

GROUP = "warehouse"
# Every asset that opens warehouse.duckdb for writing runs in this pool; the instance gives it one
# slot (dagster.yaml: concurrency.pools), so two writers never meet.
WAREHOUSE_POOL = "duckdb_warehouse"


@dg.asset(
    group_name=GROUP,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    deps=[raw_key(s) for s in STREAMS] + [QUARANTINE_KEY, INGEST_LOG_KEY] + [a.key for a in catalog_assets],
    description="raw.* over the lake's Delta tables at their committed versions (recorded in raw._lake_versions) "
    "and dims.* tables loaded from the catalog's Delta tables (dims/<name>) in warehouse.duckdb.",
    retry_policy=TRANSIENT_RETRY,  # a DuckDB lock held outside Dagster's pool: retried with backoff
)
@retry_only_transient
def warehouse_lake_tables(storage: PlatformStorage) -> dg.MaterializeResult:
    con = connect_warehouse(storage.warehouse)
    try:
        counts = refresh_lake_views(con, storage.lake_location, storage.lake_store)
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


def _published_relations() -> list[dg.AssetKey]:
    """Everything that writes warehouse.duckdb: the copy is taken after all of it. Read from the
    model files and the external-model table (not from the analytics defs, which import this
    module), so a new SQL model is published without touching this list."""
    from tiktok_pipelines.defs.analytics.external import EXTERNAL_MODELS, load_models, model_asset_key

    project = load_models()
    keys = [dg.AssetKey(["seeds", name]) for name in project.seeds]
    keys += [model_asset_key(m.layer, m.name) for m in project.models.values()]
    return keys + [key for key, _ in EXTERNAL_MODELS.values()]


@dg.asset(
    group_name=GROUP,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    deps=[warehouse_lake_tables, *_published_relations()],
    description="analytics.duckdb: the read-only copy analysts query, swapped in atomically after the "
    "warehouse's tables, SQL models, tags, attribution and features are built.",
    retry_policy=TRANSIENT_RETRY,
    freshness_policy=ANALYTICS_FRESHNESS,  # what analysts read: refreshed hourly (hourly_analytics_job)
)
@retry_only_transient
def analytics_db(storage: PlatformStorage) -> dg.MaterializeResult:
    size = publish_analytics(storage.warehouse, storage.analytics)
    return dg.MaterializeResult(
        metadata={"bytes": size, "path": dg.MetadataValue.path(str(storage.analytics))}
    )
