"""The streaming join with the lake on object storage: runs that race for one step on the S3 server
(no lock shared there) commit it once, and an engine that knows only Delta reads what the join
wrote (``stream_examples``, ``online_counters``) on either store, with no project code."""

from __future__ import annotations

import threading

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable

from tests.s3 import is_s3, lake_storage_options, new_bucket
from tests.training.test_joiner import ingest
from tests.training.test_stream_join import CONFIG, LATENESS, _SCHEMAS, _batch_join, _events, _ingest_all, _rows
from tiktok_pipelines.features.online import CountersSource, OnlineCounters, counters_path
from tiktok_pipelines.ingest.engine import Lake
from tiktok_pipelines.training.stream_join import (
    STATE_DIR,
    committed_seq,
    read_stream_examples,
    run_stream_join,
)


@pytest.fixture
def s3_lake(s3_endpoint, s3_env, monkeypatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return f"s3://{new_bucket(s3_endpoint)}/lake"


def _state_folders(lake: str) -> list[str]:
    import pyarrow.fs as pafs

    store = Lake(lake).store
    infos = store.filesystem().get_file_info(pafs.FileSelector(store.fs_path(STATE_DIR), allow_not_found=True))
    return sorted(i.base_name for i in infos if i.base_name.startswith("state-"))


def test_runs_racing_for_a_step_on_s3_commit_it_once(tmp_path, s3_lake):
    """Two runs that both computed the same step (both wrote their attempt, neither committed: a
    barrier holds them there) race for the commit on the S3 server: one lands, the other discards
    its attempt and finds the batch consumed. Three steps of it; every example once, and the
    examples are the batch join's."""
    events = _events(13, n_imp=80)
    landing, _, batches = _ingest_all(tmp_path, events, 3)
    lake = s3_lake
    for i, batch in enumerate(batches):
        ingest(landing, lake, {s: [e for k, e in batch if k == s] for s in _SCHEMAS}, seq=1 + i)
        both_written = threading.Barrier(2, timeout=120)
        reports, errors = [], []

        def run() -> None:
            waited = []

            def once() -> None:
                # the first attempt of each run waits for the other's; a run that lost the commit
                # before the winner's landed (a conflict, retried) computes again, unhindered
                if not waited:
                    waited.append(both_written.wait())

            try:
                reports.append(run_stream_join(lake, CONFIG, LATENESS, _after_part=once))
            except Exception as e:  # collected: an exception in a thread would not fail the test
                errors.append(e)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, (i, errors, reports)
        # both end at the one committed step; only the winner joined the batch
        assert sorted(r.seq for r in reports) == [i + 1, i + 1]
        assert sorted(r.batches for r in reports) == [0, 1], reports
        assert committed_seq(lake) == i + 1
        # the loser's attempt is gone; the winner's (and the step before it) remain
        assert [f.split("-")[1] for f in _state_folders(lake)] == [f"{s:08d}" for s in range(max(1, i), i + 2)]
    streamed = read_stream_examples(lake)
    assert streamed.num_rows == len(set(streamed.column("example_id").to_pylist())) > 0
    last = run_stream_join(lake, CONFIG, LATENESS)
    assert last.batches == 0
    assert _rows(streamed) == _rows(_batch_join(events, last.counts.watermark_ms))


def test_an_engine_that_knows_only_delta_reads_the_join_outputs(tmp_path, lake_root):
    events = _events(21, n_imp=60)
    landing, _, batches = _ingest_all(tmp_path, events, 2)
    lake = lake_root
    source = CountersSource(lake)
    assert source.poll() is None  # no counters yet
    for i, batch in enumerate(batches):
        ingest(landing, lake, {s: [e for k, e in batch if k == s] for s in _SCHEMAS}, seq=1 + i)
        run_stream_join(lake, CONFIG, LATENESS)
    ours = read_stream_examples(lake)
    assert ours is not None and ours.num_rows > 0
    options = lake_storage_options(lake)

    # polars: the examples, each step's tagged with its seq
    theirs = pl.scan_delta(f"{lake}/stream_examples", storage_options=options).collect()
    assert theirs.height == ours.num_rows
    assert sorted(theirs["example_id"].to_list()) == sorted(ours.column("example_id").to_pylist())
    assert set(theirs["seq"].to_list()) <= {1, 2}

    # DuckDB over delta-rs's Arrow dataset: the counters, as the project reads them
    dataset = DeltaTable(f"{lake}/online_counters", storage_options=options).to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("c", dataset)
    rows = con.sql("SELECT entity, counter, id, value, as_of_ms FROM c").fetchall()
    con.close()
    counters = OnlineCounters.read(counters_path(lake))
    assert rows and {r[4] for r in rows} == {counters.as_of_ms} == {max(e["ts_ms"] for _, e in events)}
    assert {(e, c, i): v for e, c, i, v, _ in rows} == {
        (e, c, i): v for (e, c), by_id in counters.values.items() for i, v in by_id.items()}

    # the server's poller: the newest version once, then nothing until a new one
    polled = source.poll()
    assert polled is not None and polled.values == counters.values and polled.as_of_ms == counters.as_of_ms
    assert source.poll() is None
    play = {**next(e for k, e in events if k == "views"), "event_id": "later", "ts_ms": counters.as_of_ms + 1000}
    ingest(landing, lake, {"views": [play]}, seq=9)
    assert run_stream_join(lake, CONFIG, LATENESS).batches == 1
    assert source.poll() is not None and source.poll() is None
    assert is_s3(lake) == str(counters_path(lake)).startswith("s3://")


def test_a_crash_between_the_commit_and_the_append_is_made_good_by_the_next_run(tmp_path, lake_root):
    """The step is committed but its examples are not in stream_examples yet: readers read up to
    the step before (nothing half-published), and the next run appends them, once, before
    anything else, on either store."""
    events = _events(17, n_imp=60)
    landing, _, batches = _ingest_all(tmp_path, events, 2)
    lake = lake_root
    ingest(landing, lake, {s: [e for k, e in batches[0] if k == s] for s in _SCHEMAS}, seq=1)
    first = run_stream_join(lake, CONFIG, LATENESS)
    assert first.seq == 1 and first.counts.examples > 0
    before = read_stream_examples(lake)
    ingest(landing, lake, {s: [e for k, e in batches[1] if k == s] for s in _SCHEMAS}, seq=2)

    class Killed(Exception):
        pass

    def die():
        raise Killed

    with pytest.raises(Killed):
        run_stream_join(lake, CONFIG, LATENESS, _after_commit=die)
    assert committed_seq(lake) == 2  # committed: the batch is consumed
    assert _rows(read_stream_examples(lake)) == _rows(before)  # step 2's rows are not readable yet
    again = run_stream_join(lake, CONFIG, LATENESS)  # nothing new: it appends step 2's examples
    assert again.seq == 2 and again.batches == 0
    streamed = read_stream_examples(lake)
    assert streamed.num_rows > before.num_rows
    assert streamed.num_rows == len(set(streamed.column("example_id").to_pylist()))
    assert _rows(streamed) == _rows(_batch_join(events, again.counts.watermark_ms))
    assert run_stream_join(lake, CONFIG, LATENESS).seq == 2
    assert read_stream_examples(lake).num_rows == streamed.num_rows  # appended once
