"""The DuckDB warehouse and the analysts' read-only copy (no Dagster import).

DuckDB allows one writer per file, and while a process holds it for writing nobody else can open
it, not even read-only (DESIGN.md, decision 1). So: only assets in the ``duckdb_warehouse`` pool
(limit 1) open ``warehouse.duckdb``; analysts open ``analytics.duckdb`` read-only, a copy that is
rebuilt beside the old one and renamed over it (``publish_analytics``). An analyst's open
connection keeps reading the file it opened; the next connection (in a process with no other
connection to the path: DuckDB shares one open database per path within a process) sees the new
one. Neither side ever waits on or breaks the other.

Event tables are views over the Parquet lake (absolute paths), so both files stay small. Each
view names the files of the committed ingest batches explicitly (``refresh_lake_views``), never a
glob: a query sees the batches committed when the warehouse was last refreshed, and never the
files of a batch that died before its commit record.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import duckdb

from tiktok_pipelines.ingest.engine import (
    INGEST_LOG_DIR,
    INGEST_LOG_SCHEMA,
    QUARANTINE_DIR,
    QUARANTINE_SCHEMA,
    Lake,
)
from tiktok_pipelines.ingest.validate import sql_type
from tiktok_pipelines.lake import atomic_replace, fsync_path, sql_path
from tiktok_pipelines.schemas import CATALOG, STREAMS

_ARROW_TO_SQL = {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN"}


def _empty_select(columns: dict[str, str]) -> str:
    cols = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns.items())
    return f"SELECT {cols} WHERE false"


# The engine names every file a batch publishes ``part-<batch id>-...parquet`` (events and
# quarantine alike), and commits the batch by renaming ``ingest_log/batch-<batch id>.parquet`` into
# place after all of them (tiktok_pipelines/ingest/engine.py).
_BATCH_IN_NAME = re.compile(r"^part-(?P<batch>[0-9a-f]+)-")


def committed_batch_ids(lake: Lake) -> set[str]:
    """Ids of the batches that have a commit record: the rule ``Lake.recover`` applies (a batch
    without one is rolled back by the next ingest)."""
    d = lake.root / INGEST_LOG_DIR
    if not d.is_dir():
        return set()
    return {p.name[len("batch-"):-len(".parquet")] for p in d.glob("batch-*.parquet")}


def committed_files(directory: Path, pattern: str, batches: set[str]) -> list[Path]:
    """The Parquet files under ``directory`` matching ``pattern`` that a committed batch wrote,
    sorted. Files of a batch that died before its commit record, and files no batch named, are
    left out."""
    if not directory.is_dir():
        return []
    out = []
    for p in directory.glob(pattern):
        m = _BATCH_IN_NAME.match(p.name)
        if m and m["batch"] in batches:
            out.append(p)
    return sorted(out)


def _file_list(paths: list[Path]) -> str:
    return "[" + ", ".join(sql_path(p) for p in paths) + "]"


def refresh_lake_views(con: duckdb.DuckDBPyConnection, lake_root: Path) -> dict[str, int]:
    """(Re)create ``raw.*`` views over the lake's committed files and ``dims.*`` tables; returns
    row counts.

    Each view names its files explicitly, never a glob: the Parquet files of the batches whose
    commit record exists when the refresh lists them (one list for every view, so raw.ingest_log
    and the event views agree). A batch that moved its files in but died before committing
    is invisible, and one committing later shows up at the next refresh. A view with no
    committed file is a typed empty one.
    """
    lake = Lake(lake_root.absolute())
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    con.execute("CREATE SCHEMA IF NOT EXISTS dims")
    counts: dict[str, int] = {}
    batches = committed_batch_ids(lake)  # listed first: a batch's files are in place before its record
    for stream, schema in STREAMS.items():
        files = committed_files(lake.events_dir(stream), "event_date=*/*.parquet", batches)
        if files:
            body = (
                f"SELECT * FROM read_parquet({_file_list(files)}, "
                "hive_partitioning = true, union_by_name = true)"
            )
        else:
            cols = {f.name: sql_type(f) for f in schema.fields}
            cols.update({"_src_file": "VARCHAR", "_src_line": "BIGINT", "_batch_id": "VARCHAR",
                         "_payload_hash": "BIGINT", "event_date": "DATE"})
            body = _empty_select(cols)
        con.execute(f"CREATE OR REPLACE VIEW raw.{stream} AS {body}")
        counts[f"raw.{stream}"] = con.execute(f"SELECT count(*) FROM raw.{stream}").fetchall()[0][0]
    ingest_log = lake.root / INGEST_LOG_DIR
    for name, files, arrow_schema in (
        ("quarantine", committed_files(lake.root / QUARANTINE_DIR, "*.parquet", batches), QUARANTINE_SCHEMA),
        ("ingest_log", sorted(ingest_log / f"batch-{b}.parquet" for b in batches), INGEST_LOG_SCHEMA),
    ):
        if files:
            body = f"SELECT * FROM read_parquet({_file_list(files)}, union_by_name = true)"
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


class PublishError(RuntimeError):
    """analytics.duckdb was not published (the previous file, if any, is left as it was)."""


def wal_path(db: Path) -> Path:
    """DuckDB's write-ahead log for ``db``: beside it, found by name."""
    return db.with_name(db.name + ".wal")


def check_analytics(path: Path) -> int:
    """Open ``path`` read-only, as analysts do, and read a row from every view (a view whose
    Parquet files or relations are gone fails here). Returns the number of views; raises what
    DuckDB raises."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        views = con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal ORDER BY ALL"
        ).fetchall()
        for schema, view in views:
            ident = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, view))
            con.execute(f"SELECT * FROM {ident} LIMIT 1").fetchall()
        return len(views)
    finally:
        con.close()


def publish_analytics(warehouse: Path, analytics: Path) -> int:
    """Publish the (closed) warehouse as the analysts' file: a new file, swapped in by rename.
    Returns the published size in bytes.

    1. Copy the warehouse to a temp file beside ``analytics`` (with its WAL, if a writer died
       before checkpointing), open the copy read-write and CHECKPOINT it: the new file holds
       everything and has no WAL of its own.
    2. Make it read-only on disk (0444) and check it as an analyst opens it: read-only, a row from
       every view. Any failure up to here raises ``PublishError`` and leaves the previous file
       (and everything beside it) as it was; the temp files are removed.
    3. Remove ``analytics.duckdb.wal``, rename the new file over ``analytics``, remove the WAL
       again, and check the published path read-only. A WAL there belongs to the old file (an
       analyst's read-write session, perhaps killed with kill -9); DuckDB refuses to open a file
       whose WAL does not match it, read-only or not, so one left there broke every open after.
       A session still holding the old file keeps the old inode (and its lock) to itself.
    """
    analytics.parent.mkdir(parents=True, exist_ok=True)
    tmp = analytics.with_name(f".{analytics.name}.tmp-{os.getpid()}")
    try:
        for p in (tmp, wal_path(tmp)):
            p.unlink(missing_ok=True)  # left by a publication of this pid that died
        shutil.copyfile(warehouse, tmp)
        if wal_path(warehouse).exists():
            shutil.copyfile(wal_path(warehouse), wal_path(tmp))
        con = duckdb.connect(str(tmp))
        try:
            con.execute("CHECKPOINT")
        finally:
            con.close()
        if wal_path(tmp).exists():
            raise PublishError(f"{analytics} not published, the previous file stays: the new file "
                               f"{tmp} kept a WAL after its checkpoint")
        os.chmod(tmp, 0o444)  # published read-only: analysts query it, nobody writes it in place
        check_analytics(tmp)
    except BaseException as e:
        for p in (tmp, wal_path(tmp)):
            p.unlink(missing_ok=True)
        if isinstance(e, PublishError) or not isinstance(e, Exception):
            raise
        raise PublishError(
            f"{analytics} not published, the previous file stays: building the new file or opening it "
            f"read-only and reading its views failed ({type(e).__name__}: {e})"
        ) from e
    wal_path(analytics).unlink(missing_ok=True)
    atomic_replace(tmp, analytics)
    wal_path(analytics).unlink(missing_ok=True)  # in case a session on the old file wrote one meanwhile
    fsync_path(analytics.parent)
    try:
        check_analytics(analytics)
    except Exception as e:
        raise PublishError(f"{analytics} was swapped in but does not open read-only: {e}") from e
    return analytics.stat().st_size
