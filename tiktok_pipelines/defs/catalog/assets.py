"""Reference data (users, creators, videos, campaigns) exported by the platform's OLTP side.

Each export (``catalog/<name>.parquet``) is checked (required columns, primary key unique and not
null) and published as the Delta table ``dims/<name>`` under the lake root (local disk or the
bucket ``PlatformStorage.lake_uri`` names), replaced whole in one transaction, so the warehouse,
the features and the tagger always read a complete, validated snapshot (``tiktok_pipelines.dims``).
"""


import dagster as dg
import duckdb
import pyarrow.parquet as pq

from tiktok_pipelines.defs.ops.policies import TRANSIENT_RETRY, retry_only_transient
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.dims import dim_table, publish_dim
from tiktok_pipelines.schemas import CATALOG

GROUP = "catalog"
PRIMARY_KEYS = {"users": "user_id", "creators": "creator_id", "videos": "video_id", "campaigns": "campaign_id"}


def dim_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(f"dim_{name}")


def _build_catalog_asset(name: str) -> dg.AssetsDefinition:
    table = CATALOG[name]
    pk = PRIMARY_KEYS[name]

    @dg.asset(
        key=dim_key(name),
        group_name=GROUP,
        description=table.doc,
        kinds={"deltalake"},
        check_specs=[dg.AssetCheckSpec(f"{pk}_unique_not_null", asset=dim_key(name))],
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(c, t) for c, t in table.columns.items()]
            )
        },
        retry_policy=TRANSIENT_RETRY,  # reads the catalog export, writes lake/dims: storage hiccups
    )
    @retry_only_transient
    def _asset(context: dg.AssetExecutionContext, storage: PlatformStorage):
        src = storage.catalog / f"{name}.parquet"
        if not src.exists():
            raise FileNotFoundError(
                f"catalog export {src} is missing: run `tiktok-pipelines simulate` or point "
                f"PlatformStorage.catalog_dir at your platform's exports"
            )
        data = pq.ParquetFile(src).read()  # the export as it is: what is checked is what is published
        missing = sorted(set(table.columns) - set(data.schema.names))
        if missing:
            raise ValueError(f"{src} lacks required columns {missing}")
        con = duckdb.connect()
        try:
            con.register("export", data)
            rows, distinct, nulls = con.execute(
                f"SELECT count(*), count(DISTINCT {pk}), count(*) - count({pk}) FROM export").fetchall()[0]
        finally:
            con.close()
        store = storage.lake_store
        version = publish_dim(store, name, data)
        return dg.MaterializeResult(
            metadata={"dagster/row_count": rows, "path": dg.MetadataValue.path(store.uri(dim_table(name))),
                      "table_version": version},
            check_results=[
                dg.AssetCheckResult(
                    check_name=f"{pk}_unique_not_null",
                    passed=distinct == rows and nulls == 0,
                    metadata={"rows": rows, "distinct": distinct, "nulls": nulls},
                )
            ],
        )

    return _asset


catalog_assets = [_build_catalog_asset(name) for name in CATALOG]
