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


def _submit(defs, instance, requests, status=dg.DagsterRunStatus.NOT_STARTED):
    """Create each request's run as the sensor daemon does before it evaluates the sensor again
    (``_create_sensor_run``: NOT_STARTED, the request's tags, its run key and the sensor's name);
    a run key already used gets no second run. Returns the runs created."""
    job = defs.resolve_job_def("ingest_job")
    runs = []
    for rr in requests:
        if instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": rr.run_key}), limit=1):
            continue
        runs.append(instance.create_run_for_job(
            job_def=job, run_config=rr.run_config, status=status,
            tags={**rr.tags, "dagster/run_key": rr.run_key, "dagster/sensor_name": landing_sensor.name}))
    return runs


def test_cursor_groups_and_run_keys(tmp_path, instance):
    data = tmp_path / "data"
    landing = data / "landing"
    rels = [_write(landing, i) for i in range(1, 6)]
    defs = _defs(data)

    requests, cursor, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [rels[0:2], rels[2:4], rels[4:5]]
    assert len({r.run_key for r in requests}) == 3
    state = json.loads(cursor)
    assert set(state) == {"files", "arrived_ns", "listing", "swept_ns", "sweeps"}  # no file list
    assert state["files"] == 5 and state["arrived_ns"] == max(_ctime_ns(landing, r) for r in rels)

    # Same listing, same cursor: nothing, and neither the log nor the runs are read.
    assert _tick(defs, instance, cursor)[0] == []
    # A replayed tick (the daemon resumes one with its old cursor) asks for the same keys.
    assert [r.run_key for r in _tick(defs, instance, None)[0]] == [r.run_key for r in requests]

    # The daemon creates the runs; one new file: one run, for it alone (the others are in flight).
    _submit(defs, instance, requests)
    new = _write(landing, 6)
    requests2, cursor2, _ = _tick(defs, instance, cursor)
    assert [_files(r) for r in requests2] == [[new]]
    assert json.loads(cursor2)["arrived_ns"] == _ctime_ns(landing, new)
    assert len(cursor2) < 200 and len(cursor2) - len(cursor) < 5  # the cursor does not grow with the files


def test_the_cursor_stays_short_with_thousands_of_files(tmp_path, instance):
    """Review, issue 17: the sensor's page was dominated by a cursor holding thousands of file
    hashes (every file of the grace window). The cursor now has five numbers whatever the landing
    zone holds, and the files are still requested once."""
    data = tmp_path / "data"
    landing = data / "landing"
    line = dumps(valid_record(STREAMS["views"], 1, event_id="x")) + "\n"
    folder = landing / "views" / "dt=2026-11-01"
    folder.mkdir(parents=True)
    for i in range(3000):
        (folder / f"views-20261101T000000Z-{i:06d}.ndjson").write_text(line)
    defs = _defs(data, files_per_run=500)
    requests, cursor, _ = _tick(defs, instance, None)
    assert sum(len(_files(r)) for r in requests) == 3000 and len(requests) == 6
    assert len(cursor) < 200, cursor
    _submit(defs, instance, requests)
    (folder / "views-20261101T000000Z-999999.ndjson").write_text(line)
    requests, cursor, _ = _tick(defs, instance, cursor)
    assert [_files(r) for r in requests] == [["views/dt=2026-11-01/views-20261101T000000Z-999999.ndjson"]]
    assert len(cursor) < 200


def test_a_cursor_of_an_earlier_version_is_accepted(tmp_path, instance):
    """An instance upgraded with the old cursor (a mark and thousands of recent keys) or a cursor
    that does not parse: the tick reads the lake, requests what is pending, keeps the sweep count
    and writes the short cursor."""
    data = tmp_path / "data"
    landing = data / "landing"
    rels = [_write(landing, i) for i in range(1, 4)]
    defs = _defs(data, files_per_run=10)
    assert dg.materialize([ingest_landing], resources=resources_for(data), instance=instance,
                          run_config={"ops": {"ingest_landing": {"config": {"files": rels[:1]}}}}).success
    import time

    old = json.dumps({"arrived_ns": time.time_ns() + 3600 * 10**9, "recent": [f"{i:020x}" for i in range(5000)],
                      "swept_ns": time.time_ns(), "sweeps": 7})
    requests, cursor, _ = _tick(defs, instance, old)
    assert [_files(r) for r in requests] == [rels[1:]]
    state = json.loads(cursor)
    assert state["sweeps"] == 7 and "recent" not in state and len(cursor) < 200
    for garbage in ("not json", "[1, 2]", json.dumps({"mtime_ns": "x"})):
        requests, cursor, _ = _tick(defs, instance, garbage)
        assert [_files(r) for r in requests] == [rels[1:]] and "listing" in json.loads(cursor)


def test_a_future_mtime_does_not_hide_later_files(tmp_path, instance):
    """A file copied with its mtime kept (cp -p, rsync -t) from a host whose clock runs a day ahead:
    the cursor's newest arrival is its ctime, and the next file is requested on the next tick, not
    a day (or a sweep) later."""
    import time

    data = tmp_path / "data"
    landing = data / "landing"
    defs = _defs(data, sensor_sweep_s=0)  # no sweep: the tick alone must see it
    ahead = _write(landing, 1)
    tomorrow = time.time() + 86_400
    os.utime(landing / ahead, (tomorrow, tomorrow))
    requests, cursor, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [[ahead]]
    assert json.loads(cursor)["arrived_ns"] < time.time_ns()  # the ctime, not tomorrow's mtime
    _submit(defs, instance, requests)
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


def test_a_file_renamed_in_behind_the_newest_arrival_is_requested(tmp_path, instance):
    """A collector writes a file, then renames it into the landing zone: the rename keeps the old
    mtime. The sensor must still see it as new. And a file whose arrival lies behind the newest one
    seen (a walk that passed its folder before the rename; the clock that sets ctimes stepped back)
    is requested on the next tick: what is pending comes from the ingest log, not from a mark."""
    import time

    data = tmp_path / "data"
    landing = data / "landing"
    defs = _defs(data)
    first = write_landing(landing, "views", [dumps(valid_record(STREAMS["views"], 1, event_id="a1"))],
                          seq=1, flushed_at_ms=FLUSHED_AT_MS)
    requests, cursor, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [[first]]
    _submit(defs, instance, requests)
    # written an hour "ago" outside the landing zone, renamed in now
    staged = write_landing(tmp_path / "staging", "views", [dumps(valid_record(STREAMS["views"], 2, event_id="a2"))],
                           seq=2, flushed_at_ms=FLUSHED_AT_MS + 1000)
    old = time.time() - 3600
    os.utime(tmp_path / "staging" / staged, (old, old))
    (landing / staged).parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp_path / "staging" / staged, landing / staged)
    # the cursor saw an arrival an hour after this one (a ctime clock that stepped back since)
    ahead = json.loads(cursor)
    ahead["arrived_ns"] += 3600 * 10**9
    requests, cursor2, _ = _tick(defs, instance, json.dumps(ahead))
    assert [_files(r) for r in requests] == [[staged]]
    _submit(defs, instance, requests)
    assert _tick(defs, instance, cursor2)[0] == []  # and only once
    # a cursor that lost its listing (a first tick): both are in flight, nothing is asked twice
    assert _tick(defs, instance, None)[0] == []


def _due(swept_ns=0, sweeps=0):
    """A cursor whose last sweep was at ``swept_ns`` (0: a sweep is due) and whose listing matches
    nothing (so that the tick reads the lake)."""
    return json.dumps({"files": 0, "arrived_ns": 0, "listing": "-", "swept_ns": swept_ns, "sweeps": sweeps})


def test_files_whose_run_failed_wait_for_the_sweep(tmp_path, instance):
    """A file whose run ended without ingesting it (failed for good, canceled) is not requested on
    every tick (a broken disk would get a run per tick) but at the next sweep, with a run key of
    that sweep; ingested files and files of queued runs are never requested."""
    import time

    data = tmp_path / "data"
    landing = data / "landing"
    done, failed, queued, new = (_write(landing, i) for i in (1, 2, 3, 4))
    defs = _defs(data, files_per_run=10)
    assert dg.materialize([ingest_landing], resources=resources_for(data), instance=instance,
                          run_config={"ops": {"ingest_landing": {"config": {"files": [done]}}}}).success
    cfg = lambda rel: {"ops": {"ingest_landing": {"config": {"files": [rel]}}}}  # noqa: E731
    job = defs.resolve_job_def("ingest_job")
    gone = instance.create_run_for_job(job_def=job, run_config=cfg(failed), status=dg.DagsterRunStatus.NOT_STARTED)
    instance.report_run_failed(gone)
    waiting = instance.create_run_for_job(job_def=job, run_config=cfg(queued), status=dg.DagsterRunStatus.NOT_STARTED)

    # The last sweep was just now: only the file no run has named.
    requests, cursor, _ = _tick(defs, instance, _due(time.time_ns()))
    assert [_files(r) for r in requests] == [[new]] and "landing/sweep" not in requests[0].tags
    _submit(defs, instance, requests)

    # A sweep is due: the failed run's file, with the sweep's key and tag.
    due = _due(0, sweeps=4)
    requests, cursor, _ = _tick(defs, instance, due)
    assert [_files(r) for r in requests] == [[failed]]
    assert requests[0].tags["landing/sweep"] == "5" and requests[0].run_key.startswith("sweep5-")
    state = json.loads(cursor)
    assert state["sweeps"] == 5 and time.time_ns() - state["swept_ns"] < 60 * 10**9
    # The next tick is within the sweep interval: nothing again. A replay of the due tick asks for
    # the same run key (Dagster launches it once); the sweep after it, for a new one (a failed run
    # of that group is tried again).
    assert _tick(defs, instance, cursor)[0] == []
    assert [r.run_key for r in _tick(defs, instance, due)[0]] == [requests[0].run_key]
    again = _tick(defs, instance, _due(0, sweeps=5))[0]
    assert [_files(r) for r in again] == [[failed]] and again[0].run_key != requests[0].run_key

    # The swept run ingests it; the queued run is canceled: its file waits for the next sweep.
    assert job.execute_in_process(run_config=requests[0].run_config, instance=instance).success
    instance.report_run_canceled(waiting)
    requests, _, skip = _tick(defs, instance, _due(time.time_ns()))
    assert requests == [] and "1 pending" in skip
    requests, _, _ = _tick(defs, instance, _due(0))
    assert [_files(r) for r in requests] == [[queued]]

    # sensor_sweep_s = 0 turns the sweep off.
    off = dg.Definitions(assets=[ingest_landing], jobs=[ingest_job], sensors=[landing_sensor],
                         resources={"storage": PlatformStorage(data_dir=str(data)),
                                    "ingest_policy": IngestPolicy(sensor_sweep_s=0)})
    assert _tick(off, instance, _due(0))[0] == []


def test_the_sweep_does_not_ask_again_for_files_of_a_run_in_flight(tmp_path, instance):
    """The window between a request and its commit: the run the last tick asked for is queued (or
    running) when a sweep comes; its files are not asked for a second time. A request whose run
    was never created (nothing names the file) is taken by the sweep."""
    data = tmp_path / "data"
    landing = data / "landing"
    rel = _write(landing, 1)
    defs = _defs(data)
    requests, cursor, _ = _tick(defs, instance, None)
    assert [_files(r) for r in requests] == [[rel]]
    state = json.loads(cursor)
    state["swept_ns"] = 0  # a sweep is due
    requests2, cursor2, _ = _tick(defs, instance, json.dumps(state))
    assert [_files(r) for r in requests2] == [[rel]] and json.loads(cursor2)["sweeps"] == 1
    for status in (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED):
        run = _submit(defs, instance, requests, status=status)[0]
        got, cursor3, skip = _tick(defs, instance, json.dumps(state))
        assert got == [] and "no new landing files" in skip and json.loads(cursor3)["sweeps"] == 1
        instance.delete_run(run.run_id)


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


def test_no_file_is_requested_while_it_is_ingested_or_in_a_run(tmp_path, instance):
    """Ticks as the daemon runs them, with files arriving in bursts between ticks, queued runs that
    start later, runs that succeed and runs that fail. At every tick no requested file is already
    ingested or named by a queued or running run, nor asked for twice in the tick; a failed run's
    files come back only with a sweep; and in the end every file is in the lake exactly once."""
    import random

    from tiktok_pipelines.defs.ingest.assets import logged_twice
    from tiktok_pipelines.ingest.engine import Lake
    from tiktok_pipelines.tables import TableStore

    rng = random.Random(17)
    data = tmp_path / "data"
    landing = data / "landing"
    defs = _defs(data, files_per_run=3, sensor_sweep_s=3600)  # sweeps only where the test makes one due
    job = defs.resolve_job_def("ingest_job")
    cursor, seq, failed_files, queued, retried = None, 0, set(), [], 0
    for tick in range(10):
        for _ in range(rng.choice([0, 1, 2, 3])):
            seq += 1
            _write(landing, seq)
        sweep = tick in (5, 8)
        if sweep and cursor:
            state = json.loads(cursor)
            state["swept_ns"] = 0
            cursor = json.dumps(state)
        ingested = {r["rel_path"] for r in Lake(data / "lake").read_ingest_log().to_pylist()}
        in_flight = {f for run in queued for f in _files(run)}
        requests, cursor, _ = _tick(defs, instance, cursor)
        asked = [f for r in requests for f in _files(r)]
        assert len(asked) == len(set(asked)), tick
        assert not set(asked) & ingested and not set(asked) & in_flight, tick
        for r in requests:
            if not sweep:
                assert not set(_files(r)) & failed_files, tick  # a failed run's files wait for a sweep
        retried += len(failed_files & set(asked))
        failed_files -= set(asked)
        queued += _submit(defs, instance, requests)
        # Some queued runs start: each succeeds (it ingests) or fails for good.
        rng.shuffle(queued)
        for run in [queued.pop() for _ in range(min(len(queued), rng.choice([0, 1, 2])))]:
            if rng.random() < 0.4:
                instance.report_run_failed(run)
                failed_files |= set(_files(run))
            else:
                instance.delete_run(run.run_id)  # it runs, here, as the in-process run below
                assert job.execute_in_process(run_config=run.run_config, instance=instance).success
    # Drain: queued runs run, and a last sweep takes what failed.
    for run in queued:
        instance.delete_run(run.run_id)
        assert job.execute_in_process(run_config=run.run_config, instance=instance).success
    state = json.loads(cursor)
    state["swept_ns"] = 0
    requests, cursor, _ = _tick(defs, instance, json.dumps(state))
    assert {f for r in requests for f in _files(r)} == failed_files
    assert retried and failed_files, (retried, failed_files)  # the run exercised both sweeps and failures
    for r in requests:
        assert job.execute_in_process(run_config=r.run_config, instance=instance).success
    log = Lake(data / "lake").read_ingest_log()
    assert log.num_rows == seq and logged_twice(TableStore.from_config(data / "lake")) == []
    assert _tick(defs, instance, cursor)[0] == []
