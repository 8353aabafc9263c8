"""The DuckDB warehouse and the analysts' read-only copy (no Dagster import).

DuckDB allows one writer per file, and while a process holds it for writing nobody else can open
it, not even read-only (DESIGN.md, decision 1). So: only assets in the ``duckdb_warehouse`` pool
(limit 1) open ``warehouse.duckdb``; analysts open ``analytics.duckdb`` read-only, a copy that is
rebuilt beside the old one and renamed over it (``publish_analytics``). An analyst's open
connection keeps reading the file it opened; the next connection (in a process with no other
connection to the path: DuckDB shares one open database per path within a process) sees the new
one. Neither side ever waits on or breaks the other.

The ``raw.*`` relations read the lake's Delta tables at one committed version each
(``refresh_lake_views``), recorded in ``raw._lake_versions``: never a glob of the tables' folders,
so a file a dead writer left there without a commit is never read. On local disk they are views
over the files that version names (absolute paths), so both files stay small; a lake on object
storage is loaded into the warehouse instead (DuckDB reads no ``s3://`` here): ``lake_relation``.
The ``features.*`` views (``features/daily.py``) are made the same way; ``dims.*`` are tables
loaded from the catalog's Delta tables (``dims/<name>``) on either store.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from pathlib import Path

import duckdb
import pyarrow as pa

from tiktok_pipelines.ingest.engine import (
    INGEST_LOG_DIR,
    INGEST_LOG_SCHEMA,
    QUARANTINE_DIR,
    QUARANTINE_SCHEMA,
    Lake,
    events_schema,
    events_table,
    table_source,
)
from tiktok_pipelines.dims import dim_dataset
from tiktok_pipelines.lake import atomic_replace, fsync_path
from tiktok_pipelines.schemas import CATALOG, STREAMS
from tiktok_pipelines.tables import TableStore

# Where the warehouse records the lake's point in time: one row per raw relation.
LAKE_VERSIONS = "raw._lake_versions"


def _empty_select(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> str:
    """A typed, empty SELECT with ``schema``'s columns (DuckDB's own mapping of the Arrow types)."""
    rel = con.from_arrow(schema.empty_table())
    cols = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in zip(rel.columns, rel.types))
    return f"SELECT {cols} WHERE false"


def _drop_if_kind(con: duckdb.DuckDBPyConnection, schema: str, name: str, kind: str) -> None:
    """Drop ``schema.name`` if it exists as a ``kind`` ('VIEW' or 'TABLE'): a lake that moved
    between local disk and object storage turns views into tables or back."""
    catalog = "duckdb_views()" if kind == "VIEW" else "duckdb_tables()"
    name_col = "view_name" if kind == "VIEW" else "table_name"
    hit = con.execute(
        f"SELECT count(*) FROM {catalog} WHERE database_name = current_database() "
        f"AND schema_name = ? AND {name_col} = ?", [schema, name]
    ).fetchall()[0][0]
    if hit:
        con.execute(f'DROP {kind} "{schema}"."{name}"')


def _lake_tables() -> list[tuple[str, str, pa.Schema]]:
    """(relation, lake table, schema), in the order they are read: the ingest log first. A batch
    commits its ingest-log rows after its events and quarantine rows, so the versions read after
    the log's hold every batch the log lists."""
    return [
        ("ingest_log", INGEST_LOG_DIR, INGEST_LOG_SCHEMA),
        ("quarantine", QUARANTINE_DIR, QUARANTINE_SCHEMA),
        *[(stream, events_table(stream), events_schema(stream)) for stream in STREAMS],
    ]


def lake_relation(con: duckdb.DuckDBPyConnection, target: str, lake: Lake, table: str, *,
                  version: int | None, empty: str, select: str = "*", date_column: str = "event_date") -> int:
    """(Re)create the relation ``target`` (``schema.name``) over lake table ``table`` at the
    committed ``version`` (None: the table does not exist yet); returns its row count.

    On local disk it is a view over the files that version names (``table_source``: never a
    glob, so a file no commit names is not read; the files stay until a vacuum past its retention
    removes them). On object storage the version's rows are loaded into a table (DuckDB reads no
    ``s3://`` here). A table whose version names no file gives the typed empty view ``empty`` (a
    SELECT). ``select``: the select list over the table's columns."""
    schema, name = target.split(".", 1)
    quoted = f'"{schema}"."{name}"'
    source = None if version is None else table_source(con, lake, table, version=version, date_column=date_column)
    if source is not None and not lake.store.is_local:
        _drop_if_kind(con, schema, name, "VIEW")
        con.execute(f"CREATE OR REPLACE TABLE {quoted} AS SELECT {select} FROM {source}")
        con.unregister(source)
    else:
        _drop_if_kind(con, schema, name, "TABLE")
        body = f"SELECT {select} FROM {source}" if source is not None else empty
        con.execute(f"CREATE OR REPLACE VIEW {quoted} AS {body}")
    return con.execute(f"SELECT count(*) FROM {quoted}").fetchall()[0][0]


def lake_relations() -> list[str]:
    """Every relation ``refresh_lake_views`` makes: ``raw.<relation>`` then ``dims.<name>``."""
    return [f"raw.{relation}" for relation, _, _ in _lake_tables()] + [f"dims.{name}" for name in CATALOG]


def refresh_lake_views(con: duckdb.DuckDBPyConnection, lake_root: Path | str,
                       store: TableStore | None = None, *,
                       relations: Collection[str] | None = None) -> dict[str, int]:
    """(Re)create ``raw.*`` over the lake's committed Delta versions and ``dims.*`` tables; returns
    row counts of the relations it (re)created.

    ``relations``: only these (names as ``lake_relations`` gives them, e.g. ``"raw.views"``,
    ``"dims.users"``; an unknown name raises ValueError); None: all of them. The others are left
    as they are, and so are their rows in ``raw._lake_versions``: the refreshed raw relations'
    rows are replaced (the table is created if missing), so it keeps one row per raw relation,
    each the version its relation reads now.

    Each table is read at the version that is newest when the refresh gets to it, recorded in
    ``raw._lake_versions`` (relation, table_name, version; NULL: no such table yet). On local
    disk ``raw.<relation>`` is a view over the files that version names (as ``table_source``
    gives them), never a glob: a file a writer put in the table's folder but never committed is
    not read, and a batch committing later shows up at the next refresh. On object storage the
    version's rows are loaded into a table (``lake_relation``). A table that does not exist yet,
    or whose version holds no file, gives a typed empty view. Everything is replaced in one
    transaction: a failed refresh leaves the previous relations.

    ``dims.<name>``: the catalog's Delta table ``dims/<name>`` (``tiktok_pipelines.dims``, what
    ``dim_<name>`` publishes) at its newest version, loaded into a table on either store (the
    dims are small and every staging model joins them); left as it is while the lake has no such
    table (``dim_<name>`` has not run).
    """
    if relations is not None:
        unknown = sorted(set(relations) - set(lake_relations()))
        if unknown:
            raise ValueError(f"refresh_lake_views: no such lake relation(s) {unknown}; "
                             f"known: {lake_relations()}")
        wanted = set(relations)
    else:
        wanted = set(lake_relations())
    lake = Lake(lake_root, store)
    counts: dict[str, int] = {}
    versions: list[tuple[str, str, int | None]] = []
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        con.execute("CREATE SCHEMA IF NOT EXISTS dims")
        for relation, table, schema in _lake_tables():  # in this order: the ingest log first
            if f"raw.{relation}" not in wanted:
                continue
            version = lake.store.version(table)
            counts[f"raw.{relation}"] = lake_relation(con, f"raw.{relation}", lake, table, version=version,
                                                      empty=_empty_select(con, schema))
            versions.append((f"raw.{relation}", table, version))
        con.execute(f"CREATE TABLE IF NOT EXISTS {LAKE_VERSIONS} (relation VARCHAR, table_name VARCHAR, version BIGINT)")
        if relations is None:
            con.execute(f"DELETE FROM {LAKE_VERSIONS}")  # all of it, as before: no row outlives its relation
        elif versions:
            con.execute(f"DELETE FROM {LAKE_VERSIONS} WHERE relation IN ({', '.join('?' * len(versions))})",
                        [v[0] for v in versions])
        if versions:
            con.executemany(f"INSERT INTO {LAKE_VERSIONS} VALUES (?, ?, ?)", versions)
        for name in CATALOG:
            if f"dims.{name}" not in wanted:
                continue
            ds = dim_dataset(lake.store, name)
            if ds is None:
                continue
            alias = f"_dim_{name}"
            con.register(alias, ds)
            try:
                _drop_if_kind(con, "dims", name, "VIEW")
                con.execute(f'CREATE OR REPLACE TABLE dims."{name}" AS SELECT * FROM {alias}')
            finally:
                con.unregister(alias)
            counts[f"dims.{name}"] = con.execute(f'SELECT count(*) FROM dims."{name}"').fetchall()[0][0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return counts


def lake_versions(con: duckdb.DuckDBPyConnection) -> dict[str, int | None]:
    """The lake table versions the warehouse's ``raw.*`` read at its last refresh, by table name."""
    return dict(con.execute(f"SELECT table_name, version FROM {LAKE_VERSIONS} ORDER BY ALL").fetchall())


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
