"""The warehouse's raw.* read the lake's committed Delta versions only (issue 15, finding 6; issue 16).

A glob over the lake's folders reads what no commit names: once, between a kill -9 and the rerun,
1,816,166 rows in raw.views of which 1,362,076 were committed. A writer that dies after moving a
table's Parquet files into its folder and before the Delta commit that names them leaves exactly
such files. raw.* must show the version the refresh read (recorded in raw._lake_versions) and
nothing else; every committed version is final data (a batch that died half-committed is finished
by the next writer, never rolled back), so what is committed shows even before the ingest log
lists its batch.
"""

from __future__ import annotations

import duckdb
import pytest
from deltalake import DeltaTable

from tests.ingest.conftest import FLUSHED_AT_MS, dumps, valid_record, write_landing
from tiktok_pipelines.ingest.engine import Lake, ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.warehouse import lake_versions, refresh_lake_views

DAY_MS = 86_400_000


def _ingest_dying_at_commit(landing, lake, monkeypatch, table: str) -> str:
    """Ingest what is pending in ``landing``; the process 'dies' in the Delta commit of ``table``,
    after that table's Parquet files were moved into its folder and before the commit names them
    (the tables before it in the batch's order commit). Returns the dead batch's id."""
    real = DeltaTable.create_write_transaction

    def dying(self, *args, **kwargs):
        if self.table_uri.rstrip("/").endswith(table):
            raise OSError(f"simulated crash before the commit of {table}")
        return real(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(DeltaTable, "create_write_transaction", dying)
        with pytest.raises(OSError, match="simulated crash"):
            ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    _, plan = Lake(lake).state()
    assert plan is not None, "the dead batch should still be in flight"
    return plan["batch_id"]


def _refresh(tmp_path, lake) -> dict[str, int]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    try:
        return refresh_lake_views(con, lake)
    finally:
        con.close()


def _rows_in_folder(lake, stream: str) -> int:
    """Every Parquet file under the table's folder, committed or not (what a glob would read)."""
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{lake}/events/{stream}/*/*.parquet')").fetchall()[0][0]


def _delta_versions(lake) -> dict[str, int | None]:
    store = Lake(lake).store
    return {t: store.version(t) for t in ["ingest_log", "quarantine", *(f"events/{s}" for s in STREAMS)]}


def test_raw_shows_the_committed_version_only(tmp_path, monkeypatch):
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    views = STREAMS["views"]
    write_landing(landing, "views", [dumps(valid_record(views, i, event_id=f"c{i}")) for i in range(10)], seq=1)
    assert ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake).batch_id

    # The next batch: two dates, a quarantined line, and a stream the lake had no table for. Its
    # writer commits events/orders, moves the views files in and dies before their commit.
    recs = [valid_record(views, i, event_id=f"u{i}") for i in range(7)]
    for r in recs[:3]:
        r["ts_ms"] -= DAY_MS
    write_landing(landing, "views", [dumps(r) for r in recs] + ["{broken"], seq=2,
                  flushed_at_ms=FLUSHED_AT_MS + 1000)
    write_landing(landing, "orders", [dumps(valid_record(STREAMS["orders"], i)) for i in range(4)], seq=3)
    dead = _ingest_dying_at_commit(landing, lake, monkeypatch, "events/views")
    assert _rows_in_folder(lake, "views") == 17  # the uncommitted files are in the table's folder

    committed = _delta_versions(lake)
    assert committed["events/orders"] is not None and committed["quarantine"] is None
    counts = _refresh(tmp_path, lake)
    assert counts["raw.views"] == 10  # the dead writer's files in the folder are not read
    assert counts["raw.orders"] == 4  # a committed version is final, logged or not yet
    assert counts["raw.quarantine"] == 0
    assert counts["raw.ingest_log"] == 1  # one file, one commit record
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert lake_versions(con) == committed  # the point in time, for analysts
    assert set(STREAMS) | {"quarantine", "ingest_log"} <= {
        r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE schema_name = 'raw'").fetchall()
    }
    # The table that does not exist yet keeps its schema.
    cols = {r[0]: r[1] for r in con.execute("DESCRIBE raw.quarantine").fetchall()}
    assert {"stream", "reason", "raw_line", "batch_id"} <= set(cols) and cols["src_line"] == "BIGINT"
    assert con.execute("SELECT count(*) FROM raw.views WHERE event_id LIKE 'u%'").fetchall() == [(0,)]
    con.close()

    # The rerun finishes the dead batch. Until the next refresh the warehouse still reads the
    # versions it recorded; the refresh then shows it all, at the new versions.
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    assert report.resumed_batches == [dead]
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM raw.views").fetchall() == [(10,)]
    con.close()
    counts = _refresh(tmp_path, lake)
    assert counts["raw.views"] == 17
    assert counts["raw.orders"] == 4
    assert counts["raw.quarantine"] == 1
    assert counts["raw.ingest_log"] == 3
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    now = _delta_versions(lake)
    assert lake_versions(con) == now and now["events/views"] > committed["events/views"]
    assert con.execute("SELECT count(DISTINCT _batch_id) FROM raw.views WHERE event_id LIKE 'u%'").fetchall() == [(1,)]
    con.close()


def test_a_lake_with_no_committed_batch_gives_typed_empty_views(tmp_path, monkeypatch):
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    views = STREAMS["views"]
    write_landing(landing, "views", [dumps(valid_record(views, i)) for i in range(5)] + ["{broken"], seq=1)
    _ingest_dying_at_commit(landing, lake, monkeypatch, "events/views")
    assert _rows_in_folder(lake, "views") == 5
    counts = _refresh(tmp_path, lake)
    assert all(counts[f"raw.{s}"] == 0 for s in STREAMS)
    assert counts["raw.quarantine"] == 0 and counts["raw.ingest_log"] == 0
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    for stream in ("views", "orders"):  # a table created empty by the dead writer; no table at all
        cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE raw.{stream}").fetchall()}
        assert set(STREAMS[stream].field_names) <= set(cols) and cols["event_date"] == "DATE"
        assert cols["_payload_hash"] == "BIGINT"
    cols = {r[0]: r[1] for r in con.execute("DESCRIBE raw.ingest_log").fetchall()}
    assert cols["batch_id"] == "VARCHAR" and cols["rows_read"] == "BIGINT"
    versions = lake_versions(con)
    assert versions["events/views"] == 0  # the empty create, no batch
    assert versions["ingest_log"] is None and versions["events/orders"] is None
    con.close()


def test_raw_reads_the_committed_version_on_both_stores(tmp_path, lake_root):
    """On local disk raw.* are views over the version's files. DuckDB reads no s3:// here (no
    httpfs offline): from object storage the warehouse loads each table's committed version from
    its Arrow dataset into a table. Both record the versions they read."""
    landing = tmp_path / "landing"
    store = Lake(lake_root).store
    views = STREAMS["views"]
    write_landing(landing, "views", [dumps(valid_record(views, i)) for i in range(6)] + ["{broken"], seq=1)
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake_root)

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    counts = refresh_lake_views(con, lake_root)
    assert counts["raw.views"] == 6 and counts["raw.quarantine"] == 1 and counts["raw.ingest_log"] == 1
    assert counts["raw.orders"] == 0
    kinds = dict(con.execute("SELECT table_name, 'table' FROM duckdb_tables() WHERE schema_name = 'raw' UNION ALL "
                             "SELECT view_name, 'view' FROM duckdb_views() WHERE schema_name = 'raw'").fetchall())
    assert kinds["views"] == ("view" if store.is_local else "table")
    assert kinds["orders"] == "view"  # no table yet: typed and empty
    assert lake_versions(con) == {t: store.version(t) for t in lake_versions(con)}
    assert lake_versions(con)["events/views"] == 1
    assert con.execute("SELECT count(*) FROM raw.views WHERE event_date = DATE '2026-11-02'").fetchall() == [(6,)]

    write_landing(landing, "views", [dumps(valid_record(views, i, event_id=f"n{i}")) for i in range(3)], seq=2,
                  flushed_at_ms=FLUSHED_AT_MS + 1000)
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake_root)
    counts = refresh_lake_views(con, lake_root)
    assert counts["raw.views"] == 9 and counts["raw.ingest_log"] == 2
    assert lake_versions(con)["events/views"] == 2
    con.close()


def test_dims_are_loaded_from_the_catalogs_delta_tables_on_both_stores(tmp_path, lake_root):
    """dims.* are the committed snapshot of the lake's ``dims/<name>`` tables (what dim_* publish),
    from local disk or a bucket: each publication replaces the table whole, the next refresh shows
    it, a Parquet file no commit names is not read, and a dim never published is left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.s3 import is_s3
    from tiktok_pipelines.dims import dim_table, publish_dim

    store = Lake(lake_root).store
    users = pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "age_band": ["18-24", None, "25-34"],
                      "country": pa.nulls(3)})  # an all-NULL column of no type: the contract's (string)
    first = publish_dim(store, "users", users)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    counts = refresh_lake_views(con, lake_root)
    assert counts["dims.users"] == 3 and "dims.videos" not in counts
    cols = {r[0]: r[1] for r in con.execute("DESCRIBE dims.users").fetchall()}
    assert cols == {"user_id": "BIGINT", "age_band": "VARCHAR", "country": "VARCHAR"}
    assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'dims' "
                           "AND table_name = 'videos'").fetchall()[0][0]

    assert publish_dim(store, "users", users.slice(0, 2)) == first + 1  # replaced whole
    if not is_s3(lake_root):  # a stray file in the table's folder, named by no commit
        pq.write_table(users, f"{store.uri(dim_table('users'))}/part-stray.parquet")
    assert refresh_lake_views(con, lake_root)["dims.users"] == 2
    assert con.execute("SELECT list(user_id ORDER BY user_id) FROM dims.users").fetchall() == [([1, 2],)]
    con.close()


def test_refresh_of_some_relations_leaves_the_others_and_their_versions(tmp_path):
    """``relations=``: only the named raw.* / dims.* are remade (one transaction); the others keep
    what they read, and raw._lake_versions keeps their rows while the refreshed ones' rows move on."""
    import pyarrow as pa

    from tiktok_pipelines.dims import publish_dim

    landing, lake = tmp_path / "landing", tmp_path / "lake"
    store = Lake(lake).store
    views, orders = STREAMS["views"], STREAMS["orders"]
    write_landing(landing, "views", [dumps(valid_record(views, i)) for i in range(4)], seq=1)
    write_landing(landing, "orders", [dumps(valid_record(orders, i)) for i in range(2)], seq=2)
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    users = pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "age_band": ["a", "b", "c"],
                      "country": ["x", "y", "z"]})
    publish_dim(store, "users", users)

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    # A warehouse that never had a full refresh: the versions table is created.
    assert refresh_lake_views(con, lake, relations=["raw.orders"]) == {"raw.orders": 2}
    assert lake_versions(con) == {"events/orders": store.version("events/orders")}
    assert not con.execute("SELECT count(*) FROM duckdb_views() WHERE schema_name = 'raw' "
                           "AND view_name = 'views'").fetchall()[0][0]
    full = refresh_lake_views(con, lake)
    assert full["raw.views"] == 4 and full["dims.users"] == 3
    before = lake_versions(con)
    assert set(before) == set(_delta_versions(lake))

    # More views, orders and users land; only raw.views and dims.users are refreshed.
    write_landing(landing, "views", [dumps(valid_record(views, i, event_id=f"n{i}")) for i in range(3)], seq=3,
                  flushed_at_ms=FLUSHED_AT_MS + 1000)
    write_landing(landing, "orders", [dumps(valid_record(orders, i, event_id=f"n{i}")) for i in range(5)], seq=4,
                  flushed_at_ms=FLUSHED_AT_MS + 1000)
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    publish_dim(store, "users", users.slice(0, 1))
    counts = refresh_lake_views(con, lake, relations={"raw.views", "dims.users"})
    assert counts == {"raw.views": 7, "dims.users": 1}
    assert con.execute("SELECT count(*) FROM raw.orders").fetchall() == [(2,)]  # still the old version
    after = lake_versions(con)
    assert after["events/views"] == store.version("events/views") > before["events/views"]
    assert {t: v for t, v in after.items() if t != "events/views"} == \
        {t: v for t, v in before.items() if t != "events/views"}
    assert con.execute("SELECT count(*), count(DISTINCT relation) FROM raw._lake_versions").fetchall() == \
        [(len(before), len(before))]  # one row per raw relation, no duplicate

    with pytest.raises(ValueError, match="no such lake relation"):
        refresh_lake_views(con, lake, relations=["raw.nope"])
    # A refresh that fails part-way leaves everything as it was (one transaction): more views
    # land, and a file the newest orders version names is lost, so raw.orders fails after
    # raw.views was remade.
    write_landing(landing, "views", [dumps(valid_record(views, i, event_id=f"m{i}")) for i in range(2)], seq=5,
                  flushed_at_ms=FLUSHED_AT_MS + 2000)
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    old_files = set(store.add_actions("events/orders", before["events/orders"]).column("path").to_pylist())
    new_files = set(store.add_actions("events/orders", None).column("path").to_pylist()) - old_files
    assert new_files
    for f in new_files:
        (lake / "events" / "orders" / f).unlink()
    with pytest.raises(duckdb.Error):
        refresh_lake_views(con, lake, relations=["raw.orders", "raw.views"])
    assert con.execute("SELECT count(*) FROM raw.views").fetchall() == [(7,)]
    assert con.execute("SELECT count(*) FROM raw.orders").fetchall() == [(2,)]
    assert lake_versions(con) == after
    con.close()
