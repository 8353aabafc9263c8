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

The analysts' copy carries no absolute path: ``publish_analytics`` rewrites those views to name
the files relative to its folder, where DuckDB finds them from that folder (the working
directory) or with ``SET file_search_path`` to it (``connect_analytics``); copying the file and the
lake together keeps it working. Its relations and columns carry the data dictionary's comments.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Collection, Mapping
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
from tiktok_pipelines.publish import atomic_replace, fsync_path, staging_file
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


# A relation's documentation for the analysts' copy: (its description or None, {column: description}).
RelationDoc = tuple[str | None, Mapping[str, str]]

# An absolute path as a SQL string literal (quotes doubled inside): what ``sql_path`` writes.
_ABS_LITERAL = re.compile(r"'(/(?:[^']|'')*)'")


def _quote_ident(*parts: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def _quote_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _absolute_files(sql: str) -> list[str]:
    """The absolute paths of existing files that ``sql`` names as string literals."""
    found = (m.group(1).replace("''", "'") for m in _ABS_LITERAL.finditer(sql))
    return [f for f in found if os.path.isfile(f)]


def _relative_views(con: duckdb.DuckDBPyConnection, base: Path) -> int:
    """Rewrite every view that names files by absolute path (``raw.*`` and ``features.*`` over a
    local lake) to name them relative to ``base``, the analytics file's folder; returns how many
    views changed. DuckDB resolves a relative path against ``file_search_path`` (set to ``base``
    on ``con``, as every reader of the copy sets it) or else the working directory, so the copy
    and the lake move together. A view that names a file outside ``base`` gets ``../`` parts."""
    views = con.execute("SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal "
                        "AND database_name = current_database()").fetchall()
    changed = 0
    for schema, view, sql in views:
        if not _absolute_files(sql):
            continue

        def relative(m: re.Match) -> str:
            path = m.group(1).replace("''", "'")
            return _quote_str(os.path.relpath(path, base)) if os.path.isfile(path) else m.group(0)

        con.execute(f"DROP VIEW {_quote_ident(schema, view)}")  # DuckDB binds dependent views lazily
        con.execute(_ABS_LITERAL.sub(relative, sql))
        changed += 1
    return changed


def absolute_paths(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Views (``schema.name``) whose SQL names an existing file by absolute path, with those paths:
    none in a published copy."""
    out = {}
    for schema, view, sql in con.execute("SELECT schema_name, view_name, sql FROM duckdb_views() "
                                         "WHERE NOT internal AND database_name = current_database()").fetchall():
        files = _absolute_files(sql)
        if files:
            out[f"{schema}.{view}"] = files
    return out


def comment_relations(con: duckdb.DuckDBPyConnection, docs: Mapping[str, RelationDoc]) -> int:
    """``COMMENT ON`` every relation of ``docs`` (``schema.name``) that exists and every column of it
    that ``docs`` describes; returns the number of column comments set. A relation or column the
    database lacks is skipped (a model not built yet, a feature table not published yet)."""
    kinds = dict(((s, n), k) for s, n, k in con.execute(
        "SELECT schema_name, table_name, 'TABLE' FROM duckdb_tables() WHERE NOT internal "
        "AND database_name = current_database() UNION ALL "
        "SELECT schema_name, view_name, 'VIEW' FROM duckdb_views() WHERE NOT internal "
        "AND database_name = current_database()").fetchall())
    columns: dict[tuple[str, str], set[str]] = {}
    for s, n, c in con.execute("SELECT schema_name, table_name, column_name FROM duckdb_columns() "
                               "WHERE NOT internal AND database_name = current_database()").fetchall():
        columns.setdefault((s, n), set()).add(c)
    set_columns = 0
    for relation, (description, column_docs) in docs.items():
        schema, name = relation.split(".", 1)
        kind = kinds.get((schema, name))
        if kind is None:
            continue
        ident = _quote_ident(schema, name)
        if description:
            con.execute(f"COMMENT ON {kind} {ident} IS {_quote_str(' '.join(description.split()))}")
        present = {c.lower(): c for c in columns.get((schema, name), ())}
        for column, text in column_docs.items():
            actual = present.get(column.lower())
            if actual is None or not text:
                continue
            con.execute(f"COMMENT ON COLUMN {ident}.{_quote_ident(actual)} IS {_quote_str(' '.join(text.split()))}")
            set_columns += 1
    return set_columns


class PublishError(RuntimeError):
    """analytics.duckdb was not published (the previous file, if any, is left as it was)."""


def wal_path(db: Path) -> Path:
    """DuckDB's write-ahead log for ``db``: beside it, found by name."""
    return db.with_name(db.name + ".wal")


def connect_analytics(path: Path | str) -> duckdb.DuckDBPyConnection:
    """Open the analysts' copy as the README says to: read-only, with ``file_search_path`` set to
    its folder (the views name the lake's files relative to it)."""
    path = Path(path).absolute()
    return duckdb.connect(str(path), read_only=True, config={"file_search_path": str(path.parent)})


def check_analytics(path: Path) -> int:
    """Open ``path`` as analysts do (``connect_analytics``: read-only, relative paths resolved
    against its folder) and read a row from every view (a view whose Parquet files or relations
    are gone fails here); a view naming a file by absolute path fails too. Returns the number of
    views; raises what DuckDB raises (or ValueError)."""
    con = connect_analytics(path)
    try:
        absolute = absolute_paths(con)
        if absolute:
            raise ValueError(f"views name files by absolute path (the copy would break when moved): "
                             f"{sorted(absolute)}")
        views = con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal ORDER BY ALL"
        ).fetchall()
        for schema, view in views:
            ident = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, view))
            con.execute(f"SELECT * FROM {ident} LIMIT 1").fetchall()
        return len(views)
    finally:
        con.close()


def publish_analytics(warehouse: Path, analytics: Path, docs: Mapping[str, RelationDoc] | None = None) -> int:
    """Publish the (closed) warehouse as the analysts' file: a new file, swapped in by rename.
    Returns the published size in bytes.

    1. Copy the warehouse to a temp file beside ``analytics`` (with its WAL, if a writer died
       before checkpointing) and open the copy read-write. Views that name the lake's files by
       absolute path (the warehouse's ``raw.*`` and ``features.*`` on local disk) are rewritten
       to name them relative to ``analytics``' folder, so the file and the lake can be copied
       together; readers resolve them from that folder or with ``SET file_search_path`` to it
       (``connect_analytics``). ``docs`` (``schema.name`` -> (description, {column: text}), the
       data dictionary's source) become ``COMMENT ON`` the relations and their columns. Then
       CHECKPOINT: the new file holds everything and has no WAL of its own.
    2. Make it read-only on disk (0444) and check it as an analyst opens it: read-only, a row from
       every view. Any failure up to here raises ``PublishError`` and leaves the previous file
       (and everything beside it) as it was; the temp files are removed.
    3. Remove ``analytics.duckdb.wal``, rename the new file over ``analytics``, remove the WAL
       again, and check the published path read-only. A WAL there belongs to the old file (an
       analyst's read-write session, perhaps killed with kill -9); DuckDB refuses to open a file
       whose WAL does not match it, read-only or not, so one left there broke every open after.
       A session still holding the old file keeps the old inode (and its lock) to itself.
    """
    with staging_file(analytics) as tmp:  # removed, with its WAL, if anything below raises
        try:
            shutil.copyfile(warehouse, tmp)
            if wal_path(warehouse).exists():
                shutil.copyfile(wal_path(warehouse), wal_path(tmp))
            con = duckdb.connect(str(tmp), config={"file_search_path": str(analytics.parent.absolute())})
            try:
                con.execute("BEGIN TRANSACTION")
                _relative_views(con, analytics.parent.absolute())
                comment_relations(con, docs or {})
                con.execute("COMMIT")
                con.execute("CHECKPOINT")
            finally:
                con.close()
            if wal_path(tmp).exists():
                raise PublishError(f"{analytics} not published, the previous file stays: the new file "
                                   f"{tmp} kept a WAL after its checkpoint")
            os.chmod(tmp, 0o444)  # published read-only: analysts query it, nobody writes it in place
            check_analytics(tmp)
        except Exception as e:
            if isinstance(e, PublishError):
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
