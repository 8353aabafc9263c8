"""Reference data (users, creators, videos, campaigns) exported by the platform's OLTP side.

Each export is checked (required columns, primary key unique and not null) and copied into the
lake atomically, so the warehouse and features always read a complete, validated snapshot.
"""


import shutil

import dagster as dg
import duckdb

from tiktok_pipelines.defs.ops.policies import TRANSIENT_RETRY, retry_only_transient
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.lake import atomic_replace, sql_path
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
        kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec(f"{pk}_unique_not_null", asset=dim_key(name))],
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(c, t) for c, t in table.columns.items()]
            )
        },
        retry_policy=TRANSIENT_RETRY,  # reads the catalog export, writes lake/dims: file system hiccups
    )
    @retry_only_transient
    def _asset(context: dg.AssetExecutionContext, storage: PlatformStorage):
        src = storage.catalog / f"{name}.parquet"
        if not src.exists():
            raise FileNotFoundError(
                f"catalog export {src} is missing: run `tiktok-pipelines simulate` or point "
                f"PlatformStorage.catalog_dir at your platform's exports"
            )
        con = duckdb.connect()
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_path(src)})").fetchall()]
        missing = sorted(set(table.columns) - set(cols))
        if missing:
            raise ValueError(f"{src} lacks required columns {missing}")
        rows, distinct, nulls = con.execute(
            f"SELECT count(*), count(DISTINCT {pk}), count(*) - count({pk}) FROM read_parquet({sql_path(src)})"
        ).fetchall()[0]
        con.close()
        dst = storage.lake / "dims" / f"{name}.parquet"
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        atomic_replace(tmp, dst)
        return dg.MaterializeResult(
            metadata={"dagster/row_count": rows, "path": dg.MetadataValue.path(str(dst))},
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
