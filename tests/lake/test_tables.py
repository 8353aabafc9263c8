"""The lake's Delta tables (tiktok_pipelines/tables.py) on local disk and on a real S3 endpoint:
a batch commits once however often it is retried and however many writers race; readers see
committed versions only; an engine that knows only Delta reads the tables without project code."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tests.lake.commit_worker import rows
from tests.lake.conftest import worker_env
from tiktok_pipelines.tables import TableStore

REPO = Path(__file__).resolve().parents[2]


def _event_ids(store: TableStore, name: str, version: int | None = None) -> Counter:
    return Counter(store.dataset(name, version).to_table(columns=["event_id"]).column("event_id").to_pylist())


def test_a_batch_commits_once_however_often_it_is_retried(store: TableStore) -> None:
    assert store.table("views") is None and store.dataset("views") is None
    v1 = store.commit("views", rows("b1", "w"), txn="ingest:b1", partition_by=["event_date"])
    # version 0 creates the (empty) table; the batch is version 1
    assert v1 == 1 and store.committed("views", "ingest:b1") and sum(_event_ids(store, "views", 0).values()) == 0
    assert store.commit("views", rows("b1", "w"), txn="ingest:b1") is None  # a retry: nothing
    v2 = store.commit("views", rows("b2", "w"), txn="ingest:b2")
    assert v2 == 2 and store.version("views") == 2
    ids = _event_ids(store, "views")
    assert len(ids) == 20 and set(ids.values()) == {1}
    # time travel: version 1 holds the first batch only
    assert set(_event_ids(store, "views", 1)) == {f"b1-{i}" for i in range(10)}
    assert not store.committed("views", "ingest:b3")


def test_racing_writers_commit_every_batch_exactly_once(store: TableStore) -> None:
    """Four processes commit 24 batches; every batch is offered by two of them at once."""
    batches = [f"r{i}" for i in range(24)]
    plan = {f"w{k}": [b for i, b in enumerate(batches) if i % 4 in (k, (k + 1) % 4)] for k in range(4)}
    endpoint = store.storage_options.get("AWS_ENDPOINT_URL", "")
    procs = [subprocess.Popen([sys.executable, "-m", "tests.lake.commit_worker", store.root, endpoint, "views", w, *bs],
                              cwd=REPO, env=worker_env(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for w, bs in plan.items()]
    outcomes: Counter = Counter()
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        outcomes.update(line.split()[0] for line in out.splitlines())
    assert outcomes == {"committed": 24, "skipped": 24}
    ids = _event_ids(store, "views")
    assert len(ids) == 240 and set(ids.values()) == {1}
    assert all(store.committed("views", f"ingest:{b}") for b in batches)


def test_an_engine_that_knows_only_delta_reads_the_table(store: TableStore) -> None:
    for b in ("x1", "x2", "x3"):
        store.commit("views", rows(b, "w"), txn=f"ingest:{b}", partition_by=["event_date"])
    options = store.storage_options or None
    uri = store.uri("views")
    # polars' own Delta reader, and DuckDB over delta-rs's Arrow dataset: no project code
    lf = pl.scan_delta(uri, storage_options=options)
    assert lf.select(pl.len()).collect().item() == 30
    assert lf.filter(pl.col("event_id") == "x2-3").collect().height == 1
    dataset = DeltaTable(uri, storage_options=options).to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("views", dataset)
    assert con.sql("SELECT count(DISTINCT event_id), count(DISTINCT event_date) FROM views").fetchall()[0][0] == 30


def test_configuration_names_the_store(tmp_path: Path, monkeypatch) -> None:
    local = TableStore.from_config(tmp_path / "lake")
    assert local.is_local and local.root == str((tmp_path / "lake").absolute()) and local.storage_options == {}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    s3 = TableStore.from_config("s3://bucket/prefix/")
    assert s3.root == "s3://bucket/prefix" and s3.uri("views") == "s3://bucket/prefix/views"
    assert s3.storage_options == {"aws_conditional_put": "etag", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
                                  "AWS_REGION": "eu-west-1", "AWS_ALLOW_HTTP": "true"}
    https = TableStore.from_config("s3://bucket", endpoint_url="https://s3.example.com", region="us-east-1")
    assert "AWS_ALLOW_HTTP" not in https.storage_options  # plain http only for an http endpoint
    with pytest.raises(ValueError, match="s3://"):
        TableStore.from_config("gs://bucket/lake")
    assert "SECRET" not in str(s3.describe())


def test_an_empty_batch_still_records_its_commit(store: TableStore) -> None:
    """A batch whose rows all went elsewhere (quarantine) still commits its id to the table, so a
    retry knows it is done."""
    schema = rows("e", "w").schema
    store.commit("views", rows("e0", "w"), txn="ingest:e0", partition_by=["event_date"])
    assert store.commit("views", schema.empty_table(), txn="ingest:e1") is not None
    assert store.committed("views", "ingest:e1") and store.commit("views", schema.empty_table(), txn="ingest:e1") is None
    assert sum(_event_ids(store, "views").values()) == 10
    assert isinstance(store.dataset("views").schema, pa.Schema)


def test_batch_transaction_ids_expire_after_the_retention_but_not_the_lease(store):
    """Old batch ids leave the snapshot (it would otherwise grow by one id per batch forever);
    the lease's single id never does."""
    import time

    import pyarrow as pa
    from deltalake import CommitProperties, Transaction, write_deltalake

    from tiktok_pipelines.tables import BATCH_TABLE_CONFIG

    store.commit("t", pa.table({"a": [1]}), txn="ingest:new")
    t = store.table("t")
    assert t.metadata().configuration == BATCH_TABLE_CONFIG
    month_ago = int(time.time() * 1000) - 31 * 86_400_000
    write_deltalake(t, pa.table({"a": [2]}), mode="append", storage_options=store.storage_options or None,
                    commit_properties=CommitProperties(app_transactions=[Transaction("ingest:old", 1, month_ago)]))
    t = store.table("t")
    assert t.transaction_version("ingest:new") == 1 and t.transaction_version("ingest:old") is None
    assert store.swap("lease", pa.table({"g": [1]}), app="state", expected=0)
    assert store.table("lease").metadata().configuration == {}


def _rows_of(store: TableStore, name: str) -> list[tuple]:
    return sorted((r["d"], r["x"]) for r in store.dataset(name).to_table().to_pylist())


def test_replace_swaps_one_partition_or_the_whole_table_and_concurrent_rebuilds_leave_one(store) -> None:
    import threading

    def part(day: str, x: int, n: int = 3) -> pa.Table:
        return pa.table({"d": [day] * n, "x": [x] * n})

    store.replace("f", part("2026-01-01", 1), where=("d", "2026-01-01"), partition_by=["d"])
    store.replace("f", part("2026-01-02", 2), where=("d", "2026-01-02"), partition_by=["d"])
    store.replace("f", part("2026-01-01", 3, 2), where=("d", "2026-01-01"), partition_by=["d"])
    assert _rows_of(store, "f") == [("2026-01-01", 3)] * 2 + [("2026-01-02", 2)] * 3
    # Four rebuilds of one date at once: each commits (a conflict retries), and the date holds
    # exactly one build's rows afterwards, never two builds' or none.
    errors: list[BaseException] = []

    def rebuild(k: int) -> None:
        try:
            store.replace("f", part("2026-01-01", 10 + k), where=("d", "2026-01-01"), partition_by=["d"])
        except BaseException as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=rebuild, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    day1 = [x for d, x in _rows_of(store, "f") if d == "2026-01-01"]
    assert len(day1) == 3 and len(set(day1)) == 1 and day1[0] in range(10, 14)
    assert [x for d, x in _rows_of(store, "f") if d == "2026-01-02"] == [2, 2, 2]
    # A whole-table replace may change the schema (a dims table that gained a column).
    store.replace("f", pa.table({"d": ["z"], "x": [0], "y": ["new"]}))
    assert store.dataset("f").to_table().to_pylist() == [{"d": "z", "x": 0, "y": "new"}]
    with pytest.raises(ValueError):
        store.replace("f", part("a", 1), where=("d; drop", "a"))


def test_a_partition_replace_with_a_new_column_merges_the_schema(store: TableStore) -> None:
    store.replace("g", pa.table({"d": ["a"], "x": [1]}), where=("d", "a"), partition_by=["d"])
    # a later build adds a column: the older date reads NULL for it, the build does not fail
    store.replace("g", pa.table({"d": ["b"], "x": [2], "y": [3.5]}), where=("d", "b"), partition_by=["d"])
    rows = sorted(store.dataset("g").to_table().to_pylist(), key=lambda r: r["d"])
    assert [{k: r[k] for k in ("d", "x", "y")} for r in rows] == [{"d": "a", "x": 1, "y": None},
                                                                  {"d": "b", "x": 2, "y": 3.5}]
