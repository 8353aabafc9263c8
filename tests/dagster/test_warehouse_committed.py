"""The warehouse's raw.* views name the lake's committed files only (issue 15, finding 6).

A batch moves its Parquet files into the lake and then writes its commit record (ingest_log/
batch-<id>.parquet). Between a kill -9 there and the rerun that rolls the batch back, a glob over
the lake read the uncommitted rows too: 1,816,166 rows in raw.views of which 1,362,076 were
committed. Here the crash falls after every Parquet file is in place and before the commit.
"""

from __future__ import annotations

import os

import duckdb
import pytest

from tests.ingest.conftest import FLUSHED_AT_MS, dumps, valid_record, write_landing
from tiktok_pipelines.ingest import engine
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.warehouse import refresh_lake_views

DAY_MS = 86_400_000


def _ingest_dying_before_commit(landing, lake, monkeypatch) -> None:
    """Ingest what is pending in ``landing``; the process 'dies' when it renames the commit record
    into place, after all of the batch's Parquet files were moved into the lake."""
    real_replace = os.replace

    def dying_replace(src, dst):
        if "/_staging/" in str(src) and "ingest_log" in str(src):
            raise OSError("simulated crash before the commit record")
        return real_replace(src, dst)

    monkeypatch.setattr(engine.os, "replace", dying_replace)
    try:
        with pytest.raises(OSError, match="before the commit record"):
            ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    finally:
        monkeypatch.setattr(engine.os, "replace", real_replace)
    assert list((lake / "_pending").glob("*.json")), "the dead batch should still be pending"


def _counts(tmp_path, lake) -> dict[str, int]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    try:
        return refresh_lake_views(con, lake)
    finally:
        con.close()


def _files_in_lake(lake, stream: str) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{lake}/events/{stream}/*/*.parquet')").fetchall()[0][0]


def test_raw_views_count_committed_rows_only(tmp_path, monkeypatch):
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    views = STREAMS["views"]
    write_landing(landing, "views", [dumps(valid_record(views, i, event_id=f"c{i}")) for i in range(10)], seq=1)
    assert ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake).batch_id

    # The next batch: two dates, a quarantined line, and a stream the lake had no file of.
    recs = [valid_record(views, i, event_id=f"u{i}") for i in range(7)]
    for r in recs[:3]:
        r["ts_ms"] -= DAY_MS
    write_landing(landing, "views", [dumps(r) for r in recs] + ["{broken"], seq=2,
                  flushed_at_ms=FLUSHED_AT_MS + 1000)
    write_landing(landing, "orders", [dumps(valid_record(STREAMS["orders"], i)) for i in range(4)], seq=3)
    _ingest_dying_before_commit(landing, lake, monkeypatch)
    assert _files_in_lake(lake, "views") == 17  # the uncommitted rows are in the lake's folders

    counts = _counts(tmp_path, lake)
    assert counts["raw.views"] == 10
    assert counts["raw.orders"] == 0
    assert counts["raw.quarantine"] == 0
    assert counts["raw.ingest_log"] == 1  # one file, one commit record
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    # Still views over the lake's files; the stream with only uncommitted files keeps its schema.
    kinds = dict(con.execute("SELECT view_name, 1 FROM duckdb_views() WHERE schema_name = 'raw'").fetchall())
    assert set(STREAMS) | {"quarantine", "ingest_log"} <= set(kinds)
    cols = {r[0]: r[1] for r in con.execute("DESCRIBE raw.orders").fetchall()}
    assert set(STREAMS["orders"].field_names) <= set(cols) and cols["event_date"] == "DATE"
    assert con.execute("SELECT count(DISTINCT event_id) FROM raw.views WHERE event_id LIKE 'u%'").fetchall() == [(0,)]
    con.close()

    # The rerun rolls the dead batch back and commits it again; a refresh then shows it all.
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    assert report.rolled_back_batches
    counts = _counts(tmp_path, lake)
    assert counts["raw.views"] == 17
    assert counts["raw.orders"] == 4
    assert counts["raw.quarantine"] == 1
    assert counts["raw.ingest_log"] == 3


def test_a_lake_whose_only_batch_died_gives_typed_empty_views(tmp_path, monkeypatch):
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    views = STREAMS["views"]
    write_landing(landing, "views", [dumps(valid_record(views, i)) for i in range(5)] + ["{broken"], seq=1)
    _ingest_dying_before_commit(landing, lake, monkeypatch)
    counts = _counts(tmp_path, lake)
    assert counts["raw.views"] == 0 and counts["raw.quarantine"] == 0 and counts["raw.ingest_log"] == 0
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    cols = {r[0]: r[1] for r in con.execute("DESCRIBE raw.views").fetchall()}
    assert set(views.field_names) <= set(cols) and cols["event_date"] == "DATE"
    con.close()
