"""The streaming joiner: the same examples as the batch join, whatever the micro-batches and the
arrival order (within the allowed lateness); late arrivals counted; state that survives restarts."""

from __future__ import annotations

import json
import random

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest.conftest import FLUSHED_AT_MS
from tests.training.test_joiner import impression, ingest, interaction, view
from tiktok_pipelines.training.joiner import JoinerConfig, examples_sql
from tiktok_pipelines.training.stream_join import (
    IMP_SCHEMA,
    MAX_CLOCK_SKEW_MS,
    INTER_SCHEMA,
    VIEW_SCHEMA,
    StreamConfig,
    StreamJoiner,
    committed_seq,
    read_stream_examples,
    run_stream_join,
)

S = 1000
T0 = FLUSHED_AT_MS - 6 * 3_600_000
CONFIG = JoinerConfig(label_window_s=60, history_window_s=600, negative_rate=0.5, seed=3)
LATENESS = StreamConfig(allowed_lateness_s=30)


def _events(seed: int, n_imp: int = 60) -> list[tuple[str, dict]]:
    """Impressions in pages, with plays and interactions that name them (or not), plus plays
    from outside any feed: a small world where windows, history and keys all matter."""
    r = random.Random(seed)
    out: list[tuple[str, dict]] = []
    t = T0
    for p in range(n_imp // 4):
        user, req = r.randint(1, 5), f"r{p}"
        t += r.randint(0, 40 * S)
        for pos in range(4):
            vid = r.randint(1, 30)
            ts = t + pos
            out.append(("impressions", impression(f"i{p}-{pos}", ts, user, vid, vid % 7, req, pos)))
            if r.random() < 0.6:
                vts = ts + r.randint(0, 80 * S)  # sometimes after the window
                out.append(("views", view(f"v{p}-{pos}", vts, user, vid, vid % 7, r.randint(100, 15_000),
                                          req if r.random() < 0.9 else None)))
            if r.random() < 0.3:
                kind = r.choice(["like", "share", "comment", "follow"])
                out.append(("interactions", interaction(f"x{p}-{pos}", ts + r.randint(0, 70 * S), user, kind,
                                                        vid, vid % 7, req if r.random() < 0.9 else "other")))
        if r.random() < 0.3:  # a play from a shared link: history only
            out.append(("views", view(f"s{p}", t + r.randint(-60 * S, 60 * S), user, r.randint(1, 30), 1,
                                      2_000, None)))
    return out


_SCHEMAS = {"impressions": IMP_SCHEMA, "views": VIEW_SCHEMA, "interactions": INTER_SCHEMA}


def _table(stream: str, rows: list[dict]) -> pa.Table:
    schema = _SCHEMAS[stream]
    cols = {c: [json.dumps(r[c]) if c == "served_features" else r.get(c) for r in rows] for c in schema.names}
    return pa.table(cols, schema=schema)


def _batch_join(events: list[tuple[str, dict]], until_ms: int) -> pa.Table:
    """The batch joiner's SQL over every event, for the impressions whose window closed."""
    con = duckdb.connect()
    by = {s: [e for k, e in events if k == s] for s in _SCHEMAS}
    imp = _table("impressions", [e for e in by["impressions"]
                                 if e["ts_ms"] + CONFIG.label_window_s * 1000 < until_ms])
    con.register("imp", imp)
    con.register("views", _table("views", by["views"]))
    con.register("inter", _table("interactions", by["interactions"]))
    return con.sql(examples_sql(CONFIG)).to_arrow_table()


def _rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["example_id"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), jitter_seed=st.integers(0, 10_000), n_batches=st.integers(1, 12))
def test_any_split_and_order_within_lateness_emits_the_batch_join(seed, jitter_seed, n_batches):
    events = _events(seed)
    # Arrival order: each event arrives at its time plus a delay of up to the allowed lateness,
    # so nothing is later than allowed; then the arrivals are cut into micro-batches anywhere.
    r = random.Random(jitter_seed)
    lateness_ms = LATENESS.allowed_lateness_s * 1000
    arrival = sorted(events, key=lambda e: e[1]["ts_ms"] + r.randint(0, lateness_ms))
    cuts = sorted(r.sample(range(1, len(arrival)), min(n_batches - 1, len(arrival) - 1)))
    joiner = StreamJoiner(CONFIG, LATENESS)
    emitted = []
    for lo, hi in zip([0, *cuts], [*cuts, len(arrival)]):
        batch = arrival[lo:hi]
        examples, counts = joiner.step(*(_table(s, [e for k, e in batch if k == s]) for s in _SCHEMAS))
        assert counts.late_actions == 0 and counts.late_impressions == 0
        emitted.append(examples)
    streamed = pa.concat_tables(emitted)
    expected = _batch_join(events, joiner.watermark_ms)
    assert expected.num_rows > 0
    assert _rows(streamed) == _rows(expected)
    # each impression once: emitted + still pending = every impression
    closed = joiner.state.totals.emitted_impressions
    assert closed + joiner.state.pending.num_rows == sum(k == "impressions" for k, _ in events)


def test_late_actions_and_impressions_are_counted_not_lost():
    joiner = StreamJoiner(CONFIG, LATENESS)
    imp = impression("i1", T0, 1, 5, 5, "r1")
    joiner.step(_table("impressions", [imp]))
    # an event 200 s later moves the watermark past i1's window: i1 is emitted, unplayed
    examples, counts = joiner.step(views=_table("views", [view("far", T0 + 200 * S, 2, 9, 9, 100, None)]))
    assert counts.emitted_impressions == 1 and examples.column("played").to_pylist() in ([False], [])
    # the play of i1 arrives now, inside i1's window but after it closed: late, counted
    _, counts = joiner.step(views=_table("views", [view("v1", T0 + 10 * S, 1, 5, 5, 9_000, "r1")]))
    assert counts.late_actions == 1
    # an impression whose own window closed before it arrived: late, not emitted
    examples, counts = joiner.step(_table("impressions", [impression("i0", T0 + 5 * S, 3, 6, 6, "r0")]))
    assert counts.late_impressions == 1 and examples.num_rows == 0
    assert joiner.state.totals.late_actions == 1 and joiner.state.totals.late_impressions == 1


def test_state_is_pruned_to_the_windows():
    joiner = StreamJoiner(CONFIG, LATENESS)
    rows = [view(f"v{i}", T0 + i * 3600 * S, 1, 1, 1, 100, None) for i in range(40)]  # 40 hours of plays
    joiner.step(views=_table("views", rows))
    # the join's windows are shorter than the day the serving counters count: a day is kept
    horizon = joiner.state.max_ts_ms - 86_400 * S
    kept = joiner.state.views.column("ts_ms").to_pylist()
    assert kept and min(kept) >= horizon and len(kept) == 25  # hours 15..39 of 0..39


# --- on the lake: ingest batches in, committed parts out ---------------------------------------

def _ingest_all(tmp_path, events, n_batches):
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir(exist_ok=True)
    ordered = sorted(events, key=lambda e: e[1]["ts_ms"])
    size = -(-len(ordered) // n_batches)
    batches = [ordered[i:i + size] for i in range(0, len(ordered), size)]
    return landing, lake, batches


def test_on_the_lake_each_batch_is_joined_once_and_matches_the_batch_join(tmp_path, lake_root):
    events = _events(7, n_imp=80)
    landing, _, batches = _ingest_all(tmp_path, events, 4)
    lake = lake_root  # a local folder, or s3://bucket/lake on the local S3 server
    for i, batch in enumerate(batches):
        ingest(landing, lake, {s: [e for k, e in batch if k == s] for s in _SCHEMAS}, seq=10 + i)
        report = run_stream_join(lake, CONFIG, LATENESS)
        assert report.batches == 1 and report.seq == i + 1
    again = run_stream_join(lake, CONFIG, LATENESS)  # nothing new: nothing joined twice
    assert again.batches == 0 and again.seq == len(batches)
    # the serving counters were written from the state, as of the newest event time seen
    from tiktok_pipelines.features.online import OnlineCounters, counters_path

    counters = OnlineCounters.read(counters_path(lake))  # the Delta table, on either store
    newest = max(e["ts_ms"] for _, e in events)
    assert counters.as_of_ms == newest
    assert sum(counters.values[("user", "views_24h")].values()) == sum(
        k == "views" and e["ts_ms"] > newest - 86_400_000 for k, e in events)
    streamed = read_stream_examples(lake)
    assert _rows(streamed) == _rows(_batch_join(events, again.counts.watermark_ms))
    with pytest.raises(ValueError, match="state was built with"):
        run_stream_join(lake, JoinerConfig(label_window_s=61), LATENESS)


def test_on_the_lake_a_batch_is_read_from_the_committed_snapshot(tmp_path):
    """A batch's rows come from the files its commit added (the snapshot's add actions), not from
    a listing: a file named for the batch but never committed is not read; and once compaction
    merged a batch's files into others, its rows are found by ``_batch_id``. The versions read are
    recorded with the step."""
    import shutil

    from deltalake import DeltaTable

    from tiktok_pipelines.ingest.engine import Lake
    from tiktok_pipelines.training.stream_join import committed_meta

    events = _events(5, n_imp=80)
    landing, lake, batches = _ingest_all(tmp_path, events, 3)
    store = Lake(lake).store
    ingest(landing, lake, {s: [e for k, e in batches[0] if k == s] for s in _SCHEMAS}, seq=1)
    first = run_stream_join(lake, CONFIG, LATENESS)
    assert first.versions == {f"events/{s}": store.version(f"events/{s}") for s in _SCHEMAS}
    assert committed_meta(lake)["lake_versions"] == first.versions

    # Batch 2, plus a stray copy of one of its files under a name of the batch: never committed.
    def new_batch(seq: int, rows) -> str:
        seen = set(Lake(lake).read_ingest_log().column("batch_id").to_pylist())
        ingest(landing, lake, {s: [e for k, e in rows if k == s] for s in _SCHEMAS}, seq=seq)
        (batch,) = set(Lake(lake).read_ingest_log().column("batch_id").to_pylist()) - seen
        return batch

    batch2 = new_batch(2, batches[1])
    own = sorted((lake / "events" / "views").glob(f"event_date=*/part-{batch2}-*.parquet"))
    assert own
    shutil.copy(own[0], own[0].with_name(f"part-{batch2}-c99.parquet"))
    assert run_stream_join(lake, CONFIG, LATENESS).batches == 1

    # Batch 3, then compaction merges every table's files: no file is named for batch 3 any more.
    batch3 = new_batch(3, batches[2])
    for stream in _SCHEMAS:
        DeltaTable(store.uri(f"events/{stream}")).optimize.compact()
    assert not [a for s in _SCHEMAS for a in store.add_actions(f"events/{s}").column("path").to_pylist()
                if f"part-{batch3}-" in a]
    last = run_stream_join(lake, CONFIG, LATENESS)
    assert last.batches == 1 and last.counts.impressions_in + last.counts.actions_in > 0

    streamed = read_stream_examples(lake)
    assert len(set(streamed.column("example_id").to_pylist())) == streamed.num_rows
    assert _rows(streamed) == _rows(_batch_join(events, last.counts.watermark_ms))


def test_a_crash_between_the_part_and_the_commit_redoes_the_step_once(tmp_path):
    events = _events(11, n_imp=60)
    landing, lake, batches = _ingest_all(tmp_path, events, 3)
    ingest(landing, lake, {s: [e for k, e in batches[0] if k == s] for s in _SCHEMAS}, seq=1)
    run_stream_join(lake, CONFIG, LATENESS)
    ingest(landing, lake, {s: [e for k, e in batches[1] if k == s] for s in _SCHEMAS}, seq=2)

    class Killed(Exception):
        pass

    def die():
        raise Killed

    with pytest.raises(Killed):
        run_stream_join(lake, CONFIG, LATENESS, _after_part=die)
    assert committed_seq(lake) == 1  # the step's files were written, never committed
    (attempt,) = [p.name for p in (lake / "_stream_join").glob("state-00000002-*")]
    redo = run_stream_join(lake, CONFIG, LATENESS)
    assert redo.seq == 2 and redo.batches == 1 and f"_stream_join/{attempt}" in redo.recovered
    ingest(landing, lake, {s: [e for k, e in batches[2] if k == s] for s in _SCHEMAS}, seq=3)
    last = run_stream_join(lake, CONFIG, LATENESS)
    streamed = read_stream_examples(lake)
    assert len(set(streamed.column("example_id").to_pylist())) == streamed.num_rows
    assert _rows(streamed) == _rows(_batch_join(events, last.counts.watermark_ms))


def test_an_action_at_the_last_instant_of_the_window_still_labels():
    joiner = StreamJoiner(CONFIG, LATENESS)
    w, late = CONFIG.label_window_s * S, LATENESS.allowed_lateness_s * S
    joiner.step(_table("impressions", [impression("i1", T0, 1, 5, 5, "r1")]))
    # the watermark reaches exactly the end of i1's window: an action at that instant may still come
    examples, _ = joiner.step(views=_table("views", [view("other", T0 + w + late, 2, 9, 9, 100, None)]))
    assert joiner.watermark_ms == T0 + w and examples.num_rows == 0
    joiner.step(views=_table("views", [view("v1", T0 + w, 1, 5, 5, 10_000, "r1")]))
    examples, _ = joiner.step(views=_table("views", [view("later", T0 + w + late + 1, 2, 9, 9, 100, None)]))
    assert examples.column("example_id").to_pylist() == ["i1"]
    assert examples.column("played").to_pylist() == [True]


def test_kill_9_between_the_part_and_the_commit(tmp_path, lake_root):
    """A real SIGKILL at the worst moment (the step's examples and state are written, the commit
    is not), on local disk and on the S3 server."""
    import os
    import subprocess
    import sys

    from tests.s3 import is_s3

    events = _events(5, n_imp=40)
    landing, _, batches = _ingest_all(tmp_path, events, 2)
    lake = lake_root
    ingest(landing, lake, {s: [e for k, e in batches[0] if k == s] for s in _SCHEMAS}, seq=1)
    code = (
        "import os, signal, sys\n"
        "from tiktok_pipelines.training.joiner import JoinerConfig\n"
        "from tiktok_pipelines.training.stream_join import StreamConfig, run_stream_join\n"
        f"run_stream_join(sys.argv[1], JoinerConfig(**{CONFIG.__dict__!r}), "
        f"StreamConfig({LATENESS.allowed_lateness_s}), "
        "_after_part=lambda: os.kill(os.getpid(), signal.SIGKILL))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(lake)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == -9 and committed_seq(lake) == 0
    ingest(landing, lake, {s: [e for k, e in batches[1] if k == s] for s in _SCHEMAS}, seq=2)
    last = run_stream_join(lake, CONFIG, LATENESS)  # redoes the killed step, with what came since
    assert last.seq == 1 and last.batches == 2
    # Locally the run holds the lock: the killed attempt's files are removed now. On S3 they
    # might be a concurrent run's work in progress: left until the committed seq passes them.
    assert [r.rsplit("-", 1)[0] for r in last.recovered] == ([] if is_s3(lake) else ["_stream_join/state-00000001"])
    assert _rows(read_stream_examples(lake)) == _rows(_batch_join(events, last.counts.watermark_ms))


def test_the_consumed_batches_stay_bounded(tmp_path):
    """Batch ids are kept for the slack before the newest one read, then only as a floor."""
    from tiktok_pipelines.training.stream_join import CONSUMED_SLACK_MS, _prune_consumed

    consumed = {f"b{i}": i * 3_600_000 for i in range(48)}  # two days of hourly batches
    kept = _prune_consumed(consumed)
    assert set(kept) == {f"b{i}" for i in range(48) if i * 3_600_000 >= 47 * 3_600_000 - CONSUMED_SLACK_MS}
    assert len(kept) == CONSUMED_SLACK_MS // 3_600_000 + 1


def test_the_watermark_never_passes_the_wall_clock_plus_skew():
    """One event from 2099 (issue 15: a landing file named and dated 2099) must not close every
    window: before the bound it moved the watermark, then trained_through and expiry, to 2099.
    Failed on the code before the fix (the watermark was 2099 minus the lateness)."""
    joiner = StreamJoiner(CONFIG, LATENESS)
    now = T0 + 100 * S
    # a collector 250 s ahead (inside the skew): its window closes after now + skew - lateness
    early = impression("i1", now + 250 * S, 1, 5, 5, "r1")
    year_2099 = 4_102_444_800_000
    examples, counts = joiner.step(_table("impressions", [early]),
                                   views=_table("views", [view("future", year_2099, 2, 9, 9, 100, None)]),
                                   now_ms=now)
    assert counts.watermark_ms <= now + MAX_CLOCK_SKEW_MS - LATENESS.allowed_lateness_s * S
    assert examples.num_rows == 0 and joiner.state.pending.num_rows == 1  # still waiting for its labels
    # a state saved with a mark in the future (before the bound) is pulled back at the next step
    joiner.state.max_ts_ms = year_2099
    _, counts = joiner.step(now_ms=now)
    assert counts.watermark_ms <= now + MAX_CLOCK_SKEW_MS
