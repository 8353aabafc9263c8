"""plan_tick without Dagster: what a landing sensor tick requests, given the landing files, the
runs in flight, the ingest log and the runs that failed."""

from __future__ import annotations

import json

from tests.ingest.conftest import FLUSHED_AT_MS, write_landing
from tiktok_pipelines.ingest.engine import batch_id_for
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.ingest.landing_tick import plan_tick, read_cursor

S = 1_000_000_000  # ns


def _landing(tmp_path, n: int):
    for seq in range(n):
        write_landing(tmp_path, "views", ["{}"], seq=seq, flushed_at_ms=FLUSHED_AT_MS + seq * 1000)
    return list_landing_files(tmp_path)


def _plan(cursor, files, *, now_ns=1000 * S, in_flight=(), ingested=(), failed=(), sweep_s=600, per_run=2,
          reads=None):
    def read(name, value):
        def f(*args):
            if reads is not None:
                reads.append(name)
            return set(value)
        return f

    return plan_tick(cursor, files, now_ns=now_ns, sweep_s=sweep_s, files_per_run=per_run,
                     in_flight=read("in_flight", in_flight), ingested=read("ingested", ingested),
                     failed_since=read("failed_since", failed))


def test_first_tick_groups_pending_files_with_batch_ids_as_run_keys(tmp_path) -> None:
    files = _landing(tmp_path, 5)
    plan = _plan(None, files, ingested={files[0].key})
    assert plan.skip is None
    assert [r.files for r in plan.runs] == [[f.rel_path for f in files[1:3]], [f.rel_path for f in files[3:5]]]
    assert [r.run_key for r in plan.runs] == [batch_id_for(files[1:3]), batch_id_for(files[3:5])]
    assert all(r.sweep is None for r in plan.runs)
    state = json.loads(plan.cursor)
    assert state == {"files": 5, "arrived_ns": max(f.arrived_ns for f in files), "listing": batch_id_for(files),
                     "swept_ns": 1000 * S, "sweeps": 0}


def test_an_unchanged_listing_reads_nothing(tmp_path) -> None:
    files = _landing(tmp_path, 3)
    first = _plan(None, files)
    reads: list[str] = []
    again = _plan(first.cursor, files, now_ns=1001 * S, reads=reads)
    assert again.skip == "no new landing files (3 seen)" and again.runs == [] and again.cursor is None
    assert reads == []  # neither the runs nor the ingest log


def test_files_in_flight_or_ingested_are_not_requested(tmp_path) -> None:
    files = _landing(tmp_path, 3)
    first = _plan(None, files[:1])
    reads: list[str] = []
    plan = _plan(first.cursor, files, in_flight={files[0].rel_path}, ingested={files[1].key}, reads=reads)
    assert [r.files for r in plan.runs] == [[files[2].rel_path]]
    assert reads == ["in_flight", "ingested", "failed_since"]  # runs before the log


def test_files_of_a_failed_run_wait_for_the_sweep_then_get_a_sweep_key(tmp_path) -> None:
    files = _landing(tmp_path, 3)
    cursor = _plan(None, files[:2]).cursor
    failed = {files[0].rel_path, files[1].rel_path}
    # a new file arrives before the sweep is due: it is requested; the failed run's files wait
    plan = _plan(cursor, files, now_ns=1100 * S, failed=failed)
    assert [r.files for r in plan.runs] == [[files[2].rel_path]]
    assert ("info", "2 landing files whose run failed wait for the next sweep") in plan.log
    # the sweep is due: they are requested again, under a key of their own
    plan = _plan(plan.cursor, files, now_ns=1700 * S, failed=failed, ingested={files[2].key})
    assert [(r.run_key, r.files, r.sweep) for r in plan.runs] == [
        ("sweep1-" + batch_id_for(files[:2]), [files[0].rel_path, files[1].rel_path], 1)]
    assert plan.log[0][0] == "warning" and plan.log[0][1].startswith("sweep 1: 2 landing files")
    assert json.loads(plan.cursor)["sweeps"] == 1 and json.loads(plan.cursor)["swept_ns"] == 1700 * S


def test_a_new_file_on_a_sweep_tick_is_new_not_swept(tmp_path) -> None:
    files = _landing(tmp_path, 2)
    cursor = _plan(None, files[:1], ingested=()).cursor
    plan = _plan(cursor, files, now_ns=1700 * S, ingested={files[0].key})
    assert [(r.files, r.sweep) for r in plan.runs] == [([files[1].rel_path], None)]


def test_an_earlier_cursor_is_replaced_and_its_sweep_count_kept(tmp_path) -> None:
    files = _landing(tmp_path, 1)
    old = json.dumps({"mtime_ns": 5, "recent": ["a" * 20] * 100, "sweeps": 4, "swept_ns": 900 * S})
    assert read_cursor(old) == {"sweeps": 4, "swept_ns": 900 * S}
    assert read_cursor("not json") is None and read_cursor("[1]") is None
    plan = _plan(old, files)
    assert plan.log[0][0] == "info" and "cursor of an earlier version" in plan.log[0][1]
    assert json.loads(plan.cursor)["sweeps"] == 4 and [r.files for r in plan.runs] == [[files[0].rel_path]]
