"""The DuckDB warehouse and the analysts' read-only copy (no Dagster import).

DuckDB allows one writer per file, and while a process holds it for writing nobody else can open
it, not even read-only (DESIGN.md, decision 1). So: only assets in the ``duckdb_warehouse`` pool
(limit 1) open ``warehouse.duckdb``; analysts open ``analytics.duckdb``, a copy that is rebuilt
beside the old one and renamed over it. An analyst's open connection keeps reading the file it
opened; the next connection sees the new one. Neither side ever waits on or breaks the other.

Event tables are views over the Parquet lake (absolute paths), so both files stay small and a
query always sees every committed ingest batch, without a republish per micro-batch.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from tiktok_pipelines.ingest.engine import INGEST_LOG_SCHEMA, QUARANTINE_SCHEMA, Lake
from tiktok_pipelines.ingest.validate import sql_type
from tiktok_pipelines.lake import atomic_replace, sql_path
from tiktok_pipelines.schemas import CATALOG, STREAMS

_ARROW_TO_SQL = {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN"}


def _empty_select(columns: dict[str, str]) -> str:
    cols = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns.items())
    return f"SELECT {cols} WHERE false"


def refresh_lake_views(con: duckdb.DuckDBPyConnection, lake_root: Path) -> dict[str, int]:
    """(Re)create ``raw.*`` views over the lake and ``dims.*`` tables; returns row counts."""
    lake = Lake(lake_root.absolute())
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    con.execute("CREATE SCHEMA IF NOT EXISTS dims")
    counts: dict[str, int] = {}
    for stream, schema in STREAMS.items():
        if any(lake.events_dir(stream).glob("*/*.parquet")):
            body = (
                f"SELECT * FROM read_parquet({sql_path(lake.events_glob(stream))}, "
                "hive_partitioning = true, union_by_name = true)"
            )
        else:
            cols = {f.name: sql_type(f) for f in schema.fields}
            cols.update({"_src_file": "VARCHAR", "_src_line": "BIGINT", "_batch_id": "VARCHAR",
                         "_payload_hash": "UBIGINT", "event_date": "DATE"})
            body = _empty_select(cols)
        con.execute(f"CREATE OR REPLACE VIEW raw.{stream} AS {body}")
        counts[f"raw.{stream}"] = con.execute(f"SELECT count(*) FROM raw.{stream}").fetchall()[0][0]
    for name, glob, arrow_schema in (
        ("quarantine", lake.quarantine_glob, QUARANTINE_SCHEMA),
        ("ingest_log", lake.ingest_log_glob, INGEST_LOG_SCHEMA),
    ):
        if any(Path(glob).parent.glob("*.parquet")):
            body = f"SELECT * FROM read_parquet({sql_path(glob)}, union_by_name = true)"
        else:
            body = _empty_select({f.name: "VARCHAR" if str(f.type) == "string" else "BIGINT" for f in arrow_schema})
        con.execute(f"CREATE OR REPLACE VIEW raw.{name} AS {body}")
        counts[f"raw.{name}"] = con.execute(f"SELECT count(*) FROM raw.{name}").fetchall()[0][0]
    for name in CATALOG:
        path = lake.root / "dims" / f"{name}.parquet"
        if path.exists():
            con.execute(f"CREATE OR REPLACE TABLE dims.{name} AS SELECT * FROM read_parquet({sql_path(path)})")
            counts[f"dims.{name}"] = con.execute(f"SELECT count(*) FROM dims.{name}").fetchall()[0][0]
    return counts


def connect_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path))


def publish_analytics(warehouse: Path, analytics: Path) -> int:
    """Copy the (closed, checkpointed) warehouse to a temp file, verify it, rename it over the
    analysts' file. Returns the published size in bytes."""
    analytics.parent.mkdir(parents=True, exist_ok=True)
    tmp = analytics.with_name(f".{analytics.name}.tmp-{os.getpid()}")
    shutil.copyfile(warehouse, tmp)
    check = duckdb.connect(str(tmp), read_only=True)
    try:
        check.execute("SELECT count(*) FROM duckdb_tables()").fetchall()[0]
    finally:
        check.close()
    os.chmod(tmp, 0o444)  # published read-only: analysts query it, nobody writes it in place
    atomic_replace(tmp, analytics)
    return analytics.stat().st_size
