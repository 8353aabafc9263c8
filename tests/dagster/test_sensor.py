"""The landing sensor's cursor, grouping and run keys, on a real instance."""

from __future__ import annotations

import json
import os

import dagster as dg

from tests.dagster.conftest import resources_for
from tests.ingest.conftest import FLUSHED_AT_MS, dumps, valid_record, write_landing
from tiktok_pipelines.defs.ingest.assets import ingest_job, ingest_landing
from tiktok_pipelines.defs.ingest.sensors import landing_sensor
from tiktok_pipelines.defs.resources import IngestPolicy, PlatformStorage
from tiktok_pipelines.schemas import STREAMS


def _defs(data, files_per_run=2, **policy):
    return dg.Definitions(
        assets=[ingest_landing], jobs=[ingest_job], sensors=[landing_sensor],
        resources={"storage": PlatformStorage(data_dir=str(data)),
                   "ingest_policy": IngestPolicy(files_per_run=files_per_run, **policy)},
    )


def _tick(defs, instance, cursor):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources)
    r = landing_sensor.evaluate_tick(ctx)
    return r.run_requests or [], r.cursor, r.skip_message


def _files(rr):
    return rr.run_config["ops"]["ingest_landing"]["config"]["files"]


def _write(landing, seq):
    """A landing file; it arrives now (its ctime), so files arrive in the order they are written."""
    return write_landing(landing, "views", [dumps(valid_record(STREAMS["views"], seq, event_id=f"e{seq}"))],
                         seq=seq, flushed_at_ms=FLUSHED_AT_MS + seq * 1000)


def _ctime_ns(landing, rel):
    return os.stat(landing / rel).st_ctime_ns


def test_cursor_groups_and_run_keys(tmp_path, instance):
    import time

    data = tmp_path / "data"
    landing = data / "landing"
    rels = [_write(landing, i) for i in range(1, 6)]
    defs = _defs(data, sensor_grace_s=1.0)  # a short window, so that a test can step past it

    requests, cursor, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [rels[0:2], rels[2:4], rels[4:5]]
    assert len({r.run_key for r in requests}) == 3
    assert json.loads(cursor)["arrived_ns"] == max(_ctime_ns(landing, r) for r in rels)
    assert len(json.loads(cursor)["recent"]) == 5  # all within the grace window of the mark

    # Same state, same cursor: nothing; a replayed tick from the old cursor asks for the same keys.
    assert _tick(defs, instance, cursor)[0] == []
    assert [r.run_key for r in _tick(defs, instance, None)[0]] == [r.run_key for r in requests]

    # One new file: one run, for it alone.
    time.sleep(1.2)  # beyond the 1-s grace window
    new = _write(landing, 6)
    requests2, cursor2, _ = _tick(defs, instance, cursor)
    assert [_files(r) for r in requests2] == [[new]]
    assert json.loads(cursor2)["arrived_ns"] == _ctime_ns(landing, new)
    # the five older files fell out of the window: the cursor stays small
    assert len(json.loads(cursor2)["recent"]) == 1


def test_a_future_mtime_does_not_hide_later_files(tmp_path, instance):
    """A file copied with its mtime kept (cp -p, rsync -t) from a host whose clock runs a day ahead:
    its arrival is its ctime, so the mark stays at now and the next file is requested on the next
    tick, not a day (or a sweep) later."""
    import time

    data = tmp_path / "data"
    landing = data / "landing"
    defs = _defs(data, sensor_sweep_s=0)  # no sweep: the window alone must see it
    ahead = _write(landing, 1)
    tomorrow = time.time() + 86_400
    os.utime(landing / ahead, (tomorrow, tomorrow))
    requests, cursor, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [[ahead]]
    assert json.loads(cursor)["arrived_ns"] < time.time_ns()  # the ctime, not tomorrow's mtime
    later = _write(landing, 2)
    requests, cursor, _ = _tick(defs, instance, cursor)
    assert [_files(r) for r in requests] == [[later]]
    assert _tick(defs, instance, cursor)[0] == []


def test_first_tick_skips_files_already_ingested(tmp_path, instance):
    data = tmp_path / "data"
    landing = data / "landing"
    rels = [_write(landing, i) for i in range(1, 4)]
    defs = _defs(data, files_per_run=10)
    assert dg.materialize([ingest_landing], resources=resources_for(data), instance=instance,
                          run_config={"ops": {"ingest_landing": {"config": {"files": rels[:2]}}}}).success
    requests, _, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [rels[2:]]
    job = defs.resolve_job_def("ingest_job")
    assert job.execute_in_process(run_config=requests[0].run_config, instance=instance).success
    requests, cursor, skip = _tick(defs, instance, None)
    assert requests == [] and "no new landing files" in skip


def test_a_file_renamed_in_after_the_mark_is_requested(tmp_path, instance):
    """A collector writes a file, then renames it into the landing zone: the rename keeps the old
    mtime. The sensor must still see it as new (its ctime is the rename), and a file that lands
    just behind the mark while the walk runs is caught by the grace window."""
    import time

    data = tmp_path / "data"
    landing = data / "landing"
    defs = _defs(data)
    first = write_landing(landing, "views", [dumps(valid_record(STREAMS["views"], 1, event_id="a1"))],
                          seq=1, flushed_at_ms=FLUSHED_AT_MS)
    requests, cursor, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [[first]]
    time.sleep(0.05)
    # written an hour "ago" outside the landing zone, renamed in now
    staged = write_landing(tmp_path / "staging", "views", [dumps(valid_record(STREAMS["views"], 2, event_id="a2"))],
                           seq=2, flushed_at_ms=FLUSHED_AT_MS + 1000)
    old = time.time() - 3600
    os.utime(tmp_path / "staging" / staged, (old, old))
    (landing / staged).parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp_path / "staging" / staged, landing / staged)
    requests, cursor2, _ = _tick(defs, instance, cursor)
    assert [_files(r) for r in requests] == [[staged]]
    assert _tick(defs, instance, cursor2)[0] == []  # and only once

    # a file that arrived 1 s behind the mark and was not requested yet (the walk missed it)
    mark = json.loads(cursor2)["arrived_ns"]
    behind = json.dumps({"arrived_ns": mark + 10**9, "recent": [k for k in json.loads(cursor2)["recent"]]})
    assert _tick(defs, instance, behind)[0] == []  # everything in the window was requested
    forgot = json.dumps({"arrived_ns": mark + 10**9, "recent": []})
    assert sorted(f for r in _tick(defs, instance, forgot)[0] for f in _files(r)) == sorted([first, staged])


def _cursor(swept_ns, sweeps=0):
    """A cursor whose mark is an hour from now: every file on disk lies behind its window."""
    import time

    return json.dumps({"arrived_ns": time.time_ns() + 3600 * 10**9, "recent": [],
                       "swept_ns": swept_ns, "sweeps": sweeps})


def test_the_sweep_requests_files_left_behind_once_per_sweep(tmp_path, instance):
    """Files behind the cursor's window that no run took (a clock step, a run that failed for good)
    come back at the next sweep; ingested files and files of queued runs do not."""
    import time

    data = tmp_path / "data"
    landing = data / "landing"
    done, lost, queued = (_write(landing, i) for i in (1, 2, 3))
    defs = _defs(data, files_per_run=10)
    assert dg.materialize([ingest_landing], resources=resources_for(data), instance=instance,
                          run_config={"ops": {"ingest_landing": {"config": {"files": [done]}}}}).success
    job = defs.resolve_job_def("ingest_job")
    waiting = instance.create_run_for_job(
        job_def=job, run_config={"ops": {"ingest_landing": {"config": {"files": [queued]}}}},
        status=dg.DagsterRunStatus.NOT_STARTED)  # created, not launched yet (queued needs a code server)

    # Far behind the mark, so the window never looks at them; the last sweep was just now: nothing.
    requests, cursor, skip = _tick(defs, instance, _cursor(time.time_ns()))
    assert requests == [] and "no new landing files" in skip

    # A sweep is due: only the file that is neither ingested nor queued.
    due = _cursor(0, sweeps=4)
    requests, cursor, _ = _tick(defs, instance, due)
    assert [_files(r) for r in requests] == [[lost]]
    assert requests[0].tags["landing/sweep"] == "5" and requests[0].run_key.startswith("sweep5-")
    state = json.loads(cursor)
    assert state["sweeps"] == 5 and time.time_ns() - state["swept_ns"] < 60 * 10**9
    # The next tick is within the sweep interval: nothing again. A replay of the due tick asks for
    # the same run key (Dagster launches it once); the sweep after it, for a new one (a failed run
    # of that group is tried again).
    assert _tick(defs, instance, cursor)[0] == []
    assert [r.run_key for r in _tick(defs, instance, due)[0]] == [requests[0].run_key]
    again = _tick(defs, instance, _cursor(0, sweeps=5))[0]
    assert [_files(r) for r in again] == [[lost]] and again[0].run_key != requests[0].run_key

    # The swept run ingests it; the queued run fails without starting: its file is the one left.
    assert job.execute_in_process(run_config=requests[0].run_config, instance=instance).success
    instance.report_run_failed(waiting)
    requests, _, _ = _tick(defs, instance, _cursor(0))
    assert [_files(r) for r in requests] == [[queued]]

    # sensor_sweep_s = 0 turns the sweep off.
    off = dg.Definitions(assets=[ingest_landing], jobs=[ingest_job], sensors=[landing_sensor],
                         resources={"storage": PlatformStorage(data_dir=str(data)),
                                    "ingest_policy": IngestPolicy(sensor_sweep_s=0)})
    assert _tick(off, instance, _cursor(0))[0] == []


def test_the_sweep_leaves_the_window_to_the_cursor(tmp_path, instance):
    """A file inside the window that the cursor already requested is not asked for twice by a sweep
    in the same tick (its run may not exist yet when the sweep runs)."""
    data = tmp_path / "data"
    landing = data / "landing"
    rel = _write(landing, 1)
    defs = _defs(data)
    requests, cursor, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [[rel]]
    state = json.loads(cursor)
    state["swept_ns"] = 0  # a sweep is due, and the run for the file was never launched
    assert _tick(defs, instance, json.dumps(state))[0] == []
    assert json.loads(_tick(defs, instance, json.dumps(state))[1])["sweeps"] == 1


def test_a_file_whose_run_failed_is_ingested_by_the_sweep_exactly_once(tmp_path, instance, monkeypatch):
    """A real ingest run fails after committing its events but before its ingest-log commit (the
    log's commit raises, as a full or unwritable store would make it). The sensor has used that
    run's key; the batch stays in flight with its events committed and no commit record. The sweep
    asks for the file again, the new run finishes the batch in flight from its plan (the events
    table, which has the batch's transaction, is skipped; the log is committed), and the lake holds
    each event once."""
    from tiktok_pipelines.ingest.engine import INGEST_LOG_DIR, Lake, events_table, lake_row_count
    from tiktok_pipelines.tables import TableStore

    data = tmp_path / "data"
    landing = data / "landing"
    lake = data / "lake"
    lines = [dumps(valid_record(STREAMS["views"], i, event_id=f"f{i}")) for i in range(7)]
    rel = write_landing(landing, "views", lines, seq=1, flushed_at_ms=FLUSHED_AT_MS)
    # No grace window (a file at the mark is behind it) and a sweep on every tick after the first.
    defs = dg.Definitions(assets=[ingest_landing], jobs=[ingest_job], sensors=[landing_sensor],
                          resources={"storage": PlatformStorage(data_dir=str(data)),
                                     "ingest_policy": IngestPolicy(sensor_grace_s=0, sensor_sweep_s=0.001)})
    job = defs.resolve_job_def("ingest_job")
    requests, cursor, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [[rel]]

    commit = TableStore.commit

    def log_commit_fails(self, name, *args, **kwargs):
        if name == INGEST_LOG_DIR:
            raise PermissionError(13, "Permission denied", f"{self.root}/{name}")
        return commit(self, name, *args, **kwargs)

    monkeypatch.setattr(TableStore, "commit", log_commit_fails)
    failed = job.execute_in_process(run_config=requests[0].run_config, instance=instance, raise_on_error=False)
    assert not failed.success
    errors = [e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure]
    assert any("Permission denied" in err for err in errors), errors
    monkeypatch.setattr(TableStore, "commit", commit)  # the operator fixes the store; only the sweep re-requests
    # Half committed: the batch is in flight, its events are committed, it has no commit record.
    _, plan = Lake(lake).state()
    assert plan is not None and [f["rel_path"] for f in plan["files"]] == [rel]
    assert Lake(lake).store.committed(events_table("views"), f"ingest:{plan['batch_id']}")
    assert lake_row_count(lake, "views") == len(lines) and len(Lake(lake).read_ingest_log()) == 0

    requests, cursor, _ = _tick(defs, instance, cursor)
    assert [_files(r) for r in requests] == [[rel]] and "landing/sweep" in requests[0].tags
    swept = job.execute_in_process(run_config=requests[0].run_config, instance=instance)
    assert swept.success
    assert any("left in flight" in e.user_message and plan["batch_id"] in e.user_message
               for e in instance.all_logs(swept.run_id))
    assert lake_row_count(lake, "views") == len(lines)
    assert [r["batch_id"] for r in Lake(lake).read_ingest_log().to_pylist()] == [plan["batch_id"]]
    assert Lake(lake).state()[1] is None
    requests, _, skip = _tick(defs, instance, cursor)
    assert requests == [] and "no new landing files" in skip


def test_a_tick_with_hostile_names_succeeds_and_their_run_quarantines_them(tmp_path, instance):
    """Review issue 15: an impossible date in a name made ``list_landing_files`` raise inside the
    tick, so the sensor failed on every tick and requested nothing. Hostile names (that date, a
    ``..`` that counts once ``\\`` is a separator, a flush time in 9999, bytes that are not UTF-8)
    and an empty file must neither fail the tick nor the run it requests: the run commits the
    valid file and quarantines each hostile one as a file."""
    from tiktok_pipelines.ingest.engine import Lake, lake_row_count

    data = tmp_path / "data"
    landing = data / "landing"
    good = _write(landing, 1)
    dt_dir = landing / "views" / "dt=2026-11-02"
    line = (dumps(valid_record(STREAMS["views"], 2, event_id="h2")) + "\n").encode()
    hostile = ["views-20261399T120000Z-000002.ndjson", "x\\..\\y.ndjson", "views-99991231T235959Z-000003.ndjson"]
    for name in hostile:
        (dt_dir / name).write_bytes(line)
    os.close(os.open(os.path.join(os.fsencode(dt_dir), b"views-\xff.ndjson"), os.O_CREAT | os.O_WRONLY))
    (dt_dir / "views-20261102T120000Z-000009.ndjson").write_bytes(b"")  # empty
    defs = _defs(data, files_per_run=10)

    requests, cursor, _ = _tick(defs, instance, None)
    assert len(requests) == 1 and len(_files(requests[0])) == 6
    job = defs.resolve_job_def("ingest_job")
    assert job.execute_in_process(run_config=requests[0].run_config, instance=instance).success
    assert lake_row_count(data / "lake", "views") == 1
    reasons = {r["rel_path"].rsplit("/", 1)[1]: r["file_reason"] for r in Lake(data / "lake").read_ingest_log().to_pylist()}
    assert reasons == {good.rsplit("/", 1)[1]: None, hostile[0]: "invalid_flush_time", hostile[1]: "unsafe_name",
                       hostile[2]: "future_flush_time", "views-\\xff.ndjson": "undecodable_name",
                       "views-20261102T120000Z-000009.ndjson": None}
    # Never again: a first tick on a new instance (and any sweep) finds nothing pending.
    requests, _, skip = _tick(defs, instance, None)
    assert requests == [] and "no new landing files" in skip
